"""A strict OSC 1.0 codec for the four portable argument types ``i f s b``.

Standard library only: the daemon, :mod:`bridge.client` and TouchDesigner's Python all
use it. python-osc is deliberately not used on the daemon side: it silently swallows
parse errors, accepts types that Pd and Max cannot send back (``h d T F N m``), and is
not available inside TouchDesigner. The test-suite checks this codec against
python-osc as an independent implementation.

Contract:

* :func:`encode_message` accepts ``int`` (int32 range), ``float``, ``str`` and
  ``bytes``; anything else raises :class:`TypeError`/:class:`ValueError`.
* :func:`decode_packet` returns the messages of a packet in order, bundles flattened
  (timetags are ignored: everything is executed on arrival). Any defect raises
  :class:`OscDecodeError` with a stable ``code`` and, when it could be read, the address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

OscArg = Union[int, float, str, bytes]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAX_BUNDLE_DEPTH = 8  # nested bundles deeper than this are refused (stack safety)
BUNDLE_TAG = b"#bundle\x00"

_INT = struct.Struct(">i")
_FLOAT = struct.Struct(">f")


class OscDecodeError(ValueError):
    """A packet is not valid OSC 1.0 with ``i f s b`` arguments."""

    def __init__(self, code: str, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.address = address


@dataclass(frozen=True)
class OscMessage:
    """One decoded message: its address, its type tags (without the comma) and arguments."""

    address: str
    typetags: str
    args: tuple[OscArg, ...]


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _encode_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError("OSC strings cannot contain NUL characters")
    return raw + b"\x00" * (_pad4(len(raw) + 1) - len(raw))


def _encode_blob(value: bytes) -> bytes:
    return _INT.pack(len(value)) + value + b"\x00" * (_pad4(len(value)) - len(value))


def encode_message(address: str, *args: OscArg) -> bytes:
    """Encode one OSC message; ``bool`` is refused because Pd cannot read ``T``/``F``."""
    if not address.startswith("/"):
        raise ValueError(f"OSC address must start with '/': {address!r}")
    tags = [","]
    payload = []
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError("bool is not a portable OSC type; send an int")
        if isinstance(arg, int):
            if not INT32_MIN <= arg <= INT32_MAX:
                raise ValueError(f"int {arg} does not fit OSC int32")
            tags.append("i")
            payload.append(_INT.pack(arg))
        elif isinstance(arg, float):
            try:
                packed = _FLOAT.pack(arg)
            except OverflowError:
                raise ValueError(f"float {arg!r} does not fit OSC float32") from None
            tags.append("f")
            payload.append(packed)
        elif isinstance(arg, str):
            tags.append("s")
            payload.append(_encode_string(arg))
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            tags.append("b")
            payload.append(_encode_blob(bytes(arg)))
        else:
            raise TypeError(f"unsupported OSC argument type {type(arg).__name__}")
    return _encode_string(address) + _encode_string("".join(tags)) + b"".join(payload)


def encode_bundle(messages: list[bytes], timetag: int = 1) -> bytes:
    """Wrap encoded messages in a bundle (timetag 1 = immediately)."""
    parts = [BUNDLE_TAG, struct.pack(">Q", timetag)]
    for msg in messages:
        parts.append(_INT.pack(len(msg)))
        parts.append(msg)
    return b"".join(parts)


def _read_string(data: bytes, pos: int, what: str, address: str | None) -> tuple[str, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise OscDecodeError("malformed_packet", f"unterminated {what} string", address)
    nxt = pos + _pad4(end - pos + 1)
    if nxt > len(data):
        raise OscDecodeError("malformed_packet", f"truncated padding after {what}", address)
    if data[end:nxt].strip(b"\x00"):
        raise OscDecodeError("malformed_packet", f"non-NUL padding after {what}", address)
    try:
        return data[pos:end].decode("utf-8"), nxt
    except UnicodeDecodeError:
        raise OscDecodeError("malformed_packet", f"{what} is not valid UTF-8", address) from None


def _decode_message(data: bytes) -> OscMessage:
    address, pos = _read_string(data, 0, "address", None)
    if not address.startswith("/"):
        raise OscDecodeError("malformed_packet", "address does not start with '/'")
    if pos >= len(data):
        # OSC 1.0 allows a missing type tag string from old senders: no arguments.
        return OscMessage(address, "", ())
    tagstr, pos = _read_string(data, pos, "type tag", address)
    if not tagstr.startswith(","):
        raise OscDecodeError("malformed_packet", "type tag string does not start with ','", address)
    tags = tagstr[1:]
    args: list[OscArg] = []
    for tag in tags:
        if tag == "i":
            if pos + 4 > len(data):
                raise OscDecodeError("malformed_packet", "truncated int32 argument", address)
            args.append(_INT.unpack_from(data, pos)[0])
            pos += 4
        elif tag == "f":
            if pos + 4 > len(data):
                raise OscDecodeError("malformed_packet", "truncated float32 argument", address)
            args.append(_FLOAT.unpack_from(data, pos)[0])
            pos += 4
        elif tag == "s":
            value, pos = _read_string(data, pos, "string argument", address)
            args.append(value)
        elif tag == "b":
            if pos + 4 > len(data):
                raise OscDecodeError("malformed_packet", "truncated blob size", address)
            size = _INT.unpack_from(data, pos)[0]
            pos += 4
            if size < 0 or pos + _pad4(size) > len(data):
                raise OscDecodeError("malformed_packet", "truncated blob", address)
            if data[pos + size : pos + _pad4(size)].strip(b"\x00"):
                raise OscDecodeError("malformed_packet", "non-NUL padding after blob", address)
            args.append(bytes(data[pos : pos + size]))
            pos += _pad4(size)
        else:
            raise OscDecodeError(
                "unsupported_type",
                f"argument type '{tag}' is not supported; use only i f s b"
                " (TouchDesigner: sendOSC(..., useNonStandardTypes=False))",
                address,
            )
    if pos != len(data):
        raise OscDecodeError("malformed_packet", f"{len(data) - pos} trailing bytes after arguments", address)
    return OscMessage(address, tags, tuple(args))


def _decode_into(data: bytes, out: list[OscMessage], depth: int, limit: int = 0) -> None:
    if not data:
        raise OscDecodeError("malformed_packet", "empty packet")
    if data.startswith(BUNDLE_TAG):
        if depth >= MAX_BUNDLE_DEPTH:
            raise OscDecodeError("malformed_packet", "bundles nested too deeply")
        if len(data) < 16:
            raise OscDecodeError("malformed_packet", "truncated bundle header")
        pos = 16
        while pos < len(data):
            if pos + 4 > len(data):
                raise OscDecodeError("malformed_packet", "truncated bundle element size")
            size = _INT.unpack_from(data, pos)[0]
            pos += 4
            if size <= 0 or size % 4 or pos + size > len(data):
                raise OscDecodeError("malformed_packet", "bad bundle element size")
            _decode_into(data[pos : pos + size], out, depth + 1, limit)
            pos += size
        return
    if data[0:1] != b"/":
        raise OscDecodeError("malformed_packet", "packet is neither an OSC message nor a bundle")
    if len(data) % 4:
        raise OscDecodeError("malformed_packet", "packet size is not a multiple of 4")
    if limit and len(out) >= limit:
        raise OscDecodeError("bundle_too_large", f"a bundle may hold at most {limit} messages (nested ones "
                             "counted); send fewer per bundle")
    out.append(_decode_message(data))


def decode_packet(data: bytes, max_messages: int = 0) -> list[OscMessage]:
    """Decode a message or a (nested) bundle into its messages, or raise :class:`OscDecodeError`.

    ``max_messages`` (0 = no limit): a bundle holding more is refused with ``bundle_too_large``
    as soon as the first message over the limit is reached, before it is decoded."""
    out: list[OscMessage] = []
    _decode_into(bytes(data), out, 0, max_messages)
    return out
