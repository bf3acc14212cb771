"""Rehearsal tools: the daemon's recorder (/pose2person/record), the recording format's checks, and
``pose2person replay`` / ``record`` against a real daemon on 127.0.0.1. Real sockets, files and
subprocesses; no timing assertions beyond "a replay takes at least the recorded time"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bridge.formats import recording
from bridge.client import RemoteError
from bridge.cli.demo import dance_frames
from bridge.osc import decode_packet
from bridge.daemon.recorder import Recorder
from bridge.formats.recording import RecordingError, read_entries
from bridge.cli.replay import replay

from conftest import REPO, RunningBridge, start_bridge, wait_until

P = "/pose2person"
W, H = 32, 24


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path_factory.mktemp("rec"))
    yield running
    running.stop()


def cam_frame(fid: int) -> np.ndarray:
    frame = np.zeros((H, W, 4), np.uint8)
    frame[..., 0] = fid
    frame[..., 1] = np.arange(W, dtype=np.uint8)[None, :]
    frame[..., 3] = 255
    return frame


def _record_session(daemon: RunningBridge, folder: Path) -> list:
    """One client records itself: 12 keypoint messages and 8 shm frames, interleaved."""
    keypoint_frames = dance_frames(1.2, 10, 64, "coco17", 1, 3)[:12]
    with daemon.client() as client:
        kp = client.open_shm("rkp", 64, 64, "RGB8")
        client.request(f"{P}/keypoints/target", ("rkp",), f"{P}/keypoints/target")
        cam = client.open_shm("rcam", W, H, "BGRA8")
        started = client.request(f"{P}/record", (str(folder),), f"{P}/record/started")
        assert started.args == (str(folder),)
        with pytest.raises(RemoteError) as again:
            client.request(f"{P}/record", (str(folder) + "2",), f"{P}/record/started")
        assert again.value.code == "record_limit"
        for i, frame in enumerate(keypoint_frames):
            client.send(f"{P}/keypoints", *frame.to_osc_args())
            client.wait_for(lambda m, f=frame: m.address == f"{P}/frame/ready" and m.args[1] == f.frame_id)
            if i < 8:
                client.process_shm(cam, cam_frame(100 + i), 100 + i)
            time.sleep(0.01)
        stopped = client.request(f"{P}/record/stop", (), f"{P}/record/stopped").args
        assert stopped[0] == str(folder) and stopped[1] == 20 and stopped[3] == "stopped"
        kp.close()
        cam.close()
    return keypoint_frames


def test_record_then_replay(daemon: RunningBridge) -> None:
    folder = daemon.root / "take1"
    sent = _record_session(daemon, folder)
    assert wait_until(lambda: (folder / recording.META).is_file())
    meta = json.loads((folder / recording.META).read_text())
    assert meta["format"] == "pose2person-recording" and meta["entries"] == 20 and meta["frames"] == 8
    assert meta["dropped"] == 0 and meta["reason"] == "stopped"
    entries = list(read_entries(folder))
    kps = [e for e in entries if isinstance(e, recording.KeypointEntry)]
    shms = [e for e in entries if isinstance(e, recording.ShmEntry)]
    assert len(kps) == 12 and len(shms) == 8
    assert [e.t for e in entries] == sorted(e.t for e in entries)
    # keypoints exactly as sent (float32 values survive the JSON round trip)
    assert [tuple(k.args) for k in kps] == [tuple(np.float32(v).item() if isinstance(v, float) else v
                                                  for v in f.to_osc_args()) for f in sent]
    for i, e in enumerate(shms):
        assert e.frame_id == 100 + i and (e.width, e.height, e.format) == (W, H, "BGRA8")
        assert np.array_equal(e.pixels(), cam_frame(100 + i))

    with daemon.client() as client:
        before = client.status()
    figures = replay(folder, "127.0.0.1", daemon.osc_port, speed=2.0)
    assert figures.sent == 20 and figures.keypoints == 12 and figures.frames == 8
    assert figures.answered == 20 and figures.errors == {}
    assert figures.ready + figures.dropped == 20 and figures.ready > 0
    assert figures.seconds >= entries[-1].t / 2.0  # real (scaled) speed: never faster than recorded
    with daemon.client() as client:
        after = client.status()
    assert after.received - before.received == 20

    # looping plays it again, and --max-seconds stops it
    looped = replay(folder, "127.0.0.1", daemon.osc_port, speed=4.0, loop=True, max_seconds=entries[-1].t / 4.0 * 2.5)
    assert looped.passes >= 2 and looped.errors == {}


def test_record_refusals(daemon: RunningBridge, tmp_path: Path) -> None:
    with daemon.client() as client:
        for raw, code in ((str(tmp_path / "outside"), "path_not_allowed"), ("relative/take", "path_not_allowed"),
                          (str(daemon.root / "no" / "parent"), "write_failed"), ("", "bad_arguments")):
            with pytest.raises(RemoteError) as exc:
                client.request(f"{P}/record", (raw,), f"{P}/record/started")
            assert exc.value.code == code, raw
        (daemon.root / "exists").mkdir()
        with pytest.raises(RemoteError) as exc:
            client.request(f"{P}/record", (str(daemon.root / "exists"),), f"{P}/record/started")
        assert exc.value.code == "write_failed"
        with pytest.raises(RemoteError) as exc:
            client.request(f"{P}/record", (str(daemon.root / "x"), "no such source"), f"{P}/record/started")
        assert exc.value.code == "bad_arguments"
        with pytest.raises(RemoteError) as exc:
            client.request(f"{P}/record/stop", (), f"{P}/record/stopped")
        assert exc.value.code == "bad_arguments"
        client.ping()  # still serving


def test_record_and_replay_commands(daemon: RunningBridge) -> None:
    """The CLI: an operator records another client's keypoints (--source HOST), then replays them."""
    folder = daemon.root / "take-cli"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    to = f"127.0.0.1:{daemon.osc_port}"

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "bridge", *args, "--to", to], capture_output=True, text=True,
                              timeout=60, cwd=REPO, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "recording 127.0.0.1 into" in cli("record", "start", str(folder), "--source", "127.0.0.1")
    with daemon.client() as performer:
        kp = performer.open_shm("ckp", 64, 64, "RGB8")
        performer.request(f"{P}/keypoints/target", ("ckp",), f"{P}/keypoints/target")
        for frame in dance_frames(0.5, 10, 64, "coco17", 1, 5):
            performer.send(f"{P}/keypoints", *frame.to_osc_args())
            performer.wait_for(lambda m, f=frame: m.address == f"{P}/frame/ready" and m.args[1] == f.frame_id)
        kp.close()
    out = cli("record", "stop", str(folder))
    assert ": 5 entries" in out
    out = cli("replay", str(folder), "--speed", "5")
    assert "5 sent (5 keypoint messages, 0 shm frames)" in out and "errors: none" in out


def test_recorder_stops_itself_at_the_size_limit(tmp_path: Path) -> None:
    replies: list[bytes] = []
    recorder = Recorder((tmp_path,), max_bytes=2000)
    key = ("udp", "127.0.0.1", 5000)
    recorder.start(key, str(tmp_path / "small"), replies.append)
    args = tuple(dance_frames(0.1, 10, 64, "coco17", 1, 0)[0].to_osc_args())
    tags = "siii" + "f" * (len(args) - 4)
    for _ in range(50):
        recorder.keypoints(key, tags, args)
        recorder.keypoints(("udp", "127.0.0.1", 5001), tags, args)  # another client: not recorded
    assert not recorder.active
    assert len(replies) == 1
    message = decode_packet(replies[0])[0]
    assert message.address == f"{P}/record/stopped" and message.args[3] == "size_limit"
    assert 0 < int(message.args[2]) <= 2000  # type: ignore[arg-type]
    recorder.close()
    entries = list(read_entries(tmp_path / "small"))
    assert len(entries) == message.args[1]
    assert json.loads((tmp_path / "small" / recording.META).read_text())["reason"] == "size_limit"


def _folder(tmp_path: Path, lines: list[object], frames: dict[str, bytes] | None = None) -> Path:
    folder = tmp_path / "r"
    (folder / "frames").mkdir(parents=True)
    (folder / recording.INDEX).write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    for name, data in (frames or {}).items():
        (folder / name).write_bytes(data)
    return folder


GOOD_SHM = {"t": 0.1, "client": "c", "kind": "shm", "channel": "cam", "frame_id": 1, "width": 2, "height": 1,
            "format": "RGB8", "origin": 0, "file": "frames/000000001.raw", "bytes": 6}


@pytest.mark.parametrize("bad, frames", [
    ({**GOOD_SHM, "file": "frames/../../../etc/passwd"}, {}),
    ({**GOOD_SHM, "file": "/etc/passwd"}, {}),
    (GOOD_SHM, {"frames/000000001.raw": b"12345"}),  # wrong size
    ({**GOOD_SHM, "width": 0}, {"frames/000000001.raw": b""}),
    ({**GOOD_SHM, "format": "XYZ8"}, {}),
    ({**GOOD_SHM, "channel": "../x"}, {}),
    ({"t": 0.0, "kind": "keypoints", "tags": "siii", "args": ["coco17", 1, 2]}, {}),
    ({"t": 0.0, "kind": "keypoints", "tags": "siiif", "args": ["coco17", 1, 2, 3, "x"]}, {}),
    ({"t": float("nan"), "kind": "keypoints", "tags": "siii", "args": ["coco17", 1, 2, 3]}, {}),
    ({"t": 0.0, "kind": "pickle", "data": "gASV"}, {}),
    ("[1, 2, 3]", {}),
    ("{not json", {}),
])
def test_reader_refuses_bad_recordings(tmp_path: Path, bad: object, frames: dict[str, bytes]) -> None:
    folder = _folder(tmp_path, [bad], frames)
    with pytest.raises(RecordingError):
        list(read_entries(folder))


def test_reader_refuses_links_backwards_time_and_long_lines(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD_SHM], {})
    target = tmp_path / "secret"
    target.write_bytes(b"abcdef")
    os.symlink(target, folder / "frames" / "000000001.raw")
    with pytest.raises(RecordingError, match="regular file"):
        list(read_entries(folder))
    (folder / "frames" / "000000001.raw").unlink()
    (folder / "frames" / "000000001.raw").write_bytes(b"abcdef")
    entries = list(read_entries(folder))
    assert entries[0].pixels().tolist() == [[[97, 98, 99], [100, 101, 102]]]
    kp = {"t": 0.05, "kind": "keypoints", "tags": "siii", "args": ["coco17", 1, 2, 3]}
    with pytest.raises(RecordingError, match="backwards"):
        list(read_entries(_folder(tmp_path / "b", [GOOD_SHM, kp], {"frames/000000001.raw": b"abcdef"})))
    long_line = json.dumps({**kp, "client": "x" * (recording.MAX_LINE_BYTES + 10)})
    with pytest.raises(RecordingError, match="longer"):
        list(read_entries(_folder(tmp_path / "c", [long_line])))
    # a last line cut short by a crash is ignored, not an error
    folder = _folder(tmp_path / "d", [kp])
    with open(folder / recording.INDEX, "a") as f:
        f.write('{"t": 1.0, "kind": "keyp')
    assert len(list(read_entries(folder))) == 1
