"""Hostile and broken input: each is answered with its documented error code, and afterwards the
same daemon still answers a healthy client's ping and processes a shared-memory frame exactly.

Real daemon subprocess, real UDP/TCP sockets on 127.0.0.1, real files, a real writer process
killed with SIGKILL in the middle of a frame. Nothing is mocked.
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from pythonosc.osc_message import OscMessage as PyOscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.client import BridgeClient
from bridge.osc import OscMessage, encode_bundle, encode_message
from bridge.shm import ChannelFile, ShmError

from conftest import REPO, RunningBridge, start_bridge

W, H = 64, 48
P = "/pose2person"
ERROR = f"{P}/error"
_health_ids = iter(range(100, 10**6))


# -- helpers -----------------------------------------------------------------------------
def pad(raw: bytes) -> bytes:
    return raw + b"\x00" * (4 - len(raw) % 4)


def pyosc(address: str, *typed: tuple[object, str]) -> bytes:
    builder = OscMessageBuilder(address)
    for value, tag in typed:
        builder.add_arg(value, tag)
    return builder.build().dgram


def raw_msg(address: str, tags: str, payload: bytes = b"") -> bytes:
    """Hand-built OSC message (python-osc cannot be told to send arbitrary tags)."""
    return pad(address.encode()) + pad(tags.encode()) + payload


def expect_error(client: BridgeClient, code: str | tuple[str, ...], frame_id: int | None = None,
                 timeout: float = 5.0) -> OscMessage:
    """Wait for ``/pose2person/error`` and check its code (and frame id)."""
    deadline_msgs: list[OscMessage] = []
    while True:
        msg = client.receive(timeout)
        assert msg is not None, f"no error reply (wanted {code}); got {deadline_msgs}"
        if msg.address != ERROR:
            deadline_msgs.append(msg)
            continue
        assert msg.typetags == "iss", msg
        codes = (code,) if isinstance(code, str) else code
        assert msg.args[1] in codes, f"wanted {code}, got {msg.args}"
        if frame_id is not None:
            assert msg.args[0] == frame_id, msg.args
        assert isinstance(msg.args[2], str) and msg.args[2]
        return msg


def invert_bgra(frame: np.ndarray) -> np.ndarray:
    out = 255 - frame
    out[..., 3] = frame[..., 3]
    return out


def assert_healthy(running: RunningBridge, invert: bool = True) -> None:
    """A fresh client gets a pong and an exactly inverted (or untouched) shared-memory frame."""
    assert running.alive(), running.log_text()
    with running.client() as client:
        token = next(_health_ids)
        client.ping(token)
        session = client.open_shm("healthy", W, H, "BGRA8")
        frame_id = next(_health_ids)
        frame = np.random.default_rng(frame_id).integers(0, 256, (H, W, 4), dtype=np.uint8)
        pixels, _ = client.process_shm(session, frame, frame_id)
        assert np.array_equal(pixels, invert_bgra(frame) if invert else frame)
        client.close_shm(session)  # channels belong to their client: each check's would linger otherwise
    assert "Traceback" not in running.log_text(), running.log_text()


@pytest.fixture
def running(tmp_path: Path):  # type: ignore[no-untyped-def]
    daemon = start_bridge(tmp_path, "--model", "invert")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One daemon for the many parametrized cases: each must leave it healthy for the next."""
    daemon = start_bridge(tmp_path_factory.mktemp("shared"), "--model", "invert")
    yield daemon
    daemon.stop()


# -- malformed OSC over UDP --------------------------------------------------------------
def _random_bytes() -> bytes:
    rng = np.random.default_rng(1)
    return b"\x01" + rng.integers(0, 256, 203, dtype=np.uint8).tobytes()


UDP_CASES: list[tuple[str, Callable[[], bytes], str, int | None]] = [
    ("random bytes", _random_bytes, "malformed_packet", -1),
    ("truncated message", lambda: pyosc(f"{P}/frame/shm", ("cam", "s"), (5, "i"))[:-4], "malformed_packet", -1),
    ("truncated bundle", lambda: b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 64)
     + pyosc(f"{P}/ping"), "malformed_packet", -1),
    ("string without NUL", lambda: b"/pose2person/ping", "malformed_packet", -1),
    ("wrong tags for frame/shm", lambda: pyosc(f"{P}/frame/shm", (5, "i"), ("cam", "s")), "bad_arguments", -1),
    ("too many args for ping", lambda: pyosc(f"{P}/ping", (1, "i"), (2, "i")), "bad_arguments", -1),
    ("non-integral float id", lambda: pyosc(f"{P}/frame/path", ("/x.png", "s"), (1.5, "f")), "bad_arguments", -1),
    ("frame/path int only", lambda: pyosc(f"{P}/frame/path", (33, "i")), "bad_arguments", 33),
    ("int64 h", lambda: raw_msg(f"{P}/ping", ",h", struct.pack(">q", 5)), "unsupported_type", -1),
    ("True T", lambda: raw_msg(f"{P}/ping", ",T"), "unsupported_type", -1),
    ("double d", lambda: raw_msg(f"{P}/ping", ",d", struct.pack(">d", 1.0)), "unsupported_type", -1),
    ("unknown address", lambda: pyosc(f"{P}/nope", (1, "i")), "unknown_address", -1),
    ("foreign address", lambda: pyosc("/other/thing"), "unknown_address", -1),
    ("65000-byte packet", lambda: pyosc(f"{P}/ping", (b"\xab" * (65000 - 28), "b")), "bad_arguments", -1),
    ("register port 0", lambda: pyosc(f"{P}/register", (0, "i")), "bad_arguments", -1),
]


@pytest.mark.parametrize("what, make, code, frame_id", UDP_CASES, ids=[c[0] for c in UDP_CASES])
def test_bad_udp_packet(shared: RunningBridge, what: str, make: Callable[[], bytes], code: str,
                        frame_id: int | None) -> None:
    running = shared
    packet = make()
    if what == "65000-byte packet":
        assert len(packet) == 65000
    with running.client() as client:
        client.send_raw(packet)
        reply = expect_error(client, code, frame_id)
        # Error replies stay small enough for oscP5's 1536-byte buffer.
        assert len(reply.args[2]) <= 400  # type: ignore[arg-type]
        # The same socket is still served.
        assert client.ping(5) >= 0
    assert_healthy(running)


def test_bundle_with_one_bad_message_runs_the_good_ones(running: RunningBridge) -> None:
    bundle = b"#bundle\x00" + struct.pack(">Q", 1)
    for msg in (pyosc(f"{P}/ping", (1, "i")), pyosc(f"{P}/nope"), pyosc(f"{P}/ping", (2, "i"))):
        bundle += struct.pack(">i", len(msg)) + msg
    with running.client() as client:
        client.send_raw(bundle)
        got = [client.receive(5) for _ in range(3)]
        assert [(m.address, m.args[:2]) for m in got if m] == [
            (f"{P}/pong", (1,)), (ERROR, (-1, "unknown_address")), (f"{P}/pong", (2,))]
    assert_healthy(running)


# -- TCP framing -------------------------------------------------------------------------
def recv_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("size", [65537, 1 << 30, -4, 0])
def test_tcp_length_prefix_out_of_range_closes(running: RunningBridge, size: int) -> None:
    with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", size) + b"\x00" * 64)
        data = recv_all(sock)  # the bridge answers, then closes the connection
    (n,) = struct.unpack_from(">i", data)
    assert len(data) == 4 + n, "exactly one reply, then EOF"
    m = PyOscMessage(data[4:])
    assert m.address == ERROR and m.params[:2] == [-1, "packet_too_large"]
    assert_healthy(running)


def test_tcp_slip_oversized_frames(running: RunningBridge) -> None:
    ping = pyosc(f"{P}/ping", (3, "i"))
    with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as sock:
        # Over the 65,536-byte limit but within the read buffer: refused, connection kept.
        sock.sendall(b"\xc0" + b"/" * 70000 + b"\xc0" + b"\xc0" + ping + b"\xc0")
        buf = b""
        while buf.count(b"\xc0") < 4:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        frames = [f for f in buf.split(b"\xc0") if f]
        first, second = PyOscMessage(frames[0]), PyOscMessage(frames[1])
        assert first.address == ERROR and first.params[1] == "packet_too_large"
        assert (second.address, second.params) == (f"{P}/pong", [3])
        # A frame that never ends overruns the read buffer: refused and closed.
        sock.sendall(b"/" * 200_000)
        data = recv_all(sock)
        frames = [f for f in data.split(b"\xc0") if f]
        assert len(frames) == 1
        m = PyOscMessage(frames[0])
        assert m.address == ERROR and m.params[1] == "packet_too_large"
    assert_healthy(running)


def test_tcp_malformed_packet_keeps_connection(running: RunningBridge) -> None:
    bad = b"\x01\x02\x03\x04"
    ping = pyosc(f"{P}/ping", (8, "i"))
    with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(bad)) + bad + struct.pack(">i", len(ping)) + ping)
        replies = []
        buf = b""
        while len(replies) < 2:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                n = struct.unpack_from(">i", buf)[0]
                replies.append(PyOscMessage(buf[4:4 + n]))
                buf = buf[4 + n:]
        assert replies[0].address == ERROR and replies[0].params[1] == "malformed_packet"
        assert (replies[1].address, replies[1].params) == (f"{P}/pong", [8])
    assert_healthy(running)


def test_tcp_client_disconnects_mid_packet(running: RunningBridge) -> None:
    ping = pyosc(f"{P}/ping", (1, "i"))
    for partial in (b"\x00\x00", struct.pack(">i", 100) + ping[:12], b"\xc0" + ping[:10]):
        sock = socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
        sock.sendall(partial)
        sock.close()
    # And one that vanishes with an abortive close (RST) mid-packet.
    sock = socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(struct.pack(">i", 500) + b"/pose")
    sock.close()
    assert_healthy(running)


# -- file paths --------------------------------------------------------------------------
def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def huge_png() -> bytes:
    """A valid tiny PNG file whose IHDR claims 100000 x 100000 pixels (CRCs correct)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _setup_path_case(running: RunningBridge, outside: Path, case: str) -> tuple[tuple[object, ...], str]:
    root = running.root
    good = root / "good.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8), "RGB").save(good)
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8), "RGB").save(secret)
    if case == "missing":
        return (str(root / "nope.png"),), "file_not_found"
    if case == "directory":
        (root / "adir").mkdir()
        return (str(root / "adir"),), "file_not_found"
    if case == "corrupt":
        (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
        return (str(root / "corrupt.png"),), "image_decode_failed"
    if case == "truncated":
        data = good.read_bytes()
        (root / "trunc.png").write_bytes(data[: len(data) // 2])
        return (str(root / "trunc.png"),), "image_decode_failed"
    if case == "empty":
        (root / "empty.png").write_bytes(b"")
        return (str(root / "empty.png"),), "image_decode_failed"
    if case == "huge":
        (root / "huge.png").write_bytes(huge_png())
        return (str(root / "huge.png"),), "image_too_large"
    if case == "dotdot":
        return (f"{root}/../{outside.name}/secret.png",), "path_not_allowed"
    if case == "symlink":
        (root / "link.png").symlink_to(secret)
        return (str(root / "link.png"),), "path_not_allowed"
    if case == "symlink dir":
        (root / "linkdir").symlink_to(outside, target_is_directory=True)
        return (str(root / "linkdir" / "secret.png"),), "path_not_allowed"
    if case == "relative":
        return ("good.png",), "path_not_allowed"
    if case == "output outside":
        return (str(good), str(outside / "out.png")), "path_not_allowed"
    if case == "output dotdot":
        return (str(good), f"{root}/../{outside.name}/out.png"), "path_not_allowed"
    if case == "output via symlink dir":
        (root / "outlink").symlink_to(outside, target_is_directory=True)
        return (str(good), str(root / "outlink" / "out.png")), "path_not_allowed"
    if case == "output is symlink":
        (root / "victim.png").symlink_to(secret)
        return (str(good), str(root / "victim.png")), "path_not_allowed"
    if case == "output bad extension":
        return (str(good), str(root / "out.xyz")), "write_failed"
    if case == "output dir missing":
        return (str(good), str(root / "no" / "out.png")), "write_failed"
    raise AssertionError(case)


PATH_CASES = ["missing", "directory", "corrupt", "truncated", "empty", "huge", "dotdot", "symlink", "symlink dir",
              "relative", "output outside", "output dotdot", "output via symlink dir", "output is symlink",
              "output bad extension", "output dir missing"]


@pytest.mark.parametrize("case", PATH_CASES)
def test_bad_path_frame(shared: RunningBridge, case: str) -> None:
    running = shared
    outside = running.root.parent / f"outside-{case.replace(' ', '-')}"
    args, code = _setup_path_case(running, outside, case)
    before = sorted(p.name for p in outside.iterdir())
    secret_bytes = (outside / "secret.png").read_bytes()
    with running.client() as client:
        client.send(f"{P}/frame/path", *args, 41)
        expect_error(client, code, 41)
    # Nothing outside the root was written or replaced.
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.png").read_bytes() == secret_bytes
    assert_healthy(running)


# -- shared memory -----------------------------------------------------------------------
SHM_OPEN_CASES = [
    ("bad format", ("cam", W, H, "YUV420"), "shm_bad_format"),
    ("zero width", ("cam", 0, H, "BGRA8"), "bad_dimensions"),
    ("negative height", ("cam", W, -1, "BGRA8"), "bad_dimensions"),
    ("giant", ("cam", 16384, 16384, "RGBAF32"), "image_too_large"),
    ("bad name slash", ("../etc", W, H, "BGRA8"), "shm_bad_channel"),
    ("bad name space", ("a b", W, H, "BGRA8"), "shm_bad_channel"),
    ("bad name empty", ("", W, H, "BGRA8"), "shm_bad_channel"),
    ("bad name long", ("x" * 65, W, H, "BGRA8"), "shm_bad_channel"),
    ("bad origin", ("cam", W, H, "BGRA8", 2), "bad_arguments"),
    ("missing format", ("cam", W, H), "bad_arguments"),
]


@pytest.mark.parametrize("what, args, code", SHM_OPEN_CASES, ids=[c[0] for c in SHM_OPEN_CASES])
def test_bad_shm_open(shared: RunningBridge, what: str, args: tuple[object, ...], code: str) -> None:
    running = shared
    with running.client() as client:
        client.send(f"{P}/shm/open", *args)
        expect_error(client, code, -1)
    # No channel files were created for the refused request (the health checks close theirs).
    assert sorted(running.shm_dir.iterdir()) == []
    assert_healthy(running)


def test_frame_for_unknown_channel_and_missing_id(running: RunningBridge) -> None:
    with running.client() as client:
        client.send(f"{P}/frame/shm", "never-opened", 5)
        expect_error(client, "shm_unknown_channel", 5)
        session = client.open_shm("ring", W, H, "BGRA8")
        frame = np.full((H, W, 4), 9, np.uint8)
        for fid in (1, 2, 3, 4):
            client.process_shm(session, frame, fid)
        # Frame 1 was overwritten when the writer lapped the 3-slot ring.
        client.send(f"{P}/frame/shm", "ring", 1)
        expect_error(client, "shm_frame_missing", 1)
        client.send(f"{P}/frame/shm", "ring", 777)
        expect_error(client, "shm_frame_missing", 777)
        session.close()
    assert_healthy(running)


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from bridge.shm import ChannelFile, ShmError
    ch = ChannelFile(sys.argv[1], writable=True)
    k, view = ch.begin_write()
    flat = view.reshape(-1)
    flat[: flat.size // 2] = 0x5A
    print(k, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_shm_writer_killed_mid_frame(running: RunningBridge) -> None:
    with running.client() as client:
        session = client.open_shm("dying", W, H, "BGRA8")
        first = np.full((H, W, 4), 3, np.uint8)
        pixels, _ = client.process_shm(session, first, 1)  # slot 0 holds frame 1
        assert np.array_equal(pixels, invert_bgra(first))
        proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(session.input.path)], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        slot = int(proc.stdout.strip())
        assert slot == 1
        # The dead writer left slot 1 odd (being written) and without a frame id.
        seq, fid = struct.unpack_from("<Qq", Path(session.input.path).read_bytes(),
                                      256 + slot * session.input.layout.slot_stride)
        assert seq % 2 == 1 and fid == -1
        client.send(f"{P}/frame/shm", "dying", 2)  # the id the dead writer meant to publish
        expect_error(client, ("shm_torn", "shm_frame_missing"), 2)
        # A new writer recovers the slot; the new frame is processed exactly.
        writer = ChannelFile(session.input.path, writable=True)
        frame = np.random.default_rng(2).integers(0, 256, (H, W, 4), dtype=np.uint8)
        assert writer.write(frame, 3) == slot
        client.send(f"{P}/frame/shm", "dying", 3)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 3)
        _, result = session.output.read(3)
        assert np.array_equal(result, invert_bgra(frame))
        # Frame 1, written before the crash, is still intact and readable too.
        client.send(f"{P}/frame/shm", "dying", 1)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 1)
        writer.close()
        session.close()
    assert_healthy(running)


SEQ_ONLY_WRITER = textwrap.dedent("""
    # A writer following docs/PROTOCOL.md with plain mmap, killed right after its first step
    # (seq made odd), before it marked the slot's old frame id invalid.
    import mmap, os, signal, struct, sys
    with open(sys.argv[1], "r+b") as fh:
        mm = mmap.mmap(fh.fileno(), 0)
    slots, _, slot_stride = struct.unpack_from("<3I", mm, 44)
    write_count = struct.unpack_from("<Q", mm, 64)[0]
    k = write_count % slots
    off = 256 + k * slot_stride
    seq = struct.unpack_from("<Q", mm, off)[0]
    struct.pack_into("<Q", mm, off, seq + 1)
    mm.flush()
    print(k, struct.unpack_from("<q", mm, off + 8)[0], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_shm_writer_killed_holding_an_old_frame_is_torn(running: RunningBridge) -> None:
    with running.client() as client:
        session = client.open_shm("dying2", W, H, "BGRA8")
        frames = {fid: np.full((H, W, 4), fid * 10, np.uint8) for fid in (1, 2, 3)}
        for fid, frame in frames.items():
            client.process_shm(session, frame, fid)
        proc = subprocess.run([sys.executable, "-c", SEQ_ONLY_WRITER, str(session.input.path)], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        slot, old_id = map(int, proc.stdout.split())
        assert (slot, old_id) == (0, 1)  # the ring wrapped: slot 0 still names frame 1
        # Frame 1's slot is mid-write for good: the bridge must not use it.
        client.send(f"{P}/frame/shm", "dying2", 1)
        expect_error(client, "shm_torn", 1)
        # Untouched slots still work; a new writer recovers the dead slot.
        client.send(f"{P}/frame/shm", "dying2", 2)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 2)
        writer = ChannelFile(session.input.path, writable=True)
        frame = np.random.default_rng(4).integers(0, 256, (H, W, 4), dtype=np.uint8)
        assert writer.write(frame, 4) == 0
        client.send(f"{P}/frame/shm", "dying2", 4)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 4)
        _, result = session.output.read(4)
        assert np.array_equal(result, invert_bgra(frame))
        writer.close()
        session.close()
    assert_healthy(running)


def test_shm_garbage_in_the_channel_file(running: RunningBridge) -> None:
    """Random bytes over a channel's ``.in`` header and slot headers, written through the file.

    What the daemon really reads: it parsed the header once at ``shm/open`` and keeps that
    layout, so later it only reads each slot's ``seq``/``frame_id``/``write_index`` and the
    header's ``flags`` word. A fresh mapping of the file (another client) re-parses the header
    and refuses it.
    """
    with running.client() as client:
        session = client.open_shm("garbage", W, H, "BGRA8")
        in_path = Path(session.input.path)
        stride = session.input.layout.slot_stride
        rng = np.random.default_rng(11)
        frames = {fid: rng.integers(0, 256, (H, W, 4), dtype=np.uint8) for fid in (1, 2, 3)}
        for fid, frame in frames.items():  # slots 0, 1, 2 hold frames 1, 2, 3
            pixels, _ = client.process_shm(session, frame, fid)
            assert np.array_equal(pixels, invert_bgra(frame))

        def poke(offset: int, data: bytes) -> None:
            with open(in_path, "r+b") as fh:
                fh.seek(offset)
                fh.write(data)

        # 1. The whole header becomes random bytes (flags word kept clear; see step 3).
        header = bytearray(rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
        assert header[:8] != b"P2PSHM\x00\x01"
        struct.pack_into("<I", header, 60, 0)
        poke(0, bytes(header))
        for writable in (False, True):
            with pytest.raises(ShmError) as err:
                ChannelFile(in_path, writable=writable)
            assert err.value.code == "shm_bad_header"
        # The daemon does not re-read it: the frames in the ring are still served exactly ...
        client.send(f"{P}/frame/shm", "garbage", 3)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 3)
        _, result = session.output.read(3)
        assert np.array_equal(result, invert_bgra(frames[3]))
        # ... and the old mapping can still write: a garbage write_count only picks some slot.
        frame4 = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        slot4 = session.input.write(frame4, 4)
        client.send(f"{P}/frame/shm", "garbage", 4)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 4)
        assert np.array_equal(session.output.read(4)[1], invert_bgra(frame4))

        # 2. Garbage slot headers. The two slots other than slot4 still hold two of frames 1-3.
        others = [k for k in range(3) if k != slot4]
        torn_k, random_k = others
        torn_id = session.input.slot_info(torn_k)[1]
        assert torn_id in frames
        # An odd seq (a writer inside the slot for good) on a slot naming a frame: shm_torn.
        poke(256 + torn_k * stride, struct.pack("<Q", 2**63 + 7))
        client.send(f"{P}/frame/shm", "garbage", torn_id)
        expect_error(client, "shm_torn", torn_id)
        # A slot header of random bytes names no frame the client asks for: shm_frame_missing.
        random_id = session.input.slot_info(random_k)[1]
        slot_garbage = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        poke(256 + random_k * stride, slot_garbage)
        assert struct.unpack_from("<q", slot_garbage, 8)[0] != random_id
        client.send(f"{P}/frame/shm", "garbage", random_id)
        expect_error(client, "shm_frame_missing", random_id)
        client.send(f"{P}/frame/shm", "garbage", 123456)
        expect_error(client, "shm_frame_missing", 123456)
        # A well-formed-looking slot (even seq, a frame id) full of random pixels is a frame as far
        # as anyone can tell: it is processed like one, exactly.
        noise = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        poke(256 + random_k * stride, struct.pack("<QqQQ", 2 * 123457, 99, 1, 10**12))
        poke(256 + random_k * stride + 64, noise.tobytes())
        client.send(f"{P}/frame/shm", "garbage", 99)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 99)
        assert np.array_equal(session.output.read(99)[1], invert_bgra(noise))

        # 3. The closed/superseded bit in the header's flags word is read on every frame: a client
        # that sets it has retired its own channel, and frames are refused as for a closed one.
        poke(60, struct.pack("<I", 0xFFFFFFFF))
        client.send(f"{P}/frame/shm", "garbage", 99)
        expect_error(client, "shm_frame_missing", 99)

        # Recovery: close and re-open gives fresh, valid files; frames work again.
        client.close_shm(session)
        assert not in_path.exists()
        fresh = client.open_shm("garbage", W, H, "BGRA8")
        assert Path(fresh.input.path) != in_path
        frame5 = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        pixels, _ = client.process_shm(fresh, frame5, 5)
        assert np.array_equal(pixels, invert_bgra(frame5))
        fresh.close()
    assert_healthy(running)


@pytest.mark.parametrize("action", ["close", "reopen"])
def test_channel_closed_or_reopened_while_frames_wait(tmp_path: Path, action: str) -> None:
    """Frames pending or in progress on a channel that goes away get a frame error, never ``internal``."""
    daemon = start_bridge(tmp_path, "--model", "throttle:150")
    try:
        with daemon.client() as client:
            session = client.open_shm("cam", W, H, "BGRA8")
            frame = np.full((H, W, 4), 7, np.uint8)
            session.input.write(frame, 1)
            session.input.write(frame, 2)
            client.send(f"{P}/frame/shm", "cam", 1)
            second = encode_message(f"{P}/frame/shm", "cam", 2)
            if action == "close":
                gone = encode_message(f"{P}/shm/close", "cam")
            else:
                gone = encode_message(f"{P}/shm/open", "cam", 32, 24, "BGRA8")
            client.send_raw(encode_bundle([second, gone]))  # both handled in one loop callback
            outcome: dict[int, tuple[str, ...]] = {}
            while len(outcome) < 2:
                m = client.receive(5)
                assert m is not None, outcome
                if m.address == ERROR:
                    outcome[int(m.args[0])] = (str(m.args[1]),)  # type: ignore[arg-type]
                elif m.address == f"{P}/frame/dropped":
                    outcome[int(m.args[0])] = ("dropped",)  # type: ignore[arg-type]
                else:
                    assert m.address in (f"{P}/shm/closed", f"{P}/shm/opened"), m
            # Frame 1 was either running (then its result has nowhere to go) or overtaken by 2.
            assert outcome[1] in (("shm_frame_missing",), ("dropped",))
            assert outcome[2] == ("shm_frame_missing",)
            session.close()
            s = client.status()
            assert s.received == s.processed + s.dropped + s.errors
        assert_healthy(daemon, invert=False)
        assert "internal" not in daemon.log_text()
    finally:
        daemon.stop()


def test_client_vanishes_after_sending_frames(running: RunningBridge) -> None:
    src = running.root / "v.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8), "RGB").save(src)
    with running.client() as client:
        session = client.open_shm("vanish", W, H, "BGRA8")
        frame = np.full((H, W, 4), 1, np.uint8)
        for fid in range(1, 30):
            session.input.write(frame, fid)
            client.send(f"{P}/frame/shm", "vanish", fid)
            client.send(f"{P}/frame/path", str(src), str(running.root / f"v{fid % 3}.png"), fid)
            client.send(f"{P}/status")
        session.close()
    # Its socket is closed: replies bounce (ICMP port unreachable); a TCP client vanishes too.
    sock = socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
    for fid in range(5):
        msg = pyosc(f"{P}/frame/path", (str(src), "s"), (fid, "i"))
        sock.sendall(struct.pack(">i", len(msg)) + msg)
    sock.close()
    assert_healthy(running)
    assert_healthy(running)


# -- --allow-client ----------------------------------------------------------------------
def test_allow_client_excludes_loopback(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--allow-client", "10.0.0.0/8")
    try:
        with daemon.client(timeout=1.0) as client:
            client.send(f"{P}/ping", 1)
            client.send_raw(b"\x01garbage")  # not even errors are answered
            assert client.receive(1.0) is None
        ping = pyosc(f"{P}/ping", (2, "i"))
        with socket.create_connection(("127.0.0.1", daemon.osc_port), timeout=1.0) as sock:
            # Closed at once, unanswered (an unlisted host holds no descriptor of the daemon's).
            try:
                sock.sendall(struct.pack(">i", len(ping)) + ping)
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        assert daemon.alive()
        assert "refused by --allow-client" in daemon.log_text()
    finally:
        daemon.stop()


def test_allow_client_includes_loopback(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--allow-client", "10.0.0.0/8", "--allow-client", "127.0.0.0/8")
    try:
        with daemon.client() as client:
            client.ping(4)
            client.send_raw(b"\x01garbage")
            expect_error(client, "malformed_packet", -1)
    finally:
        daemon.stop()
