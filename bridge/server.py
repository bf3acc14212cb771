"""The daemon's lifecycle: ``run()`` -> ``serve()`` = signals + ``startup()`` -> main loop -> ``shutdown()``.

Order matters. Start-up opens the transports (so their ports are known), then loads the
model and starts the pipeline, and advertises on zeroconf last, when everything it
announces works. Shutdown withdraws the advertisement first, then closes the transports,
stops the pipeline and removes the shared-memory files; the whole of it is bounded so a
Ctrl-C finishes within 2 s. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import threading
from typing import Any

from . import __version__, stages
from .config import Config
from .daemon.access import AccessPolicy
from .daemon.budget import raise_fd_limit
from .daemon.control import Controller, Router
from .daemon.memtune import tune_allocator
from .daemon.monitor import FrameTap
from .daemon.pipeline import Pipeline
from .daemon.shm_channels import ChannelRegistry
from .errors import TransportError
from .transports.osc_tcp import OscTcpServer
from .transports.osc_udp import OscUdpServer
from .util import metrics
from .util.logutil import RateLimitedLog

log = logging.getLogger(__name__)

OSC_PORT_ZERO_ATTEMPTS = 20  # --osc-port 0: free UDP ports tried until one is free for TCP too
SHUTDOWN_BUDGET_S = 1.8  # whole graceful shutdown, s; every step takes its share of what is left
SHUTDOWN_STEP_CAP_S = 0.6  # most one network step (zeroconf, HTTP, TCP) may take, s
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CATALOG_REFRESH_S = 5.0  # model folders are re-read this often, off the loop (messages read the snapshot)
_FD_ERRNOS = (errno.EMFILE, errno.ENFILE)


class Bridge:
    """The whole daemon; ``await bridge.serve()`` embeds it (tests do), ``bridge.run()`` owns the loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = False
        self.force_exit = False
        self.started: asyncio.Event | None = None  # created on the loop in serve()
        self.pipeline = Pipeline(config.pipeline.model, config.pipeline, config.engine, config.safety)
        self.monitor = FrameTap()  # the monitor page's bounded view of the pipeline
        if config.http.monitor:  # --no-monitor: no thumbnails are ever taken
            self.pipeline.monitor = self.monitor
        self.access: AccessPolicy | None = None  # made at start-up, once the fd limit is known
        self._ratelog = RateLimitedLog(log)
        self._catalog_task: asyncio.Task[None] | None = None
        self.router = Router(config.osc.max_clients * 4)
        self.channels: ChannelRegistry | None = None
        self.controller: Controller | None = None
        self.udp: OscUdpServer | None = None
        self.tcp: OscTcpServer | None = None
        self.http: Any = None  # OscQueryServer, imported only when HTTP is enabled
        self.advertiser: Any = None  # Advertiser, imported only when zeroconf is enabled
        self._exit_event: asyncio.Event | None = None
        self.endpoints: dict[str, str] = {}

    # -- public -------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGINT/SIGTERM (blocking). Raises BridgeError subclasses on start-up failure."""
        tune_allocator()  # process-wide, so only when the daemon owns the process
        soft, hard = raise_fd_limit()  # room for client sockets beside files and channels
        log.debug("descriptor limit %d (hard %d)", soft, hard)
        asyncio.run(self.serve())

    async def serve(self) -> None:
        self._exit_event = asyncio.Event()
        self.started = asyncio.Event()
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        restore = self._install_signal_handlers()
        try:
            try:
                await self.startup()
            except BaseException:
                await self.shutdown()
                raise
            self.started.set()
            await self._exit_event.wait()
            await self.shutdown()
        finally:
            restore()

    def request_exit(self) -> None:
        """Ask the daemon to shut down (thread-safe via the loop when called from signals/tests)."""
        self.should_exit = True
        if self._exit_event is not None:
            self._exit_event.set()

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers: liveness, model, counters, open channels."""
        s = self.pipeline.stats.snapshot()
        return {
            "status": "ok" if not self.should_exit else "stopping",
            "version": __version__,
            "model": self.pipeline.model_name,
            "fps": round(s.fps, 2),
            "mean_latency_ms": round(s.mean_latency_ms, 3),
            "p95_latency_ms": round(s.p95_latency_ms, 3),
            "received": s.received,
            "processed": s.processed,
            "dropped": s.dropped,
            "errors": s.errors,
            "safe_frames": s.safe,  # frames answered with a safe picture (bridge/daemon/safe_output.py)
            "model_restarts": self.pipeline.restarts,  # stalled models restarted by the watchdog
            "safe_output": self.config.safety.safe_output,
            "malformed_packets": self.controller.malformed_packets if self.controller else 0,
            "rate_limited_packets": self.controller.rate_limited_packets if self.controller else 0,
            "connections": self._connection_figures(),
            "shm_channels": self.channels.names() if self.channels else [],
            "endpoints": dict(self.endpoints),
            "engine": self.pipeline.engine.describe(),
            **metrics.health_figures(self.pipeline, self.controller.recorder if self.controller else None),  # uptime, stages, queue, process (bridge/util/metrics.py)
        }

    def _connection_figures(self) -> dict[str, Any]:
        if self.access is None:
            return {}
        budget = self.access.connections
        return {"open": budget.open, "limit": budget.total, "per_host_limit": budget.per_host,
                "refused": budget.refused, **{f"open_{k}": v for k, v in sorted(budget.by_surface.items())}}

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of descriptors is a state, not a bug: one clear, rate-limited line instead of a
        traceback per refused accept (asyncio retries accepting a second later by itself)."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _FD_ERRNOS:
            self._ratelog.log(logging.ERROR, "out of descriptors",
                              "out of file descriptors (%s): new connections wait; raise `ulimit -n` or lower "
                              "--max-connections", exc.strerror or exc)
            return
        loop.default_exception_handler(context)

    def metrics_text(self) -> str:
        """What ``GET /metrics`` answers: Prometheus text format 0.0.4."""
        return metrics.prometheus_text(self.health(), self.pipeline.stats.timings.histograms())

    # -- lifecycle ----------------------------------------------------------------------
    async def startup(self) -> None:
        cfg = self.config
        # A misspelt model name fails before any port is opened (loading it comes later).
        self.pipeline.catalog.validate(cfg.pipeline.model)
        self.access = AccessPolicy(cfg)  # every surface asks this one policy (bridge/daemon/access.py)
        # 1. transports
        osc_port = await self._start_osc()
        http_port: int | None = None
        if cfg.http.enabled:
            from .transports.http import OscQueryServer  # aiohttp: loaded only when used
            from .transports.ws import WebRoutes

            assert self.controller is not None
            web_routes = WebRoutes(cfg, self.controller, self.pipeline, self.monitor, access=self.access)
            self.http = OscQueryServer(cfg.http, osc_host=cfg.osc.host, osc_port_fn=lambda: osc_port,
                                       name=cfg.discovery.instance_name, status_fn=self.health,
                                       metrics_fn=self.metrics_text,
                                       value_fn=self._osc_value, routes=web_routes.install, access=self.access)
            http_port = await self.http.async_start()
            base = f"http://{_fmt_host(cfg.http.host)}:{http_port}"
            self._endpoint("http", f"{base}/ (OSCQuery, /health)")
            self._endpoint("ws", f"ws{base[4:]}/ws (OSC and frames)")
            self._endpoint("web", f"{base}/web/ (browser page), {base}/monitor (monitor)")
            if cfg.http.monitor:
                # Like Jupyter: the monitor's pictures need a key; the URL that carries it is printed
                # here (the control token is never printed: its owner knows it).
                key = "<the control token>" if self.access.key_is_token else self.access.monitor_key
                log.info("monitor %s/monitor?key=%s (camera pictures: keep this URL private)", base, key)
        # 2. pipeline
        await self.pipeline.async_start()
        self._catalog_task = asyncio.get_running_loop().create_task(self._refresh_catalog())
        # 3. discovery, last
        if cfg.discovery.enabled:
            from .daemon.discovery import Advertiser  # zeroconf: loaded only when used

            self.advertiser = Advertiser(cfg.discovery, osc_port=osc_port, http_port=http_port,
                                         bind_host=cfg.osc.host, version=__version__)
            await self.advertiser.async_start()
        for root in cfg.security.allow_roots:
            log.info("allow-root %s", root)
        log.info("shm directory %s", cfg.shm.directory)
        log.info("%d client connections at most (%d per host; OSC-TCP, HTTP and WebSocket together)",
                 self.access.connections.total, self.access.connections.per_host)
        log.info("pose2person %s ready (model %s)", __version__, self.pipeline.model_name)

    async def _refresh_catalog(self) -> None:
        """Re-read the model folders every few seconds on a thread, so that a message naming a
        model only reads the catalog's snapshot (a flood of names costs no disk reads); and drop
        the monitor's stale thumbnails."""
        while True:
            await asyncio.sleep(CATALOG_REFRESH_S)
            self.monitor.prune()  # camera thumbnails older than monitor.THUMB_TTL_S go (privacy)
            try:
                await asyncio.to_thread(self.pipeline.catalog.refresh)
            except Exception as exc:  # a half-written card: keep the old snapshot
                self._ratelog.log(logging.WARNING, "catalog", "model folders not re-read: %s", exc)

    async def _start_osc(self) -> int:
        """Bind OSC UDP and TCP on one port number; returns it.

        With port 0 the kernel picks a free UDP port, whose number may be taken for TCP (any
        outgoing connection from that local port blocks listening on it): then another pair
        is tried, so ``--osc-port 0`` does not fail at random.
        """
        cfg = self.config
        attempts = OSC_PORT_ZERO_ATTEMPTS if cfg.osc.port == 0 else 1
        rejected: list[OscUdpServer] = []  # kept bound until the end, so the kernel offers new ports
        try:
            for attempt in range(1, attempts + 1):
                port = await self._start_udp()
                if not cfg.osc.tcp:
                    break
                assert self.controller is not None and self.udp is not None
                tcp = OscTcpServer(cfg.osc.host, port, self.controller, cfg.osc.max_packet_bytes,
                                   connections=self.controller.access.connections)
                try:
                    await tcp.async_start()
                except TransportError:
                    if attempt == attempts:
                        raise
                    log.debug("OSC TCP port %d is taken; picking another port pair", port)
                    rejected.append(self.udp)
                    self.udp = None
                    continue
                self.tcp = tcp
                break
        finally:
            for udp in rejected:
                await udp.async_stop()
        self._endpoint("osc.udp", f"osc.udp://{_fmt_host(cfg.osc.host)}:{port}")
        if self.tcp is not None:
            self._endpoint("osc.tcp", f"osc.tcp://{_fmt_host(cfg.osc.host)}:{port}")
        return port

    async def _start_udp(self) -> int:
        cfg = self.config
        # Channel files are named after the OSC port, known only after binding (port 0).
        self.channels = ChannelRegistry(cfg.shm, cfg.security, tag=str(cfg.osc.port))
        self.controller = Controller(cfg, self.pipeline, self.channels, self.router, access=self.access)
        self.controller.request_shutdown = self.request_exit  # /pose2person/shutdown (token-guarded)
        self.udp = OscUdpServer(cfg.osc.host, cfg.osc.port, self.controller)
        port = await self.udp.async_start()
        self.channels.tag = str(port)
        return port

    def _endpoint(self, name: str, url: str) -> None:
        self.endpoints[name] = url
        log.info("listening %s", url)

    def _osc_value(self, path: str) -> tuple[Any, ...] | None:
        if path.endswith("/model"):
            return (self.pipeline.model_name,)
        return None

    async def shutdown(self) -> None:
        log.info("shutting down")
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_BUDGET_S
        if self._catalog_task is not None:
            self._catalog_task.cancel()
        if self.advertiser is not None:
            await self._bounded(self.advertiser.async_stop(), "zeroconf withdrawal", deadline, SHUTDOWN_STEP_CAP_S)
        if self.http is not None:
            await self._bounded(self.http.async_stop(), "HTTP server", deadline, SHUTDOWN_STEP_CAP_S)
        if self.tcp is not None:
            await self._bounded(self.tcp.async_stop(), "OSC TCP", deadline, SHUTDOWN_STEP_CAP_S)
        if self.udp is not None:
            await self.udp.async_stop()
        if self.controller is not None:
            await self.controller.async_close()
        await self._bounded(self.pipeline.async_stop(), "pipeline", deadline, SHUTDOWN_BUDGET_S)
        if self.channels is not None:
            self.channels.close_all()
        log.info("stopped")

    @staticmethod
    async def _bounded(coro: Any, what: str, deadline: float, cap: float) -> None:
        """Await ``coro`` for at most ``cap`` seconds and never past the shared ``deadline``."""
        left = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(coro, max(min(cap, left), 0.05))
        except asyncio.TimeoutError:
            log.warning("shutdown: %s did not finish in time; going on", what)
        except Exception:
            log.exception("shutdown: %s failed", what)

    # -- signals ------------------------------------------------------------------------
    def _install_signal_handlers(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # embedded in a test thread: the host owns signals
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

        def restore() -> None:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)

        return restore

    def _on_signal(self, sig: int) -> None:
        if self.should_exit:
            log.warning("second %s: forcing exit", signal.Signals(sig).name)
            self._unlink_channel_files()
            logging.shutdown()
            os._exit(130)
        log.info("%s received: shutting down (press Ctrl-C again to force)", signal.Signals(sig).name)
        self.request_exit()

    def _unlink_channel_files(self) -> None:
        """Forced exit: delete the channel files still open (a few unlinks, no unmapping), so
        they do not stay behind in the shm directory (RAM on /dev/shm) after the process."""
        if self.channels is None:
            return
        for channel in self.channels.channels():
            for path in (channel.input_path, channel.output_path):
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
