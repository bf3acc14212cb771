"""WebSocket frames and OSC, the browser page and the monitor page, on the HTTP server.

Routes added to the OSCQuery server's aiohttp app (before its catch-all):

* ``GET /ws``: a WebSocket. Each **binary** message is one OSC packet (handed to the
  :class:`~bridge.daemon.control.Controller` exactly like a UDP datagram) or one frame
  (:mod:`bridge.transports.wsframe` header + pixels), which becomes a
  :class:`~bridge.transports.wsframe.WsFrameJob` in the connection's latest-frame-wins mailbox.
  Replies come back on the socket: OSC packets, and result frames. Text messages are
  refused with ``malformed_packet``.
* ``GET /web/...``: the files of ``sketches/web`` (the p5.js page and the monitor page).
* ``GET /monitor``: redirects to ``/web/monitor.html`` (keeping ``?key=``); ``GET
  /monitor/state``: the monitor tap's JSON (clients, thumbnails, history, errors) plus models
  and counters. It needs the monitor key (bridge/transports/http.py) and is computed at most
  :data:`MONITOR_STATE_HZ` times a second, one body shared by every reader; with
  ``--no-monitor`` it answers 404.

Bad input never stops the bridge: a bad frame is answered with ``/pose2person/error`` and
logged (rate limited); a message over :data:`MAX_MESSAGE_BYTES` closes that connection
with WebSocket code 1009 (the standard "message too big"); a client that vanishes
mid-message loses only that message, and its waiting frame is dropped.

Browsers do not apply the same-origin policy to WebSockets, so a page from any web site
could otherwise talk to a bridge on localhost: the HTTP server's access policy refuses a
``Host`` or ``Origin`` that is not a name of this bridge (bridge/daemon/access.py), which
also closes DNS rebinding. Tools that send no ``Origin`` (Python, Node, TouchDesigner) are
accepted, subject to ``--allow-client``. At most ``HttpConfig.max_websockets`` sockets are
open at once (an eighth of them per host), each may be receiving one message of at most
:data:`MAX_MESSAGE_BYTES` (so half-sent messages hold at most 4 x 32 MiB per host and 1 GiB in
all, by default); each queues at most ``ws_queue_bytes`` of replies
for a client that does not read (at least one message), the rest is dropped and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Hashable

from aiohttp import WSMsgType, web

from .. import protocol, stages
from ..config import Config
from ..daemon.access import AccessPolicy
from ..daemon.control import Controller
from ..daemon.jobs import error_packet
from ..daemon.monitor import FrameTap
from ..daemon.pipeline import Pipeline
from ..errors import ClientError
from ..osc import encode_message
from ..util.logutil import RateLimitedLog
from .wsframe import WsFrameJob, is_frame, parse_frame

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parents[2] / "sketches" / "web"
MAX_MESSAGE_BYTES = 32 * 1024 * 1024 + 64  # larger messages close the connection (1009): a 4K RGBA8 frame fits
SEND_QUEUE = 32  # messages waiting to go out per connection; beyond it replies are dropped
SEND_QUEUE_BYTES = 16 * 1024 * 1024  # and bytes (HttpConfig.ws_queue_bytes); one message always fits
HEARTBEAT_S = 20.0  # ping interval: a vanished browser is noticed within ~2 intervals
MONITOR_STATE_HZ = 4.0  # /monitor/state is computed at most this often; readers in between share it

_conn_ids = itertools.count(1)


class WsPeer:
    """One WebSocket connection as the Controller sees it. Replies queue for a writer task,
    so the loop never blocks on a slow browser; when the queue is full the newest reply is
    dropped (frames are latest-wins anyway) and counted."""

    __slots__ = ("key", "host", "_queue", "_closed", "dropped_replies", "queued_bytes", "_max_bytes")

    def __init__(self, host: str, port: int, max_bytes: int = SEND_QUEUE_BYTES) -> None:
        self.key: Hashable = ("ws", host, port, next(_conn_ids))
        self.host = host
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(SEND_QUEUE)
        self._closed = False
        self.dropped_replies = 0
        self.queued_bytes = 0  # waiting in the queue, not yet handed to the socket
        self._max_bytes = max_bytes

    def reply(self, packet: bytes) -> None:
        """Queue one binary message (loop thread only). Dropped (and counted) when the queue
        holds ``SEND_QUEUE`` messages or the packet would take it over ``max_bytes`` (an empty
        queue takes any one message, so a big result still reaches a client that reads)."""
        if self._closed:
            return
        if self.queued_bytes and self.queued_bytes + len(packet) > self._max_bytes:
            self.dropped_replies += 1
            return
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            self.dropped_replies += 1
            return
        self.queued_bytes += len(packet)

    def close(self) -> None:
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass

    async def pump(self, ws: web.WebSocketResponse) -> None:
        """Send queued messages until closed or the socket fails."""
        while True:
            item = await self._queue.get()
            if item is None or ws.closed:
                return
            self.queued_bytes -= len(item)
            try:
                await ws.send_bytes(item)
            except (ConnectionError, RuntimeError):
                return


class WebRoutes:
    """Installs the WebSocket, web-page and monitor routes; tracks open sockets for shutdown."""

    def __init__(self, config: Config, controller: Controller, pipeline: Pipeline, monitor: FrameTap,
                 web_root: Path = WEB_ROOT, access: AccessPolicy | None = None) -> None:
        self._config = config
        self._access = access or controller.access
        self._ws_per_host: dict[str, int] = {}  # open WebSockets by host (only hosts with one are keys)
        self._state_cache: tuple[float, bytes] | None = None  # (monotonic time, JSON body) of /monitor/state
        self._controller = controller
        self._pipeline = pipeline
        self._monitor = monitor
        self._web_root = web_root
        self._sockets: set[web.WebSocketResponse] = set()
        self._ratelog = RateLimitedLog(log)
        self._started = time.time()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._handle_ws)
        app.router.add_get("/monitor", self._handle_monitor_page)
        app.router.add_get("/monitor/state", self._handle_monitor_state)
        if self._web_root.is_dir():
            app.router.add_get("/web", self._handle_web_index)
            app.router.add_get("/web/", self._handle_web_index)
            app.router.add_static("/web/", self._web_root, show_index=False, follow_symlinks=False)
        else:
            log.info("no web pages: %s is missing (installed without the sketches folder)", self._web_root)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"bridge shutting down")

    # -- pages ----------------------------------------------------------------------------
    async def _handle_web_index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/web/index.html")

    async def _handle_monitor_page(self, request: web.Request) -> web.StreamResponse:
        query = request.query_string
        raise web.HTTPFound("/web/monitor.html" + (f"?{query}" if query else ""))

    async def _handle_monitor_state(self, request: web.Request) -> web.Response:
        if not self._config.http.monitor:
            raise web.HTTPNotFound(reason="the monitor is off (--no-monitor)")
        now = time.monotonic()
        cached = self._state_cache
        if cached is None or now - cached[0] >= 1.0 / MONITOR_STATE_HZ:
            # The state (thumbnails, JSON) costs milliseconds: compute it a few times a second at
            # most, however many pages or scripts ask.
            cached = self._state_cache = (now, json.dumps(self._monitor_state()).encode())
            # The body holds camera thumbnails: it is not kept past its use (privacy).
            asyncio.get_running_loop().call_later(1.0, self._expire_state, cached)
        return web.Response(body=cached[1], content_type="application/json", headers={"Cache-Control": "no-store"})

    def _expire_state(self, body: tuple[float, bytes]) -> None:
        if self._state_cache is body:
            self._state_cache = None

    def _monitor_state(self) -> dict[str, object]:
        state = self._monitor.state()
        s = self._pipeline.stats.snapshot()
        catalog = getattr(self._pipeline, "catalog", None)
        resident = getattr(self._pipeline, "resident_models", None)
        state.update({
            "model": self._pipeline.model_name,
            "models": (catalog or stages.Catalog()).runnable(self._pipeline.model_name),
            "model_states": (catalog or stages.Catalog()).states(),
            "loaded": resident() if resident is not None else [self._pipeline.model_name],
            "totals": {"fps": round(s.fps, 2), "mean_latency_ms": round(s.mean_latency_ms, 3),
                       "p95_latency_ms": round(s.p95_latency_ms, 3), "received": s.received,
                       "processed": s.processed, "dropped": s.dropped, "errors": s.errors},
            "uptime_s": round(time.time() - self._started, 1),
            "websockets": len(self._sockets),
            "generated": round(time.time(), 3),  # when this shared body was computed
        })
        return state

    # -- WebSocket ------------------------------------------------------------------------
    def _ws_room(self, host: str) -> bool:
        """Below the WebSocket caps (in all, and an eighth of them for one host)?"""
        total = self._config.http.max_websockets
        return len(self._sockets) < total and self._ws_per_host.get(host, 0) < max(2, total // 8)

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        # --allow-client, Host and Origin were checked by the HTTP server's access middleware.
        peername = request.transport.get_extra_info("peername") if request.transport else None
        host, port = (str(peername[0]), int(peername[1])) if peername else ("?", 0)
        if not self._access.client_allowed(host):
            raise web.HTTPForbidden(reason="client not allowed")
        if not self._ws_room(host):
            self._ratelog.log(logging.WARNING, f"ws cap {host}", "WebSocket from %s refused: %d open (limit %d)",
                              host, len(self._sockets), self._config.http.max_websockets)
            return web.json_response({"error": "too many WebSockets open; close one or try again later",
                                      "status": 503, "code": "too_many_connections"}, status=503,
                                     headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False, heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        peer = WsPeer(host, port, self._config.http.ws_queue_bytes)
        self._sockets.add(ws)
        self._ws_per_host[host] = self._ws_per_host.get(host, 0) + 1
        pump = asyncio.get_running_loop().create_task(peer.pump(ws))
        self._ratelog.log(logging.INFO, f"ws connect {host}", "WebSocket client %s:%d connected", host, port)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    cost = 1 if is_frame(msg.data) else self._controller.packet_cost(msg.data)
                    delay = self._access.rate.wait_s(host, cost)
                    if delay > 0:  # over budget: stop reading for a while (flow control), then go on
                        await asyncio.sleep(min(delay, 1.0))
                    if not self._controller.admit(host, lambda: peer, cost):
                        continue
                    self._on_binary(msg.data, peer, cost)
                elif msg.type == WSMsgType.TEXT:
                    self._refuse(peer, ClientError("malformed_packet", "text messages are not OSC; send binary "
                                                   "messages (one OSC packet or one frame each)"))
                elif msg.type == WSMsgType.ERROR:
                    exc = ws.exception()
                    self._ratelog.log(logging.WARNING, f"ws error {host}", "WebSocket %s:%d closed: %s", host,
                                      port, exc)
                    break
        except ConnectionError:
            pass  # the client went away mid-message: only that message is lost
        finally:
            self._sockets.discard(ws)
            left = self._ws_per_host.pop(host, 1) - 1
            if left > 0:
                self._ws_per_host[host] = left
            peer.close()
            self._controller.forget(peer.key)
            if peer.dropped_replies:
                self._ratelog.log(logging.INFO, f"ws dropped {host}", "WebSocket %s:%d: %d replies dropped (client "
                                  "too slow)", host, port, peer.dropped_replies)
            try:
                await asyncio.wait_for(pump, 0.5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pump.cancel()
            self._ratelog.log(logging.INFO, f"ws disconnect {host}", "WebSocket client %s:%d disconnected (code %s)",
                              host, port, ws.close_code)
        return ws

    def _on_binary(self, data: bytes, peer: WsPeer, cost: int = 1) -> None:
        if not is_frame(data):
            self._controller.handle_packet(data, peer, admitted=True, prepaid=cost)  # charged in _handle_ws
            return
        received = time.perf_counter_ns()
        try:
            header = parse_frame(data, self._config.security.max_pixels)
        except ClientError as exc:
            self._refuse(peer, exc)
            return
        job = WsFrameJob(peer.key, header.frame_id, received, peer.reply, message=data, header=header)
        self._controller.attach_safe(job, peer.key)
        overtaken = self._pipeline.submit(job)
        if overtaken is not None:
            overtaken.reply(encode_message(protocol.FRAME_DROPPED, overtaken.frame_id, job.frame_id))

    def _refuse(self, peer: WsPeer, exc: ClientError) -> None:
        self._ratelog.log(logging.WARNING, f"{exc.code} {peer.host}", "%s from WebSocket %s: %s", exc.code,
                          peer.key, exc.message)
        if self._pipeline.monitor is not None:
            self._pipeline.monitor.error(peer.key, exc.code, exc.message, exc.frame_id)
        peer.reply(error_packet(exc.code, exc.message, exc.frame_id))


__all__ = ["WebRoutes", "WsPeer", "MAX_MESSAGE_BYTES"]
