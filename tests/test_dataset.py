"""pose2person dataset build: a real video and an image folder with keypoint files -> aligned pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from bridge.pose import keypoints as kp
from bridge.puppet import skeleton as pp
from bridge.datasets.build import square
from bridge.datasets.layout import read_rgb
from bridge.puppet.render import render_person

REPO = Path(__file__).resolve().parent.parent
W, H, SIDE = 128, 96, 96  # a landscape camera frame; the puppet dances in its middle square


def _dance_frames(n: int) -> list[tuple[np.ndarray, kp.KeypointFrame]]:
    """(BGR camera frame, its keypoints in that frame's pixels) for a puppet dance."""
    char = pp.CHARACTERS["ada"]
    out = []
    for i, pose in enumerate(pp.dance(np.random.default_rng(1), SIDE, char, n)):
        square_frame = pp.keypoint_frame([pose], [char], SIDE, "coco17", i)
        person = render_person(square_frame, [char])
        camera = np.full((H, W, 3), 255, np.uint8)
        x0 = (W - SIDE) // 2
        camera[:, x0:x0 + SIDE] = person[..., ::-1]
        people = square_frame.people.copy()
        people[..., 0] += x0
        out.append((camera, kp.KeypointFrame("coco17", i, W, H, people)))
    return out


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "dataset", "build", *args, "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_video_with_keypoints_builds_aligned_pairs_and_says_what_it_dropped(tmp_path: Path) -> None:
    frames = _dance_frames(12)
    video = tmp_path / "me.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for bgr, _ in frames:
        writer.write(bgr)
    writer.release()
    records = [(str(i), f) for i, (_, f) in enumerate(frames)]
    del records[3]  # frame 3: no keypoints at all
    empty = kp.KeypointFrame("coco17", 5, W, H, np.zeros((0, 17, 3), np.float32))
    records[4] = ("5", empty)  # frame 5: nobody
    two = kp.KeypointFrame("coco17", 7, W, H, np.concatenate([frames[7][1].people, frames[7][1].people * 0.5]))
    records[6] = ("7", two)  # frame 7: two people
    (tmp_path / "k.jsonl").write_text(kp.frames_to_jsonl(records))
    out = tmp_path / "ds"
    done = _cli(str(video), "--out", str(out), "--keypoints", str(tmp_path / "k.jsonl"), "--size", "64",
                "--every", "1", "--test-fraction", "0.5")
    assert done.returncode == 0, done.stderr
    # 9 kept: the last half in time (frames 8-11) is held out; of the 0.5 s gap before it only frame 6
    # goes (a longer gap would leave fewer training than test frames).
    assert "kept 4 train + 4 test" in done.stdout
    assert "1 no keypoints" in done.stdout and "1 no person" in done.stdout and "1 too many people" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped"] == {"no_keypoints": 1, "no_person": 1, "too_many_people": 1, "test_gap": 1}
    names = sorted(p.name for p in (out / "trainA").iterdir())
    assert names == ["me_000000.png", "me_000001.png", "me_000002.png", "me_000004.png"]
    assert sorted(p.name for p in (out / "testB").iterdir()) == [f"me_{i:06d}.png" for i in (8, 9, 10, 11)]
    assert any("gap shortened" in w for w in summary["warnings"])
    assert summary["settings"] == {"framing": "letterbox", "pad_color": [255, 255, 255], "pose_source": "keypoints",
                                   "pose_style": "dp_segm", "keypoint_layout": "coco17", "size": 64}
    for split in ("train", "trainB", "testA", "testB", "test"):
        assert (out / split).is_dir()
    # Aligned: the pose image's body lies where the photo's person is (letterbox, white pad).
    a = read_rgb(out / "trainA" / "me_000002.png")
    b = read_rgb(out / "trainB" / "me_000002.png")
    assert a.shape == b.shape == (64, 64, 3)
    body, person = (a < 235).any(-1), (b < 200).any(-1)
    assert (person[body]).mean() > 0.8 and (body[person]).mean() > 0.6
    # More people allowed: frame 7 is kept, with both people drawn.
    again = _cli(str(video), "--out", str(tmp_path / "ds2"), "--keypoints", str(tmp_path / "k.jsonl"), "--size",
                 "64", "--max-people", "2", "--max-frames", "8", "--framing", "center-crop")
    assert again.returncode == 0, again.stderr
    # Frames 0-7, 6 kept: frame 7 held out, frames 4 and 6 (within 0.5 s before it) the gap.
    assert "kept 3 train + 1 test" in again.stdout and "2 test gap" in again.stdout


def test_image_folder_with_openpose_json_and_errors(tmp_path: Path) -> None:
    frames = _dance_frames(4)
    images, poses = tmp_path / "shots", tmp_path / "openpose"
    images.mkdir()
    poses.mkdir()
    for i, (bgr, frame) in enumerate(frames):
        cv2.imwrite(str(images / f"shot_{i:04d}.png"), bgr)
        body25 = kp.from_common(frame.common()[0], "body25")
        (poses / f"shot_{i:012d}_keypoints.json").write_text(json.dumps(
            {"version": 1.3, "people": [{"pose_keypoints_2d": body25.reshape(-1).tolist()}]}))
    (images / "notes.txt").write_text("not an image")
    done = _cli(str(images), "--out", str(tmp_path / "ds"), "--keypoints", str(poses), "--size", "48",
                "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    assert "kept 4 train + 0 test" in done.stdout
    ab = read_rgb(tmp_path / "ds" / "train" / "shots_shot_0001.png")
    assert ab.shape == (48, 96, 3)
    bad = _cli(str(images), "--out", str(tmp_path / "x"), "--pose", "keypoints")
    assert bad.returncode == 1 and "--keypoints FILE, one per input" in bad.stderr
    both = _cli(str(images), "--out", str(tmp_path / "x"), "--pose", "tracker", "--keypoints", str(poses))
    assert both.returncode == 1 and "--keypoints is for --pose keypoints" in both.stderr
    two = _cli(str(images), str(images), "--out", str(tmp_path / "x"), "--keypoints", str(poses))
    assert two.returncode == 1 and "exactly one per input" in two.stderr
    missing = _cli(str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "x"), "--keypoints", str(poses))
    assert missing.returncode == 1 and "no such input" in missing.stderr


def test_square_framing() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    boxed = square(img, "letterbox", (255, 255, 255), 40)
    assert boxed.shape == (40, 40, 3)
    assert (boxed[:10] == 255).all() and (boxed[10:30] == 0).all() and (boxed[30:] == 255).all()
    cropped = square(np.arange(20 * 40 * 3, dtype=np.uint8).reshape(20, 40, 3), "center-crop", (0, 0, 0), 20)
    assert cropped.shape == (20, 20, 3)
