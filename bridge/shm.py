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
import secrets
import stat
import struct
import tempfile
import threading
import time
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
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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


class UnsafeFolderError(ValueError):
    """A folder the daemon would keep private files in is not private to it (:func:`private_folder`)."""


def _owner_only(st: os.stat_result) -> str | None:
    """Why a folder's ``lstat`` makes it unfit to hold private files, or None when it is fit."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid}, the daemon runs as uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def private_folder(path: Path, what: str) -> Path:
    """Make ``path`` a folder only this user can use, and return it.

    A missing folder is created with mode 0700 (``mkdir`` fails if the name exists, so a folder
    or link someone else planted is never adopted by creating it). An existing one is accepted
    only if it is a real folder (not a link), owned by this user and not writable by group or
    others; it is then tightened to 0700 (camera pictures go in it). Anything else raises
    :class:`UnsafeFolderError` with a message saying what to do; ``what`` names the folder's role
    there (e.g. ``"the shared-memory channel folder"``). Where Python has no owners or mode bits
    (Windows) the folder is created and used as it is: docs/SECURITY.md says what that means."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafeFolderError(f"{what} {path} cannot be created ({exc.strerror})") from None
    if os.name == "nt":
        return path
    try:  # by descriptor, not following a link: what is checked and tightened is what was opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError:
        fd = -1
    try:
        st = os.fstat(fd) if fd >= 0 else os.lstat(path)
        problem = _owner_only(st)
        if problem is not None:
            raise UnsafeFolderError(
                f"{what} {path} {problem}: another user could read or replace the files the daemon keeps "
                f"there. Remove it if nobody needs it (rm -r {path}), or give the daemon a folder of its own")
        if fd < 0:
            raise UnsafeFolderError(f"{what} {path} cannot be opened; check its permissions")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        if fd >= 0:
            os.close(fd)
    return path


def channel_folder(shm_dir: Path) -> Path:
    """Where the daemon creates channel files: ``shm_dir`` itself if only this user can write it
    (a folder of one's own, e.g. ``--shm-dir ~/.cache/p2p``), else (a shared folder such as
    ``/dev/shm``, sticky and writable by all) a private sub-folder ``pose2person-<uid>`` made by
    :func:`private_folder`. Raises :class:`UnsafeFolderError`."""
    if os.name == "nt":
        return private_folder(shm_dir / "pose2person-shm", "the shared-memory channel folder")
    if _owner_only(os.lstat(shm_dir)) is None:
        return shm_dir
    return private_folder(shm_dir / f"pose2person-{os.geteuid()}", "the shared-memory channel folder")


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


def create_channel_file(path: Path, layout: Layout, name: str, dir_fd: int | None = None) -> None:
    """Create (or replace) a zeroed channel file with a valid header. Fixed size, never resized.

    The bytes go to an unpredictable temporary name created exclusively (``O_EXCL | O_NOFOLLOW``,
    mode 0600) and are renamed over ``path``: a file or link planted at any name in the folder is
    never opened, only replaced. With ``dir_fd`` (the daemon's descriptor of the channel folder)
    ``path.name`` is taken relative to it, so the folder cannot be swapped underneath."""
    here = (lambda n: n) if dir_fd is not None else (lambda n: str(path.parent / n))
    tmp = f".{path.name[:64]}.{secrets.token_hex(8)}.creating"
    # Owner-only (0600): the frames are camera pictures of people; other users of the machine
    # have no business reading them. Clients run as the same user as the daemon.
    fd = os.open(here(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), 0o600,
                 dir_fd=dir_fd)
    try:
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
        os.replace(here(tmp), here(path.name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(here(tmp), dir_fd=dir_fd)
        except OSError:
            pass
        raise


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
    """A channel file: the seqlock writer and reader over its ring of slots.

    One process writes a given file (the client writes ``*.in``, the daemon ``*.out``);
    any number may read. Not thread-safe for concurrent writers.

    Truncation. Channel files are never resized, but a client can truncate one (an
    ``open(path, "wb")`` by mistake, or on purpose), and touching a mapping past the new end of the
    file raises SIGBUS, which kills the process: one client could stop the daemon. So slot headers,
    seq counters and flags are read and written with ``pread``/``pwrite`` (a short read is an error,
    not a signal) and pixels are copied out with :meth:`read_into` (``preadv``: the kernel copies,
    and a missing page is an error there too). The daemon opens its files with ``mapped=False``:
    no mapping at all, so nothing a client does to a file can raise a signal in it; its
    :meth:`begin_write` hands out a private buffer that :meth:`end_write` copies into the file with
    ``pwrite``. A client (``mapped=True``, the default) maps the file: what goes through its mapping
    (:meth:`view`, :meth:`begin_write`) checks the size first and raises ``shm_bad_header``.

    The descriptor is closed as soon as :meth:`close` ran and no other thread is inside a read or
    write of it (so a closed channel's file is released at once, and a descriptor number is never
    reused under a thread still using it).
    """

    def __init__(self, path: str | os.PathLike[str], *, writable: bool, mapped: bool = True,
                 dir_fd: int | None = None) -> None:
        self.path = Path(path)
        # Without pread (Windows) the mapping is the only way in; a mapped file cannot be truncated there.
        self.mapped = mapped or not _HAS_PREAD
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_BINARY", 0)
        if dir_fd is not None:  # the daemon's own files: relative to its private folder, never a link
            fd = os.open(self.path.name, flags | _NOFOLLOW, dir_fd=dir_fd)
        else:
            fd = os.open(self.path, flags)
        self._mm: mmap.mmap | None = None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ShmError("shm_bad_header", f"{self.path.name} is not a regular file")
            size = st.st_size
            if size < HEADER_SIZE:
                raise ShmError("shm_bad_header", f"{self.path.name}: {size} bytes is smaller than a header")
            if self.mapped:
                access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
                self._mm = mmap.mmap(fd, size, access=access)
                self.layout = parse_header(self._mm, size)
            else:
                head = os.pread(fd, HEADER_SIZE, 0)
                if len(head) < HEADER_SIZE:
                    raise ShmError("shm_bad_header", f"{self.path.name}: the header could not be read")
                self.layout = parse_header(head, size)
        except BaseException:
            if self._mm is not None:
                self._mm.close()
            os.close(fd)
            raise
        self._fd = fd
        self._closed = False
        self._users = 0  # threads inside a pread/pwrite of _fd; the last one out closes it after close()
        self._fd_lock = threading.Lock()
        self._fd_released = False
        lay = self.layout
        self._shape = (lay.height, lay.width, lay.channels)
        if self._mm is not None:
            self._buf = np.frombuffer(self._mm, dtype=np.uint8)
            self._views = [self._pixel_view(k) for k in range(lay.slots)]
        else:
            self._buf = np.empty(0, np.uint8)
            self._views = []
        # Unmapped writers: the private buffer each slot being written was handed, and spare ones.
        self._pending: dict[int, np.ndarray] = {}
        self._spare: list[np.ndarray] = []
        # Slots this process is writing now. One writer per file is the rule, but the daemon may
        # run several workers (Ray engine, --max-batch) and two of them can answer the same
        # channel (two clients on one name, keypoint pictures beside frames): each takes a slot
        # of its own. A slot a stuck (abandoned) writer never left stays out of the ring.
        self._writing: set[int] = set()
        self._writing_lock = threading.Lock()

    # -- the descriptor -------------------------------------------------------------------
    def _enter(self) -> int:
        with self._fd_lock:
            if self._closed:
                raise ValueError(f"{self.path.name} is closed")
            self._users += 1
            return self._fd

    def _leave(self) -> None:
        with self._fd_lock:
            self._users -= 1
            if self._closed and self._users == 0:
                self._release_fd()

    def _release_fd(self) -> None:
        if not self._fd_released:
            self._fd_released = True
            os.close(self._fd)

    @property
    def released(self) -> bool:
        """True once the file is closed for good here (unmapped files: the descriptor is closed, so
        a deleted file's memory is free; mapped ones: the mapping may live on in a caller's view)."""
        return self._fd_released and self._mm is None

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
        fd = self._enter()
        try:
            size = os.fstat(fd).st_size
        finally:
            self._leave()
        if size < self.layout.file_size:
            raise self._truncated(size)

    def _pread(self, n: int, off: int) -> bytes:
        if not _HAS_PREAD:
            if self._closed or self._mm is None:
                raise ValueError(f"{self.path.name} is closed")
            return bytes(self._mm[off : off + n])
        fd = self._enter()
        try:
            data = os.pread(fd, n, off)
            if len(data) < n:
                raise self._truncated(os.fstat(fd).st_size)
            return data
        finally:
            self._leave()

    def _pwrite(self, data: bytes | memoryview, off: int) -> None:
        if not _HAS_PREAD:
            if self._closed or self._mm is None:
                raise ValueError(f"{self.path.name} is closed")
            self._mm[off : off + len(data)] = data
            return
        fd = self._enter()
        try:
            size = os.fstat(fd).st_size
            if size < off + len(data):  # pwrite past the end would grow the file instead of failing
                raise self._truncated(size)
            view = memoryview(data).cast("B")
            done = 0
            while done < len(view):  # a regular file takes it in one call; a short write is retried
                done += os.pwrite(fd, view[done:], off + done)
        finally:
            self._leave()

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
        """Enter the next slot of the ring: returns (slot index, writable pixels).

        The slot's seq is odd until :meth:`end_write`. Recovers from a writer that died
        inside a slot (odd seq) by moving to the next odd value. Mapped: the pixels are the slot
        itself. Unmapped (the daemon): a private buffer, copied into the slot by :meth:`end_write`.
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
        try:
            off = self.layout.slot_offset(k)
            seq = _U64.unpack(self._pread(8, off))[0]
            seq = (seq + 1 if seq % 2 == 0 else seq + 2) & _U64_MASK  # odd: 2**64 - 1 wraps to 1
            if self._mm is not None:
                _U64.pack_into(self._mm, off, seq)
                _U64.pack_into(self._mm, off + 8, (-1) & _U64_MASK)  # invalid until done
                return k, self._views[k]
            self._pwrite(struct.pack("<QQ", seq, (-1) & _U64_MASK), off)
            with self._writing_lock:
                buf = self._spare.pop() if self._spare else np.empty(self._shape, self.layout.dtype)
                self._pending[k] = buf
            return k, buf
        except BaseException:
            with self._writing_lock:
                self._writing.discard(k)
            raise

    def end_write(self, k: int, frame_id: int, *, publish: bool = True, pixels: np.ndarray | None = None) -> None:
        """Leave slot k: stamp it, make seq even, and (if ``publish``) advance write_count.

        With ``publish=False`` the slot is closed as invalid (frame_id -1), e.g. when the
        source frame turned out torn. Unmapped, the buffer :meth:`begin_write` handed out, or
        ``pixels`` instead (a C-contiguous array of the slot's shape and dtype: a model's result,
        written without first copying it into that buffer), goes into the slot first (``pwrite``:
        a truncated file is ``shm_bad_header``). Mapped, ``pixels`` is copied into the slot.
        """
        off = self.layout.slot_offset(k)
        with self._writing_lock:
            buf = self._pending.pop(k, None)
        try:
            if pixels is not None and (pixels.shape != self._shape or pixels.dtype != self.layout.dtype
                                       or not pixels.flags.c_contiguous):  # the slot is still left below
                raise ValueError(f"end_write needs a contiguous {self._shape}/{self.layout.dtype} array")
            if publish and pixels is not None and self._mm is not None:
                np.copyto(self._views[k], pixels)
            elif publish and (pixels is not None or buf is not None):
                source = pixels if pixels is not None else buf
                assert source is not None
                self._pwrite(memoryview(source.reshape(-1).view(np.uint8)), off + SLOT_HEADER_SIZE)
            self.check_size()
            with self._writing_lock:  # two of this process's writers must not take one count
                seq = _U64.unpack(self._pread(8, off))[0]
                count = (self.write_count + 1) & _U64_MASK
                stamp = struct.pack("<qQQ", frame_id if publish else -1, time.time_ns(), count)
                if self._mm is not None:
                    self._mm[off + 8 : off + 32] = stamp
                    _U64.pack_into(self._mm, off, (seq + 1) & _U64_MASK)
                    if publish:
                        _U64.pack_into(self._mm, _OFF_WRITE_COUNT, count)
                else:  # in seqlock order: the stamp, then seq even, then the count
                    self._pwrite(stamp, off + 8)
                    self._pwrite(_U64.pack((seq + 1) & _U64_MASK), off)
                    if publish:
                        self._pwrite(_U64.pack(count), _OFF_WRITE_COUNT)
        finally:
            with self._writing_lock:
                self._writing.discard(k)
                if buf is not None and len(self._spare) < 2:
                    self._spare.append(buf)

    def abandon_write(self, k: int) -> None:
        """Give slot k up without stamping it: for a writer that will never finish (a stalled model
        whose frame was answered elsewhere). The slot's seq stays odd, so readers skip it, and the
        next writer to take it recovers it as from a writer that died inside. An unmapped slot's
        buffer is dropped, not reused: the stuck writer may still hold it."""
        with self._writing_lock:
            self._writing.discard(k)
            self._pending.pop(k, None)

    def write(self, frame: np.ndarray, frame_id: int) -> int:
        """Copy a frame of the channel's exact shape and dtype into the next slot; returns the slot index."""
        if frame.shape != self._shape or frame.dtype != self.layout.dtype:
            raise ValueError(f"frame {frame.shape}/{frame.dtype} does not match channel "
                             f"{self._shape}/{self.layout.dtype}")
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
        Raises ValueError on a file opened with ``mapped=False``.
        """
        if self._mm is None:
            raise ValueError(f"{self.path.name} is not mapped here: use read_into")
        self.check_size()
        return self._views[k]

    def read_into(self, k: int, dest: np.ndarray) -> None:
        """Copy slot k's pixels into ``dest`` (C-contiguous, the slot's shape and dtype) without
        touching the mapping: a truncated file raises ShmError("shm_bad_header"), never SIGBUS.
        Check :meth:`still_intact` afterwards, as for :meth:`view`."""
        lay = self.layout
        if dest.shape != self._shape or dest.dtype != lay.dtype or not dest.flags.c_contiguous:
            raise ValueError(f"read_into needs a contiguous {self._shape}/{lay.dtype} array")
        if not _HAS_PREADV:
            np.copyto(dest, self.view(k))
            return
        fd = self._enter()
        try:
            got = os.preadv(fd, [memoryview(dest.reshape(-1).view(np.uint8))], lay.slot_offset(k) + SLOT_HEADER_SIZE)
            if got < lay.frame_bytes:
                raise self._truncated(os.fstat(fd).st_size)
        finally:
            self._leave()

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
            out = np.empty(self._shape, self.layout.dtype)
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
        """Unmap and close the file (idempotent). The descriptor closes now, or when the last thread
        inside a read or write of it leaves."""
        self._views = []
        self._buf = np.empty(0, np.uint8)
        self._spare = []
        if self._mm is not None:
            try:
                self._mm.close()
                self._mm = None
            except BufferError:
                # A caller still holds a view; the mapping dies with it (as in Java).
                pass
        with self._fd_lock:
            self._closed = True
            if self._users == 0:
                self._release_fd()

    def __del__(self) -> None:
        try:
            if not self._fd_released:
                self._fd_released = True
                os.close(self._fd)
        except (AttributeError, OSError):
            pass
