"""``pose2person pose``: images and videos in, pose images out, through the real CLI entry point
(random weights in the official layout, written here)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bridge.cli import main
from densepose_ckpt import official_arrays, write_pth

R50 = "densepose_rcnn_R_50_FPN_s1x"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pth(tmp_path_factory.mktemp("dp") / "model_final.pth", official_arrays(R50, seed=4))


def _args(weights: Path, *extra: str) -> list[str]:
    return ["pose", "--weights", str(weights), "--short-side", "64", "--max-people", "1", "--no-progress", *extra]


def test_image_to_folder_and_file(weights: Path, tmp_path: Path) -> None:
    frame = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3)).astype(np.uint8)
    src = tmp_path / "person.jpg"
    Image.fromarray(frame).save(src, quality=95)
    assert main(_args(weights, str(src), "-o", str(tmp_path / "out"))) == 0
    first = np.asarray(Image.open(tmp_path / "out" / "person.png"))
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert main(_args(weights, str(src), "-o", str(tmp_path / "single.png"), "--style", "black")) == 0
    black = np.asarray(Image.open(tmp_path / "single.png"))
    assert black.shape == (48, 64, 3)
    assert (black == 0).all(axis=2).any() and not (black == 0).all()  # a person on black


def test_video_to_frames_and_to_video(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(1)
    for _ in range(2):
        writer.write(rng.integers(0, 256, size=(48, 64, 3)).astype(np.uint8))
    writer.release()
    assert main(_args(weights, str(src), "-o", str(tmp_path / "frames"))) == 0
    frames = sorted((tmp_path / "frames" / "clip").glob("clip_*.png"))
    assert [f.name for f in frames] == ["clip_00001.png", "clip_00002.png"]
    assert main(_args(weights, str(src), "-o", str(tmp_path / "pose.avi"), "--style", "vid2densepose")) == 0
    cap = cv2.VideoCapture(str(tmp_path / "pose.avi"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 2


def test_errors_are_reported_not_raised(weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src)
    assert main(["pose", str(src), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "nope.pkl"),
                 "--no-progress"]) == 1
    assert "nope.pkl" in caplog.text
    assert main(["pose", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--weights", str(weights)]) == 1
    assert main(["pose", str(src), "-o", str(tmp_path / "o.mp4"), "--weights", str(weights)]) == 1
    caplog.clear()
    assert main(_args(weights, str(src), "-o", str(tmp_path / "o"), "--config", "R_101_FPN_s1x")) == 1
    assert "looks like a densepose_rcnn_R_50_FPN_s1x checkpoint" in caplog.text
