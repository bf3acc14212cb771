"""bridge.shm: byte layout (read back independently with struct), formats, ring, header
validation, and the seqlock against a writer killed mid-frame and a concurrent writer process.

All channel files are real memory-mapped files under tmp_path; writers that die or race are
real subprocesses.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from bridge.shm import ChannelFile, Layout, ShmError, create_channel_file, parse_header

REPO = Path(__file__).resolve().parent.parent

# Independent expectations from the module docstring / docs/PROTOCOL.md.
FORMATS = {  # name: (code, channels, numpy dtype, dtype code)
    "BGRA8": (1, 4, np.uint8, 1),
    "RGBA8": (2, 4, np.uint8, 1),
    "RGB8": (3, 3, np.uint8, 1),
    "BGR8": (4, 3, np.uint8, 1),
    "RGBAF32": (5, 4, np.dtype("<f4"), 2),
}


def u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


def u64(buf: bytes, off: int) -> int:
    return struct.unpack_from("<Q", buf, off)[0]


def i64(buf: bytes, off: int) -> int:
    return struct.unpack_from("<q", buf, off)[0]


def make(tmp_path: Path, width: int, height: int, fmt: str, slots: int = 3, name: str = "cam",
         origin: int = 0) -> Path:
    path = tmp_path / f"{name}.in"
    create_channel_file(path, Layout(width, height, fmt, slots, origin), name)
    return path


def random_frame(rng: np.random.Generator, width: int, height: int, fmt: str) -> np.ndarray:
    _, ch, dtype, _ = FORMATS[fmt]
    if np.dtype(dtype).kind == "f":
        return rng.random((height, width, ch), dtype=np.float32)
    return rng.integers(0, 256, (height, width, ch), dtype=np.uint8)


def run_python(code: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# byte layout


def test_header_bytes_at_documented_offsets(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 1, "BGRA8", name="cam-1")
    raw = path.read_bytes()
    # 2x1 BGRA8: row_stride 8, frame 8 bytes, slot_stride (64 + 8) rounded to 64 = 128.
    assert len(raw) == 256 + 3 * 128
    assert raw[0:8] == b"P2PSHM\x00\x01"
    assert [u32(raw, off) for off in range(8, 64, 4)] == [
        1,    # version
        256,  # header_size
        2,    # width
        1,    # height
        4,    # channels
        1,    # dtype uint8
        8,    # row_stride
        1,    # format BGRA8
        0,    # origin
        3,    # slot_count
        64,   # slot_header
        128,  # slot_stride
        1,    # generation
        0,    # flags
    ]
    assert u64(raw, 64) == 0  # write_count
    assert raw[72:128] == bytes(56)
    assert raw[128:192] == b"cam-1" + bytes(59)
    assert raw[192:256] == bytes(64)
    for k in range(3):
        slot = 256 + k * 128
        assert u64(raw, slot) == 0  # seq
        assert i64(raw, slot + 8) == -1  # no frame
        assert raw[slot + 16 : slot + 128] == bytes(112)


def test_write_stamps_slot_and_write_count(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 1, "BGRA8")
    ch = ChannelFile(path, writable=True)
    frame = np.array([[[255, 0, 0, 255], [0, 0, 255, 255]]], np.uint8)  # blue, red in BGRA
    assert ch.write(frame, 7) == 0
    ch.close()
    raw = path.read_bytes()
    assert u64(raw, 64) == 1  # write_count
    slot = 256
    assert u64(raw, slot) == 2  # seq: odd once, even again
    assert i64(raw, slot + 8) == 7
    assert u64(raw, slot + 16) > 0  # timestamp_ns
    assert u64(raw, slot + 24) == 1  # write_index
    assert raw[slot + 32 : slot + 64] == bytes(32)
    assert raw[slot + 64 : slot + 72] == bytes([255, 0, 0, 255, 0, 0, 255, 255])
    # untouched slots stay empty
    assert i64(raw, 256 + 128 + 8) == -1 and u64(raw, 256 + 128) == 0


def test_rgbaf32_float_layout(tmp_path: Path) -> None:
    path = make(tmp_path, 3, 2, "RGBAF32", origin=1)
    raw = path.read_bytes()
    # 3x2x4 float32: row_stride 48, frame 96, slot_stride (64 + 96) -> 192
    assert u32(raw, 24) == 4 and u32(raw, 28) == 2 and u32(raw, 32) == 48
    assert u32(raw, 36) == 5 and u32(raw, 40) == 1 and u32(raw, 52) == 192
    assert len(raw) == 256 + 3 * 192
    ch = ChannelFile(path, writable=True)
    frame = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 24
    ch.write(frame, 1)
    ch.write(frame[::-1].copy(), 2)
    ch.close()
    raw = path.read_bytes()
    assert raw[256 + 64 : 256 + 64 + 96] == struct.pack("<24f", *(np.arange(24) / 24).astype(np.float32))
    assert u64(raw, 64) == 2 and i64(raw, 256 + 192 + 8) == 2


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (64, 48)])
def test_every_format_writes_and_reads_exact_pixels(tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    width, height = size
    code, channels, dtype, dtype_code = FORMATS[fmt]
    path = make(tmp_path, width, height, fmt, slots=4)
    rng = np.random.default_rng(zlib.crc32(f"{fmt}{size}".encode()))
    writer = ChannelFile(path, writable=True)
    reader = ChannelFile(path, writable=False)
    lay = reader.layout
    assert (lay.width, lay.height, lay.format, lay.slots) == (width, height, fmt, 4)
    row_stride = width * channels * np.dtype(dtype).itemsize
    slot_stride = (64 + row_stride * height + 63) // 64 * 64
    assert (lay.row_stride, lay.slot_stride) == (row_stride, slot_stride)
    frames = {fid: random_frame(rng, width, height, fmt) for fid in (10, 11, 12)}
    for fid, frame in frames.items():
        writer.write(frame, fid)
    for fid, frame in frames.items():
        got_id, got = reader.read(fid)
        assert got_id == fid
        assert got.dtype == np.dtype(dtype) and got.shape == (height, width, channels)
        assert np.array_equal(got, frame)
    assert reader.read()[0] == 12
    raw = path.read_bytes()
    for k, frame in enumerate(frames.values()):  # slots 0, 1, 2 in order
        start = 256 + k * slot_stride + 64
        assert raw[start : start + row_stride * height] == frame.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        assert u32(raw, 36) == code and u32(raw, 28) == dtype_code
    writer.close()
    reader.close()


def test_write_refuses_wrong_shape_or_dtype(tmp_path: Path) -> None:
    ch = ChannelFile(make(tmp_path, 4, 3, "RGB8"), writable=True)
    with pytest.raises(ValueError):
        ch.write(np.zeros((3, 4, 4), np.uint8), 1)
    with pytest.raises(ValueError):
        ch.write(np.zeros((3, 4, 3), np.float32), 1)
    with pytest.raises(ValueError):
        ch.write(np.zeros((4, 3, 3), np.uint8), 1)
    assert ch.write_count == 0
    ch.close()


# ---------------------------------------------------------------------------------------------
# ring and lookup


def test_ring_round_robin_and_find_slot(tmp_path: Path) -> None:
    path = make(tmp_path, 4, 4, "BGR8")
    w = ChannelFile(path, writable=True)
    r = ChannelFile(path, writable=False)
    with pytest.raises(ShmError) as info:
        r.find_slot()
    assert info.value.code == "shm_frame_missing"
    slots = [w.write(np.full((4, 4, 3), fid, np.uint8), fid) for fid in range(100, 107)]
    assert slots == [0, 1, 2, 0, 1, 2, 0]
    assert r.write_count == 7
    assert {k: r.slot_info(k)[1] for k in range(3)} == {0: 106, 1: 104, 2: 105}
    assert [r.slot_info(k)[3] for k in range(3)] == [7, 5, 6]  # write_index
    assert all(r.slot_info(k)[0] % 2 == 0 for k in range(3))
    assert r.find_slot()[0] == 0  # newest
    assert r.find_slot(104)[0] == 1
    assert r.find_slot(105)[0] == 2
    for fid in (104, 105, 106):
        got_id, pixels = r.read(fid)
        assert got_id == fid and (pixels == fid).all()
    for gone in (100, 101, 102, 103, 999):
        with pytest.raises(ShmError) as info:
            r.read(gone)
        assert info.value.code == "shm_frame_missing"
    w.close()
    r.close()


def test_duplicate_frame_id_reads_the_newest(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 2, "RGBA8")
    w = ChannelFile(path, writable=True)
    w.write(np.full((2, 2, 4), 1, np.uint8), 5)
    w.write(np.full((2, 2, 4), 2, np.uint8), 5)
    fid, pixels = w.read(5)
    assert fid == 5 and (pixels == 2).all()
    w.close()


def test_unpublished_write_leaves_slot_invalid(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 2, "BGRA8")
    w = ChannelFile(path, writable=True)
    w.write(np.full((2, 2, 4), 9, np.uint8), 1)
    k, view = w.begin_write()
    assert k == 1 and w.slot_info(1)[0] % 2 == 1
    view[...] = 3
    w.end_write(k, 2, publish=False)
    assert w.write_count == 1
    seq, fid, _, _ = w.slot_info(1)
    assert seq == 2 and fid == -1
    with pytest.raises(ShmError) as info:
        w.read(2)
    assert info.value.code == "shm_frame_missing"
    assert w.read()[0] == 1
    w.close()


def test_seqlock_recheck_detects_a_lap(tmp_path: Path) -> None:
    path = make(tmp_path, 3, 3, "BGR8")
    w = ChannelFile(path, writable=True)
    r = ChannelFile(path, writable=False)
    w.write(np.full((3, 3, 3), 1, np.uint8), 1)
    k, seq = r.find_slot(1)
    assert r.still_intact(k, seq)
    for fid in (2, 3):
        w.write(np.full((3, 3, 3), fid, np.uint8), fid)
    assert r.still_intact(k, seq)  # other slots written: slot k untouched
    w.begin_write()  # the writer laps onto slot k
    assert not r.still_intact(k, seq)
    with pytest.raises(ShmError) as info:
        r.read(1)
    assert info.value.code in ("shm_torn", "shm_frame_missing")
    assert r.read()[0] == 3  # the newest complete frame is still there
    w.close()
    r.close()


def test_mark_closed_sets_flag_bit(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 2, "BGR8")
    w = ChannelFile(path, writable=True)
    r = ChannelFile(path, writable=False)
    assert not r.closed_flag
    w.mark_closed()
    assert r.closed_flag
    assert u32(path.read_bytes(), 60) & 1 == 1
    w.close()
    r.close()


# ---------------------------------------------------------------------------------------------
# header validation


def _patched(raw: bytes, fmt: str, off: int, value: int) -> bytes:
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, off, value)
    return bytes(buf)


def _bad(buf: bytes, size: int | None = None) -> ShmError:
    with pytest.raises(ShmError) as info:
        parse_header(buf, len(buf) if size is None else size)
    assert info.value.code == "shm_bad_header", info.value.message
    return info.value


def test_parse_header_accepts_the_real_thing(tmp_path: Path) -> None:
    raw = make(tmp_path, 5, 4, "RGB8", slots=5, origin=1).read_bytes()
    lay = parse_header(raw, len(raw))
    assert lay == Layout(5, 4, "RGB8", 5, 1, 1)


def test_parse_header_rejects_random_bytes() -> None:
    rng = random.Random(3)
    for n in (0, 10, 255, 256, 1000, 8192):
        _bad(bytes(rng.randrange(256) for _ in range(n)))
    _bad(b"P2PSHM\x00\x01" + bytes(rng.randrange(256) for _ in range(500)))


@pytest.mark.parametrize(
    "patch",
    [
        ("8s", 0, b"P2PSHM\x00\x02"),  # magic
        ("<I", 8, 2),  # version
        ("<I", 12, 128),  # header_size
        ("<I", 48, 32),  # slot header size
        ("<I", 24, 3),  # channels disagree with BGRA8
        ("<I", 28, 2),  # dtype disagrees
        ("<I", 32, 44),  # row_stride inconsistent
        ("<I", 52, 192),  # slot_stride inconsistent
        ("<I", 36, 0),  # unknown format code
        ("<I", 36, 9),
        ("<I", 36, 3),  # RGB8 with 4 channels
        ("<I", 40, 2),  # origin
        ("<I", 44, 2),  # too few slots
        ("<I", 44, 17),  # too many slots
        ("<I", 16, 0),  # width 0
        ("<I", 16, 11),  # width no longer matches stride
        ("<I", 20, 0),  # height 0
        ("<I", 20, 1000),  # taller than the file
    ],
)
def test_parse_header_rejects_bad_fields(tmp_path: Path, patch: tuple[str, int, object]) -> None:
    raw = make(tmp_path, 10, 10, "BGRA8").read_bytes()
    fmt, off, value = patch
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, off, value)
    _bad(bytes(buf))


def test_parse_header_rejects_file_shorter_than_header_says(tmp_path: Path) -> None:
    raw = make(tmp_path, 10, 10, "BGRA8").read_bytes()
    _bad(raw[:-1])
    _bad(raw, len(raw) - 64)
    _bad(raw[:256])
    _bad(raw[:255])


def test_channel_file_on_garbage_raises(tmp_path: Path) -> None:
    rng = random.Random(11)
    cases = {
        "empty": b"",
        "short": b"P2PSHM\x00\x01" + bytes(100),
        "random": bytes(rng.randrange(256) for _ in range(4096)),
        "zeros": bytes(4096),
    }
    good = make(tmp_path, 8, 8, "RGBA8").read_bytes()
    cases["truncated"] = good[: len(good) - 1]
    cases["bad-version"] = _patched(good, "<I", 8, 7)
    for name, data in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        for writable in (False, True):
            with pytest.raises(ShmError) as info:
                ChannelFile(path, writable=writable)
            assert info.value.code == "shm_bad_header", name


def test_layout_validate() -> None:
    Layout(640, 480, "BGRA8").validate(640 * 480)
    for layout, code in [
        (Layout(4, 4, "ARGB8"), "shm_bad_format"),
        (Layout(0, 4, "BGR8"), "bad_dimensions"),
        (Layout(70000, 1, "BGR8"), "bad_dimensions"),
        (Layout(100, 100, "BGR8"), "image_too_large"),
        (Layout(4, 4, "BGR8", origin=2), "bad_arguments"),
        (Layout(4, 4, "BGR8", slots=2), "bad_arguments"),
        (Layout(4, 4, "BGR8", slots=17), "bad_arguments"),
    ]:
        with pytest.raises(ShmError) as info:
            layout.validate(9999)
        assert info.value.code == code, layout


# ---------------------------------------------------------------------------------------------
# a writer killed mid-frame (real process, SIGKILL)

KILLED_WRITER = """
import os, signal, sys
from bridge.shm import ChannelFile
ch = ChannelFile(sys.argv[1], writable=True)
k, view = ch.begin_write()
flat = view.reshape(-1)
flat[: flat.size // 2] = 0xEE
sys.stdout.write(str(k))
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_mid_frame(tmp_path: Path) -> None:
    path = make(tmp_path, 32, 16, "BGRA8")
    shape = (16, 32, 4)
    w = ChannelFile(path, writable=True)
    w.write(np.full(shape, 0x11, np.uint8), 1)
    w.write(np.full(shape, 0x22, np.uint8), 2)
    w.close()

    proc = run_python(KILLED_WRITER, str(path))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "2"  # it died inside slot 2

    raw = path.read_bytes()
    slot2 = 256 + 2 * ((64 + 32 * 16 * 4 + 63) // 64 * 64)
    assert u64(raw, slot2) % 2 == 1  # seq left odd
    assert i64(raw, slot2 + 8) == -1
    assert u64(raw, 64) == 2  # the dead write was never published

    r = ChannelFile(path, writable=False)
    with pytest.raises(ShmError) as info:
        r.read(3)
    assert info.value.code in ("shm_torn", "shm_frame_missing")
    # the previous complete frames still read intact
    fid, pixels = r.read()
    assert fid == 2 and (pixels == 0x22).all()
    fid, pixels = r.read(1)
    assert fid == 1 and (pixels == 0x11).all()

    # A new writer recovers: it moves the odd seq to the next odd value, then even.
    w2 = ChannelFile(path, writable=True)
    odd_seq = w2.slot_info(2)[0]
    k, view = w2.begin_write()
    assert k == 2
    assert w2.slot_info(2)[0] == odd_seq + 2
    view[...] = 0x33
    w2.end_write(k, 3)
    assert w2.slot_info(2)[0] == odd_seq + 3
    fid, pixels = r.read(3)
    assert fid == 3 and (pixels == 0x33).all()
    assert r.read()[0] == 3
    assert r.write_count == 3
    # and the ring carries on normally
    w2.write(np.full(shape, 0x44, np.uint8), 4)
    assert (r.read(4)[1] == 0x44).all()
    assert r.read(2)[0] == 2  # slot 1 is overwritten only on the next write
    w2.close()
    r.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_while_overwriting_an_old_frame(tmp_path: Path) -> None:
    path = make(tmp_path, 8, 8, "RGB8")
    w = ChannelFile(path, writable=True)
    for fid in (1, 2, 3):
        w.write(np.full((8, 8, 3), fid, np.uint8), fid)
    w.close()
    proc = run_python(KILLED_WRITER, str(path))
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "0"  # lapped onto frame 1's slot
    r = ChannelFile(path, writable=False)
    with pytest.raises(ShmError) as info:
        r.read(1)  # half overwritten: must never be returned
    assert info.value.code in ("shm_torn", "shm_frame_missing")
    for fid in (2, 3):
        got, pixels = r.read(fid)
        assert got == fid and (pixels == fid).all()
    r.close()


# ---------------------------------------------------------------------------------------------
# concurrency: a writer process racing a reader

RACING_WRITER = """
import sys, time
from bridge.shm import ChannelFile
ch = ChannelFile(sys.argv[1], writable=True)
n = 0
deadline = None
while True:
    n += 1
    k, view = ch.begin_write()
    view[...] = n % 256
    ch.end_write(k, n)
    if deadline is None:
        sys.stdout.write("go\\n")
        sys.stdout.flush()
        deadline = time.monotonic() + float(sys.argv[2])
    elif time.monotonic() > deadline:
        break
sys.stdout.write(f"{n}\\n")
"""


def test_concurrent_reader_never_accepts_a_torn_frame(tmp_path: Path) -> None:
    path = make(tmp_path, 160, 120, "BGRA8")
    r = ChannelFile(path, writable=False)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(RACING_WRITER), str(path), "1.0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "go\n"
        accepted = refused = 0
        seen: set[int] = set()
        while proc.poll() is None:
            try:
                fid, pixels = r.read()
            except ShmError as exc:
                assert exc.code in ("shm_torn", "shm_frame_missing")
                refused += 1
                continue
            lo, hi = int(pixels.min()), int(pixels.max())
            assert lo == hi == fid % 256, f"torn frame {fid}: values {lo}..{hi}"
            accepted += 1
            seen.add(fid)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    written = int(out.strip())
    assert accepted > 0
    assert len(seen) > 1  # frames really changed under the reader
    assert max(seen) <= written
    fid, pixels = r.read()
    assert fid == written and (pixels == written % 256).all()
    r.close()


# ---------------------------------------------------------------------------------------------
# more seqlock cases


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_two_writers_killed_in_the_same_slot(tmp_path: Path) -> None:
    path = make(tmp_path, 8, 4, "RGBA8")
    w = ChannelFile(path, writable=True)
    w.write(np.full((4, 8, 4), 7, np.uint8), 1)
    w.close()
    seqs = []
    for _ in range(2):
        proc = run_python(KILLED_WRITER, str(path))
        assert proc.returncode == -signal.SIGKILL and proc.stdout == "1", proc.stderr
        raw = path.read_bytes()
        seqs.append(u64(raw, 256 + 1 * ((64 + 8 * 4 * 4 + 63) // 64 * 64)))
    assert seqs == [1, 3]  # each dead writer left the slot odd; the second skipped to the next odd value
    r = ChannelFile(path, writable=False)
    assert r.read()[0] == 1
    w = ChannelFile(path, writable=True)
    k, view = w.begin_write()
    assert k == 1 and w.slot_info(1)[0] == 5
    view[...] = 9
    w.end_write(k, 2)
    assert w.slot_info(1)[0] == 6
    fid, pixels = r.read(2)
    assert fid == 2 and (pixels == 9).all()
    w.close()
    r.close()


def test_thread_writer_and_zero_copy_reader_never_see_a_torn_frame(tmp_path: Path) -> None:
    # The daemon's own read path: find_slot, use the view, then still_intact (no read() retries).
    path = make(tmp_path, 128, 96, "RGB8")
    w = ChannelFile(path, writable=True)
    r = ChannelFile(path, writable=False)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        n = 0
        while not stop.is_set() or n < 50:
            n += 1
            k, view = w.begin_write()
            view[: view.shape[0] // 2] = n % 256  # two halves: a torn read would mix values
            view[view.shape[0] // 2 :] = n % 256
            w.end_write(k, n)
        written[0] = n

    t = threading.Thread(target=writer)
    t.start()
    accepted = 0
    attempts = 0
    deadline = time.monotonic() + 20.0  # a loaded machine can tear many reads in a row; keep trying
    try:
        while (attempts < 3000 or accepted == 0) and time.monotonic() < deadline:
            attempts += 1
            if attempts % 64 == 0:
                time.sleep(0.0005)  # let the writer finish a slot so some reads land between writes
            try:
                k, seq = r.find_slot()
            except ShmError as exc:
                assert exc.code in ("shm_torn", "shm_frame_missing")
                continue
            fid = r.slot_info(k)[1]
            copy = r.view(k).copy()
            if not r.still_intact(k, seq):
                continue
            assert copy.min() == copy.max() == fid % 256, f"torn frame {fid}"
            accepted += 1
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    assert accepted > 0
    assert r.write_count == written[0]
    fid, pixels = r.read()
    assert fid == written[0] and (pixels == written[0] % 256).all()
    w.close()
    r.close()


def test_reader_of_a_replaced_file_keeps_its_mapping(tmp_path: Path) -> None:
    # create_channel_file replaces the file by rename: a reader mapped to the old one keeps
    # reading the old frames (and sees the closed flag the daemon sets) instead of crashing.
    path = make(tmp_path, 4, 4, "BGR8")
    w = ChannelFile(path, writable=True)
    w.write(np.full((4, 4, 3), 5, np.uint8), 5)
    r = ChannelFile(path, writable=False)
    w.mark_closed()
    w.close()
    create_channel_file(path, Layout(8, 8, "BGR8", generation=2), "cam")
    assert r.closed_flag
    fid, pixels = r.read(5)
    assert fid == 5 and pixels.shape == (4, 4, 3) and (pixels == 5).all()
    r.close()
    r2 = ChannelFile(path, writable=False)
    assert (r2.layout.width, r2.layout.generation) == (8, 2)
    assert not r2.closed_flag
    assert u32(path.read_bytes(), 56) == 2
    assert not (tmp_path / "cam.in.creating").exists()
    r2.close()


def test_read_only_mapping_refuses_writes(tmp_path: Path) -> None:
    path = make(tmp_path, 2, 2, "BGRA8")
    r = ChannelFile(path, writable=False)
    with pytest.raises(TypeError):
        r.begin_write()
    assert not r.view(0).flags.writeable
    r.close()
    assert u64(path.read_bytes(), 256) == 0


def test_concurrent_writers_of_one_file_take_different_slots(tmp_path: Path) -> None:
    """Several daemon workers answering one channel (Ray engine, --max-batch) never share a slot."""
    path = make(tmp_path, 8, 8, "RGB8")
    w = ChannelFile(path, writable=True)
    k1, v1 = w.begin_write()
    k2, v2 = w.begin_write()  # a second writer while the first is inside its slot
    k3, _ = w.begin_write()
    assert len({k1, k2, k3}) == 3
    with pytest.raises(ShmError) as err:
        w.begin_write()
    assert err.value.code == "shm_busy"
    v1[:] = 1
    v2[:] = 2
    w.end_write(k2, 20)
    w.end_write(k1, 10)
    w.end_write(k3, 30, publish=False)
    r = ChannelFile(path, writable=False)
    assert (r.read(10)[1] == 1).all() and (r.read(20)[1] == 2).all()
    assert w.write_count == 2
    k4, _ = w.begin_write()  # slots are free again
    w.end_write(k4, 40)
    w.close()
    r.close()
