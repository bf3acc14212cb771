"""Fuzzing, the test-suite size: bench/fuzz.py's harness against a real daemon with a few thousand
generated cases, the codecs fuzzed in-process with hypothesis, and one regression test for each
defect the fuzzer found (named after it).

The bench run (docs/BENCHMARKS.md, "Fuzzing and fault injection") uses the same harness with
100,000 packets and 10,000 corrupted channel files.
"""

from __future__ import annotations

import mmap

import os
import struct
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.client import BridgeClient
from bridge.errors import ClientError
from bridge.pose.keypoints import parse_keypoint_args
from bridge.osc import OscDecodeError, decode_packet
from bridge.shm import ChannelFile, Layout, ShmError, create_channel_file, parse_header
from bridge.transports.wsframe import parse_frame

from conftest import REPO, RunningBridge, start_bridge

sys.path.insert(0, str(REPO / "bench"))
import fuzz  # noqa: E402  (bench/fuzz.py)

P = "/pose2person"
QUICK = settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path_factory.mktemp("fuzz"), "--model", "invert", "--max-pixels", "1048576",
                           "--rate-limit", "0", http=True)  # the fuzzer alone exceeds the per-host limit
    yield running
    running.stop()


def target(running: RunningBridge) -> fuzz.Target:
    return fuzz.Target(running.osc_port, running.http_port, running.root, running.alive, running.log_text)


# -- the harness against a running daemon --------------------------------------------------------
def test_fuzzed_packets_and_channel_files(daemon: RunningBridge) -> None:
    """2,500 packets over UDP, TCP (both framings) and WebSocket, 1,000 corrupted channel files: no
    crash, no hang, every case answered with documented codes, the healthy client served throughout."""
    results = fuzz.fuzz(target(daemon), packets=2500, shm=1000, seed_=8, healthy_every=50)
    assert results.defects() == [], results.table()
    assert results.osc_packets == 2500 and results.total >= 3500
    assert {"udp structured", "udp mutated", "udp random", "tcp-len structured", "tcp-slip mutated",
            "ws structured", "ws ws-frame"} <= set(results.cases)
    assert len(results.healthy_ms) >= 60
    # The fuzzer reached deep: argument errors, shm errors and accepted frames all occurred.
    assert {"malformed_packet", "unsupported_type", "unknown_address", "bad_arguments", "shm_frame_missing",
            "ws_bad_frame"} <= set(results.errors)
    assert results.replies[f"{P}/frame/ready"] > 100
    assert daemon.alive() and "Traceback" not in daemon.log_text()


def test_expected_codes_oracle() -> None:
    """The harness's own idea of the protocol (written apart from bridge/daemon/control.py)."""
    assert fuzz.expected_codes(f"{P}/ping", "d", [None]) == {"unsupported_type"}
    assert fuzz.expected_codes(f"{P}/nope", "", []) == {"unknown_address"}
    assert fuzz.expected_codes(f"{P}/ping", "ii", [1, 2]) == {"bad_arguments"}
    assert fuzz.expected_codes(f"{P}/frame/shm", "sf", ["c", 2.0]) is None  # an integral float is an int
    assert fuzz.expected_codes(f"{P}/frame/shm", "sf", ["c", 2.5]) == {"bad_arguments"}
    assert fuzz.expected_codes(f"{P}/frame/shm", "sf", ["c", float("nan")]) == {"bad_arguments"}
    assert fuzz.expected_codes(f"{P}/keypoints", "s", ["coco17"]) is None  # variadic: checked by content


# -- the codecs in-process: only their documented exception, for any input --------------------------
@QUICK
@given(st.binary(max_size=512))
def test_osc_decoder_raises_only_decode_errors(data: bytes) -> None:
    try:
        decode_packet(data)
    except OscDecodeError as exc:
        assert exc.code in ("malformed_packet", "unsupported_type")


@QUICK
@given(fuzz.mutated_packet("/tmp/root"))
def test_osc_decoder_on_mutated_packets(case: fuzz.Case) -> None:
    try:
        messages = decode_packet(case.packet)
    except OscDecodeError as exc:
        assert exc.code in ("malformed_packet", "unsupported_type")
    else:
        assert all(m.address.startswith("/") for m in messages)


@QUICK
@given(st.binary(min_size=256, max_size=256), st.integers(0, 1 << 20))
def test_shm_header_parser_raises_only_bad_header(head: bytes, size: int) -> None:
    try:
        layout = parse_header(head, size)
    except ShmError as exc:
        assert exc.code == "shm_bad_header"
    else:
        assert layout.file_size <= size


@QUICK
@given(st.binary(max_size=96))
def test_ws_frame_parser_raises_only_client_errors(data: bytes) -> None:
    try:
        parse_frame(b"P2PF" + data, 1 << 20)
    except ClientError as exc:
        assert exc.code in ("ws_bad_frame", "bad_dimensions", "image_too_large")


@QUICK
@given(st.lists(st.one_of(st.integers(-(2**31), 2**31 - 1), st.floats(width=32), st.text(max_size=8)),
                max_size=60))
def test_keypoint_parser_raises_only_client_errors(args: list[object]) -> None:
    try:
        parse_keypoint_args(["coco17", *args])  # type: ignore[list-item]
    except ClientError as exc:
        assert exc.code in ("bad_keypoints", "bad_dimensions")


# -- regressions: one per defect the fuzzer found ------------------------------------------------
def _frame(value: int) -> np.ndarray:
    return np.full((12, 16, 4), value, np.uint8)


def _inverted(value: int) -> np.ndarray:
    out = np.full((12, 16, 4), 255 - value, np.uint8)
    out[..., 3] = value
    return out


def _client(running: RunningBridge) -> BridgeClient:
    """A client registered by sender: the fuzz run left a ``/register/host`` pointing elsewhere."""
    client = BridgeClient("127.0.0.1", running.osc_port, timeout=10)
    client.register(client.sock.getsockname()[1])
    return client


def _healthy(running: RunningBridge) -> None:
    with _client(running) as client:
        client.ping(77)
        session = client.open_shm("after", 16, 12, "BGRA8")
        pixels, _ = client.process_shm(session, _frame(9), 901)
        assert np.array_equal(pixels, _inverted(9))
        client.close_shm(session)
    assert running.alive() and "Traceback" not in running.log_text()


@pytest.mark.parametrize("which", ["in", "out"])
def test_truncated_channel_file_is_an_error_not_sigbus(daemon: RunningBridge, which: str) -> None:
    """Found by the fuzzer: a client that truncated a channel file (``open(path, "wb")`` by mistake)
    killed the daemon with SIGBUS on its next read or write through the mapping."""
    with _client(daemon) as client:
        session = client.open_shm(f"trunc-{which}", 16, 12, "BGRA8")
        client.process_shm(session, _frame(3), 1)
        path = session.input.path if which == "in" else session.output.path
        os.chmod(path, 0o600)  # .out is read-only on disk: a client must mean it (root need not)
        with open(path, "r+b") as fh:  # what open(path, "wb") does, and a little header left
            fh.truncate(300)
        session.input.close()
        writer = None
        if which == "out":  # the client can still write its (intact) input
            writer = ChannelFile(Path(str(path).replace(".out", ".in")), writable=True)
            writer.write(_frame(4), 2)
        client.send(f"{P}/frame/shm", f"trunc-{which}", 2 if which == "out" else 1)
        reply = client.wait_for(lambda m: m.address == f"{P}/error", 10)
        assert reply.args[1] == "shm_bad_header" and "truncated" in str(reply.args[2]), reply
        # Closing the broken channel works, and a fresh one serves again.
        client.request(f"{P}/shm/close", (f"trunc-{which}",), f"{P}/shm/closed")
        if writer is not None:
            writer.close()
        session.output.close()
    _healthy(daemon)


def test_keypoints_into_a_truncated_output_file(daemon: RunningBridge) -> None:
    """Found with the truncation fix: a keypoint picture for a channel whose ``.out`` file was cut
    short was answered ``internal`` (the shm error escaped the job) instead of the shm code."""
    with _client(daemon) as client:
        session = client.open_shm("kp-trunc", 16, 12, "RGB8")
        client.request(f"{P}/keypoints/target", ("kp-trunc",), f"{P}/keypoints/target")
        os.chmod(session.output.path, 0o600)
        with open(session.output.path, "r+b") as fh:
            fh.truncate(200)
        client.send(f"{P}/keypoints", "coco17", 8, 16, 12, *([0.5, 0.5, 1.0] * 17))
        reply = client.wait_for(lambda m: m.address == f"{P}/error", 10)
        assert reply.args[:2] == (8, "shm_bad_header"), reply
        client.request(f"{P}/shm/close", ("kp-trunc",), f"{P}/shm/closed")
        session.close()
    _healthy(daemon)


def test_wrapped_seq_counters_in_the_output_file(daemon: RunningBridge) -> None:
    """Found by the fuzzer: an output slot whose seq (or the write count) a client had set to
    2**64 - 1 made the daemon's writer overflow the u64 (``struct.error``: answered ``internal``)."""
    with _client(daemon) as client:
        session = client.open_shm("wrap", 16, 12, "BGRA8")
        out_path = session.output.path
        stride = session.output.layout.slot_stride
        assert out_path.stat().st_mode & 0o777 == 0o400  # read-only for clients ...
        os.chmod(out_path, 0o600)  # ... unless one insists
        with open(out_path, "r+b") as fh:
            fh.seek(64)
            fh.write(struct.pack("<Q", 2**64 - 1))  # write_count: the next slot is (2**64 - 1) % 3 = 0
            fh.seek(256)
            fh.write(struct.pack("<Q", 2**64 - 1))  # slot 0's seq: odd, "a writer died inside"
        for fid, value in ((1, 5), (2, 6)):
            pixels, _ = client.process_shm(session, _frame(value), fid)
            assert np.array_equal(pixels, _inverted(value))
        client.close_shm(session)
    _healthy(daemon)


def test_channel_file_counters_wrap_not_overflow(tmp_path: Path) -> None:
    path = tmp_path / "c.in"
    create_channel_file(path, Layout(2, 2, "RGB8"), "c")
    with open(path, "r+b") as fh:
        fh.seek(64)
        fh.write(struct.pack("<Q", 2**64 - 1))
        fh.seek(256)
        fh.write(struct.pack("<Q", 2**64 - 1))
    ch = ChannelFile(path, writable=True)
    assert ch.write(np.ones((2, 2, 3), np.uint8), 7) == 0
    seq, fid, _ts, windex = ch.slot_info(0)
    assert (seq, fid, windex) == (2, 7, 0) and ch.write_count == 0  # 2**64 - 1 + 2 wraps to 1, then 2
    assert ch.read(7)[0] == 7
    ch.close()


def test_keypoint_frames_obey_max_pixels(daemon: RunningBridge) -> None:
    """Found by the fuzzer: keypoint frames were drawn at any size up to 16384x16384 whatever
    --max-pixels said (seconds of worker time and gigabytes for one message)."""
    with _client(daemon) as client:
        client.request(f"{P}/keypoints/target/path", (str(daemon.root / "kp.png"),), f"{P}/keypoints/target")
        client.send(f"{P}/keypoints", "coco17", 5, 4096, 4096, *([0.5, 0.5, 1.0] * 17))
        reply = client.wait_for(lambda m: m.address == f"{P}/error", 10)
        assert reply.args[:2] == (5, "image_too_large"), reply
        client.send(f"{P}/keypoints", "coco17", 6, 64, 48, *([0.5, 0.5, 1.0] * 17))
        done = client.wait_for(lambda m: m.address == f"{P}/frame/done", 10)
        assert done.args[0] == 6 and done.args[2:4] == (64, 48)
    _healthy(daemon)


@pytest.mark.parametrize("damage", ["closed flag", "truncated", "deleted"])
def test_reopening_a_channel_the_client_broke_gives_fresh_files(daemon: RunningBridge, damage: str) -> None:
    """Found by the fuzzer: after a client set its channel's closed flag (or truncated or deleted a
    file), re-opening with the same geometry handed back the same broken files, so every later
    frame was refused until the client thought of closing the channel first."""
    with _client(daemon) as client:
        session = client.open_shm("broken", 16, 12, "BGRA8")
        path = Path(session.input.path)
        if damage == "closed flag":
            with open(path, "r+b") as fh:
                fh.seek(60)
                fh.write(struct.pack("<I", 1))
        elif damage == "truncated":
            with open(path, "r+b") as fh:
                fh.truncate(256)
        else:
            path.unlink()
        session.close()
        fresh = client.open_shm("broken", 16, 12, "BGRA8")
        assert Path(fresh.input.path) != path and not path.exists()
        pixels, _ = client.process_shm(fresh, _frame(20), 1)
        assert np.array_equal(pixels, _inverted(20))
        again = client.open_shm("broken", 16, 12, "BGRA8")  # an intact channel is still handed back as is
        assert again.input.path == fresh.input.path
        again.close()
        client.close_shm(fresh)
    _healthy(daemon)


def test_refused_hosts_get_silence(tmp_path: Path) -> None:
    """Where the protocol documents silence (a host outside --allow-client), fuzzed packets over UDP
    and TCP get no answer at all, not even errors, and the daemon stays up."""
    running = start_bridge(tmp_path, "--model", "invert", "--allow-client", "10.0.0.0/8")
    try:
        udp = fuzz.UdpLink(running.osc_port)
        tcp = fuzz.TcpLink(running.osc_port, slip=False)
        sent = fuzz.drive(fuzz.packet_strategy(str(running.root)), 300, 3,
                          lambda case: (udp.send(case.packet) if len(case.packet) <= fuzz.UDP_MAX else None,
                                        tcp.send(case.packet) if len(case.packet) <= fuzz.TCP_MAX else None))
        assert sent == 300
        assert udp.recv(1.0) is None
        try:
            assert tcp.recv(0.5) is None
        except fuzz.Closed:
            pass  # the bridge may close a refused stream; it must not answer on it
        udp.close()
        tcp.close()
        deadline = time.monotonic() + 10  # the log pump may lag a loaded machine
        while "refused by --allow-client" not in running.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.alive() and "refused by --allow-client" in running.log_text()
    finally:
        running.stop()


def test_model_names_are_not_paths(daemon: RunningBridge, tmp_path: Path) -> None:
    """Found by the fuzzer: ``/pose2person/model`` with a 300-character name was answered
    ``internal`` (ENAMETOOLONG escaped the card lookup); and a name with ``..`` or ``/`` was looked
    up as a path, so a card (and its weights) outside the model directories could be loaded."""
    from bridge.cards import find_card

    with _client(daemon) as client:
        for name in ("s" * 300, "../../etc", "/tmp", "a/../../b", "."):
            client.send(f"{P}/model", name)
            reply = client.wait_for(lambda m: m.address == f"{P}/error", 10)
            assert reply.args[1] == "unknown_model", (name[:20], reply)
        assert client.model() == "invert"
    shipped = next(REPO.glob("models/*/card.toml"))
    outside = tmp_path / "outside" / "evil"
    outside.mkdir(parents=True)
    (outside / "card.toml").write_text(shipped.read_text())
    dirs = [tmp_path / "models"]
    dirs[0].mkdir()
    assert find_card("../outside/evil", dirs) is None
    assert find_card(str(outside), dirs) is None
    assert find_card("x" * 400, dirs) is None


def test_an_empty_keypoint_target_path_is_bad_arguments(daemon: RunningBridge) -> None:
    """Found by the fuzzer: ``/pose2person/keypoints/target/path ""`` was answered ``internal``
    (``PosixPath('.') has an empty name``)."""
    with _client(daemon) as client:
        client.send(f"{P}/keypoints/target/path", "")
        reply = client.wait_for(lambda m: m.address == f"{P}/error", 10)
        assert reply.args[1] == "bad_arguments", reply
    _healthy(daemon)


@pytest.mark.parametrize("model", ["passthrough", "invert"])
def test_the_monitor_tap_never_holds_the_clients_mapping(tmp_path: Path, model: str) -> None:
    """Found while fixing the truncation SIGBUS: the monitor's input picture was a view of the
    client's ``.in`` mapping, copied into a thumbnail after the frame, so a client truncating its
    file at that moment still crashed the daemon. The tap now holds the daemon's own copy."""
    import time as _time

    from bridge.config import SecurityConfig, ShmConfig
    from bridge.daemon.jobs import ShmJob
    from bridge.daemon.shm_channels import ChannelRegistry
    from bridge.stages import load

    registry = ChannelRegistry(ShmConfig(directory=tmp_path), SecurityConfig(), "t")
    ch = registry.open("tap", 16, 12, "BGRA8")
    writer = ChannelFile(ch.input_path, writable=True)
    writer.write(_frame(30), 1)
    job = ShmJob("c", 1, _time.perf_counter_ns(), lambda packet: None, channel=ch)
    job.run(load(model))
    assert job.tap is not None and job.tap.input is not None
    # The daemon maps no channel file at all now (it reads and writes them with pread/pwrite), so
    # nothing it holds can be a view of a file a client truncates.
    assert not ch.input.mapped and not ch.output.mapped
    assert job.tap.input.base is None or not isinstance(job.tap.input.base, mmap.mmap)
    assert (job.tap.input == 30).all()  # still the input's pixels, not the result's
    writer.close()
    registry.close_all()
