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
from typing import Awaitable, Callable, Hashable

from ..daemon.budget import ConnectionBudget
from ..daemon.control import Controller
from ..daemon.jobs import error_packet
from ..errors import TransportError
from ..util.logutil import RateLimitedLog

log = logging.getLogger(__name__)

SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC
SLIP_ESC_ESC = 0xDD
IDLE_TIMEOUT_S = 300.0  # a silent connection is closed after this long
REPLY_GRACE_S = 10.0  # after a clean end of stream, how long frames in flight may take to answer
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


class _EndOfStream(Exception):
    """The client ended its stream cleanly, between two packets."""


async def _read_or_end(read: Awaitable[bytes]) -> bytes:
    """Await a read of the next packet; EOF before its first byte is a clean end of stream."""
    try:
        return await asyncio.wait_for(read, IDLE_TIMEOUT_S)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _EndOfStream() from None
        raise


class TcpPeer:
    __slots__ = ("key", "host", "_writer", "_slip", "_in_flight", "_idle")

    def __init__(self, host: str, port: int, writer: asyncio.StreamWriter) -> None:
        self.key: Hashable = ("tcp", host, port, next(_conn_ids))
        self.host = host
        self._writer = writer
        self._slip = False
        self._in_flight = 0  # frame jobs submitted whose reply has not been sent yet
        self._idle = asyncio.Event()
        self._idle.set()

    def reply(self, packet: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(slip_encode(packet) if self._slip else struct.pack(">i", len(packet)) + packet)

    def frame_reply(self) -> Callable[[bytes], None]:
        """A reply function for one frame job that counts it as in flight until it answers."""
        self._in_flight += 1
        self._idle.clear()
        answered = False

        def reply(packet: bytes) -> None:
            nonlocal answered
            if not answered:
                answered = True
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
            self.reply(packet)

        return reply

    async def wait_replies(self, timeout: float) -> None:
        """Wait (bounded) until every frame in flight has answered, then flush."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            await self._writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass

    def stop_waiting(self) -> None:
        self._idle.set()


class OscTcpServer:
    """Accepts OSC-TCP connections. ``connections`` (shared with HTTP): a connection over the
    budget, in all or for its host, is answered ``too_many_connections`` (length-prefixed) and
    closed at once, so idle connections cannot use up the descriptors others need."""

    def __init__(self, host: str, port: int, controller: Controller, max_packet_bytes: int,
                 connections: ConnectionBudget | None = None) -> None:
        self._host = host
        self._port = port
        self._controller = controller
        self._budget = connections
        self._max = max_packet_bytes
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.StreamWriter, TcpPeer] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False
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
        self._closing = True
        self._server.close()
        # A connection accepted just before close() gets its handler a few loop turns later.
        for _ in range(5):
            await asyncio.sleep(0)
        for writer, peer in list(self._conns.items()):
            peer.stop_waiting()
            writer.close()
        # Let the connection handlers see their closed streams and finish: on Python 3.11,
        # wait_closed() does not wait for them, and asyncio.run() would cancel them at exit,
        # which asyncio's stream callback then logs as an "Exception in callback" traceback.
        handlers = [t for t in self._handlers if not t.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=0.5)
        try:
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        except asyncio.TimeoutError:
            pass
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        host, port = writer.get_extra_info("peername")[:2]
        if not self._controller.access.client_allowed(host):
            writer.close()  # no answer to unlisted hosts (as over UDP)
            return
        if self._budget is not None and not self._budget.admit("tcp", host):
            self._ratelog.log(logging.WARNING, f"tcp cap {host}", "OSC-TCP connection from %s refused: %d "
                              "connections open (limit %d, %d per host)", host, self._budget.open,
                              self._budget.total, self._budget.per_host)
            try:
                packet = error_packet("too_many_connections", "the bridge's connection limit is reached; "
                                      "close idle connections or try again later")
                writer.write(struct.pack(">i", len(packet)) + packet)
            finally:
                writer.close()
            return
        try:
            await self._serve_admitted(host, port, reader, writer)
        finally:
            if self._budget is not None:
                self._budget.release("tcp", host)

    async def _serve_admitted(self, host: str, port: int, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        peer = TcpPeer(host, port, writer)
        self._conns[writer] = peer
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            first = await asyncio.wait_for(reader.readexactly(1), IDLE_TIMEOUT_S)
            peer._slip = first[0] == SLIP_END
            if peer._slip:
                await self._read_slip(reader, peer)
            else:
                await self._read_length_prefixed(first, reader, peer)
        except _EndOfStream:
            # The client finished sending at a packet boundary (it may have only half-closed
            # and still be reading): answer the frames it is owed before closing.
            await peer.wait_replies(REPLY_GRACE_S)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass  # the client went away (possibly mid-packet): drop what it sent so far
        except asyncio.LimitOverrunError:
            peer.reply(error_packet("packet_too_large", f"SLIP packet over {self._max} bytes"))
        finally:
            self._conns.pop(writer, None)
            self._controller.forget(peer.key)
            writer.close()

    async def _pace(self, host: str, cost: int) -> None:
        """Wait (not reading this connection) until the host has budget for this packet: a flood
        over TCP is slowed by flow control, and a well-behaved burst is delayed, not dropped."""
        delay = self._controller.access.rate.wait_s(host, cost)
        if delay > 0:
            await asyncio.sleep(min(delay, 1.0))

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
            await self._pace(peer.host, self._controller.packet_cost(packet))
            self._controller.handle_packet(packet, peer)
            await peer._writer.drain()
            head = await _read_or_end(reader.readexactly(4))

    async def _read_slip(self, reader: asyncio.StreamReader, peer: TcpPeer) -> None:
        while True:
            frame = await _read_or_end(reader.readuntil(b"\xc0"))
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
            await self._pace(peer.host, self._controller.packet_cost(packet))
            self._controller.handle_packet(packet, peer)
            await peer._writer.drain()
