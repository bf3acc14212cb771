"""OSC over UDP: one datagram is one OSC packet (up to the IPv4 maximum of 65,507 bytes).

Datagrams are admitted (``--allow-client``, the host's rate budget) before anything else is done
with them; see :class:`OscUdpServer`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import Hashable

from ..daemon.control import Controller, Router
from ..errors import TransportError
from ..util.logutil import RateLimitedLog

log = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # bursts of 64 KiB packets overflow Linux's 208 KiB default
MAX_DATAGRAM = 65536  # bytes: one receive buffer, reused (IPv4 datagrams are at most 65,507)
READ_BATCH = 256  # datagrams read per readiness event before other callbacks get the loop
MAX_PENDING_BYTES = 4 * 1024 * 1024  # replies waiting for a socket that would block; beyond: dropped


class UdpPeer:
    """A UDP sender; replies go where the router says (sender, or its registered port)."""

    __slots__ = ("key", "host", "_port", "_server")

    def __init__(self, server: "OscUdpServer", host: str, port: int) -> None:
        self.key: Hashable = ("udp", host, port)
        self.host = host
        self._port = port
        self._server = server

    def reply(self, packet: bytes) -> None:
        self._server.send(packet, self._server.router.destination(self.host, self._port))

    def reply_from_worker(self, packet: bytes) -> bool:
        """Send from the pipeline worker thread; False if the loop must send it instead."""
        return self._server.send_from_thread(packet, self._server.router.destination(self.host, self._port))


class OscUdpServer:
    """Binds host:port (0 = any free port) and feeds every datagram to the controller.

    The socket is read directly, not through asyncio's datagram transport, because a flood is
    decided per datagram before any work: up to :data:`READ_BATCH` datagrams are received per
    readiness event into one preallocated buffer, and a datagram whose host is not allowed or
    is over its rate budget is dropped there, without a copy, an object or a decode (about a
    microsecond), so the socket drains faster than one host can fill it and other clients'
    datagrams do not wait behind a flood. Sends go out directly; when the socket would block
    they wait in a bounded queue (:data:`MAX_PENDING_BYTES`) flushed when it is writable.
    """

    def __init__(self, host: str, port: int, controller: Controller) -> None:
        self._host = host
        self._port = port
        self.controller = controller
        self.router: Router = controller.router
        self.ratelog = RateLimitedLog(log)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray(MAX_DATAGRAM)
        self._pending: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._pending_bytes = 0
        self.dropped_sends = 0
        self._blocked: dict[str, float] = {}  # host -> monotonic time before which it has no budget

    @property
    def port(self) -> int:
        return self._port

    async def async_start(self) -> int:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot bind OSC UDP {self._host}:{self._port}: {exc.strerror}") from None
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._port = sock.getsockname()[1]
        self._loop.add_reader(sock.fileno(), self._on_readable)
        return self._port

    # -- receiving (loop thread) -----------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        buf, view = self._buf, memoryview(self._buf)
        controller = self.controller
        blocked = self._blocked
        now = time.monotonic()  # once per batch: a batch takes well under a millisecond
        for _ in range(READ_BATCH):
            try:
                size, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP "port unreachable" from a client that went away
                self.ratelog.log(logging.DEBUG, "udp error", "UDP error (a client went away?): %s", exc)
                continue
            host, port = addr[0], addr[1]
            until = blocked.get(host)
            if until is not None:
                if now < until:  # a host known to be over budget: one look-up, nothing else
                    controller.rate_limited_packets += 1
                    continue
                del blocked[host]
            cost = controller.packet_cost(view[:size])
            if not controller.admit(host, lambda h=host, p=port: UdpPeer(self, h, p), cost):
                wait = controller.access.rate.wait_s(host, cost)
                if wait > 0:  # over budget (not unlisted): skip its packets until a token is due
                    if len(blocked) >= 1024:
                        blocked.clear()
                    blocked[host] = now + wait
                continue  # unlisted or over budget: dropped before any work
            controller.handle_packet(bytes(view[:size]), UdpPeer(self, host, port), admitted=True, prepaid=cost)
            if self._sock is None:  # a handler stopped the server
                return

    # -- sending ---------------------------------------------------------------------------
    def send(self, packet: bytes, dest: tuple[str, int]) -> None:
        """Send from the loop thread; queued (bounded) when the socket would block."""
        sock = self._sock
        if sock is None:
            return
        if not self._pending:
            try:
                sock.sendto(packet, dest)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self.ratelog.log(logging.DEBUG, "udp send", "UDP send to %s failed: %s", dest, exc)
                return
        if self._pending_bytes + len(packet) > MAX_PENDING_BYTES:
            self.dropped_sends += 1  # UDP is lossy: a stuck socket must not hold the daemon's memory
            return
        if not self._pending and self._loop is not None:
            self._loop.add_writer(sock.fileno(), self._flush)
        self._pending.append((packet, dest))
        self._pending_bytes += len(packet)

    def _flush(self) -> None:
        sock = self._sock
        while self._pending and sock is not None:
            packet, dest = self._pending[0]
            try:
                sock.sendto(packet, dest)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.ratelog.log(logging.DEBUG, "udp send", "UDP send to %s failed: %s", dest, exc)
            self._pending.popleft()
            self._pending_bytes -= len(packet)
        if sock is not None and self._loop is not None:
            self._loop.remove_writer(sock.fileno())

    def send_from_thread(self, packet: bytes, dest: tuple[str, int]) -> bool:
        """A direct non-blocking ``sendto`` for the worker thread.

        Datagram sends are atomic and thread-safe in the kernel; when the loop has packets
        queued (or the socket would block) this returns False, so the loop sends it in order.
        """
        sock = self._sock
        if sock is None or self._pending:
            return False
        try:
            sock.sendto(packet, dest)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.ratelog.log(logging.DEBUG, "udp send", "UDP send to %s failed: %s", dest, exc)
        return True

    async def async_stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.close()
        self._pending.clear()
        self._pending_bytes = 0
