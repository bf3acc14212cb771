"""End-to-end round trips through a real daemon: shared memory, file paths and OSC over TCP.

Every daemon is a ``python -m bridge serve`` subprocess on 127.0.0.1; clients use real UDP/TCP
sockets and real files. Expected pixels are computed here from the documented model
semantics (passthrough = unchanged; invert = 255 - colour, alpha kept; float 1.0 - x), and
results are read back independently: shm output slots by parsing the file with ``struct``
per docs/PROTOCOL.md, image files with PIL (the bridge uses OpenCV), TCP replies with
python-osc's parser.
"""

from __future__ import annotations

import mmap
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pythonosc.osc_message import OscMessage as PyOscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.client import BridgeClient, RemoteError
from bridge.shm import ChannelFile

from conftest import RunningBridge, start_bridge, wait_until

W, H = 64, 48
P = "/pose2person"

# name: (channels, dtype, alpha index or None)  -- from docs/PROTOCOL.md "Pixel formats"
FORMATS = {
    "BGRA8": (4, np.uint8, 3),
    "RGBA8": (4, np.uint8, 3),
    "RGB8": (3, np.uint8, None),
    "BGR8": (3, np.uint8, None),
    "RGBAF32": (4, np.dtype("<f4"), 3),
}


# -- independent expectations ------------------------------------------------------------
def expected(model: str, frame: np.ndarray, alpha: int | None) -> np.ndarray:
    if model == "passthrough":
        return frame.copy()
    assert model == "invert"
    if frame.dtype.kind == "f":
        out = (np.float32(1.0) - frame).astype(frame.dtype)
    else:
        out = (255 - frame.astype(np.int32)).astype(np.uint8)
    if alpha is not None:
        out[..., alpha] = frame[..., alpha]
    return out


def make_frame(seed: int, fmt: str) -> np.ndarray:
    ch, dtype, _ = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random((H, W, ch), dtype=np.float32)
    return rng.integers(0, 256, (H, W, ch), dtype=np.uint8)


def read_out_slot(path: str, frame_id: int) -> np.ndarray:
    """Parse a channel file with struct, per the documented layout, and copy the slot of ``frame_id``."""
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            assert mm[0:8] == b"P2PSHM\x00\x01"
            width, height, channels, dtype_code, row_stride = struct.unpack_from("<5I", mm, 16)
            slots, slot_header, slot_stride = struct.unpack_from("<3I", mm, 44)
            assert slot_header == 64
            dtype = np.uint8 if dtype_code == 1 else np.dtype("<f4")
            found = []
            for k in range(slots):
                off = 256 + k * slot_stride
                seq, fid = struct.unpack_from("<Qq", mm, off)
                if fid == frame_id:
                    assert seq % 2 == 0, "slot still being written"
                    raw = mm[off + 64: off + 64 + height * row_stride]
                    found.append(np.frombuffer(raw, dtype=dtype).reshape(height, width, channels).copy())
            assert len(found) == 1, f"frame {frame_id} is in {len(found)} output slots"
            return found[0]
        finally:
            mm.close()


def wait_msg(client: BridgeClient, address: str, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    return client.wait_for(lambda m: m.address == address, timeout)


# -- shared memory -----------------------------------------------------------------------
@pytest.fixture(params=["passthrough", "invert"])
def model_bridge(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    running = start_bridge(tmp_path, "--model", request.param)
    yield request.param, running
    running.stop()


SHM_CASES = [(fmt, 0) for fmt in FORMATS] + [("RGBAF32", 1), ("BGRA8", 1)]


def test_shm_round_trip_all_formats(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    with running.client() as client:
        for n, (fmt, origin) in enumerate(SHM_CASES):
            name = f"cam-{fmt}-{origin}"
            session = client.open_shm(name, W, H, fmt, origin)
            try:
                assert (session.width, session.height, session.format) == (W, H, fmt)
                assert Path(session.input.path).parent == running.shm_dir.resolve()
                # Header written by the bridge says what we asked for (origin included).
                raw = Path(session.input.path).read_bytes()[:64]
                assert struct.unpack_from("<I", raw, 40)[0] == origin
                # Five frames go round the 3-slot ring more than once.
                for i in range(5):
                    frame_id = 1000 * n + i + 1
                    frame = make_frame(frame_id, fmt)
                    pixels, latency = client.process_shm(session, frame, frame_id)
                    want = expected(model, frame, FORMATS[fmt][2])
                    assert latency >= 0.0
                    assert pixels.dtype == want.dtype and pixels.shape == (H, W, FORMATS[fmt][0])
                    assert np.array_equal(pixels, want), f"{model} {fmt} origin {origin} frame {frame_id}"
                    assert np.array_equal(read_out_slot(str(session.output.path), frame_id), want)
            finally:
                client.close_shm(session)


def test_shm_invert_known_values(invert_bridge: RunningBridge) -> None:
    """Hand-picked pixels, so the expectation does not even depend on the helper above."""
    with invert_bridge.client() as client:
        session = client.open_shm("known", W, H, "BGRA8")
        frame = np.zeros((H, W, 4), np.uint8)
        frame[0, 0] = (0, 10, 200, 77)
        frame[47, 63] = (255, 128, 1, 0)
        pixels, _ = client.process_shm(session, frame, 7)
        assert tuple(pixels[0, 0]) == (255, 245, 55, 77)
        assert tuple(pixels[47, 63]) == (0, 127, 254, 0)
        assert tuple(pixels[10, 10]) == (255, 255, 255, 0)
        session_f = client.open_shm("knownf", W, H, "RGBAF32", 1)
        framef = np.zeros((H, W, 4), np.float32)
        framef[0, 0] = (0.25, 0.5, 1.0, 0.75)
        pixels, _ = client.process_shm(session_f, framef, 8)
        assert tuple(pixels[0, 0]) == (0.75, 0.5, 0.0, 0.75)
        assert tuple(pixels[1, 1]) == (1.0, 1.0, 1.0, 0.0)


def test_shm_reopen_other_size_makes_new_files_and_removes_old(bridge: RunningBridge) -> None:
    with bridge.client() as client:
        first = client.open_shm("cam", W, H, "BGRA8")
        old_in, old_out = Path(first.input.path), Path(first.output.path)
        assert old_in.exists() and old_out.exists()
        assert old_in.name == f"pose2person-{bridge.osc_port}-cam-g1.in"
        assert old_out.name == f"pose2person-{bridge.osc_port}-cam-g1.out"
        # Same geometry: the same files.
        again = client.open_shm("cam", W, H, "BGRA8")
        assert (Path(again.input.path), Path(again.output.path)) == (old_in, old_out)
        again.close()
        # Another size: a new generation, new names; old files gone and flagged closed.
        second = client.open_shm("cam", 32, 24, "BGRA8")
        new_in, new_out = Path(second.input.path), Path(second.output.path)
        assert new_in.name == f"pose2person-{bridge.osc_port}-cam-g2.in"
        assert new_out.name == f"pose2person-{bridge.osc_port}-cam-g2.out"
        assert new_in.exists() and new_out.exists()
        assert not old_in.exists() and not old_out.exists()
        assert first.input.closed_flag and first.output.closed_flag
        assert not second.input.closed_flag
        first.close()
        frame = make_frame(3, "BGRA8")[:24, :32].copy()
        pixels, _ = client.process_shm(second, frame, 3)
        assert np.array_equal(pixels, frame)
        # Close: reply, files deleted, channel unknown afterwards.
        client.close_shm(second)
        assert not new_in.exists() and not new_out.exists()
        assert sorted(p.name for p in bridge.shm_dir.iterdir()) == []
        client.send(f"{P}/frame/shm", "cam", 4)
        with pytest.raises(RemoteError) as err:
            wait_msg(client, f"{P}/frame/ready")
        assert err.value.code == "shm_unknown_channel" and err.value.frame_id == 4
        client.send(f"{P}/shm/close", "cam")
        with pytest.raises(RemoteError) as err:
            wait_msg(client, f"{P}/shm/closed")
        assert err.value.code == "shm_unknown_channel"


# -- file paths --------------------------------------------------------------------------
def rgba_image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 4), dtype=np.uint8)


def test_path_png_with_alpha_explicit_output(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    rgba = rgba_image(1)
    src = running.root / "in_alpha.png"
    Image.fromarray(rgba, "RGBA").save(src)
    dst = running.root / "sub" / "result.png"
    dst.parent.mkdir()
    with running.client() as client:
        done = client.process_path(str(src), str(dst), frame_id=11)
    assert (done.frame_id, done.output_path, done.width, done.height) == (11, str(dst), W, H)
    assert done.latency_ms >= 0
    with Image.open(dst) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (W, H)
        out = np.asarray(im)
    want = rgba.copy()
    if model == "invert":
        want[..., :3] = 255 - rgba[..., :3]
    assert np.array_equal(out, want)
    # No temporary files left beside the output.
    assert sorted(p.name for p in dst.parent.iterdir()) == ["result.png"]


def test_path_png_without_alpha_default_output(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    rgb = rgba_image(2)[..., :3].copy()
    src = running.root / "photo.v1.png"
    Image.fromarray(rgb, "RGB").save(src)
    with running.client() as client:
        done = client.process_path(str(src), frame_id=12)
    default = running.root / "photo.v1.pose2person.png"
    assert done.output_path == str(default) and (done.width, done.height) == (W, H)
    with Image.open(default) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), 255 - rgb if model == "invert" else rgb)
    # The input is untouched.
    with Image.open(src) as im:
        assert np.array_equal(np.asarray(im), rgb)


def test_path_passthrough_png_and_auto_ids(bridge: RunningBridge) -> None:
    rgba = rgba_image(3)
    src = bridge.root / "pass.png"
    Image.fromarray(rgba, "RGBA").save(src)
    dst = bridge.root / "pass_out.png"
    with bridge.client() as client:
        # Without a frame id the bridge assigns one (counting up from 1).
        client.send(f"{P}/frame/path", str(src), str(dst))
        m = wait_msg(client, f"{P}/frame/done")
        assert m.args[0] == 1 and m.args[1] == str(dst)
        client.send(f"{P}/frame/path", str(src))
        m = wait_msg(client, f"{P}/frame/done")
        assert m.args[0] == 2 and m.args[1] == str(bridge.root / "pass.pose2person.png")
    with Image.open(dst) as im:
        assert np.array_equal(np.asarray(im), rgba)


def test_path_jpg_output(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    # Flat 8x8-aligned colour blocks survive JPEG almost exactly; alpha is dropped.
    rgba = np.zeros((H, W, 4), np.uint8)
    colours = [(200, 30, 60), (10, 220, 100), (90, 90, 250)]
    for i, c in enumerate(colours):
        rgba[:, i * 16:(i + 1) * 16, :3] = c
    rgba[:, 48:, :3] = (128, 128, 128)
    rgba[..., 3] = 255
    src = running.root / "blocks.png"
    Image.fromarray(rgba, "RGBA").save(src)
    dst = running.root / "blocks.jpg"
    with running.client() as client:
        done = client.process_path(str(src), str(dst), frame_id=13)
    assert done.output_path == str(dst)
    assert dst.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(dst) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (W, H)
        out = np.asarray(im).astype(int)
    want = rgba[..., :3].astype(int)
    if model == "invert":
        want = 255 - want
    # Block interiors (away from the chroma-subsampled edges) are within JPEG rounding.
    for x0 in (0, 16, 32, 48):
        block_out = out[8:40, x0 + 4:x0 + 12]
        block_want = want[8:40, x0 + 4:x0 + 12]
        assert np.abs(block_out - block_want).max() <= 3, f"block at x={x0}"


# -- OSC over TCP ------------------------------------------------------------------------
def pyosc(address: str, *typed: tuple[object, str]) -> bytes:
    builder = OscMessageBuilder(address)
    for value, tag in typed:
        builder.add_arg(value, tag)
    return builder.build().dgram


def slip(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def recv_prefixed(sock: socket.socket) -> PyOscMessage:
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    assert 0 < size < 65536
    return PyOscMessage(recv_exact(sock, size))


def recv_slip(sock: socket.socket, buf: bytearray) -> PyOscMessage:
    while True:
        while buf[:1] == b"\xc0":
            del buf[:1]
        end = buf.find(b"\xc0")
        if end > 0:
            frame = bytes(buf[:end])
            del buf[:end + 1]
            return PyOscMessage(frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb"))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def test_tcp_length_prefixed_ping_and_path(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    rgb = rgba_image(4)[..., :3].copy()
    src = running.root / "tcp_in.png"
    dst = running.root / "tcp_out.png"
    Image.fromarray(rgb, "RGB").save(src)
    with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as sock:
        for packet in (pyosc(f"{P}/ping", (77, "i")), pyosc(f"{P}/ping")):
            sock.sendall(struct.pack(">i", len(packet)) + packet)
        pong = recv_prefixed(sock)
        assert (pong.address, pong.params) == (f"{P}/pong", [77])
        pong = recv_prefixed(sock)
        assert (pong.address, pong.params) == (f"{P}/pong", [])
        packet = pyosc(f"{P}/frame/path", (str(src), "s"), (str(dst), "s"), (21, "i"))
        sock.sendall(struct.pack(">i", len(packet)) + packet)
        done = recv_prefixed(sock)
        assert done.address == f"{P}/frame/done"
        assert done.params[:4] == [21, str(dst), W, H]
    with Image.open(dst) as im:
        assert np.array_equal(np.asarray(im), expected(model, rgb, None))


def test_tcp_slip_ping_and_path(model_bridge: tuple[str, RunningBridge]) -> None:
    model, running = model_bridge
    rgba = rgba_image(5)
    src = running.root / "slip_in.png"
    dst = running.root / "slip_out.png"
    Image.fromarray(rgba, "RGBA").save(src)
    token = 0x00C0DB00  # SLIP END and ESC bytes inside the packet must be escaped both ways
    with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as sock:
        buf = bytearray()
        sock.sendall(slip(pyosc(f"{P}/ping", (token, "i"))))
        pong = recv_slip(sock, buf)
        assert (pong.address, pong.params) == (f"{P}/pong", [token])
        # Two frames in one write: the framer must split them.
        sock.sendall(slip(pyosc(f"{P}/ping", (1, "i"))) + slip(pyosc(f"{P}/frame/path", (str(src), "s"),
                                                                      (str(dst), "s"), (22, "i"))))
        pong = recv_slip(sock, buf)
        assert (pong.address, pong.params) == (f"{P}/pong", [1])
        done = recv_slip(sock, buf)
        assert done.address == f"{P}/frame/done" and done.params[:4] == [22, str(dst), W, H]
    with Image.open(dst) as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im), expected(model, rgba, 3))


# -- control plane -----------------------------------------------------------------------
def test_model_switch_models_list_and_frames_follow(bridge: RunningBridge) -> None:
    with bridge.client() as client:
        assert client.model() == "passthrough"
        names = client.models()
        assert names[:3] == ["passthrough", "invert", "throttle"]
        session = client.open_shm("sw", W, H, "RGBA8")
        frame = make_frame(9, "RGBA8")
        pixels, _ = client.process_shm(session, frame, 1)
        assert np.array_equal(pixels, frame)
        assert client.set_model("invert", timeout=10) == "invert"
        assert client.model() == "invert"
        pixels, _ = client.process_shm(session, frame, 2)
        assert np.array_equal(pixels, expected("invert", frame, 3))
        # An unknown model is refused and the active one stays.
        client.send(f"{P}/model", "no-such-model")
        with pytest.raises(RemoteError) as err:
            wait_msg(client, f"{P}/model/ready")
        assert err.value.code == "unknown_model"
        assert client.model() == "invert"
        # A known model that fails to load: refused after the attempt, the active one stays.
        client.send(f"{P}/model", "throttle:abc")
        with pytest.raises(RemoteError) as err:
            wait_msg(client, f"{P}/model/ready")
        assert err.value.code == "model_load_failed"
        assert client.model() == "invert"
        pixels, _ = client.process_shm(session, frame, 4)
        assert np.array_equal(pixels, expected("invert", frame, 3))
        assert client.set_model("passthrough", timeout=10) == "passthrough"
        pixels, _ = client.process_shm(session, frame, 3)
        assert np.array_equal(pixels, frame)


def test_status_counters(bridge: RunningBridge) -> None:
    with bridge.client() as client:
        s = client.status()
        assert (s.received, s.processed, s.dropped, s.errors, s.model) == (0, 0, 0, 0, "passthrough")
        session = client.open_shm("st", W, H, "BGR8")
        for i in range(4):
            client.process_shm(session, make_frame(i, "BGR8"), i + 1)
        # A frame id that is not in the ring: received, then an error.
        client.send(f"{P}/frame/shm", "st", 999)
        with pytest.raises(RemoteError) as err:
            wait_msg(client, f"{P}/frame/ready")
        assert err.value.code == "shm_frame_missing" and err.value.frame_id == 999
        s = client.status()
        assert (s.received, s.processed, s.dropped, s.errors) == (5, 4, 0, 1)
        assert s.fps > 0 and s.mean_latency_ms > 0 and s.p95_latency_ms > 0
        assert s.model == "passthrough"


def test_ping_with_and_without_token(bridge: RunningBridge) -> None:
    with bridge.client() as client:
        client.send(f"{P}/ping")
        m = wait_msg(client, f"{P}/pong")
        assert m.typetags == "" and m.args == ()
        client.send(f"{P}/ping", 123456)
        m = wait_msg(client, f"{P}/pong")
        assert m.typetags == "i" and m.args == (123456,)
        # Pd sends numbers as floats: an integral float token is accepted and echoed as int.
        client.send(f"{P}/ping", 42.0)
        m = wait_msg(client, f"{P}/pong")
        assert m.args == (42,)


def test_register_routes_replies_to_another_socket(bridge: RunningBridge) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    reply_port = listener.getsockname()[1]
    try:
        with bridge.client(timeout=0.5) as sender, bridge.client() as other:
            sender.send(f"{P}/register", reply_port)
            data, _ = listener.recvfrom(65536)
            m = PyOscMessage(data)
            assert (m.address, m.params) == (f"{P}/registered", [reply_port])
            sender.send(f"{P}/ping", 9)
            data, _ = listener.recvfrom(65536)
            m = PyOscMessage(data)
            assert (m.address, m.params) == (f"{P}/pong", [9])
            # Nothing reached the sender's own socket.
            assert sender.receive(0.3) is None
            # An unregistered sender on the same host still gets replies at its own port.
            assert other.ping(10) >= 0
            # Shared-memory frame replies follow the registration too.
            sender.send(f"{P}/shm/open", "reg", W, H, "BGRA8")
            data, _ = listener.recvfrom(65536)
            opened = PyOscMessage(data)
            assert opened.address == f"{P}/shm/opened"
            ch_in = ChannelFile(opened.params[1], writable=True)
            frame = make_frame(5, "BGRA8")
            ch_in.write(frame, 5)
            sender.send(f"{P}/frame/shm", "reg", 5)
            data, _ = listener.recvfrom(65536)
            ready = PyOscMessage(data)
            assert ready.address == f"{P}/frame/ready" and ready.params[:2] == ["reg", 5]
            assert np.array_equal(read_out_slot(opened.params[2], 5), frame)
            ch_in.close()
    finally:
        listener.close()


@pytest.mark.parametrize("framing", ["length-prefix", "slip"])
def test_tcp_half_close_still_gets_its_answers(invert_bridge: RunningBridge, framing: str) -> None:
    """A client that sends its requests and then shuts down its sending side (``nc -N``, liblo's
    one-shot ``oscsend osc.tcp://``) still gets every frame processed and answered."""
    rgb = rgba_image(6)[..., :3].copy()
    src = invert_bridge.root / "half_in.png"
    Image.fromarray(rgb, "RGB").save(src)
    with invert_bridge.client() as udp:
        session = udp.open_shm("half", W, H, "RGB8")
        shm_frame = make_frame(31, "RGB8")
        session.input.write(shm_frame, 31)
        packets = [pyosc(f"{P}/ping", (1, "i")),
                   pyosc(f"{P}/frame/path", (str(src), "s"), (str(invert_bridge.root / "half_out.png"), "s"),
                         (30, "i")),
                   # Another socket than the one that opened the channel: it names it by the handle.
                   pyosc(f"{P}/frame/shm", (session.name, "s"), (31, "i"))]
        with socket.create_connection(("127.0.0.1", invert_bridge.osc_port), timeout=5) as sock:
            if framing == "slip":
                sock.sendall(b"".join(slip(p) for p in packets))
            else:
                sock.sendall(b"".join(struct.pack(">i", len(p)) + p for p in packets))
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        if framing == "slip":
            frames = [f.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
                      for f in data.split(b"\xc0") if f]
        else:
            frames = []
            while data:
                n = struct.unpack_from(">i", data)[0]
                frames.append(data[4:4 + n])
                data = data[4 + n:]
        replies = {PyOscMessage(f).address: PyOscMessage(f).params for f in frames}
        assert len(frames) == 3
        assert replies[f"{P}/pong"] == [1]
        assert replies[f"{P}/frame/done"][:4] == [30, str(invert_bridge.root / "half_out.png"), W, H]
        assert replies[f"{P}/frame/ready"][:2] == [session.name, 31]
        with Image.open(invert_bridge.root / "half_out.png") as im:
            assert np.array_equal(np.asarray(im), 255 - rgb)
        assert np.array_equal(read_out_slot(str(session.output.path), 31), expected("invert", shm_frame, None))
        s = udp.status()
        assert (s.processed, s.dropped) == (2, 0)
        session.close()


def test_tcp_client_that_drops_mid_packet_loses_its_waiting_shm_frame(tmp_path: Path) -> None:
    """A TCP client that vanishes mid-packet: its shm frame still waiting in the mailbox is dropped,
    not processed for nobody (shm frames are keyed by client and channel)."""
    from bridge.osc import encode_message

    daemon = start_bridge(tmp_path, "--model", "throttle:400")
    try:
        with daemon.client() as control:
            session = control.open_shm("tcpcam", W, H, "BGRA8")
            frame = make_frame(3, "BGRA8")
            session.input.write(frame, 1)
            session.input.write(frame, 2)
            with socket.create_connection(("127.0.0.1", daemon.osc_port), timeout=5) as sock:
                for fid in (1, 2):  # 1 starts its 400 ms run, 2 waits in the mailbox
                    packet = encode_message(f"{P}/frame/shm", session.name, fid)  # the handle: another socket
                    sock.sendall(struct.pack(">i", len(packet)) + packet)
                    if fid == 1:  # let the worker take 1 first, so 2 does not overtake it
                        assert wait_until(lambda: control.status().received == 1)
                        time.sleep(0.2)
                sock.sendall(struct.pack(">i", 64) + b"/pos")  # then vanish mid-packet
            def settled() -> bool:  # frame 1's run is over and every frame is accounted for
                s = control.status()
                return s.processed + s.dropped + s.errors == 2

            assert wait_until(settled, timeout=10)
            status = control.status()
            assert status.received == 2
            assert (status.processed, status.dropped, status.errors) == (1, 1, 0)
            session.close()
    finally:
        daemon.stop()


def test_zero_copy_client_write_and_read(invert_bridge: RunningBridge) -> None:
    """writing_shm fills the input slot in place; result_view reads the output slot in place."""
    frame = make_frame(11, "BGRA8")
    with invert_bridge.client() as client:
        session = client.open_shm("zc", W, H, "BGRA8")
        with client.writing_shm(session, 5) as buf:
            buf[...] = frame
        wait_msg(client, f"{P}/frame/ready")
        with client.result_view(session, 5) as view:
            assert not view.flags.writeable  # the client maps the output file read-only
            got = view.copy()
        assert np.array_equal(got, expected("invert", frame, 3))  # BGRA: alpha kept
        # A block that fails publishes nothing and announces nothing.
        with pytest.raises(RuntimeError):
            with client.writing_shm(session, 6) as buf:
                buf[...] = 0
                raise RuntimeError("camera unplugged")
        with pytest.raises(RemoteError) as err:
            with client.result_view(session, 6):
                pass
        assert err.value.code == "shm_frame_missing"
        assert client.receive(0.3) is None
        session.close()
