"""A small synchronous client for the bridge: standard library plus numpy only.

TouchDesigner's Python, scripts and the ``pose2person send`` command use it. It speaks
the OSC messages of docs/PROTOCOL.md over UDP and maps shared-memory channels.

    with BridgeClient("127.0.0.1", 9400) as bridge:
        bridge.ping()
        channel = bridge.open_shm("cam1", 640, 480, "BGRA8")
        result, latency_ms = bridge.process_shm(channel, frame, frame_id=1)
"""

from __future__ import annotations

import socket
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import protocol
from .daemon.stats import StatsSnapshot
from .osc import OscArg, OscDecodeError, OscMessage, decode_packet, encode_message
from .shm import ChannelFile, ShmError

DEFAULT_TIMEOUT_S = 5.0
_STASH_LIMIT = 256  # unrelated replies kept while waiting for a specific one


class RemoteError(Exception):
    """The bridge answered ``/pose2person/error``."""

    def __init__(self, frame_id: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (frame {frame_id})")
        self.frame_id = frame_id
        self.code = code
        self.message = message


class ReplyTimeout(TimeoutError):
    """No matching reply arrived in time (is the bridge running? is the port right?)."""


@dataclass(frozen=True)
class FrameDone:
    frame_id: int
    output_path: str
    width: int
    height: int
    latency_ms: float


@dataclass(frozen=True)
class Status(StatsSnapshot):
    """``/pose2person/status/reply``: the bridge's pipeline statistics plus the active model."""

    model: str = ""


@dataclass
class ShmSession:
    """A client's view of one channel: it writes ``input`` and reads ``output``."""

    name: str  # the channel's handle from /shm/opened (``<name>.<token>``): this client's alone, any socket
    input: ChannelFile
    output: ChannelFile
    width: int
    height: int
    format: str

    def close(self) -> None:
        self.input.close()
        self.output.close()


class BridgeClient:
    """One UDP socket to one bridge. Not thread-safe; use one client per thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_OSC_PORT, *,
                 timeout: float = DEFAULT_TIMEOUT_S, bind: tuple[str, int] | None = None) -> None:
        self.address = (host, port)
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(bind or (("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        self._stash: deque[OscMessage] = deque(maxlen=_STASH_LIMIT)

    # -- plumbing -----------------------------------------------------------------------
    def send(self, address: str, *args: OscArg) -> None:
        self.sock.sendto(encode_message(address, *args), self.address)

    def send_raw(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.address)

    def receive(self, timeout: float | None = None) -> OscMessage | None:
        """The next message (stashed ones first), or None after ``timeout`` seconds."""
        if self._stash:
            return self._stash.popleft()
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                return None
            try:
                messages = decode_packet(data)
            except OscDecodeError:
                continue
            if not messages:
                continue
            self._stash.extend(messages[1:])
            return messages[0]

    def wait_for(self, match: Callable[[OscMessage], bool], timeout: float | None = None,
                 error_for: Callable[[RemoteError], bool] | None = None) -> OscMessage:
        """Wait for a message satisfying ``match``; raise RemoteError for a matching error reply.

        Non-matching messages are kept for later ``receive`` calls. ``error_for`` decides
        which ``/pose2person/error`` replies belong to this wait (default: all).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        kept: list[OscMessage] = []
        pending = list(self._stash)
        self._stash.clear()
        try:
            while True:
                if pending:
                    msg: OscMessage | None = pending.pop(0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ReplyTimeout(f"no reply from the bridge at {self.address[0]}:{self.address[1]}")
                    msg = self.receive(left)
                    if msg is None:
                        continue
                if match(msg):
                    return msg
                if msg.address == protocol.ERROR and len(msg.args) == 3:
                    err = RemoteError(int(msg.args[0]), str(msg.args[1]), str(msg.args[2]))  # type: ignore[arg-type]
                    if error_for is None or error_for(err):
                        raise err
                kept.append(msg)
        finally:
            self._stash.extend(pending)
            self._stash.extend(kept)

    def request(self, address: str, args: tuple[OscArg, ...], reply: str, timeout: float | None = None) -> OscMessage:
        self.send(address, *args)
        return self.wait_for(lambda m: m.address == reply, timeout)

    # -- API ----------------------------------------------------------------------------
    def ping(self, token: int = 0) -> float:
        """Round-trip time in milliseconds."""
        t0 = time.perf_counter()
        self.send(f"{protocol.PREFIX}/ping", token)
        self.wait_for(lambda m: m.address == protocol.PONG and m.args == (token,))
        return (time.perf_counter() - t0) * 1000.0

    def register(self, reply_port: int) -> None:
        self.request(f"{protocol.PREFIX}/register", (reply_port,), protocol.REGISTERED)

    def set_model(self, name: str, timeout: float = 120.0) -> str:
        return str(self.request(f"{protocol.PREFIX}/model", (name,), protocol.MODEL_READY, timeout).args[0])

    def model(self) -> str:
        return str(self.request(f"{protocol.PREFIX}/model", (), protocol.MODEL_CHANGED).args[0])

    def models(self) -> list[str]:
        return [str(a) for a in self.request(f"{protocol.PREFIX}/models", (), protocol.MODELS_LIST).args]

    def status(self) -> Status:
        a = self.request(f"{protocol.PREFIX}/status", (), protocol.STATUS_REPLY).args
        return Status(float(a[0]), float(a[1]), float(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]),  # type: ignore[arg-type]
                      model=str(a[7]))

    def process_path(self, input_path: str, output_path: str | None = None, frame_id: int = 0,
                     timeout: float | None = None) -> FrameDone:
        """Ask the bridge to process a file; waits for ``/frame/done`` of this frame id."""
        args: tuple[OscArg, ...] = (input_path, output_path, frame_id) if output_path else (input_path, frame_id)
        self.send(f"{protocol.PREFIX}/frame/path", *args)
        m = self.wait_for(lambda m: m.address == protocol.FRAME_DONE and m.args[0] == frame_id, timeout,
                          error_for=lambda e: e.frame_id in (frame_id, protocol.NO_FRAME_ID))
        return FrameDone(int(m.args[0]), str(m.args[1]), int(m.args[2]), int(m.args[3]), float(m.args[4]))  # type: ignore[arg-type]

    def open_shm(self, channel: str, width: int, height: int, fmt: str = "BGRA8", origin: int = 0) -> ShmSession:
        """Ask the bridge for a channel and map its two files. The session is named by the reply's handle
        (``<channel>.<token>``), which every later message uses: the channel is this client's own."""
        m = self.request(f"{protocol.PREFIX}/shm/open", (channel, width, height, fmt, origin), protocol.SHM_OPENED)
        name, in_path, out_path = str(m.args[0]), str(m.args[1]), str(m.args[2])
        return ShmSession(name, ChannelFile(in_path, writable=True), ChannelFile(out_path, writable=False),
                          int(m.args[3]), int(m.args[4]), str(m.args[5]))  # type: ignore[arg-type]

    def close_shm(self, session: ShmSession) -> None:
        self.request(f"{protocol.PREFIX}/shm/close", (session.name,), protocol.SHM_CLOSED)
        session.close()

    def submit_shm(self, session: ShmSession, frame: np.ndarray, frame_id: int) -> None:
        """Write ``frame`` into the channel and announce it; does not wait."""
        session.input.write(frame, frame_id)
        self.send(f"{protocol.PREFIX}/frame/shm", session.name, frame_id)

    @contextmanager
    def writing_shm(self, session: ShmSession, frame_id: int) -> Iterator[np.ndarray]:
        """Zero-copy submit: yields the input slot's pixels to fill in place (e.g. ``cv2.resize(...,
        dst=buf)``); on leaving the block the slot is published and the frame announced. If the
        block raises, the slot is closed unpublished and nothing is sent."""
        k, view = session.input.begin_write()
        try:
            yield view
        except BaseException:
            session.input.end_write(k, frame_id, publish=False)
            raise
        session.input.end_write(k, frame_id)
        self.send(f"{protocol.PREFIX}/frame/shm", session.name, frame_id)

    @contextmanager
    def result_view(self, session: ShmSession, frame_id: int) -> Iterator[np.ndarray]:
        """Zero-copy read: yields the output slot holding ``frame_id`` read-only. On leaving the block
        the seqlock is re-checked; RemoteError("shm_torn") means the bridge overwrote the slot
        meanwhile and whatever was done with the pixels must be discarded."""
        try:
            k, seq = session.output.find_slot(frame_id)
        except ShmError as exc:
            raise RemoteError(frame_id, exc.code, exc.message) from None
        view = session.output.view(k)
        yield view
        if not session.output.still_intact(k, seq):
            raise RemoteError(frame_id, "shm_torn", f"result {frame_id} was overwritten while it was used")

    def read_result(self, session: ShmSession, frame_id: int) -> np.ndarray:
        """Copy out the processed frame ``frame_id`` from the output ring (seqlock-checked)."""
        _, pixels = session.output.read(frame_id)
        return pixels

    def process_shm(self, session: ShmSession, frame: np.ndarray, frame_id: int,
                    timeout: float | None = None) -> tuple[np.ndarray, float]:
        """Round trip one frame through shared memory: (result pixels, bridge latency in ms)."""
        self.submit_shm(session, frame, frame_id)
        m = self.wait_for(lambda m: m.address == protocol.FRAME_READY and m.args[1] == frame_id
                          and m.args[0] == session.name, timeout,
                          error_for=lambda e: e.frame_id in (frame_id, protocol.NO_FRAME_ID))
        try:
            return self.read_result(session, frame_id), float(m.args[2])  # type: ignore[arg-type]
        except ShmError as exc:
            raise RemoteError(frame_id, exc.code, exc.message) from None

    def safe_notice(self, frame_id: int) -> str | None:
        """The reason of a ``/frame/safe`` notice for ``frame_id`` already received (it arrives just
        before the frame's reply), removed from the stash; None when the frame got a real picture.

        A frame answered with a safe picture (``no_person``, a failed or loading model) is not the
        model's work: count it apart (``pose2person send`` counts it as failed)."""
        for i, m in enumerate(self._stash):
            if m.address == protocol.FRAME_SAFE and len(m.args) == 3 and m.args[0] == frame_id:
                del self._stash[i]
                return str(m.args[2])
        return None

    def set_mirror(self, mirrored: bool) -> bool:
        """Tell the bridge whether this client's camera pictures are mirrored; the setting in force."""
        return bool(self.request(f"{protocol.PREFIX}/mirror", (int(mirrored),), protocol.MIRROR).args[0])

    def set_view(self, view: str) -> str:
        """``person`` (generated pictures) or ``pose`` (the pose images); the setting in force."""
        return str(self.request(f"{protocol.PREFIX}/view", (view,), protocol.VIEW).args[0])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "BridgeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


