"""OSC over UDP: one datagram is one OSC packet (up to the IPv4 maximum of 65,507 bytes)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Hashable

from ..daemon.control import Controller, Router
from ..errors import TransportError
from ..util.logutil import RateLimitedLog

log = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # bursts of 64 KiB packets overflow Linux's 208 KiB default


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


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: "OscUdpServer") -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self._server.controller.handle_packet(data, UdpPeer(self._server, addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a client that went away: not our problem.
        self._server.ratelog.log(logging.DEBUG, "udp error", "UDP error (a client went away?): %s", exc)


class OscUdpServer:
    """Binds host:port (0 = any free port) and feeds every datagram to the controller."""

    def __init__(self, host: str, port: int, controller: Controller) -> None:
        self._host = host
        self._port = port
        self.controller = controller
        self.router: Router = controller.router
        self.ratelog = RateLimitedLog(log)
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None

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
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport  # type: ignore[assignment]
        self._sock = sock
        self._port = sock.getsockname()[1]
        return self._port

    def send(self, packet: bytes, dest: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            self._transport.sendto(packet, dest)
        except OSError as exc:
            self.ratelog.log(logging.DEBUG, "udp send", "UDP send to %s failed: %s", dest, exc)

    def send_from_thread(self, packet: bytes, dest: tuple[str, int]) -> bool:
        """A direct non-blocking ``sendto`` for the worker thread.

        Datagram sends are atomic and thread-safe in the kernel; asyncio's transport only
        buffers when the socket would block, and then this returns False so the loop
        (which owns that buffer) sends the packet in order.
        """
        sock = self._sock
        if sock is None or self._transport is None or self._transport.get_write_buffer_size():
            return False
        try:
            sock.sendto(packet, dest)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.ratelog.log(logging.DEBUG, "udp send", "UDP send to %s failed: %s", dest, exc)
        return True

    async def async_stop(self) -> None:
        if self._transport is not None:
            self._sock = None
            self._transport.close()
            self._transport = None
