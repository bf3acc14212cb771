"""The synthetic puppet: deterministic by seed, inside its joint limits, pairs aligned with the keypoint render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bridge.pose import keypoints as kp
from bridge.puppet import skeleton as pp
from bridge.datasets.layout import read_rgb
from bridge.pose.render import render_pose
from bridge.puppet.render import render_person
from bridge.puppet.synth import SynthOptions, random_sample, run_synth

SIZE = 96


def test_same_seed_same_pictures_other_seed_other_pictures(tmp_path: Path) -> None:
    opts = SynthOptions(count=6, seed=5, size=SIZE, characters=("all",), max_people=2)
    run_synth(tmp_path / "a", opts, progress=False)
    run_synth(tmp_path / "b", SynthOptions(**{**opts.__dict__, "count": 8}), progress=False)
    run_synth(tmp_path / "c", SynthOptions(**{**opts.__dict__, "seed": 6}), progress=False)
    for name in ("000001", "000003", "000005"):
        a = (tmp_path / "a" / "train" / f"{name}.png").read_bytes()
        assert a == (tmp_path / "b" / "train" / f"{name}.png").read_bytes()  # sample i ignores --count
        assert a != (tmp_path / "c" / "train" / f"{name}.png").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a" / "testA").iterdir()) == ["000000.png"]
    lines = (tmp_path / "a" / "keypoints.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["split"] == "test"


def test_random_poses_respect_the_joint_limits_and_fit_the_frame() -> None:
    rng = np.random.default_rng(0)
    seen: dict[str, list[float]] = {}
    for i in range(150):
        char = list(pp.CHARACTERS.values())[i % len(pp.CHARACTERS)]
        pose = pp.random_pose(rng, SIZE, char)
        for name, value in pose.angles().items():
            lo, hi = pp.limit_of(name)
            assert lo <= value <= hi, (name, value)
            seen.setdefault(name, []).append(value)
        pts = pp.pose_keypoints(pose, char)
        assert (pts[:, :2] >= 0).all() and (pts[:, :2] <= SIZE).all()
    for name, values in seen.items():  # the range is used, not just the rest pose
        lo, hi = pp.limit_of(name)
        assert max(values) - min(values) > 0.5 * (hi - lo), name
    # Out-of-range angles are clipped, never drawn.
    wild = pp.Pose(48, 50, 20, elbow_l=400.0, knee_r=-300.0, lean=90.0).clipped()
    assert (wild.elbow_l, wild.knee_r, wild.lean) == (150.0, -60.0, 18.0)


def test_dance_is_smooth_and_stays_in_frame() -> None:
    char = pp.CHARACTERS["bo"]
    poses = pp.dance(np.random.default_rng(3), SIZE, char, 60)
    pts = np.stack([pp.pose_keypoints(p, char)[:, :2] for p in poses])
    assert (pts >= 0).all() and (pts <= SIZE).all()
    step = np.abs(np.diff(pts, axis=0)).max()
    assert step < 0.08 * SIZE  # no joint jumps more than a few pixels between frames
    assert np.abs(pts[-1] - pts[0]).max() > 0.1 * SIZE  # and it does move


@pytest.mark.parametrize("layout", kp.LAYOUTS)
def test_pose_image_is_the_keypoint_render_and_the_person_is_aligned(layout: str) -> None:
    opts = SynthOptions(size=SIZE, layout=layout, characters=("all",), max_people=3, seed=2)
    for index in range(4):
        sample = random_sample(opts, index)
        # What a client sending these keypoints over OSC gets drawn, bit for bit.
        sent = kp.parse_keypoint_args(sample.frame.to_osc_args())
        np.testing.assert_array_equal(render_pose(kp.keypoints_to_pose(sent), "dp_segm"), sample.pose_rgb)
        np.testing.assert_array_equal(render_person(sent, sample.characters), sample.person_rgb)
        # Aligned: every body-part pixel of the pose image is painted in the person image, and the
        # person's extra pixels (hair, skirts) stay close to the body.
        body = (sample.pose_rgb != 255).any(-1)
        dressed = (sample.person_rgb != 255).any(-1)
        assert body.sum() > 100
        assert (dressed[body]).mean() > 0.99
        assert (dressed & ~body).sum() < 0.5 * body.sum()


def test_written_pairs_are_side_by_side_and_match_a_and_b(tmp_path: Path) -> None:
    run_synth(tmp_path, SynthOptions(count=3, size=SIZE, seed=1, sequence=True), progress=False)
    ab = read_rgb(tmp_path / "train" / "000000.png")
    a = read_rgb(tmp_path / "trainA" / "000000.png")
    b = read_rgb(tmp_path / "trainB" / "000000.png")
    assert ab.shape == (SIZE, 2 * SIZE, 3)
    np.testing.assert_array_equal(ab[:, :SIZE], a)
    np.testing.assert_array_equal(ab[:, SIZE:], b)
    frames = kp.read_keypoint_file(tmp_path / "keypoints.jsonl")
    again = render_pose(kp.keypoints_to_pose(frames["0"]), "dp_segm")
    np.testing.assert_array_equal(again, a)


def test_demo_dance_frames_and_skeleton() -> None:
    from bridge.cli.demo import dance_frames, skeleton

    frames = dance_frames(1.0, 8, SIZE, "mediapipe33", 2, seed=0)
    assert len(frames) == 8 and [f.frame_id for f in frames] == list(range(1, 9))
    assert all(f.count == 2 and f.layout == "mediapipe33" for f in frames)
    again = dance_frames(1.0, 8, SIZE, "mediapipe33", 2, seed=0)
    np.testing.assert_array_equal(frames[3].people, again[3].people)
    img = skeleton(frames[0])
    assert img.shape == (SIZE, SIZE, 3) and (img != 255).any()
    assert len(kp.keypoints_to_pose(frames[0]).instances) == 2


def test_demo_plays_through_a_real_bridge_serving_the_puppet(tmp_path: Path) -> None:
    import subprocess
    import sys

    import cv2

    from conftest import REPO, start_bridge

    running = start_bridge(tmp_path, "--model", "puppet")
    try:
        done = subprocess.run([sys.executable, "-m", "bridge", "demo", "-o", str(tmp_path / "d.mp4"), "--to",
                               f"127.0.0.1:{running.osc_port}", "--seconds", "1", "--fps", "8", "--people", "2",
                               "--no-progress"], capture_output=True, text=True, cwd=REPO, timeout=90)
    finally:
        running.stop()
    assert done.returncode == 0, done.stderr
    assert "8/8 frames" in done.stdout and "latency" in done.stdout
    video = cv2.VideoCapture(str(tmp_path / "d.mp4"))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    assert len(frames) == 8 and frames[0].shape == (256, 768, 3)
    output = frames[-1][40:, 512:]  # the bridge's picture, below the burnt-in figures
    assert (output < 200).any(axis=-1).mean() > 0.03  # a puppet, not a blank frame


def test_demo_without_a_bridge_says_so(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from conftest import REPO

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "bridge", "demo", "-o", str(tmp_path / "d.mp4"), "--to",
                           f"127.0.0.1:{port}", "--seconds", "1", "--timeout", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1 and "no bridge answers" in done.stderr
