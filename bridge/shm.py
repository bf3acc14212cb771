"""Shared-memory frame channels: a plain memory-mapped file with a self-describing header
and a ring of seqlocked slots.

Standard library plus numpy only, so :mod:`bridge.client` and TouchDesigner can use it.
Java maps the same file with ``FileChannel.map``. The byte layout is in docs/PROTOCOL.md.

File layout (all integers little-endian)::

    0   8  magic          b"P2PSHM\\x00\\x01"
    8   4  version        u32 = 1
    12  4  header_size    u32 = 256 (first slot starts here)
    16  4  width          u32 pixels
    20  4  height         u32 pixels
    24  4  channels       u32 (3 or 4)
    28  4  dtype          u32 (1 = uint8, 2 = float32)
    32  4  row_stride     u32 bytes between rows
    36  4  format         u32 (1 BGRA8, 2 RGBA8, 3 RGB8, 4 BGR8, 5 RGBAF32)
    40  4  origin         u32 (0 top-left, 1 bottom-left)
    44  4  slot_count     u32 (>= 3)
    48  4  slot_header    u32 = 64
    52  4  slot_stride    u32 bytes from one slot to the next (64-byte aligned)
    56  4  generation     u32 (bumped when a channel is re-opened with another size)
    60  4  flags          u32 (bit 0: closed / superseded; re-open the channel)
    64  8  write_count    u64 completed writes; newest slot = (write_count-1) % slot_count
    72  56 reserved       zero
    128 64 channel name   UTF-8, NUL padded
    192 64 reserved       zero

Slot ``k`` starts at ``header_size + k * slot_stride``::

    0   8  seq            u64 seqlock: odd while the writer is inside the slot
    8   8  frame_id       i64 (-1 = slot holds no valid frame)
    16  8  timestamp_ns   u64 writer's wall clock (time.time_ns) when the write finished
    24  8  write_index    u64 value of write_count this write produced
    32  32 reserved
    64  .. pixels         height * row_stride bytes

Seqlock contract. A writer makes ``seq`` odd, writes the slot, makes it even (+1) and
then bumps ``write_count``. A writer that finds ``seq`` odd (its predecessor died
mid-frame) skips to the next odd value. A reader reads ``seq``; odd means "being
written"; it copies (or uses) the pixels, reads ``seq`` again, and discards the frame if
the two differ. So no reader ever accepts a torn frame. Writers fill slots round-robin,
so a reader holding slot k is only disturbed when the writer laps the whole ring.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .protocol import SHM_FORMATS

MAGIC = b"P2PSHM\x00\x01"
VERSION = 1
HEADER_SIZE = 256  # bytes
SLOT_HEADER_SIZE = 64  # bytes
MIN_SLOTS = 3
FLAG_CLOSED = 1

FORMAT_CODES: dict[str, int] = {"BGRA8": 1, "RGBA8": 2, "RGB8": 3, "BGR8": 4, "RGBAF32": 5}
FORMAT_NAMES: dict[int, str] = {v: k for k, v in FORMAT_CODES.items()}
DTYPE_CODES: dict[str, int] = {"uint8": 1, "float32": 2}
ORIGIN_TOP_LEFT = 0
ORIGIN_BOTTOM_LEFT = 1

CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_HEADER = struct.Struct("<8sIIIIIIIIIIIIIIQ")  # magic .. write_count (72 bytes)
_SLOT = struct.Struct("<QqQQ")  # seq, frame_id, timestamp_ns, write_index (32 bytes)
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U64_MASK = 2**64 - 1  # seq and write_count are u64 counters: they wrap, they never overflow
# pread/preadv read a file without touching a mapping of it (POSIX; not on Windows, where a
# mapped file cannot be truncated anyway, so the mapping is read directly there).
_HAS_PREAD = hasattr(os, "pread") and hasattr(os, "pwrite")
_HAS_PREADV = hasattr(os, "preadv")
_OFF_FLAGS = 60
_OFF_WRITE_COUNT = 64
_OFF_NAME = 128


class ShmError(ValueError):
    """A channel file is invalid or a frame could not be read intact; ``code`` is the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def default_shm_dir() -> Path:
    """``/dev/shm`` where it exists (Linux tmpfs), else the system temp dir (macOS, Windows)."""
    dev_shm = Path("/dev/shm")
    if dev_shm.is_dir() and os.access(dev_shm, os.W_OK):
        return dev_shm
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class Layout:
    """Geometry of one channel file; derived from width, height, format and slot count."""

    width: int
    height: int
    format: str
    slots: int = MIN_SLOTS
    origin: int = ORIGIN_TOP_LEFT
    generation: int = 1

    @property
    def channels(self) -> int:
        return SHM_FORMATS[self.format][0]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(SHM_FORMATS[self.format][1])

    @property
    def row_stride(self) -> int:
        return self.width * self.channels * self.dtype.itemsize

    @property
    def frame_bytes(self) -> int:
        return self.row_stride * self.height

    @property
    def slot_stride(self) -> int:
        return (SLOT_HEADER_SIZE + self.frame_bytes + 63) & ~63

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.slots * self.slot_stride

    def slot_offset(self, index: int) -> int:
        return HEADER_SIZE + index * self.slot_stride

    def validate(self, max_pixels: int) -> None:
        """Raise :class:`ShmError` unless the layout is allocatable and within limits."""
        if self.format not in FORMAT_CODES:
            raise ShmError("shm_bad_format", f"unknown format {self.format!r}; use one of {', '.join(FORMAT_CODES)}")
        if self.width <= 0 or self.height <= 0 or self.width > 65535 or self.height > 65535:
            raise ShmError("bad_dimensions", f"impossible size {self.width}x{self.height}")
        if self.width * self.height > max_pixels:
            raise ShmError("image_too_large", f"{self.width}x{self.height} exceeds the {max_pixels}-pixel limit")
        if self.origin not in (ORIGIN_TOP_LEFT, ORIGIN_BOTTOM_LEFT):
            raise ShmError("bad_arguments", f"origin must be 0 (top-left) or 1 (bottom-left), not {self.origin}")
        if not MIN_SLOTS <= self.slots <= 16:
            raise ShmError("bad_arguments", f"slot count must be {MIN_SLOTS}..16")


def create_channel_file(path: Path, layout: Layout, name: str) -> None:
    """Create (or replace) a zeroed channel file with a valid header. Fixed size, never resized."""
    tmp = path.with_name(path.name + ".creating")
    # Owner-only (0600): the frames are camera pictures of people; other users of the machine
    # have no business reading them. Clients run as the same user as the daemon.
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.truncate(layout.file_size)
        fh.seek(0)
        fh.write(
            _HEADER.pack(
                MAGIC, VERSION, HEADER_SIZE, layout.width, layout.height, layout.channels,
                DTYPE_CODES[layout.dtype.name], layout.row_stride, FORMAT_CODES[layout.format], layout.origin,
                layout.slots, SLOT_HEADER_SIZE, layout.slot_stride, layout.generation, 0, 0,
            )
        )
        fh.seek(_OFF_NAME)
        fh.write(name.encode("utf-8")[:64])
        for k in range(layout.slots):  # every slot starts empty: frame_id -1
            fh.seek(layout.slot_offset(k))
            fh.write(_SLOT.pack(0, -1, 0, 0))
    os.replace(tmp, path)


def parse_header(buf: bytes | mmap.mmap | memoryview, file_size: int) -> Layout:
    """Validate a channel header against the file size; raise ShmError("shm_bad_header") on garbage."""
    if file_size < HEADER_SIZE:
        raise ShmError("shm_bad_header", f"file is {file_size} bytes, smaller than the {HEADER_SIZE}-byte header")
    (magic, version, header_size, width, height, channels, dtype_code, row_stride, fmt_code, origin, slots,
     slot_header, slot_stride, generation, _flags, _count) = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ShmError("shm_bad_header", f"bad magic {magic!r}")
    if version != VERSION or header_size != HEADER_SIZE or slot_header != SLOT_HEADER_SIZE:
        raise ShmError("shm_bad_header", f"unsupported header version {version}/{header_size}/{slot_header}")
    fmt = FORMAT_NAMES.get(fmt_code)
    if fmt is None:
        raise ShmError("shm_bad_header", f"unknown format code {fmt_code}")
    try:
        layout = Layout(width, height, fmt, slots, origin, generation)
    except Exception as exc:  # pragma: no cover - dataclass construction cannot fail for ints
        raise ShmError("shm_bad_header", str(exc)) from None
    if (channels != layout.channels or row_stride != layout.row_stride or slot_stride != layout.slot_stride
            or dtype_code != DTYPE_CODES[layout.dtype.name] or origin not in (0, 1)
            or not MIN_SLOTS <= slots <= 16 or width == 0 or height == 0):
        raise ShmError("shm_bad_header", "header fields are inconsistent with each other")
    if layout.file_size > file_size:
        raise ShmError("shm_bad_header", f"header describes {layout.file_size} bytes but the file has {file_size}")
    return layout


class ChannelFile:
    """A mapped channel file: the seqlock writer and reader over its ring of slots.

    One process writes a given file (the client writes ``*.in``, the daemon ``*.out``);
    any number may read. Not thread-safe for concurrent writers.

    Truncation. Channel files are never resized, but a buggy client can truncate one (a
    ``open(path, "wb")`` by mistake), and touching a mapping past the new end of the file raises
    SIGBUS, which kills the process: one client could stop the daemon. So the slot headers,
    seq counters and flags are read and written with ``pread``/``pwrite`` (a short read is an
    error, not a signal), pixels are copied out with :meth:`read_into` (``preadv``: the kernel
    copies, and a missing page is an error there too), and what still goes through the mapping
    (:meth:`view`, :meth:`begin_write`) checks the file's size first, raising ``shm_bad_header``.
    """

    def __init__(self, path: str | os.PathLike[str], *, writable: bool) -> None:
        self.path = Path(path)
        flags = os.O_RDWR if writable else os.O_RDONLY
        fd = os.open(self.path, flags)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise ShmError("shm_bad_header", f"{self.path.name}: {size} bytes is smaller than a header")
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._mm = mmap.mmap(fd, size, access=access)
        except BaseException:
            os.close(fd)
            raise
        # Kept open for pread and the size checks, and closed only when this object goes: another
        # thread may be inside a pread while close() runs, and a closed descriptor's number could
        # by then name some other file.
        self._fd = fd
        self._closed = False
        weakref.finalize(self, os.close, fd)
        try:
            self.layout = parse_header(self._mm, size)
        except ShmError:
            self._mm.close()
            raise
        self._buf = np.frombuffer(self._mm, dtype=np.uint8) if writable else np.frombuffer(self._mm, dtype=np.uint8)
        self._views = [self._pixel_view(k) for k in range(self.layout.slots)]
        # Slots this process is writing now. One writer per file is the rule, but the daemon may
        # run several workers (Ray engine, --max-batch) and two of them can answer the same
        # channel (two clients on one name, keypoint pictures beside frames): each takes a slot
        # of its own. A slot a stuck (abandoned) writer never left stays out of the ring.
        self._writing: set[int] = set()
        self._writing_lock = threading.Lock()

    # -- geometry -----------------------------------------------------------------------
    def _pixel_view(self, k: int) -> np.ndarray:
        lay = self.layout
        start = lay.slot_offset(k) + SLOT_HEADER_SIZE
        flat = self._buf[start : start + lay.frame_bytes]
        return flat.view(lay.dtype).reshape(lay.height, lay.width, lay.channels)

    def _truncated(self, size: int) -> ShmError:
        return ShmError("shm_bad_header", f"{self.path.name} was truncated to {size} bytes (its header says "
                        f"{self.layout.file_size}); channel files are never resized: re-open the channel")

    def check_size(self) -> None:
        """Raise ShmError("shm_bad_header") if the file is shorter than its layout (someone truncated it).

        Raises ValueError once :meth:`close` ran (as the closed mapping would)."""
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        size = os.fstat(self._fd).st_size
        if size < self.layout.file_size:
            raise self._truncated(size)

    def _pread(self, n: int, off: int) -> bytes:
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        if not _HAS_PREAD:
            return bytes(self._mm[off : off + n])
        data = os.pread(self._fd, n, off)
        if len(data) < n:
            raise self._truncated(os.fstat(self._fd).st_size)
        return data

    def _pwrite(self, data: bytes, off: int) -> None:
        if not _HAS_PREAD:
            self._mm[off : off + len(data)] = data
            return
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        size = os.fstat(self._fd).st_size
        if size < off + len(data):  # pwrite past the end would grow the file instead of failing
            raise self._truncated(size)
        os.pwrite(self._fd, data, off)

    def _slot(self, k: int) -> tuple[int, int, int, int]:
        return _SLOT.unpack(self._pread(_SLOT.size, self.layout.slot_offset(k)))

    @property
    def write_count(self) -> int:
        return _U64.unpack(self._pread(8, _OFF_WRITE_COUNT))[0]

    @property
    def closed_flag(self) -> bool:
        return bool(_U32.unpack(self._pread(4, _OFF_FLAGS))[0] & FLAG_CLOSED)

    # -- writing ------------------------------------------------------------------------
    def begin_write(self) -> tuple[int, np.ndarray]:
        """Enter the next slot of the ring: returns (slot index, writable pixel view).

        The slot's seq is odd until :meth:`end_write`. Recovers from a writer that died
        inside a slot (odd seq) by moving to the next odd value.
        """
        self.check_size()
        with self._writing_lock:
            start = self.write_count % self.layout.slots
            free = [k for k in ((start + i) % self.layout.slots for i in range(self.layout.slots))
                    if k not in self._writing]
            if not free:
                raise ShmError("shm_busy", f"{self.path.name}: every slot is being written by this process")
            k = free[0]
            self._writing.add(k)
        off = self.layout.slot_offset(k)
        seq = _U64.unpack(self._pread(8, off))[0]
        seq = (seq + 1 if seq % 2 == 0 else seq + 2) & _U64_MASK  # odd: 2**64 - 1 wraps to 1
        _U64.pack_into(self._mm, off, seq)
        _U64.pack_into(self._mm, off + 8, (-1) & _U64_MASK)  # invalid until done
        return k, self._views[k]

    def end_write(self, k: int, frame_id: int, *, publish: bool = True) -> None:
        """Leave slot k: stamp it, make seq even, and (if ``publish``) advance write_count.

        With ``publish=False`` the slot is closed as invalid (frame_id -1), e.g. when the
        source frame turned out torn.
        """
        off = self.layout.slot_offset(k)
        try:
            self.check_size()
            with self._writing_lock:  # two of this process's writers must not take one count
                seq = _U64.unpack(self._pread(8, off))[0]
                count = (self.write_count + 1) & _U64_MASK
                struct.pack_into("<qQQ", self._mm, off + 8, frame_id if publish else -1, time.time_ns(), count)
                _U64.pack_into(self._mm, off, (seq + 1) & _U64_MASK)
                if publish:
                    _U64.pack_into(self._mm, _OFF_WRITE_COUNT, count)
        finally:
            with self._writing_lock:
                self._writing.discard(k)

    def abandon_write(self, k: int) -> None:
        """Give slot k up without stamping it: for a writer that will never finish (a stalled model
        whose frame was answered elsewhere). The slot's seq stays odd, so readers skip it, and the
        next writer to take it recovers it as from a writer that died inside."""
        with self._writing_lock:
            self._writing.discard(k)

    def write(self, frame: np.ndarray, frame_id: int) -> int:
        """Copy a frame of the channel's exact shape and dtype into the next slot; returns the slot index."""
        if frame.shape != self._views[0].shape or frame.dtype != self.layout.dtype:
            raise ValueError(f"frame {frame.shape}/{frame.dtype} does not match channel "
                             f"{self._views[0].shape}/{self.layout.dtype}")
        k, view = self.begin_write()
        np.copyto(view, frame)
        self.end_write(k, frame_id)
        return k

    def mark_closed(self) -> None:
        """Set the closed/superseded flag so mapped readers know to re-open the channel.

        A file truncated below its header has no flag to set: then nothing happens (closing
        such a channel must still work)."""
        try:
            flags = _U32.unpack(self._pread(4, _OFF_FLAGS))[0]
            self._pwrite(_U32.pack(flags | FLAG_CLOSED), _OFF_FLAGS)
        except ShmError:
            pass

    # -- reading ------------------------------------------------------------------------
    def find_slot(self, frame_id: int | None = None) -> tuple[int, int]:
        """Return (slot index, seq) of the newest intact slot holding ``frame_id`` (None = newest frame).

        Raises ShmError("shm_frame_missing") when no slot holds it and ("shm_torn") when
        the only slot holding it is being written.
        """
        best: tuple[int, int, int] | None = None  # (write_index, k, seq)
        busy = False
        for k in range(self.layout.slots):
            seq, fid, _ts, windex = self._slot(k)
            if frame_id is not None and fid != frame_id:
                continue
            if seq % 2:
                busy = True
                continue
            if fid == -1:
                continue
            if best is None or windex > best[0]:
                best = (windex, k, seq)
        if best is None:
            if busy:
                raise ShmError("shm_torn", f"frame {frame_id} is being written (or its writer died mid-frame)")
            raise ShmError("shm_frame_missing", f"no slot holds frame {frame_id}")
        return best[1], best[2]

    def view(self, k: int) -> np.ndarray:
        """The slot's pixels, zero-copy. Valid only if :meth:`still_intact` says so afterwards.

        A mapping: if the writer truncates the file while the caller reads it, the read raises
        SIGBUS. Code that must survive any client (the daemon) copies with :meth:`read_into`.
        """
        self.check_size()
        return self._views[k]

    def read_into(self, k: int, dest: np.ndarray) -> None:
        """Copy slot k's pixels into ``dest`` (C-contiguous, the slot's shape and dtype) without
        touching the mapping: a truncated file raises ShmError("shm_bad_header"), never SIGBUS.
        Check :meth:`still_intact` afterwards, as for :meth:`view`."""
        lay = self.layout
        if dest.shape != self._views[k].shape or dest.dtype != lay.dtype or not dest.flags.c_contiguous:
            raise ValueError(f"read_into needs a contiguous {self._views[k].shape}/{lay.dtype} array")
        if not _HAS_PREADV:
            np.copyto(dest, self.view(k))
            return
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        got = os.preadv(self._fd, [memoryview(dest.reshape(-1).view(np.uint8))],
                        lay.slot_offset(k) + SLOT_HEADER_SIZE)
        if got < lay.frame_bytes:
            raise self._truncated(os.fstat(self._fd).st_size)

    def still_intact(self, k: int, seq: int) -> bool:
        """True if slot k has not been touched since ``seq`` was read (the seqlock re-check)."""
        return _U64.unpack(self._pread(8, self.layout.slot_offset(k)))[0] == seq

    def read(self, frame_id: int | None = None, retries: int = 3) -> tuple[int, np.ndarray]:
        """Copy out the newest intact frame (or the one with ``frame_id``): (frame_id, pixels)."""
        last: ShmError | None = None
        for _ in range(retries):
            try:
                k, seq = self.find_slot(frame_id)
            except ShmError as exc:
                last = exc
                continue
            fid = self._slot(k)[1]
            out = np.empty_like(self._views[k])
            self.read_into(k, out)
            if self.still_intact(k, seq):
                return fid, out
            last = ShmError("shm_torn", f"frame {fid} changed while it was read")
        assert last is not None
        raise last

    def slot_info(self, k: int) -> tuple[int, int, int, int]:
        """(seq, frame_id, timestamp_ns, write_index) of slot k."""
        return self._slot(k)

    def close(self) -> None:
        """Unmap and close the file (idempotent)."""
        self._views = []
        self._buf = np.empty(0, np.uint8)
        try:
            self._mm.close()
        except BufferError:
            # A caller still holds a view; the mapping dies with it (as in Java).
            pass
        self._closed = True  # the descriptor itself is closed when the object goes (see __init__)
