"""``pose2person dataset build`` from real video files posed by the real camera tracker, and pose coverage.

Footage: the synthetic puppet (``bridge.puppet``) rendered and upscaled to 512 px, which the
BlazePose tracker finds (docs/TRACKER.md), written as MPEG-4 ``.mp4`` files by OpenCV; a phone's
portrait video is made by writing landscape frames and setting the track's display matrix to a
90-degree rotation, as phones do. The puppet's own keypoints are the truth.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge.datasets import coverage as cov
from bridge.datasets.build import held_out, square
from bridge.datasets.frames import InputItem, Sampling, expand_inputs, frames_of
from bridge.datasets.layout import read_rgb
from bridge.pose import keypoints as kp
from bridge.pose.render import render_pose
from bridge.puppet import skeleton as pp
from bridge.puppet.probes import make_probes, probe_bytes
from bridge.puppet.render import render_person

REPO = Path(__file__).resolve().parent.parent
SIZE, UP = 256, 2  # puppet rendered at 256 px, upscaled x2: the tracker's comfortable size
ADA = pp.CHARACTERS["ada"]


def _puppet_clip(path: Path, n: int, fps: float = 10, seed: int = 1, rotate: bool = False,
                 shown: list[np.ndarray] | None = None) -> np.ndarray:
    """Write a dance of ``n`` frames; returns the truth, common keypoints ``(n, COMMON, 3)`` in the
    pixels of the frames as shown (appended to ``shown``, BGR, if given). ``rotate``: frames stored
    turned 90 degrees counter-clockwise with a display matrix turning them back (a phone's
    portrait video)."""
    poses = pp.dance(np.random.default_rng(seed), SIZE, ADA, n)
    side = SIZE * UP
    stored = (side, side * 3 // 4) if rotate else (side * 3 // 4, side)  # (w, h): shown portrait 384x512
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, stored)
    assert writer.isOpened()
    truth = []
    x0 = (side - side * 3 // 4) // 2
    for i, pose in enumerate(poses):
        frame = pp.keypoint_frame([pose], [ADA], SIZE, "coco17", i)
        img = cv2.resize(render_person(frame, [ADA])[..., ::-1], (side, side), interpolation=cv2.INTER_CUBIC)
        img = np.ascontiguousarray(img[:, x0:x0 + side * 3 // 4])  # portrait 384 x 512
        if shown is not None:
            shown.append(img)
        writer.write(cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE) if rotate else img)
        common = frame.common()[0].copy()
        common[:, :2] *= UP
        common[:, 0] -= x0
        truth.append(common)
    writer.release()
    if rotate:
        _set_rotation_90(path)
    return np.stack(truth)


def _set_rotation_90(path: Path) -> None:
    """Set the video track's display matrix (``tkhd``) to a 90-degree clockwise turn."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    matrix = at + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    struct.pack_into(">9i", data, matrix, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


def _boxes(data: bytearray, start: int, end: int):  # noqa: ANN202 - test helper
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        yield at, size, kind
        at += size


def _make_variable_rate(path: Path, slow_from: int) -> None:
    """Rewrite the track's sample durations (``stts``): frames before ``slow_from`` last half as
    long as written, the rest 1.5 times (same total, so the edit list still fits), as a phone's
    variable-frame-rate video. The movie box follows the media data, so no offset moves."""
    data = bytearray(path.read_bytes())
    chain, start, end = [], 0, len(data)
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        at, size, _ = next(b for b in _boxes(data, start, end) if b[2] == name)
        chain.append(at)
        start, end = at + 8, at + size
    at, size, _ = next(b for b in _boxes(data, start, end) if b[2] == b"stts")
    count, delta = struct.unpack(">II", data[at + 16:at + 24])
    entries = [(slow_from, delta // 2), (count - slow_from, delta * 3 // 2)]
    body = struct.pack(">II", 0, len(entries)) + b"".join(struct.pack(">II", *e) for e in entries)
    data[at:at + size] = struct.pack(">I4s", 8 + len(body), b"stts") + body
    for parent in chain:
        struct.pack_into(">I", data, parent, struct.unpack(">I", data[parent:parent + 4])[0] + 8 + len(body) - size)
    assert next(b for b in _boxes(data, 0, len(data)) if b[2] == b"mdat")[0] < chain[0]
    path.write_bytes(bytes(data))


def _cli(*args: str, command: str = "build") -> subprocess.CompletedProcess[str]:
    extra = ["--no-progress"] if command == "build" else []
    return subprocess.run([sys.executable, "-m", "bridge", "dataset", command, *args, *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def tracker_ready() -> None:
    from tracker_fixtures import ensure_tracker_files

    ensure_tracker_files()


def test_portrait_phone_video_is_posed_by_the_tracker_as_served(tmp_path: Path, tracker_ready: None) -> None:
    video = tmp_path / "phone.mp4"
    shown: list[np.ndarray] = []
    truth = _puppet_clip(video, 16, rotate=True, shown=shown)
    # The frames come out as the phone shows them: portrait, the puppet upright.
    frames = list(frames_of(InputItem(video, "video", 0), Sampling()))
    assert len(frames) == 16 and frames[0].bgr is not None and frames[0].bgr.shape == (512, 384, 3)
    assert [round(f.time_s, 2) for f in frames[:3]] == [0.0, 0.1, 0.2]
    assert np.abs(frames[5].bgr.astype(int) - shown[5]).mean() < 8  # as shown (up to MPEG-4 loss)

    out = tmp_path / "ds"
    done = _cli(str(video), "--out", str(out), "--size", "96")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == {"framing": "letterbox", "pad_color": [255, 255, 255], "pose_source": "keypoints",
                                   "pose_style": "dp_segm", "keypoint_layout": "mediapipe33", "size": 96}
    assert summary["pose"]["method"] == "tracker"
    info = summary["inputs"][str(video)]["video"]
    assert info["rotation"] == 90 and (info["width"], info["height"]) == (384, 512)
    kept = summary["kept"]["train"] + summary["kept"]["test"]
    assert kept + summary["dropped"].get("test_gap", 0) >= 14, summary  # the tracker found the puppet
    assert summary["kept"]["test"] >= 1  # a short clip still gets a held-out slice
    # The tracker's keypoints lie on the puppet's joints (pixels of the portrait frame).
    records = [json.loads(line) for line in (out / "keypoints.jsonl").read_text().splitlines()]
    joints = [kp.C[j] for j in ("right_shoulder", "left_shoulder", "right_elbow", "left_elbow", "right_hip",
                                "left_hip", "right_knee", "left_knee", "right_ankle", "left_ankle")]
    errors = []
    for rec in records:
        index = int(rec["key"].rsplit("_", 1)[1])
        frame = kp.make_frame("mediapipe33", 0, rec["width"], rec["height"], rec["people"][0], False)
        errors.append(np.linalg.norm(frame.common()[0][joints, :2] - truth[index][joints, :2], axis=1))
    assert float(np.median(np.concatenate(errors))) < 20.0
    # The pose image is the daemon's keypoint drawing of those keypoints, framed like the photo.
    rec = next(r for r in records if r["split"] == "train")
    frame = kp.make_frame("mediapipe33", 0, rec["width"], rec["height"], rec["people"][0], False)
    expected = square(render_pose(kp.keypoints_to_pose(frame), "dp_segm"), "letterbox", (255, 255, 255), 96)
    assert np.array_equal(read_rgb(out / "trainA" / f"{rec['key']}.png"), expected)
    photo = read_rgb(out / "trainB" / f"{rec['key']}.png")
    body, seen = (expected < 235).any(-1), (photo < 200).any(-1)
    assert seen[body].mean() > 0.7
    assert summary["coverage"]["probes"] == cov.PROBE_COUNT and (out / "coverage.png").is_file()
    assert "pose coverage:" in done.stdout and "film next:" in done.stdout


def test_tracker_densepose_source_is_recorded_and_drawn_over_the_frame(tmp_path: Path, tracker_ready: None) -> None:
    video = tmp_path / "clip.mp4"
    _puppet_clip(video, 6)
    out = tmp_path / "ds"
    done = _cli(str(video), "--out", str(out), "--size", "64", "--pose", "tracker-densepose", "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["pose_source"] == "tracker-densepose"
    assert summary["settings"]["keypoint_layout"] == "mediapipe33"
    assert summary["kept"]["train"] >= 5


def test_folder_of_videos_and_images_and_empty_inputs(tmp_path: Path, tracker_ready: None) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    _puppet_clip(folder / "a.mp4", 8, seed=1)
    _puppet_clip(folder / "b.mp4", 8, seed=2)
    shots = folder / "shot_0001.png"
    cv2.imwrite(str(shots), np.full((64, 64, 3), 255, np.uint8))  # a blank photo: nobody in it
    (folder / "notes.txt").write_text("ignored")
    items = expand_inputs([folder])
    assert [(i.path.name, i.kind) for i in items] == [("a.mp4", "video"), ("b.mp4", "video"), ("footage", "images")]
    out = tmp_path / "ds"
    done = _cli(str(folder), "--out", str(out), "--size", "64", "--fps", "5")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["inputs"]) == {str(folder / "a.mp4"), str(folder / "b.mp4"), f"{folder}/ (images)"}
    assert summary["dropped"].get("no_person") == 1  # the blank photo
    # --fps 5 on 10 fps video: every other frame by timestamp (frames 0, 2, 4, 6 of each).
    names = sorted(p.stem for p in (out / "trainB").iterdir()) + sorted(p.stem for p in (out / "testB").iterdir())
    assert all(int(n.rsplit("_", 1)[1]) % 2 == 0 for n in names) and len(names) >= 4
    assert all(summary["inputs"][str(folder / v)].get("test", 0) == 1 for v in ("a.mp4", "b.mp4"))

    empty = tmp_path / "empty"
    empty.mkdir()
    none = _cli(str(empty), "--out", str(tmp_path / "x"))
    assert none.returncode == 1 and "no videos or images in" in none.stderr
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "0001.png"), np.full((64, 64, 3), 255, np.uint8))
    nobody = _cli(str(blank), "--out", str(tmp_path / "y"))
    assert nobody.returncode == 1 and "no training pairs" in nobody.stderr and "1 no person" in nobody.stderr


def test_variable_frame_rate_video_is_sampled_by_timestamps(tmp_path: Path) -> None:
    video = tmp_path / "vfr.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    _make_variable_rate(video, 10)  # 20 frames a second, then 6.7
    every = [f.time_s for f in frames_of(InputItem(video, "video", 0), Sampling())]
    assert len(every) == 20 and every[1] == pytest.approx(0.05) and every[11] - every[10] == pytest.approx(0.15)
    picked = frames_of(InputItem(video, "video", 0), Sampling(fps=5))
    keys = [int(f.key) for f in picked]
    # One frame per 0.2 s of the video's clock: every 4th while fast, nearly every one while slow
    # (counting frames would have taken every 2nd throughout).
    assert keys == [0, 4, 8, 11, 12, 14, 15, 16, 18, 19]
    times = np.array([every[k] for k in keys])
    assert np.diff(times).min() >= 0.15 - 1e-6 and np.diff(times).max() <= 0.3 + 1e-6


def test_keypoints_of_another_frame_size_are_scaled_with_a_warning(tmp_path: Path) -> None:
    video = tmp_path / "me.mp4"
    truth = _puppet_clip(video, 4)  # 384 x 512 frames
    half = [kp.KeypointFrame("coco17", i, 192, 256, kp.from_common(t * np.float32([0.5, 0.5, 1]), "coco17")[None])
            for i, t in enumerate(truth)]
    (tmp_path / "k.jsonl").write_text(kp.frames_to_jsonl([(str(i), f) for i, f in enumerate(half)]))
    out = tmp_path / "ds"
    done = _cli(str(video), "--out", str(out), "--keypoints", str(tmp_path / "k.jsonl"), "--size", "64",
                "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    assert "keypoints are for 192x256 frames, the frames are 384x512: scaled x by 2 and y by 2" in done.stdout
    assert any("192x256" in w for w in json.loads((out / "summary.json").read_text())["warnings"])
    pose, photo = read_rgb(out / "trainA" / "me_000001.png"), read_rgb(out / "trainB" / "me_000001.png")
    body, seen = (pose < 235).any(-1), (photo < 200).any(-1)
    assert seen[body].mean() > 0.8  # scaled onto the person, not into the top-left quarter


def test_held_out_slice_is_the_end_of_each_timeline_after_a_gap() -> None:
    times = [i / 10 for i in range(100)]
    test, gap, shortened = held_out(times, 0.1, 0.5)
    assert test == list(range(90, 100)) and gap == list(range(86, 90)) and not shortened  # 8.5 s: 0.5 s away
    test, gap, shortened = held_out([i / 30 for i in range(12)], 0.1, 0.5)  # 0.4 s clip
    assert test == [11] and len(gap) == 10 and shortened  # one training frame stays, as many as test
    assert held_out([0.0], 0.1, 0.5) == ([], [], False)
    assert held_out(times, 0.0, 0.5) == ([], [], False)


def test_probe_poses_are_shipped_reproducibly() -> None:
    shipped = cov.load_probes()
    assert shipped.shape == (cov.PROBE_COUNT, kp.COMMON_COUNT, 3)
    assert np.array_equal(shipped, make_probes())
    with np.load(cov.PROBE_FILE, allow_pickle=False) as data:
        assert int(data["seed"]) == cov.PROBE_SEED
    assert len(probe_bytes(shipped)) < 100_000


def test_coverage_of_known_poses() -> None:
    probes = cov.load_probes()
    full = cov.coverage(probes * np.float32([300, 300, 1]))  # the probes themselves, at another scale
    assert full.covered == 1.0 and float(full.distances.max()) < 1e-3 and full.advice == []
    one = cov.coverage(probes[:1])
    assert one.covered < 0.1 and one.advice and sum(n for _, n in one.advice) <= cov.PROBE_COUNT
    # Moved, scaled: the same pose. Mirrored left for right: not the same pose.
    moved = probes[:1].copy()
    moved[..., :2] = moved[..., :2] * 3 + 40
    feats = cov.pose_features(probes[:1])
    assert cov.distances(feats, cov.pose_features(moved))[0, 0] < 1e-3
    mirrored = probes[:1].copy()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    assert cov.distances(feats, cov.pose_features(mirrored))[0, 0] > 30
    # Arms only ever down: the advice asks for raised arms.
    down = [pp.pose_keypoints(pp.Pose(128, 150, 60, shoulder_r=s, shoulder_l=s2, elbow_r=e, elbow_l=e), ADA)
            for s in (0, 10, 20) for s2 in (0, 10, 20) for e in (0, 20)]
    report = cov.coverage(np.stack(down))
    assert report.covered < 0.2
    assert any("raised overhead" in what or "out to the side" in what for what, _ in report.advice), report.advice
    assert cov.describe("facing", np.array([0.0] * 10 + [170.0])) == "seen from behind"


def test_coverage_command_on_a_synth_dataset(tmp_path: Path) -> None:
    synth = subprocess.run([sys.executable, "-m", "bridge", "synth", "--out", str(tmp_path / "s"), "--count", "40",
                            "--size", "64", "--seed", "3", "--no-progress"], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
    assert synth.returncode == 0, synth.stderr
    done = _cli(str(tmp_path / "s"), "--json", command="coverage")
    assert done.returncode == 0, done.stderr
    assert "pose coverage:" in done.stdout and "36 training poses" in done.stdout
    picture = cv2.imread(str(tmp_path / "s" / "coverage.png"))
    assert picture is not None and picture.shape[0] > 200
    missing = _cli(str(tmp_path), command="coverage")
    assert missing.returncode == 1 and "keypoints.jsonl is missing" in missing.stderr
