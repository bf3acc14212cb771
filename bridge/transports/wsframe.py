"""WebSocket frame messages: the 32-byte header codec and the pipeline job for a frame.

One binary WebSocket message is either one OSC packet (it starts with ``/`` or ``#bundle``)
or one frame: the header below followed by the raw pixels. docs/PROTOCOL.md ("WebSocket")
is the contract; ``sketches/web/pose2person.js`` is the browser's twin of this module.

Header, all integers little-endian (browsers' ``DataView`` and the shm files agree)::

    0   4  magic          b"P2PF"
    4   1  version        1
    5   1  kind           1 = input frame (client to bridge), 2 = result frame (bridge to client)
    6   1  format         the shm format codes: 1 BGRA8, 2 RGBA8, 3 RGB8, 4 BGR8, 5 RGBAF32
    7   1  origin         0 = first row is the top, 1 = the bottom
    8   4  frame_id       i32, chosen by the client, echoed in the result
    12  4  width          u32 pixels
    16  4  height         u32 pixels
    20  4  payload_bytes  u32 = width * height * channels * sample size (rows unpadded)
    24  4  latency_ms     f32, in results: arrival of the frame to the result being sent
    28  4  reserved       zero
    32  .. pixels

Unlike path and shm jobs, a WebSocket job carries its pixels: they arrived in the message
and there is nothing to read later. It still waits in the client's one-slot mailbox, so an
overtaken frame is just dropped bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .. import protocol
from ..daemon.jobs import FrameJob, elapsed_ms, run_stage
from ..daemon.monitor import TapFrames
from ..errors import ClientError
from ..shm import FORMAT_CODES, FORMAT_NAMES
from ..stages import Stage

MAGIC = b"P2PF"
VERSION = 1
HEADER = struct.Struct("<4sBBBBiIIIfI")
HEADER_SIZE = HEADER.size  # 32 bytes
KIND_INPUT = 1
KIND_RESULT = 2
assert HEADER_SIZE == 32


@dataclass(frozen=True)
class FrameHeader:
    kind: int
    format: str
    origin: int
    frame_id: int
    width: int
    height: int
    payload_bytes: int
    latency_ms: float = 0.0

    @property
    def expected_bytes(self) -> int:
        channels, dtype, _order = protocol.SHM_FORMATS[self.format]
        return self.width * self.height * channels * np.dtype(dtype).itemsize


def is_frame(data: bytes) -> bool:
    """True when a binary message is a frame (else it is an OSC packet)."""
    return data[:4] == MAGIC


def pack_frame(kind: int, fmt: str, origin: int, frame_id: int, pixels: np.ndarray, latency_ms: float = 0.0
               ) -> bytes:
    """Header plus the pixels of an ``(height, width, channels)`` array, as one message."""
    height, width = pixels.shape[:2]
    payload = np.ascontiguousarray(pixels).tobytes()
    return HEADER.pack(MAGIC, VERSION, kind, FORMAT_CODES[fmt], origin, frame_id, width, height, len(payload),
                       latency_ms, 0) + payload


def parse_frame(data: bytes | memoryview, max_pixels: int) -> FrameHeader:
    """Validate a frame message completely (header and size) before anything is allocated.

    Raises :class:`ClientError`: ``ws_bad_frame`` for a garbage or inconsistent header or a
    truncated/overlong payload, ``image_too_large`` beyond ``max_pixels``, ``bad_dimensions``
    for zero or impossible sizes.
    """
    if len(data) < HEADER_SIZE:
        raise ClientError("ws_bad_frame", f"frame message of {len(data)} bytes is shorter than the "
                          f"{HEADER_SIZE}-byte header")
    magic, version, kind, fmt_code, origin, frame_id, width, height, payload_bytes, latency, _r = \
        HEADER.unpack_from(data, 0)
    if version != VERSION:
        raise ClientError("ws_bad_frame", f"frame header version {version}, expected {VERSION}", frame_id)
    if kind != KIND_INPUT:
        raise ClientError("ws_bad_frame", f"frame kind {kind}: clients send kind {KIND_INPUT} (input)", frame_id)
    fmt = FORMAT_NAMES.get(fmt_code)
    if fmt is None:
        raise ClientError("ws_bad_frame", f"unknown format code {fmt_code}; use 1 BGRA8, 2 RGBA8, 3 RGB8, "
                          "4 BGR8 or 5 RGBAF32", frame_id)
    if origin not in (0, 1):
        raise ClientError("ws_bad_frame", f"origin must be 0 or 1, not {origin}", frame_id)
    if width == 0 or height == 0 or width > 65535 or height > 65535:
        raise ClientError("bad_dimensions", f"impossible size {width}x{height}", frame_id)
    if width * height > max_pixels:
        raise ClientError("image_too_large", f"{width}x{height} exceeds the {max_pixels}-pixel limit", frame_id)
    header = FrameHeader(kind, fmt, origin, frame_id, width, height, payload_bytes, latency)
    if payload_bytes != header.expected_bytes:
        raise ClientError("ws_bad_frame", f"header declares {payload_bytes} payload bytes; {width}x{height} "
                          f"{fmt} is {header.expected_bytes}", frame_id)
    got = len(data) - HEADER_SIZE
    if got != payload_bytes:
        what = "truncated" if got < payload_bytes else "overlong"
        raise ClientError("ws_bad_frame", f"{what} frame: {got} payload bytes after the header, "
                          f"{payload_bytes} declared", frame_id)
    return header


def frame_pixels(data: bytes, header: FrameHeader) -> np.ndarray:
    """A read-only ``(height, width, channels)`` view of a parsed message's payload (no copy)."""
    channels, dtype, _order = protocol.SHM_FORMATS[header.format]
    flat = np.frombuffer(data, dtype=np.uint8, count=header.payload_bytes, offset=HEADER_SIZE)
    return flat.view(dtype).reshape(header.height, header.width, channels)


@dataclass
class WsFrameJob(FrameJob):
    """A frame that arrived over the WebSocket: run the stage, answer with a result frame."""

    message: bytes = field(default=b"", repr=False)
    header: FrameHeader | None = None

    def run(self, stage: Stage) -> bytes:
        assert self.header is not None
        head = self.header
        image = frame_pixels(self.message, head)
        result = run_stage(stage, image, head.format, head.origin, self.frame_id, self.safe)
        self.tap = TapFrames(image, result, head.format, head.origin)
        self.latency_ms = elapsed_ms(self.received_ns)
        return pack_frame(KIND_RESULT, head.format, head.origin, self.frame_id, result, self.latency_ms)
