#!/usr/bin/env python
"""Fuzz a running daemon: generated OSC packets over UDP, TCP (both framings) and WebSocket, and
corrupted shared-memory channel files, with a healthy client served throughout.

    .venv/bin/python bench/fuzz.py [--packets 100000] [--shm 10000] [--seed 1] [--json FILE]

It starts its own daemon (``python -m bridge serve --model invert --rate-limit 0`` on free loopback
ports, files in a temp folder; the per-host rate limit is off because the fuzzer alone sends more
than its 2,000 packets/s, and what it drops is documented silence), then:

* **OSC packets** drawn by hypothesis (generate phase only, no shrinking): *structured* ones (every
  documented address and some others, with right, wrong, odd and boundary argument types and
  counts, unsupported type tags, bundles nested past the limit, huge strings and blobs, NaN and
  infinity, negative sizes), *random* bytes, and *mutated* valid packets (bytes flipped, inserted,
  deleted, truncated, int32 fields set to boundaries). Most go over UDP, a share over TCP with the
  length-prefix and the SLIP framing (plus hostile framing: bad lengths, bad escapes) and as
  WebSocket ``/ws`` binary messages (plus frame headers with bad fields and text messages).
* **Corrupted channel files**: header fields, slot headers, seqlock counters and pixels of a
  channel's ``.in`` and ``.out`` files overwritten the way a buggy or hostile client could (and the
  files truncated), each case followed by ``/pose2person/frame/shm``.

Every case waits (bounded) for its replies. Each message of a packet that decodes gets exactly one
reply, a packet that does not gets one error, so a case is *unanswered* when fewer arrive in time.
Every error must carry a code of :data:`bridge.protocol.ERROR_CODES` (``internal`` counts as a
defect), structured cases must get the code the protocol implies (``unsupported_type``,
``unknown_address``, ``bad_arguments``), and an accepted shm frame must be the inverse of one of the
slots the client holds (never torn). Every ``--healthy-every`` cases a separate client does a
shared-memory round trip and checks its pixels. The daemon must stay alive with no traceback in its
log. A table goes to stdout (markdown); ``--json`` writes every number. tests/test_fuzz.py runs the
same harness with small counts.

Packets that would change what the healthy client relies on are made harmless before they are
sent, as a client that means no harm would: ``/register``/``/register/host`` point at the fuzzing
socket itself, model switches name the model already serving, and the healthy client's channel name
is never used. Nothing else is filtered.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge import protocol  # noqa: E402
from bridge.client import BridgeClient, RemoteError, ReplyTimeout  # noqa: E402
from bridge.daemon.proc import DaemonProcess  # noqa: E402
from bridge.osc import (BUNDLE_TAG, MAX_BUNDLE_DEPTH, OscDecodeError, OscMessage, decode_packet,  # noqa: E402
                        encode_bundle, encode_message)
from bridge.shm import ChannelFile  # noqa: E402
from bridge.stages import REGISTRY, split_name  # noqa: E402
from bridge.transports.osc_tcp import slip_decode, slip_encode  # noqa: E402
from bridge.transports.wsframe import HEADER as WS_HEADER, MAGIC as WS_MAGIC, is_frame  # noqa: E402

P = protocol.PREFIX
UDP_MAX = 65507  # bytes: the IPv4 datagram limit
TCP_MAX = 65536  # bytes: the daemon's default --max-packet-bytes for TCP
REPLY_TIMEOUT_S = 5.0  # a case with fewer replies than expected after this long is unanswered
MAX_BUNDLE_MESSAGES = 64  # the daemon's SecurityConfig.max_bundle_messages: a bigger bundle gets one error
CUT_GRACE_S = 0.5  # after too_many_replies: the replies of frames that did run may still come
MAX_UNANSWERED = 50  # beyond this many the run stops (reported as aborted) instead of waiting them all out
HEALTHY_TIMEOUT_S = 5.0
HEALTHY_CHANNEL = "healthy-client"
FUZZ_CHANNELS = ("fz", "fz-2", "Fz_3")
ORDINARY_REPLIES = {protocol.PONG, protocol.REGISTERED, protocol.FRAME_DONE, protocol.FRAME_READY,
                    protocol.FRAME_DROPPED, protocol.SHM_OPENED, protocol.SHM_CLOSED, protocol.MODEL_CHANGED,
                    protocol.KEYPOINTS_TARGET, protocol.MODEL_READY, protocol.MODELS_LIST, protocol.STATUS_REPLY,
                    f"{P}/frame/safe"}
W, H = 16, 12  # the fuzz channels' frames (small: the worker's time goes to the cases, not pixels)


# -- raw OSC building (the bridge's encoder refuses what the fuzzer must send) --------------------
def _pad(raw: bytes) -> bytes:
    return raw + b"\x00" * (4 - len(raw) % 4)


def raw_message(address: str, tags: str, payload: bytes = b"") -> bytes:
    return _pad(address.encode("utf-8", "surrogatepass")) + _pad(tags.encode()) + payload


def raw_bundle(elements: Sequence[bytes], timetag: int = 1) -> bytes:
    return BUNDLE_TAG + struct.pack(">Q", timetag & (2**64 - 1)) + b"".join(
        struct.pack(">i", len(e)) + e for e in elements)


# -- what a case expects ---------------------------------------------------------------------------
@dataclass
class Case:
    """One packet and what the protocol says about it."""

    packet: bytes
    kind: str  # structured, random, mutated, framing, ws-frame, ws-text
    # Per message, in order: the error codes one of which must answer it (None: any documented reply).
    expect: list[set[str] | None] | None = None
    text: bool = False  # a WebSocket text message


def _coerces(tags: str, args: Sequence[Any], signatures: Sequence[str]) -> bool:
    """The protocol's argument rule, written independently: exact tags, or an integral float for i."""
    for sig in signatures:
        if len(sig) != len(tags):
            continue
        if all(w == g or (w == "i" and g == "f" and isinstance(v, float) and v == v and abs(v) != float("inf")
                          and float(v).is_integer() and abs(v) < 2**31)
               for w, g, v in zip(sig, tags, args)):
            return True
    return False


def expected_codes(address: str, tags: str, args: Sequence[Any]) -> set[str] | None:
    """The error code a well-formed message must get, or None when it may succeed or fail on content."""
    if any(t not in "ifsb" for t in tags):
        return {"unsupported_type"}
    spec = protocol.ADDRESS_BY_PATH.get(address)
    if spec is None:
        return {"unknown_address"}
    if spec.variadic and tags.startswith("s"):
        return None
    if not _coerces(tags, args, spec.signatures):
        return {"bad_arguments"}
    return None


# -- hypothesis strategies -------------------------------------------------------------------------
INT_EDGES = [0, 1, -1, 2, 3, 7, 8, 16, 255, 256, 1023, 1024, 16384, 16385, 65535, 65536, 2**24, 2**24 + 1,
             2**31 - 1, -(2**31), -(2**31) + 1, -16384]
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 16.0, 3.0e38, -3.0e38, 1e-45, float("nan"), float("inf"),
               float("-inf"), 2.0**31, -(2.0**31), 65535.0, 16384.0, 1e7, 1e8]
FORMATS = list(protocol.SHM_FORMATS) + ["bgra8", "YUV420", "", "RGBA16", "BGRA8\u00e9"]
LAYOUTS = ["coco17", "coco17n", "mediapipe33", "mediapipe33n", "body25", "body25n", "coco", "", "COCO17", "openpose"]


def text_values(root: str) -> st.SearchStrategy[str]:
    paths = [f"{root}/fz_in.png", f"{root}/fz_out.png", f"{root}/fz_out.jpg", f"{root}/fz_out.xyz",
             f"{root}/missing.png", f"{root}/no/such/dir/out.png", f"{root}/../outside.png", f"{root}/",
             f"{root}", "/etc/passwd", "/dev/zero", "/proc/self/mem", "relative.png", "./x.png", "~/x.png",
             "\\\\server\\share\\x.png", "C:\\x.png", f"{root}/fz_in.png/../fz_in.png", f"{root}//fz_in.png",
             f"{root}/{'a' * 300}.png", f"{root}/\u00e9\u4e2d\U0001F600.png"]
    names = list(FUZZ_CHANNELS) + ["", "x" * 64, "x" * 65, "a b", "../etc", "a/b", "\u00e9", "-", "_"]
    return st.one_of(
        st.sampled_from(paths), st.sampled_from(names), st.sampled_from(FORMATS), st.sampled_from(LAYOUTS),
        st.sampled_from(["passthrough", "invert", "throttle:x", "fault:nope", "nope", "throttle:-5", "fault:",
                         ":", "models/../x", "invert:"]),
        st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40),
        st.integers(1000, 60000).map(lambda n: "s" * n),  # huge strings
    )


def typed_arg(root: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(tag, value): the four portable types, with boundary values."""
    return st.one_of(
        st.tuples(st.just("i"), st.one_of(st.sampled_from(INT_EDGES), st.integers(-(2**31), 2**31 - 1))),
        st.tuples(st.just("f"), st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(width=32))),
        st.tuples(st.just("s"), text_values(root)),
        st.tuples(st.just("b"), st.one_of(st.binary(max_size=64), st.integers(1000, 60000).map(lambda n: b"\xab" * n))),
    )


# Type tags the bridge refuses, with their payload.
ODD_TAGS: list[tuple[str, bytes]] = [("h", struct.pack(">q", 5)), ("d", struct.pack(">d", 1.5)), ("T", b""),
                                     ("F", b""), ("N", b""), ("I", b""), ("m", b"\x00\x90\x40\x7f"),
                                     ("c", struct.pack(">i", 65)), ("t", struct.pack(">Q", 1)),
                                     ("S", _pad(b"sym")), ("r", b"\xff\x00\x00\xff"), ("[", b""), ("]", b"")]


def _encode_args(items: Sequence[tuple[str, Any]]) -> tuple[str, bytes, list[Any]]:
    tags, payload, values = "", b"", []
    for tag, value in items:
        if tag in "ifsb":
            chunk = encode_message("/x", value)
            payload += chunk[8:]  # "/x\0\0" + ",t\0\0" precede the argument
            values.append(value)
        else:
            payload += value
            values.append(None)
        tags += tag
    return tags, payload, values


def _keypoint_args(draw: st.DrawFn, root: str) -> list[tuple[str, Any]]:
    layout = draw(st.sampled_from(LAYOUTS[:6] * 3 + LAYOUTS))
    joints = {"coco17": 17, "mediapipe33": 33, "body25": 25}.get(layout.rstrip("n"), 17)
    people = draw(st.integers(0, 3))
    count = people * joints * 3 + draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1]))
    if draw(st.integers(0, 4)):  # plausible coordinates (normalised or in pixels)
        coord = st.one_of(st.floats(0, 1, width=32), st.floats(-100, 5000, width=32))
    else:  # NaN, infinity, huge
        coord = st.one_of(st.floats(0, 1, width=32), st.sampled_from(FLOAT_EDGES))
    size = st.one_of(st.sampled_from([1, 2, 16, 64, 640, 480, 16384, 16385, 0, -1, 65535, 2**31 - 1]),
                     st.integers(1, 4096), st.integers(1, 256), st.integers(1, 256))
    items: list[tuple[str, Any]] = [("s", layout), ("i", draw(st.integers(-1, 2**24))), ("i", draw(size)),
                                    ("i", draw(size))]
    if draw(st.booleans()):  # integral floats for the ints, as Pd and Max send them
        items[2] = ("f", float(items[2][1]))
    items += [("f", draw(coord)) for _ in range(max(count, 0))]
    if draw(st.integers(0, 9)) == 0:
        items.insert(draw(st.integers(1, len(items))), draw(typed_arg(root)))
    return items


@st.composite
def structured_message(draw: st.DrawFn, root: str) -> tuple[bytes, set[str] | None]:
    """One message: a documented address (mostly) with arguments near or off its signatures."""
    address = draw(st.one_of(
        st.sampled_from([a.path for a in protocol.ADDRESSES]),
        st.sampled_from([f"{P}/nope", f"{P}", f"{P}/", f"{P}/frame", f"{P}/ping/", "/other/thing", "/",
                         f"{P}/PING", f"{P}/frame/shm/x", "/pose2person/*", f"{P}/\u00e9"]),
    ))
    spec = protocol.ADDRESS_BY_PATH.get(address)
    how = draw(st.integers(0, 9))
    if address == f"{P}/keypoints" and how < 6:
        items = _keypoint_args(draw, root)
    elif spec is not None and how < 5:  # a real signature with plausible or boundary values
        sig = draw(st.sampled_from(spec.signatures))
        items = [draw(typed_arg(root).filter(lambda ta, t=t: ta[0] == t)) for t in sig]
    elif how < 8:  # any portable types, any count
        items = draw(st.lists(typed_arg(root), max_size=8))
    else:  # an unsupported type somewhere
        items = draw(st.lists(typed_arg(root), max_size=4))
        items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from(ODD_TAGS)))
    tags, payload, values = _encode_args(items)
    if draw(st.integers(0, 30)) == 0:  # an old sender without a type tag string
        return _pad(address.encode()), expected_codes(address, "", [])
    return raw_message(address, "," + tags, payload), expected_codes(address, tags, values)


@st.composite
def structured_packet(draw: st.DrawFn, root: str) -> Case:
    """A message, a bundle of messages, or nested bundles (past the depth limit, or with bad sizes)."""
    shape = draw(st.integers(0, 9))
    if shape < 6:
        packet, expect = draw(structured_message(root))
        if len(packet) > UDP_MAX:
            packet, expect = raw_message(f"{P}/ping", ","), None
        return Case(packet, "structured", [expect])

    def element(depth: int) -> tuple[bytes, list[set[str] | None]]:
        if depth < 12 and draw(st.integers(0, 3)) == 0:
            inner = [element(depth + 1) for _ in range(draw(st.integers(0, 3)))]
            return raw_bundle([e for e, _ in inner], draw(st.sampled_from([0, 1, 2**64 - 1, 2**63]))), \
                [x for _, ex in inner for x in ex] if depth + 1 < MAX_BUNDLE_DEPTH else [{"malformed_packet"}]
        packet, expect = draw(structured_message(root))
        return packet, [expect]

    parts = [element(1) for _ in range(draw(st.integers(0, 4)))]
    bundle = raw_bundle([p for p, _ in parts])
    if draw(st.integers(0, 4)) == 0 and parts:  # a bad element size somewhere
        pos = 16
        bad = draw(st.sampled_from([0, -4, 3, 5, 2**31 - 1, len(bundle)]))
        bundle = bundle[:pos] + struct.pack(">i", bad) + bundle[pos + 4:]
        return Case(bundle, "structured", [{"malformed_packet"}])
    expects = [x for _, ex in parts for x in ex]
    if len(bundle) > UDP_MAX:
        return Case(raw_bundle([]), "structured", [])
    if any(x == {"malformed_packet"} for x in expects):  # too deep: the whole packet is refused
        return Case(bundle, "structured", [{"malformed_packet"}])
    return Case(bundle, "structured", expects)


def templates(root: str) -> list[bytes]:
    """Valid packets that mutations start from."""
    kp = ["coco17", 9, 64, 48] + [0.5, 0.5, 1.0] * 17
    return [
        encode_message(f"{P}/ping", 7), encode_message(f"{P}/ping"),
        encode_message(f"{P}/frame/shm", "fz", 1),
        encode_message(f"{P}/shm/open", "fz-2", 8, 6, "RGB8", 1),
        encode_message(f"{P}/shm/close", "fz-2"),
        encode_message(f"{P}/frame/path", f"{root}/fz_in.png", f"{root}/fz_out.png", 3),
        encode_message(f"{P}/keypoints", *kp),
        encode_message(f"{P}/keypoints/target", "fz"),
        encode_message(f"{P}/model"), encode_message(f"{P}/models"), encode_message(f"{P}/status"),
        encode_message(f"{P}/register", 9), encode_message(f"{P}/ping", b"blob\x00\x01"),
        encode_bundle([encode_message(f"{P}/ping", 1), encode_message(f"{P}/frame/shm", "fz", 2)]),
        encode_bundle([encode_bundle([encode_message(f"{P}/status")])]),
    ]


@st.composite
def mutated_packet(draw: st.DrawFn, root: str) -> Case:
    data = bytearray(draw(st.sampled_from(templates(root))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 0x2C, 0x2F, 0xC0, 0xDB]))
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == 4:
            del data[pos:]
        elif op == 5 and len(data) >= pos + 4:
            data[pos:pos + 4] = struct.pack(">i", draw(st.sampled_from([0, -1, 2**31 - 1, -(2**31), 65536, 4])))
        elif op == 6:
            data += data[pos:pos + draw(st.integers(1, 16))]
    return Case(bytes(data), "mutated")


@st.composite
def random_packet(draw: st.DrawFn) -> Case:
    prefix = draw(st.sampled_from([b"", b"", b"/", b"#bundle\x00", b"/pose2person/ping\x00\x00\x00,",
                                   b"/pose2person/frame/shm\x00\x00,si\x00", b"\x00" * 4]))
    body = draw(st.one_of(st.binary(max_size=256), st.binary(min_size=1000, max_size=4000)))
    return Case(prefix + body, "random")


def packet_strategy(root: str) -> st.SearchStrategy[Case]:
    """Half structured, three in ten mutated, two in ten random."""
    return st.one_of(*[structured_packet(root)] * 5, *[mutated_packet(root)] * 3, *[random_packet()] * 2)


@st.composite
def ws_frame_case(draw: st.DrawFn) -> Case:
    """A WebSocket frame message with header fields near and off the contract."""
    fmt = draw(st.sampled_from([1, 2, 3, 4, 5, 0, 6, 255]))
    width, height = draw(st.sampled_from([0, 1, 2, 4, 65535, 65536, 2**32 - 1])), draw(st.integers(0, 5))
    channels = {3: 3, 4: 3}.get(fmt, 4)
    natural = width * height * channels * (4 if fmt == 5 else 1)
    size = draw(st.sampled_from([natural, natural, 0, natural + 1, max(natural - 1, 0), 2**32 - 1]))
    payload = min(size, 4096) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    header = WS_HEADER.pack(WS_MAGIC, draw(st.sampled_from([1, 1, 0, 2])), draw(st.sampled_from([1, 1, 2, 0])),
                            fmt, draw(st.sampled_from([0, 0, 1, 2])), draw(st.integers(-(2**31), 2**31 - 1)),
                            width, height, size % 2**32, draw(st.sampled_from(FLOAT_EDGES)), 0)
    cut = draw(st.integers(0, 40))
    data = header[:cut] if cut < 32 else header + b"\x80" * max(payload, 0)
    return Case(data, "ws-frame")


# -- links: one client socket each -----------------------------------------------------------------
class Closed(Exception):
    """The bridge closed the connection."""


class UdpLink:
    """OSC over UDP from one socket of its own (replies come back to it)."""

    name = "udp"

    def __init__(self, port: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, packet: bytes, text: bool = False) -> None:
        self.sock.sendto(packet, self.dest)

    def recv(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        return self.sock.recv(65536) if ready else None

    def close(self) -> None:
        self.sock.close()


def read_chunk(sock: socket.socket | None, deadline: float) -> bytes | None:
    """What a stream socket has before ``deadline``: bytes, ``b""`` at end of stream (or a
    reset), None on timeout. Raises Closed when the link has no socket any more."""
    if sock is None:
        raise Closed()
    ready, _, _ = select.select([sock], [], [], max(deadline - time.monotonic(), 0))
    if not ready:
        return None
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


class TcpLink:
    """OSC over TCP; reconnects after the bridge closes the stream (it does after a bad length)."""

    def __init__(self, port: int, slip: bool) -> None:
        self.addr = ("127.0.0.1", port)
        self.slip = slip
        self.name = "tcp-slip" if slip else "tcp-len"
        self.sock: socket.socket | None = None
        self.buf = b""
        self.port = 0

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=5)
            self.port = self.sock.getsockname()[1]
            self.buf = b""
        return self.sock

    def frame(self, packet: bytes) -> bytes:
        return slip_encode(packet) if self.slip else struct.pack(">i", len(packet)) + packet

    def send(self, packet: bytes, text: bool = False) -> None:
        self.send_raw(self.frame(packet))

    def send_raw(self, data: bytes) -> None:
        for attempt in (0, 1):
            try:
                self._connect().sendall(data)
                return
            except OSError:
                self.close()
                if attempt:
                    raise

    def _take(self) -> bytes | None:
        if self.slip:
            while b"\xc0" in self.buf:
                frame, _, rest = self.buf.partition(b"\xc0")
                self.buf = rest
                if frame:
                    return slip_decode(frame)
            return None
        if len(self.buf) >= 4:
            size = struct.unpack_from(">i", self.buf)[0]
            if len(self.buf) >= 4 + size:
                packet, self.buf = self.buf[4:4 + size], self.buf[4 + size:]
                return packet
        return None

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            got = self._take()
            if got is not None:
                return got
            chunk = read_chunk(self.sock, deadline)
            if chunk is None:
                return None
            if not chunk:
                self.close()
                got = self._take()
                if got is not None:
                    return got
                raise Closed()
            self.buf += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class WsLink:
    """A minimal RFC 6455 client on a plain socket (binary and text messages, ping answered)."""

    name = "ws"

    def __init__(self, port: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.sock: socket.socket | None = None
        self.buf = b""
        self.port = 0

    def _connect(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        sock = socket.create_connection(self.addr, timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.addr[1]}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                      ).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise Closed()
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"WebSocket handshake refused: {head[:80]!r}")
        self.sock, self.buf, self.port = sock, rest, sock.getsockname()[1]
        return sock

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
        self._connect().sendall(head + mask + body.tobytes())

    def send(self, packet: bytes, text: bool = False) -> None:
        for attempt in (0, 1):
            try:
                self._send_frame(1 if text else 2, packet)
                return
            except (OSError, Closed):
                self.close()
                if attempt:
                    raise

    def _take(self) -> tuple[int, bytes] | None:
        b = self.buf
        if len(b) < 2:
            return None
        n, pos = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack_from(">H", b, 2)[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack_from(">Q", b, 2)[0], 10
        if len(b) < pos + n:
            return None
        self.buf = b[pos + n:]
        return b[0] & 0x0F, b[pos:pos + n]

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            got = self._take()
            if got is not None:
                opcode, payload = got
                if opcode == 9:  # ping: answer, keep waiting
                    self._send_frame(10, payload)
                    continue
                if opcode == 8:
                    self.close()
                    raise Closed()
                if opcode in (1, 2):
                    return payload
                continue
            chunk = read_chunk(self.sock, deadline)
            if chunk is None:
                return None
            if not chunk:
                self.close()
                raise Closed()
            self.buf += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


Link = UdpLink | TcpLink | WsLink


# -- the harness -----------------------------------------------------------------------------------
@dataclass
class Target:
    """A running daemon as the harness sees it."""

    osc_port: int
    http_port: int | None
    root: Path
    alive: Callable[[], bool]
    log_text: Callable[[], str]


@dataclass
class Results:
    cases: Counter[str] = field(default_factory=Counter)  # by transport / kind
    errors: Counter[str] = field(default_factory=Counter)  # error replies by code
    replies: Counter[str] = field(default_factory=Counter)  # other replies by address
    unanswered: int = 0
    unanswered_packets: list[str] = field(default_factory=list)  # hex, for reproducing
    wrong_code: list[str] = field(default_factory=list)  # structured cases answered with another code
    internal: list[str] = field(default_factory=list)  # 'internal' errors: what the bridge said, and the packet
    bad_replies: list[str] = field(default_factory=list)  # undocumented codes, undecodable replies, extras
    torn: list[str] = field(default_factory=list)  # accepted shm frames that match no slot
    healthy_ms: list[float] = field(default_factory=list)
    healthy_failures: list[str] = field(default_factory=list)
    crashed: bool = False
    aborted: bool = False
    tracebacks: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(n for name, n in self.cases.items() if not name.startswith("skipped"))

    @property
    def osc_packets(self) -> int:
        """OSC packets sent (structured, random and mutated; not framings, frame headers or shm cases)."""
        return sum(n for name, n in self.cases.items() if name.split()[-1] in ("structured", "random", "mutated"))

    def defects(self) -> list[str]:
        out = []
        if self.crashed:
            out.append("the daemon died")
        if self.aborted:
            out.append(f"stopped after {MAX_UNANSWERED} unanswered cases")
        if self.tracebacks:
            out.append(f"{self.tracebacks} traceback(s) in the daemon's log")
        if self.errors.get("internal"):
            out.append(f"{self.errors['internal']} 'internal' errors")
        if self.unanswered:
            out.append(f"{self.unanswered} unanswered case(s)")
        for what, items in (("wrong code", self.wrong_code), ("bad reply", self.bad_replies),
                            ("torn frame", self.torn), ("healthy client", self.healthy_failures)):
            if items:
                out.append(f"{len(items)} {what}: {items[:3]}")
        return out

    def p95_ms(self) -> float:
        return float(np.percentile(self.healthy_ms, 95)) if self.healthy_ms else float("nan")

    def table(self) -> str:
        rows = ["| what | count |", "|---|---:|"]
        for name, n in sorted(self.cases.items()):
            rows.append(f"| cases: {name} | {n:,} |")
        rows.append(f"| **OSC packets sent** | **{self.osc_packets:,}** |")
        rows.append(f"| **cases, total** | **{self.total:,}** |")
        for code, n in self.errors.most_common():
            rows.append(f"| error `{code}` | {n:,} |")
        for address, n in self.replies.most_common():
            rows.append(f"| reply `{address.removeprefix(P + '/')}` | {n:,} |")
        rows += [f"| unanswered | {self.unanswered} |", f"| wrong code (structured) | {len(self.wrong_code)} |",
                 f"| undocumented / extra replies | {len(self.bad_replies)} |",
                 f"| torn shm frames accepted | {len(self.torn)} |",
                 f"| crashes | {int(self.crashed)} |", f"| tracebacks in the log | {self.tracebacks} |",
                 f"| healthy round trips | {len(self.healthy_ms):,} |",
                 f"| healthy failures | {len(self.healthy_failures)} |",
                 f"| healthy round trip p50 / p95 | {np.median(self.healthy_ms) if self.healthy_ms else 0:.2f} / "
                 f"{self.p95_ms():.2f} ms |", f"| wall time | {self.seconds:.0f} s |"]
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        return {"cases": dict(self.cases), "total": self.total, "osc_packets": self.osc_packets, "errors": dict(self.errors),
                "replies": dict(self.replies), "unanswered": self.unanswered, "unanswered_packets": self.unanswered_packets[:50], "wrong_code": self.wrong_code[:50],
                "bad_replies": self.bad_replies[:50], "internal": self.internal[:50], "torn": self.torn[:50], "crashed": self.crashed, "aborted": self.aborted,
                "tracebacks": self.tracebacks, "healthy_round_trips": len(self.healthy_ms),
                "healthy_p95_ms": self.p95_ms(), "healthy_failures": self.healthy_failures[:50],
                "seconds": self.seconds, "defects": self.defects()}


class Healthy:
    """The well-behaved client: a shared-memory round trip whose pixels are checked (model invert)."""

    def __init__(self, target: Target, results: Results) -> None:
        self.results = results
        self.client = BridgeClient("127.0.0.1", target.osc_port, timeout=HEALTHY_TIMEOUT_S)
        # Registered by sender, so a /register/host from anyone cannot divert its replies.
        self.client.register(self.client.sock.getsockname()[1])
        self.session = self.client.open_shm(HEALTHY_CHANNEL, 32, 24, "BGRA8")
        self.rng = np.random.default_rng(0)
        self.frame_id = 0

    def check(self) -> None:
        self.frame_id = self.frame_id % (2**24 - 1) + 1
        frame = self.rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
        want = 255 - frame
        want[..., 3] = frame[..., 3]
        t0 = time.perf_counter()
        try:
            pixels, _ = self.client.process_shm(self.session, frame, self.frame_id)
        except (RemoteError, ReplyTimeout) as exc:
            self.results.healthy_failures.append(f"frame {self.frame_id}: {exc}")
            return
        self.results.healthy_ms.append((time.perf_counter() - t0) * 1000)
        if not np.array_equal(pixels, want):
            self.results.healthy_failures.append(f"frame {self.frame_id}: wrong pixels")

    def close(self) -> None:
        try:
            self.client.close_shm(self.session)
        except (RemoteError, ReplyTimeout, OSError):
            pass
        self.client.close()


def make_safe(packet: bytes, own_port: int, models: frozenset[str]) -> bytes:
    """Neutralise what a fuzz packet could do to the healthy client (see the module docstring)."""
    try:
        messages = decode_packet(packet)
    except OscDecodeError:
        return packet
    changed = False
    out: list[bytes] = []
    for m in messages:
        args = list(m.args)
        if m.address in (f"{P}/register", f"{P}/register/host") and m.typetags in ("i", "f"):
            args, changed = [own_port], True
        elif m.address == f"{P}/model" and m.typetags == "s" and split_name(str(args[0]))[0] in models:
            args, changed = ["invert"], True
        if any(a == HEALTHY_CHANNEL for a in args):
            args, changed = ["fz" if a == HEALTHY_CHANNEL else a for a in args], True
        if m.typetags == "" and not m.args:
            out.append(encode_message(m.address))
        else:
            out.append(encode_message(m.address, *args))
    if not changed:
        return packet
    return out[0] if len(out) == 1 and not packet.startswith(BUNDLE_TAG) else encode_bundle(out)


def expected_count(packet: bytes, ws: bool = False) -> int:
    """Replies owed: one per message of a packet that decodes (a frame job's reply counts once,
    whatever it is), one error for a packet that does not, or for a bundle over the daemon's
    64-message cap (``bundle_too_large``). A bundle whose replies go over its reply budget ends
    with ``too_many_replies`` instead (see :meth:`Harness._collect`)."""
    if ws and is_frame(packet):
        return 1
    try:
        return len(decode_packet(packet, MAX_BUNDLE_MESSAGES))
    except OscDecodeError:
        return 1


class Harness:
    """Runs cases against a target and tallies :class:`Results`."""

    def __init__(self, target: Target, healthy_every: int = 100) -> None:
        self.target = target
        self.results = Results()
        self.healthy_every = healthy_every
        self.healthy = Healthy(target, self.results)
        self.models = frozenset(self.healthy.client.models()) | frozenset(REGISTRY)
        self._since_healthy = 0
        self.last_cut = False  # the last case ended with too_many_replies (see _collect)
        self._sync_token = 10**6
        self.links: dict[str, Link] = {}
        self._prepare_files()

    def _prepare_files(self) -> None:
        from PIL import Image

        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(self.target.root / "fz_in.png")

    def link(self, name: str) -> Link:
        if name not in self.links:
            port = self.target.osc_port
            if name == "udp":
                link: Link = UdpLink(port)
            elif name == "ws":
                assert self.target.http_port is not None
                link = WsLink(self.target.http_port)
            else:
                link = TcpLink(port, slip=name == "tcp-slip")
            self.links[name] = link
            self._setup(link)
        return self.links[name]

    def _setup(self, link: Link) -> None:
        """Each fuzz client opens a channel with a frame in it and names a keypoint target first,
        so that frame and keypoint messages reach the worker instead of stopping at no_target."""
        root = self.target.root
        in_path: Path | None = None
        for packet in (encode_message(f"{P}/shm/open", "fz", W, H, "BGRA8"),
                       encode_message(f"{P}/keypoints/target/path", f"{root}/fz_kp.png")):
            link.send(packet)
            reply = link.recv(REPLY_TIMEOUT_S)
            # Channels belong to their client: the link's own "fz" is in its own /shm/opened reply.
            try:
                for m in decode_packet(reply) if reply else []:
                    if m.address == protocol.SHM_OPENED:
                        in_path = Path(str(m.args[1]))
            except OscDecodeError:
                pass
        if in_path is None:
            self.results.bad_replies.append("a fuzz link's /shm/open got no /shm/opened")
            return
        writer = ChannelFile(in_path, writable=True)
        for fid in (1, 2, 3):
            writer.write(np.full((H, W, 4), fid, np.uint8), fid)
        writer.close()

    # -- one case ------------------------------------------------------------------------------
    def gave_up(self) -> bool:
        """True once so many cases went unanswered that going on would only wait out timeouts."""
        if self.results.unanswered > MAX_UNANSWERED and not self.results.aborted:
            self.results.aborted = True
        return self.results.aborted

    def run_case(self, case: Case, via: str) -> bool:
        """Send one case and judge its replies; False when it was not sent (too big for a datagram)."""
        if not self.target.alive():
            self.results.crashed = True
            return True
        if self.gave_up():
            return True
        link = self.link(via)
        own_port = getattr(link, "port", 0) or 1
        packet = case.packet if case.kind in ("framing", "ws-frame", "ws-text") else make_safe(case.packet, own_port, self.models)
        if case.expect is not None and packet is not case.packet:
            case = Case(packet, case.kind, None)
        if via.startswith("tcp") and len(packet) > TCP_MAX and case.kind != "framing":
            case = Case(packet, case.kind, [{"packet_too_large"}])  # refused whole, whatever is inside
        ws = via == "ws"
        want = 1 if case.text or (via.startswith("tcp") and len(packet) > TCP_MAX) else expected_count(packet, ws)
        if via == "tcp-slip" and not packet and case.kind != "framing":
            want = 0  # an empty SLIP frame is the leading END of a double-END frame: nothing to answer
        self.results.cases[f"{via} {case.kind}"] += 1
        if via == "udp" and len(packet) > UDP_MAX:
            self.results.cases[f"{via} {case.kind}"] -= 1
            self.results.cases["skipped (over the datagram limit, redrawn)"] += 1
            return False
        self.last_cut = False
        try:
            if isinstance(link, TcpLink) and case.kind == "framing":
                link.send_raw(packet)
            else:
                link.send(packet, text=case.text)
            replies = self._collect(link, want)
        except (Closed, OSError) as exc:
            replies = []
            if case.kind != "framing":
                self.results.bad_replies.append(f"{via} connection lost: {exc!r} after {packet[:40]!r}")
            link.close()
            if isinstance(link, UdpLink):
                del self.links[via]  # a new socket (and its set-up) next time
        if len(replies) < want and not self.last_cut:
            if case.kind == "framing" and isinstance(link, TcpLink) and replies:
                pass  # a stream refused and closed: one error, then EOF
            else:
                self.results.unanswered += 1
                self.results.bad_replies.append(f"{via} unanswered ({len(replies)}/{want}): {packet[:60]!r}")
                self.results.unanswered_packets.append(packet.hex())
        self._judge(replies, case, via)
        if isinstance(link, TcpLink) and (case.kind == "framing" or any(b"packet_too_large" in r for r in replies)):
            link.close()  # the bridge closes a stream it cannot re-synchronise; the next case reconnects
        self._since_healthy += 1
        if self._since_healthy >= self.healthy_every:
            self._since_healthy = 0
            self.healthy.check()
            self._sync(link, via)
        return True

    def _collect(self, link: Link, want: int) -> list[bytes]:
        """Up to ``want`` replies. A bundle cut short by its reply budget (``too_many_replies``:
        the rest of it did not run) owes no more; what its frames still answer is taken for a
        short grace, and the case counts as answered."""
        replies: list[bytes] = []
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        cut = False
        while len(replies) < want or cut:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = link.recv(left)
            if got is not None:
                replies.append(got)
                if not cut and b"too_many_replies" in got:
                    cut = True
                    deadline = min(deadline, time.monotonic() + CUT_GRACE_S)
        self.last_cut = cut
        return replies

    def _sync(self, link: Link, via: str) -> None:
        """Ping and read up to the pong: anything before it is an extra reply (a counting error)."""
        self._sync_token += 1
        token = self._sync_token
        try:
            link.send(encode_message(f"{P}/ping", token))
            deadline = time.monotonic() + REPLY_TIMEOUT_S
            while time.monotonic() < deadline:
                got = link.recv(deadline - time.monotonic())
                if got is None:
                    break
                if got == encode_message(protocol.PONG, token):
                    return
                self.results.bad_replies.append(f"{via} extra reply {got[:60]!r}")
            self.results.bad_replies.append(f"{via} sync ping {token} unanswered")
        except (Closed, OSError):
            link.close()

    def _judge(self, replies: list[bytes], case: Case, via: str) -> None:
        messages: list[OscMessage] = []
        for raw in replies:
            if via == "ws" and is_frame(raw):
                self.results.replies["result frame (ws)"] += 1
                continue
            try:
                got = decode_packet(raw)
            except OscDecodeError as exc:
                self.results.bad_replies.append(f"{via} undecodable reply {raw[:40]!r}: {exc}")
                continue
            messages += got
        for m in messages:
            if m.address == protocol.ERROR:
                code = str(m.args[1]) if m.typetags == "iss" else "?"
                if m.typetags != "iss" or code not in protocol.ERROR_CODES:
                    self.results.bad_replies.append(f"{via} undocumented error {m}")
                if code == "internal":
                    self.results.internal.append(f"{via} {m.args[2]!s:.200} for {case.packet[:80]!r}")
                self.results.errors[code] += 1
            elif m.address in ORDINARY_REPLIES or m.address.startswith(P + "/"):
                self.results.replies[m.address] += 1
            else:
                self.results.bad_replies.append(f"{via} unknown reply {m.address}")
        if case.expect is not None and len(messages) == len(case.expect):
            # Matched as a multiset: frame jobs and model switches answer later than the rest of
            # their bundle, so replies need not come in message order.
            pool = [str(m.args[1]) if m.address == protocol.ERROR and len(m.args) == 3 else m.address
                    for m in messages]
            for want in case.expect:
                if want is None:
                    continue
                hit = next((c for c in pool if c in want), None)
                if hit is None:
                    self.results.wrong_code.append(f"{via} wanted {sorted(want)}, got {pool} for "
                                                   f"{case.packet[:60]!r}")
                    break
                pool.remove(hit)

    # -- hostile framing -----------------------------------------------------------------------
    def framing_cases(self, rng: np.random.Generator) -> Iterator[tuple[Case, str]]:
        """TCP lengths out of range and bad SLIP escapes; WebSocket text messages."""
        ping = encode_message(f"{P}/ping", 1)
        while True:
            pick = int(rng.integers(0, 5))
            if pick == 0:
                sizes = [0, -4, -(2**31), 65537, 2**31 - 1, 1 << 20]
                size = sizes[int(rng.integers(0, len(sizes)))]
                yield Case(struct.pack(">i", size) + ping, "framing"), "tcp-len"
            elif pick == 1:
                body = bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8))
                yield Case(b"\xc0" + body.replace(b"\xc0", b"") + b"\xdb\x01\xc0", "framing"), "tcp-slip"
            elif pick == 2:
                yield Case(b"a text message", "ws-text", None, text=True), "ws"
            else:  # a well-framed ping on a fresh connection
                framed = slip_encode(ping) if pick == 3 else struct.pack(">i", len(ping)) + ping
                yield Case(framed, "framing"), "tcp-slip" if pick == 3 else "tcp-len"

    # -- shared memory -------------------------------------------------------------------------
    def shm_cases(self, n: int, seed_: int) -> None:
        ShmFuzzer(self, seed_).run(n)

    def finish(self) -> Results:
        for link in self.links.values():
            link.close()
        if self.target.alive():
            self.healthy.check()
            self.healthy.close()
        else:
            self.results.crashed = True
        self.results.tracebacks = self.target.log_text().count("Traceback")
        return self.results


class ShmFuzzer:
    """Corrupts a channel's files the way a buggy or hostile client could, then asks for a frame.

    Each slot of the ``.in`` ring holds a uniform frame (value = 10 + slot index), so an accepted
    frame is correct exactly when its output slot is the inverse of one of those: anything else is
    a torn or invented frame.
    """

    FORMATS = ("BGRA8", "RGB8", "RGBAF32")

    def __init__(self, harness: Harness, seed_: int) -> None:
        self.h = harness
        self.rng = np.random.default_rng(seed_)
        self.client = BridgeClient("127.0.0.1", harness.target.osc_port, timeout=REPLY_TIMEOUT_S)
        self.client.register(self.client.sock.getsockname()[1])  # immune to fuzzed /register/host
        self.results = harness.results
        self.next_id = 1

    def _open(self, name: str, fmt: str) -> tuple[Path, Path]:
        m = self.client.request(f"{P}/shm/open", (name, W, H, fmt), protocol.SHM_OPENED)
        return Path(str(m.args[1])), Path(str(m.args[2]))

    def run(self, n: int) -> None:
        for i in range(n):
            if not self.h.target.alive():
                self.results.crashed = True
                return
            if self.h.gave_up():
                return
            self.case(self.FORMATS[i % len(self.FORMATS)], f"shmfz-{i % len(self.FORMATS)}")
            self.h._since_healthy += 1
            if self.h._since_healthy >= self.h.healthy_every:
                self.h._since_healthy = 0
                self.h.healthy.check()
        self.client.close()

    def case(self, fmt: str, name: str) -> None:
        rng = self.rng
        self.results.cases[f"shm {fmt}"] += 1
        try:
            in_path, out_path = self._open(name, fmt)
        except (RemoteError, ReplyTimeout) as exc:
            self.results.bad_replies.append(f"shm/open {name}: {exc}")
            return
        writer = ChannelFile(in_path, writable=True)
        lay = writer.layout
        values = []
        for k in range(lay.slots):  # one frame per slot, uniform, ids increasing
            v = 10 + k
            frame = np.full((lay.height, lay.width, lay.channels), v / 255 if fmt == "RGBAF32" else v, lay.dtype)
            fid = self.next_id
            self.next_id = self.next_id % (2**24) + 1
            writer.write(frame, fid)
            values.append(fid)
        writer.close()
        pristine = {p: p.read_bytes()[:256] for p in (in_path, out_path)}
        sizes = {p: p.stat().st_size for p in (in_path, out_path)}
        truncated = False
        os.chmod(out_path, 0o600)  # the bridge makes .out read-only on disk; a hostile client can undo that
        with open(in_path, "r+b") as fin, open(out_path, "r+b") as fout:
            for _ in range(int(rng.integers(1, 4))):
                fh = fin if rng.random() < 0.7 else fout
                truncated |= self._corrupt(fh, lay.slots, lay.slot_stride, sizes[Path(fh.name)])
        frame_id = self._pick((values + [int(rng.integers(-1, 2**24)), values[-1]]))
        snap = [self._slot_pixels(in_path, lay, k) for k in range(lay.slots)]
        self.client.send(f"{P}/frame/shm", name, frame_id)
        reply = self._reply(frame_id)
        if reply is not None:
            if reply.address == protocol.FRAME_READY:
                self.results.replies[reply.address] += 1
                self._check_result(out_path, lay, frame_id, snap, fmt, truncated)
            elif reply.address == protocol.ERROR:
                code = str(reply.args[1])
                self.results.errors[code] += 1
                if code == "internal":
                    self.results.internal.append(f"shm {reply.args[2]!s:.200}")
                if code not in protocol.ERROR_CODES:
                    self.results.bad_replies.append(f"shm undocumented {reply}")
            else:
                self.results.replies[reply.address] += 1
        # Repair: a client that notices re-creates the channel (close + open gives fresh files).
        if truncated or rng.random() < 0.05:
            try:
                self.client.request(f"{P}/shm/close", (name,), protocol.SHM_CLOSED)
            except (RemoteError, ReplyTimeout) as exc:
                self.results.bad_replies.append(f"shm/close {name}: {exc}")
        else:
            for p, head in pristine.items():
                with open(p, "r+b") as fh:
                    fh.write(head)
                    for k in range(lay.slots):  # make every seq even again
                        off = 256 + k * lay.slot_stride
                        fh.seek(off)
                        seq = struct.unpack("<Q", fh.read(8))[0]
                        fh.seek(off)
                        fh.write(struct.pack("<Q", seq & ~1 & (2**62 - 1)))

    def _corrupt(self, fh: Any, slots: int, stride: int, size: int) -> bool:
        rng = self.rng
        what = int(rng.integers(0, 10))
        u64_edges = [0, 1, 2**63, 2**64 - 1, 2**64 - 2, 2**32, int(rng.integers(0, 2**63))]
        if what == 0:  # a header field
            off = self._pick(([8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]))
            fh.seek(off)
            fh.write(struct.pack("<I", self._pick(([0, 1, 2, 3, 16, 17, 255, 2**31, 2**32 - 1]))))
        elif what == 1:  # write_count
            fh.seek(64)
            fh.write(struct.pack("<Q", self._pick((u64_edges))))
        elif what in (2, 3):  # a slot's seq
            k = int(rng.integers(0, slots))
            fh.seek(256 + k * stride)
            fh.write(struct.pack("<Q", self._pick((u64_edges + [3, 5, 2**64 - 3]))))
        elif what == 4:  # a slot's frame id
            k = int(rng.integers(0, slots))
            fh.seek(256 + k * stride + 8)
            fh.write(struct.pack("<q", self._pick(([-1, 0, 1, 2, 3, -(2**63), 2**63 - 1]))))
        elif what == 5:  # a slot's write_index
            k = int(rng.integers(0, slots))
            fh.seek(256 + k * stride + 24)
            fh.write(struct.pack("<Q", self._pick((u64_edges))))
        elif what == 6:  # the whole slot header random
            k = int(rng.integers(0, slots))
            fh.seek(256 + k * stride)
            fh.write(rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
        elif what == 7:  # the whole file header random (keeping the flags word clear half the time)
            head = bytearray(rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
            if rng.random() < 0.5:
                struct.pack_into("<I", head, 60, 0)
            fh.seek(0)
            fh.write(bytes(head))
        elif what == 8 and rng.random() < 0.25:  # truncated (open(path, "wb") by mistake)
            fh.truncate(self._pick(([0, 100, 256, 256 + stride // 2, size - 1])))
            return True
        else:  # the closed flag
            fh.seek(60)
            fh.write(struct.pack("<I", 1))
        return False

    def _pick(self, options: Sequence[int]) -> int:
        """One of ``options`` (Python ints: numpy's choice would round 2**64 - 1 through float64)."""
        return int(options[int(self.rng.integers(0, len(options)))])

    @staticmethod
    def _slot_pixels(path: Path, lay: Any, k: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(256 + k * lay.slot_stride + 64)
            return fh.read(lay.frame_bytes)

    def _reply(self, frame_id: int) -> OscMessage | None:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            m = self.client.receive(deadline - time.monotonic())
            if m is None:
                break
            if m.address in (protocol.FRAME_READY, protocol.ERROR, protocol.FRAME_DROPPED):
                return m
            self.results.bad_replies.append(f"shm unexpected reply {m}")
        self.results.unanswered += 1
        self.results.bad_replies.append(f"shm frame {frame_id} unanswered")
        return None

    def _check_result(self, out_path: Path, lay: Any, frame_id: int, snap: list[bytes], fmt: str,
                      truncated: bool) -> None:
        if truncated:
            return  # the client truncated its own output: nothing left to compare with
        try:
            data = out_path.read_bytes()
        except OSError:
            return
        found = None
        for k in range(lay.slots):
            off = 256 + k * lay.slot_stride
            seq, fid = struct.unpack_from("<Qq", data, off)
            if fid == frame_id and seq % 2 == 0:
                found = data[off + 64: off + 64 + lay.frame_bytes]
        if found is None:
            return  # the client corrupted the output slot headers itself
        pixels = np.frombuffer(found, lay.dtype).reshape(lay.height, lay.width, lay.channels)
        for src in snap:
            inp = np.frombuffer(src, lay.dtype).reshape(pixels.shape)
            want = (np.float32(1.0) - inp) if fmt == "RGBAF32" else (255 - inp).astype(np.uint8)
            if lay.channels == 4:
                want = want.copy()
                want[..., 3] = inp[..., 3]
            if np.array_equal(pixels, want):
                return
        self.results.torn.append(f"frame {frame_id} ({fmt}) matches no input slot")


# -- driving hypothesis ----------------------------------------------------------------------------
def drive(strategy: st.SearchStrategy[Any], n: int, seed_: int, on_case: Callable[[Any], Any]) -> int:
    """Feed ``n`` examples of ``strategy`` to ``on_case`` (hypothesis's generate phase only).

    An example for which ``on_case`` returns False (it could not be sent) does not count."""
    done = 0
    round_ = 0
    while done < n:
        want = n - done

        @settings(max_examples=want, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @seed(seed_ * 1000 + round_)
        @given(strategy)
        def run(case: Any) -> None:
            nonlocal done
            if done < n and on_case(case) is not False:
                done += 1

        before = done
        run()
        round_ += 1
        if done == before:
            break
    return done


def fuzz(target: Target, packets: int, shm: int, seed_: int = 1, healthy_every: int = 100,
         shares: dict[str, float] | None = None, progress: Callable[[str], None] | None = None) -> Results:
    """The whole run: ``packets`` OSC packets spread over the transports (plus, on top, 2 % as many
    hostile framings and as many WebSocket frame headers), then ``shm`` channel corruptions."""
    shares = shares or {"udp": 0.82, "tcp-len": 0.06, "tcp-slip": 0.06, "ws": 0.06}
    if target.http_port is None:
        shares = {k: v for k, v in shares.items() if k != "ws"}
    started = time.monotonic()
    harness = Harness(target, healthy_every)
    root = str(target.root)
    counts = {k: int(packets * v) for k, v in shares.items()}
    counts["udp"] += packets - sum(counts.values())
    counts["framing"] = packets // 50
    if target.http_port is not None:
        counts["ws-frame"] = packets // 50
    for via in ("udp", "tcp-len", "tcp-slip", "ws", "ws-frame"):
        if counts.get(via):
            if progress:
                progress(f"{via}: {counts[via]:,} {'frame headers' if via == 'ws-frame' else 'packets'}")
            strategy = ws_frame_case() if via == "ws-frame" else packet_strategy(root)
            link = "ws" if via == "ws-frame" else via
            drive(strategy, counts[via], seed_ * 10 + len(via), lambda case, link=link: harness.run_case(case, link))
            if not target.alive():
                break
    if counts.get("framing") and target.alive():
        if progress:
            progress(f"framing: {counts['framing']:,} cases")
        gen = harness.framing_cases(np.random.default_rng(seed_))
        for _ in range(counts["framing"]):
            case, via = next(gen)
            if via == "ws" and target.http_port is None:
                continue
            harness.run_case(case, via)
    if shm and target.alive():
        if progress:
            progress(f"shm: {shm:,} corrupted channel files")
        harness.shm_cases(shm, seed_)
    results = harness.finish()
    results.seconds = time.monotonic() - started
    return results


# -- a daemon of its own ---------------------------------------------------------------------------
class Daemon(DaemonProcess):
    """``python -m bridge serve`` on free loopback ports (UDP, TCP, HTTP), stopped by :meth:`stop`."""

    def __init__(self, work: Path, *extra: str) -> None:
        self.root = work / "root"
        self.shm_dir = work / "shm"
        self.root.mkdir(parents=True, exist_ok=True)
        self.shm_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(["--allow-root", str(self.root), "--model", "invert", "--rate-limit", "0", *extra],
                         shm_dir=self.shm_dir, start_timeout=60.0, src=REPO, http=True)
        self.osc_port = self.port

    def target(self) -> Target:
        return Target(self.osc_port, self.http_port, self.root, lambda: self.proc.poll() is None,
                      lambda: "\n".join(self.lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=100_000, help="generated OSC packets (default 100,000)")
    parser.add_argument("--shm", type=int, default=10_000, help="corrupted channel-file cases (default 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--healthy-every", type=int, default=100, help="a healthy round trip every N cases")
    parser.add_argument("--max-pixels", type=int, default=1 << 20,
                        help="the daemon's --max-pixels (default 1 Mpx: keeps huge-but-allowed frames quick)")
    parser.add_argument("--json", metavar="FILE", help="write every number as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="p2p-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
                                     ) as tmp:
        daemon = Daemon(Path(tmp), "--max-pixels", str(args.max_pixels))
        try:
            results = fuzz(daemon.target(), args.packets, args.shm, args.seed, args.healthy_every,
                           progress=lambda s: print(s, file=sys.stderr, flush=True))
        finally:
            code = daemon.stop()
    print(results.table())
    print(f"\ndaemon exit code after SIGINT: {code}")
    defects = results.defects()
    print("defects: " + ("; ".join(defects) if defects else "none"))
    if args.json:
        Path(args.json).write_text(json.dumps({**results.as_dict(), "args": vars(args)}, indent=2))
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
