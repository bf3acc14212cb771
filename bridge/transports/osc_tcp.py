"""OSC over TCP on the same port number as UDP.

Framing is detected per connection from its first byte: ``0xC0`` means OSC 1.1 SLIP
(RFC 1055, double END), anything else OSC 1.0's int32 big-endian length prefix (what
liblo's ``osc.tcp://`` speaks). Replies use the same framing on the same connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from typing import Hashable

from ..control import Controller
from ..errors import TransportError
from ..jobs import error_packet
from ..logutil import RateLimitedLog

log = logging.getLogger(__name__)

SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC
SLIP_ESC_ESC = 0xDD
IDLE_TIMEOUT_S = 300.0  # a silent connection is closed after this long
_conn_ids = itertools.count(1)


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def slip_decode(frame: bytes) -> bytes:
    out = bytearray()
    it = iter(frame)
    for b in it:
        if b == SLIP_ESC:
            nxt = next(it, None)
            if nxt == SLIP_ESC_END:
                out.append(SLIP_END)
            elif nxt == SLIP_ESC_ESC:
                out.append(SLIP_ESC)
            else:
                raise ValueError("bad SLIP escape")
        else:
            out.append(b)
    return bytes(out)


class TcpPeer:
    __slots__ = ("key", "host", "_writer", "_slip")

    def __init__(self, host: str, port: int, writer: asyncio.StreamWriter) -> None:
        self.key: Hashable = ("tcp", host, port, next(_conn_ids))
        self.host = host
        self._writer = writer
        self._slip = False

    def reply(self, packet: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(slip_encode(packet) if self._slip else struct.pack(">i", len(packet)) + packet)


class OscTcpServer:
    def __init__(self, host: str, port: int, controller: Controller, max_packet_bytes: int) -> None:
        self._host = host
        self._port = port
        self._controller = controller
        self._max = max_packet_bytes
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._ratelog = RateLimitedLog(log)

    async def async_start(self) -> int:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port,
                                                      limit=self._max * 2 + 16)
        except OSError as exc:
            raise TransportError(f"cannot bind OSC TCP {self._host}:{self._port}: {exc.strerror}") from None
        self._port = self._server.sockets[0].getsockname()[1]
        return self._port

    async def async_stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._conns):
            writer.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        except asyncio.TimeoutError:
            pass
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = TcpPeer(host, port, writer)
        self._conns.add(writer)
        try:
            first = await asyncio.wait_for(reader.readexactly(1), IDLE_TIMEOUT_S)
            peer._slip = first[0] == SLIP_END
            if peer._slip:
                await self._read_slip(reader, peer)
            else:
                await self._read_length_prefixed(first, reader, peer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass  # the client went away (possibly mid-packet): drop what it sent so far
        except asyncio.LimitOverrunError:
            peer.reply(error_packet("packet_too_large", f"SLIP packet over {self._max} bytes"))
        finally:
            self._conns.discard(writer)
            self._controller.forget(peer.key)
            writer.close()

    async def _read_length_prefixed(self, first: bytes, reader: asyncio.StreamReader, peer: TcpPeer) -> None:
        head = first + await reader.readexactly(3)
        while True:
            size = struct.unpack(">i", head)[0]
            if size <= 0 or size > self._max:
                self._ratelog.log(logging.WARNING, "tcp size", "TCP packet size %d from %s refused", size, peer.host)
                peer.reply(error_packet("packet_too_large", f"packet size {size} is outside 1..{self._max} bytes"))
                await peer._writer.drain()
                return  # the stream is out of sync; closing is the only safe answer
            packet = await asyncio.wait_for(reader.readexactly(size), IDLE_TIMEOUT_S)
            self._controller.handle_packet(packet, peer)
            await peer._writer.drain()
            head = await asyncio.wait_for(reader.readexactly(4), IDLE_TIMEOUT_S)

    async def _read_slip(self, reader: asyncio.StreamReader, peer: TcpPeer) -> None:
        while True:
            frame = await asyncio.wait_for(reader.readuntil(b"\xc0"), IDLE_TIMEOUT_S)
            frame = frame[:-1]
            if not frame:
                continue  # the leading END of a double-END frame
            if len(frame) > self._max:
                peer.reply(error_packet("packet_too_large", f"SLIP packet over {self._max} bytes"))
                continue
            try:
                packet = slip_decode(frame)
            except ValueError:
                peer.reply(error_packet("malformed_packet", "bad SLIP escape sequence"))
                continue
            self._controller.handle_packet(packet, peer)
            await peer._writer.drain()
