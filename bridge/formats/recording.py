"""The recording format: a folder with a JSON-lines index and raw frame files. Writer and reader.

``pose2person`` recordings (made by the daemon's recorder, :mod:`bridge.daemon.recorder`; played back by
``pose2person replay``, :mod:`bridge.cli.replay`) are plain data that any language can read and
nothing can execute (no pickle, no code, no paths outside the folder)::

    <folder>/recording.json       {"format": "pose2person-recording", "version": 1, "started": ISO time,
                                   "clients": [...], "entries": N, "bytes": N, "dropped": N,
                                   "duration_s": S, "reason": why it stopped}   (written at the end)
    <folder>/index.jsonl          one JSON object per line, in time order
    <folder>/frames/000000001.raw the pixels of one shared-memory frame, rows top to bottom as sent

Index lines (``t`` = seconds since the recording started, ``client`` = who sent it):

* ``{"t": 0.25, "client": "udp 127.0.0.1:5000", "kind": "keypoints", "tags": "siiifff...",
  "args": ["coco17", 7, 640, 480, 312.5, ...]}``: a ``/pose2person/keypoints`` message exactly as
  received (type tags and arguments; floats are the float32 values);
* ``{"t": 0.26, "client": "...", "kind": "shm", "channel": "cam1", "frame_id": 7, "width": 640,
  "height": 480, "format": "BGRA8", "origin": 0, "file": "frames/000000002.raw", "bytes": 1228800}``:
  a ``/pose2person/frame/shm`` frame (the slot's pixels, copied when the message arrived).

The reader checks everything before use: line length, field types, finite non-decreasing times,
type tags against values, channel names, sizes against :data:`MAX_PIXELS`, frame file names
(``frames/<9 digits>.raw``, a regular file, not a link) and file sizes against width x height x
pixel size. A recording that fails a check raises :class:`RecordingError` naming the line.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import BridgeError
from ..protocol import SHM_FORMATS
from ..shm import CHANNEL_NAME_RE

FORMAT = "pose2person-recording"
VERSION = 1
INDEX = "index.jsonl"
META = "recording.json"
FRAMES = "frames"
MAX_LINE_BYTES = 1 << 20  # an index line longer than this is refused (a keypoint message is < 64 KiB)
MAX_ARGS = 20_000  # an OSC packet of at most 65,507 bytes holds fewer values than this
MAX_PIXELS = 7680 * 4320
FRAME_FILE_RE = re.compile(r"^frames/[0-9]{9}\.raw$")
KINDS = ("keypoints", "shm")


class RecordingError(BridgeError):
    """A recording folder that is missing, malformed or inconsistent."""


def frame_file_name(n: int) -> str:
    return f"{FRAMES}/{n:09d}.raw"


@dataclass(frozen=True)
class KeypointEntry:
    t: float
    client: str
    tags: str
    args: tuple[int | float | str, ...]


@dataclass(frozen=True)
class ShmEntry:
    t: float
    client: str
    channel: str
    frame_id: int
    width: int
    height: int
    format: str
    origin: int
    file: Path

    def pixels(self) -> np.ndarray:
        """The frame as (height, width, channels) in its format's dtype, read (not unpickled) from its file."""
        channels, dtype, _ = SHM_FORMATS[self.format]
        count = self.width * self.height * channels
        data = np.fromfile(self.file, dtype=np.dtype(dtype).newbyteorder("<"), count=count)
        if data.size != count:
            raise RecordingError(f"{self.file}: truncated frame file")
        return data.reshape(self.height, self.width, channels).astype(dtype, copy=False)


Entry = KeypointEntry | ShmEntry


def write_meta(folder: Path, meta: dict[str, Any], dir_fd: int | None = None) -> None:
    """Write ``recording.json`` atomically (an unpredictable hidden temp name created exclusively, then
    a rename). With ``dir_fd`` (the daemon's descriptor of ``folder``, opened without following links)
    both happen relative to it, so a folder swapped for a link meanwhile is not written through."""
    text = json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1, allow_nan=False) + "\n"
    tmp = f".{META}.{secrets.token_hex(8)}.tmp"
    where = (lambda name: name) if dir_fd is not None else (lambda name: str(folder / name))
    fd = os.open(where(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(where(tmp), where(META), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(where(tmp), dir_fd=dir_fd)
        except OSError:
            pass
        raise


def read_meta(folder: Path) -> dict[str, Any]:
    """``recording.json`` if present and valid; ``{}`` if missing (a recording cut short by a crash)."""
    path = folder / META
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_LINE_BYTES:
        raise RecordingError(f"{path}: too large")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a {FORMAT} file")
    if meta.get("version") != VERSION:
        raise RecordingError(f"{path}: version {meta.get('version')!r}; this bridge reads version {VERSION}")
    return meta


def _int(entry: dict[str, Any], key: str, lo: int, hi: int, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise RecordingError(f"{where}: {key} must be an integer {lo}..{hi}, not {value!r}")
    return value


def _parse(line: bytes, folder: Path, where: str) -> Entry:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{where}: not JSON: {exc}") from None
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: an entry must be a JSON object")
    t = entry.get("t")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise RecordingError(f"{where}: t must be a finite number of seconds >= 0, not {t!r}")
    client = entry.get("client", "")
    if not isinstance(client, str) or len(client) > 200:
        raise RecordingError(f"{where}: client must be a short string")
    kind = entry.get("kind")
    if kind == "keypoints":
        tags, args = entry.get("tags"), entry.get("args")
        if not isinstance(tags, str) or not re.fullmatch(r"[ifs]{4,}", tags) or not isinstance(args, list) \
                or len(args) != len(tags) or len(args) > MAX_ARGS:
            raise RecordingError(f"{where}: keypoints need 'tags' (i f s) and as many 'args'")
        for tag, value in zip(tags, args):
            ok = (tag == "s" and isinstance(value, str) and len(value) <= 64) or \
                 (tag == "i" and isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31) or \
                 (tag == "f" and isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
            if not ok:
                raise RecordingError(f"{where}: argument {value!r} does not match its type tag {tag!r}")
        return KeypointEntry(float(t), client, tags, tuple(args))
    if kind == "shm":
        channel = entry.get("channel")
        if not isinstance(channel, str) or not CHANNEL_NAME_RE.match(channel):
            raise RecordingError(f"{where}: bad channel name {channel!r}")
        fmt = entry.get("format")
        if fmt not in SHM_FORMATS:
            raise RecordingError(f"{where}: unknown format {fmt!r}")
        width = _int(entry, "width", 1, 65535, where)
        height = _int(entry, "height", 1, 65535, where)
        if width * height > MAX_PIXELS:
            raise RecordingError(f"{where}: {width}x{height} is over {MAX_PIXELS} pixels")
        origin = _int(entry, "origin", 0, 1, where)
        frame_id = _int(entry, "frame_id", -2**31, 2**31 - 1, where)
        name = entry.get("file")
        if not isinstance(name, str) or not FRAME_FILE_RE.match(name):
            raise RecordingError(f"{where}: frame file must be named frames/<9 digits>.raw, not {name!r}")
        path = folder / name
        try:
            st = os.lstat(path)
        except OSError:
            raise RecordingError(f"{where}: {name} is missing") from None
        channels, dtype, _ = SHM_FORMATS[str(fmt)]
        expected = width * height * channels * np.dtype(dtype).itemsize
        if not stat.S_ISREG(st.st_mode) or st.st_size != expected:
            raise RecordingError(f"{where}: {name} must be a regular file of {expected} bytes")
        return ShmEntry(float(t), client, channel, frame_id, width, height, str(fmt), origin, path)
    raise RecordingError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")


def read_entries(folder: str | os.PathLike[str]) -> Iterator[Entry]:
    """The entries of a recording, validated one by one (streamed: memory stays small)."""
    root = Path(folder)
    index = root / INDEX
    if not root.is_dir() or not index.is_file() or index.is_symlink():
        raise RecordingError(f"{root} is not a recording (no {INDEX})")
    read_meta(root)  # the version check, when the recording was closed properly
    last_t = 0.0
    with open(index, "rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            where = f"{index}:{number}"
            if len(line) > MAX_LINE_BYTES:
                raise RecordingError(f"{where}: line longer than {MAX_LINE_BYTES} bytes")
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                break  # the last line of a recording cut short mid-write: ignore it
            entry = _parse(line, root, where)
            if entry.t < last_t:
                raise RecordingError(f"{where}: time goes backwards ({entry.t} < {last_t})")
            last_t = entry.t
            yield entry
