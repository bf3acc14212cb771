"""Fault injection against real daemons: each fault is recovered from without restarting the daemon.

* shared-memory writers SIGKILLed mid-write 1,000 times (real forked processes) while the daemon
  reads the ring: no accepted frame is ever torn;
* a model that raises (``fault:raise``, ``fault:raise-every:N``), and a model that hangs
  (``fault:hang:S``, ``fault:hang-after:N``: stall detection, safe output, restart);
* a checkpoint deleted (or cut short) while its card is switched to;
* the disk full for path output (RLIMIT_FSIZE on the daemon, SIGXFSZ ignored);
* a zeroconf name conflict between two bridges on 127.0.0.1.

Every wait is bounded. Nothing is mocked: the faults are the real thing (signals, limits, files).
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.client import BridgeClient, RemoteError
from bridge.osc import OscMessage

from conftest import REPO, RunningBridge, start_bridge
from pose_frames import pose_picture_bgra

P = "/pose2person"


def registered(running: RunningBridge, timeout: float = 10.0) -> BridgeClient:
    client = BridgeClient("127.0.0.1", running.osc_port, timeout=timeout)
    client.register(client.sock.getsockname()[1])
    return client


def inverted(frame: np.ndarray) -> np.ndarray:
    out = 255 - frame
    out[..., 3] = frame[..., 3]
    return out


def assert_serves(running: RunningBridge, invert: bool) -> None:
    """A fresh client gets a pong and an exact shm round trip."""
    assert running.alive(), running.log_text()
    with registered(running) as client:
        client.ping(3)
        session = client.open_shm("check", 16, 12, "BGRA8")
        frame = np.random.default_rng(5).integers(0, 256, (12, 16, 4), dtype=np.uint8)
        pixels, _ = client.process_shm(session, frame, 4242)
        assert np.array_equal(pixels, inverted(frame) if invert else frame)
        client.close_shm(session)


# -- writers killed mid-write ----------------------------------------------------------------------
# A fork server: a fresh single-threaded interpreter that forks one frame writer per line read from
# stdin (forking the multi-threaded test process itself could deadlock a child in malloc). A
# writer fills slots with uniform frames whose byte value follows from the frame id, forever,
# until it is killed.
FORK_SERVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from bridge.shm import ChannelFile
    ch = ChannelFile(sys.argv[1], writable=True)
    lay = ch.layout
    frames = [np.full((lay.height, lay.width, lay.channels), v, np.uint8) for v in range(256)]
    for line in sys.stdin:
        base = int(line)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:  # reap the writers killed so far
                pass
        except ChildProcessError:
            pass
        pid = os.fork()
        if pid == 0:
            fid = base
            while True:
                k, view = ch.begin_write()
                np.copyto(view, frames[fid * 7 % 251 + 1])
                ch.end_write(k, fid)
                fid += 1
        print(pid, flush=True)
""")


def wait_dead(pid: int, timeout: float = 5.0) -> None:
    """Until the killed writer is a zombie (or gone): only then has it stopped touching the file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.0005)
    raise AssertionError(f"writer {pid} still running after SIGKILL")


def value_of(frame_id: int) -> int:
    return frame_id * 7 % 251 + 1


def newest_ids(path: Path, slots: int, stride: int) -> list[int]:
    """Frame ids the slot headers name right now (read as a client would, without the seqlock)."""
    with open(path, "rb") as fh:
        data = fh.read(256 + slots * stride)
    ids = [struct.unpack_from("<q", data, 256 + k * stride + 8)[0] for k in range(slots)]
    return [i for i in ids if 0 < i < 2**31]


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "fork"), reason="needs fork and /proc")
def test_writers_killed_mid_write_never_give_a_torn_frame(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--model", "invert")
    kills, accepted, refused = 1000, 0, 0
    try:
        with registered(daemon) as client:
            session = client.open_shm("kill", 160, 120, "BGRA8")  # 75 KiB frames: kills land mid-copy
            lay = session.input.layout
            server = subprocess.Popen([sys.executable, "-c", FORK_SERVER, str(session.input.path)], cwd=REPO,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert server.stdin is not None and server.stdout is not None
            rng = np.random.default_rng(1)
            try:
                for i in range(kills):
                    server.stdin.write(f"{i * 100_000 + 1}\n")
                    server.stdin.flush()
                    ready, _, _ = select.select([server.stdout], [], [], 10)
                    assert ready, "the fork server did not answer"
                    pid = int(server.stdout.readline())
                    time.sleep(float(rng.uniform(0, 0.003)))
                    asked = newest_ids(session.input.path, lay.slots, lay.slot_stride)[:1]  # while it writes
                    for fid in asked:
                        client.send(f"{P}/frame/shm", "kill", fid)
                    os.kill(pid, signal.SIGKILL)
                    wait_dead(pid)
                    after = newest_ids(session.input.path, lay.slots, lay.slot_stride)  # and after it died
                    for fid in after:
                        client.send(f"{P}/frame/shm", "kill", fid)
                    for _ in range(len(asked) + len(after)):
                        m = client.wait_for(lambda m: m.address in (f"{P}/frame/ready", f"{P}/error",
                                                                    f"{P}/frame/dropped"), 10,
                                            error_for=lambda e: False)
                        if m.address == f"{P}/error":
                            assert m.args[1] in ("shm_torn", "shm_frame_missing"), m
                            refused += 1
                        elif m.address == f"{P}/frame/ready":
                            fid = int(m.args[1])  # type: ignore[arg-type]
                            try:
                                _, out = session.output.read(fid)
                            except Exception:
                                continue  # overwritten by a later result meanwhile: nothing to check
                            want = 255 - value_of(fid)
                            assert (out[..., :3] == want).all() and (out[..., 3] == value_of(fid)).all(), (
                                f"frame {fid}: a torn or foreign frame was accepted")
                            accepted += 1
            finally:
                server.stdin.close()
                server.wait(10)
            session.close()
        assert accepted > kills // 2 and refused > 0, (accepted, refused)
        assert_serves(daemon, invert=True)
        assert "Traceback" not in daemon.log_text()
    finally:
        daemon.stop()


# -- a model that raises -----------------------------------------------------------------------
def test_a_raising_model_is_answered_model_failed_and_the_daemon_recovers(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--model", "passthrough")
    try:
        with registered(daemon) as client:
            client.send(f"{P}/safe", "off")  # errors, not safe pictures, for this client
            client.wait_for(lambda m: m.address == f"{P}/safe", 5)
            session = client.open_shm("raise", 16, 12, "BGRA8")
            frame = np.full((12, 16, 4), 40, np.uint8)
            assert client.set_model("fault:raise-every:2") == "fault:raise-every:2"
            outcomes = []
            for fid in range(1, 7):
                try:
                    pixels, _ = client.process_shm(session, frame, fid)
                    assert np.array_equal(pixels, frame)
                    outcomes.append("ok")
                except RemoteError as err:
                    assert (err.code, err.frame_id) == ("model_failed", fid) and "injected failure" in err.message
                    outcomes.append("failed")
            assert outcomes == ["ok", "failed"] * 3
            assert client.set_model("fault:raise") == "fault:raise"
            for fid in range(10, 13):
                with pytest.raises(RemoteError) as err:
                    client.process_shm(session, frame, fid)
                assert err.value.code == "model_failed"
                client.ping(fid)  # the daemon answers between failures
            # Another client, with the default policy, gets a safe picture and a notice instead.
            with registered(daemon) as other:
                s2 = other.open_shm("raise2", 16, 12, "BGRA8")
                other.submit_shm(s2, frame, 1)
                notice = other.wait_for(lambda m: m.address == f"{P}/frame/safe", 10)
                assert notice.args[0] == 1 and str(notice.args[2]).startswith("model_failed")
                other.wait_for(lambda m: m.address == f"{P}/frame/ready", 10)
                other.close_shm(s2)
            assert client.set_model("passthrough") == "passthrough"
            pixels, _ = client.process_shm(session, frame, 20)
            assert np.array_equal(pixels, frame)
            status = client.status()
            assert status.errors >= 6 and status.model == "passthrough"
            client.close_shm(session)
        assert_serves(daemon, invert=False)
        assert "Traceback" not in daemon.log_text()
    finally:
        daemon.stop()


# -- a model that hangs ------------------------------------------------------------------------
def _wait(client: BridgeClient, address: str, timeout: float) -> OscMessage:
    return client.wait_for(lambda m: m.address == address, timeout, error_for=lambda e: False)


@pytest.mark.parametrize("model", ["fault:hang-after:2", "fault:hang:30"])
def test_a_hanging_model_is_detected_answered_safely_and_restarted(tmp_path: Path, model: str) -> None:
    """The planned (and landed) contract: a stage stalled past --stall-timeout is detected, the
    client gets a safe output frame with ``/pose2person/frame/safe i frame_id s policy s reason``,
    and the stage is restarted without restarting the daemon (same process, same ports).

    Found here: every stall kept the stuck frame's output slot claimed until its stage returned, so
    after three stalls on one channel (a model that always hangs) every frame was ``shm_busy``; the
    watchdog now frees the slot when it abandons the frame (four stalls below, on a 3-slot ring)."""
    daemon = start_bridge(tmp_path, "--model", model, "--stall-timeout", "1")
    try:
        pid = daemon.proc.pid
        with registered(daemon, timeout=15) as client:
            client.send(f"{P}/safe", "black")
            _wait(client, f"{P}/safe", 5)
            session = client.open_shm("hang", 16, 12, "BGRA8")
            frame = np.full((12, 16, 4), 90, np.uint8)
            first = 3 if model == "fault:hang-after:2" else 1  # the first frame that hangs
            for fid in range(1, first):
                pixels, _ = client.process_shm(session, frame, fid)
                assert np.array_equal(pixels, frame)
            started = time.monotonic()
            client.submit_shm(session, frame, first)
            client.ping(1)  # the event loop is not blocked by the stuck model
            notice = _wait(client, f"{P}/frame/safe", 10)
            assert notice.args[:2] == (first, "black"), notice
            ready = _wait(client, f"{P}/frame/ready", 10)
            assert ready.args[1] == first and time.monotonic() - started < 8
            out = client.read_result(session, first)
            assert (out[..., :3] == 0).all()  # the black safe picture, not a magenta or torn one
            # Restarted in place: later frames are answered (a reloaded hang-after model passes its
            # first frames again; a model that always hangs keeps getting safe output).
            for fid in range(first + 1, first + 4):
                client.submit_shm(session, frame, fid)
                m = client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == fid, 15,
                                    error_for=lambda e: e.frame_id == fid)
                assert m.args[1] == fid
            assert client.set_model("passthrough") == "passthrough"
            pixels, _ = client.process_shm(session, frame, 50)
            assert np.array_equal(pixels, frame)
            client.close_shm(session)
        assert daemon.proc.pid == pid and daemon.alive()
        assert any("stalled" in line and "restarting" in line for line in daemon.log_lines)
        assert_serves(daemon, invert=False)
    finally:
        daemon.stop()


# -- a checkpoint deleted while loading ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generator model card (resnet_6blocks, ngf 4) imported from a Colab-style folder."""
    torch = pytest.importorskip("torch")
    from bridge.generator.checkpoint import write_train_opt
    from generator_reference import random_checkpoint, reference_keys

    root = tmp_path_factory.mktemp("card")
    folder = root / "checkpoints" / "tiny"
    folder.mkdir(parents=True)
    torch.save(random_checkpoint(reference_keys("resnet_6blocks", 4, "instance", False), seed=3),
               folder / "latest_net_G.pth")
    write_train_opt(folder / "train_opt.txt", {"netG": "resnet_6blocks", "ngf": 4, "norm": "instance",
                                               "no_dropout": True, "input_nc": 3, "output_nc": 3,
                                               "load_size": 64, "crop_size": 64, "preprocess": "resize_and_crop",
                                               "direction": "AtoB", "model": "pix2pix", "name": "tiny"})
    dest = root / "models"
    done = subprocess.run([sys.executable, "-m", "bridge", "models", "import", str(folder), "--dest", str(dest),
                           "--pose-source", "image"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dest


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_checkpoint_gone_while_loading_keeps_the_old_model(tmp_path: Path, tiny_card: Path, damage: str) -> None:
    models = tmp_path / "models"
    subprocess.run(["cp", "-r", str(tiny_card), str(models)], check=True)
    weights = next((models / "tiny").glob("*.pth"))
    daemon = start_bridge(tmp_path, "--model", "invert", "--models-dir", str(models))
    try:
        with registered(daemon, timeout=60) as client:
            assert "tiny" in client.models()  # the card validates: it is listed and may be asked for
            if damage == "deleted":
                weights.unlink()
            else:
                data = weights.read_bytes()
                weights.write_bytes(data[: len(data) // 2])
            client.send(f"{P}/model", "tiny")
            err = client.wait_for(lambda m: m.address == f"{P}/error", 60, error_for=lambda e: False)
            assert err.args[1] == "model_load_failed", err
            assert client.model() == "invert"
            assert_serves(daemon, invert=True)  # the old model keeps serving
            # Put the file back: the same card now loads and serves, no daemon restart.
            subprocess.run(["cp", str(next((tiny_card / "tiny").glob("*.pth"))), str(weights)], check=True)
            assert client.set_model("tiny", timeout=120) == "tiny"
            session = client.open_shm("gen", 16, 12, "BGRA8")
            pose = pose_picture_bgra(12, 16, 1)  # the card takes pose images (pose source image)
            pixels, _ = client.process_shm(session, pose, 1, timeout=60)
            assert pixels.shape == (12, 16, 4) and client.safe_notice(1) is None
            client.close_shm(session)
        assert "Traceback" not in daemon.log_text()
    finally:
        daemon.stop()


# -- the disk full for path output ------------------------------------------------------------------
FSIZE_LIMIT = 512 * 1024  # bytes: any file the daemon writes beyond this fails with EFBIG


def _limit_file_size() -> None:
    """preexec_fn: a file-size limit, with SIGXFSZ ignored so the write fails instead of killing."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an ignored signal stays ignored across exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_disk_full_for_path_output_is_write_failed(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--model", "invert", preexec_fn=_limit_file_size)
    try:
        root = daemon.root
        noise = np.random.default_rng(2).integers(0, 256, (600, 600, 3), dtype=np.uint8)  # ~1 MB as PNG
        Image.fromarray(noise).save(root / "big.png")
        Image.fromarray(noise[:40, :40]).save(root / "small.png")
        out = root / "out.png"
        with registered(daemon) as client:
            for fid in (1, 2):  # twice: nothing is left over from the first failure
                client.send(f"{P}/frame/path", str(root / "big.png"), str(out), fid)
                err = client.wait_for(lambda m: m.address == f"{P}/error", 20, error_for=lambda e: False)
                assert err.args[:2] == (fid, "write_failed"), err
                assert not out.exists()  # no partial file at the output path
                assert sorted(p.name for p in root.iterdir()) == ["big.png", "small.png"]  # no temporaries
            done = client.process_path(str(root / "small.png"), str(out), 3, timeout=20)
            assert done.width == 40 and out.exists()
            assert np.array_equal(np.asarray(Image.open(out)), 255 - noise[:40, :40])
            # An existing output stays whole when the next write fails.
            before = out.read_bytes()
            client.send(f"{P}/frame/path", str(root / "big.png"), str(out), 4)
            err = client.wait_for(lambda m: m.address == f"{P}/error", 20, error_for=lambda e: False)
            assert err.args[1] == "write_failed" and out.read_bytes() == before
        assert_serves(daemon, invert=True)
        assert "Traceback" not in daemon.log_text()
    finally:
        daemon.stop()


# -- a zeroconf name conflict ----------------------------------------------------------------------
def test_two_bridges_with_one_name_both_serve_and_are_both_discovered(tmp_path: Path) -> None:
    name = f"p2p-conflict {uuid.uuid4().hex[:6]}"
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    first = start_bridge(tmp_path / "a", "--name", name, zeroconf=True, http=True)
    try:
        second = start_bridge(tmp_path / "b", "--name", name, zeroconf=True, http=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "bridge", "discover", "--interface", "127.0.0.1",
                                   "--timeout", "2.5", "--json"], capture_output=True, text=True, cwd=REPO,
                                  timeout=30)
            assert proc.returncode == 0, proc.stderr
            found = {e["name"]: e for e in json.loads(proc.stdout) if e["name"].startswith(name)}
            assert len(found) == 2, found
            assert {e["osc_port"] for e in found.values()} == {first.osc_port, second.osc_port}
            renamed = [n for n in found if n != name]
            assert len(renamed) == 1 and found[name]["osc_port"] == first.osc_port
            # The second bridge says so in its log: which name it advertises under.
            assert any("zeroconf: advertising" in line and renamed[0] in line for line in second.log_lines), (
                second.log_text())
            for running in (first, second):
                assert_serves(running, invert=False)
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0
