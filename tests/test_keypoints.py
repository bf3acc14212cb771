"""Keypoint messages -> KeypointFrame -> DensePose-style parts -> the DensePose renderer's colours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bridge.pose import keypoints as kp
from bridge.puppet import skeleton as pp
from bridge.errors import ClientError
from bridge.pose.render import colormap_lut, render_pose
from bridge.pose.types import PART_NAMES

import cv2

SIZE = 128
PART = {name: i for i, name in enumerate(PART_NAMES)}


def _common(facing_away: bool = False, **angles: float) -> np.ndarray:
    c = pp.CHARACTERS["ada"]
    pose = pp.Pose(SIZE / 2, SIZE * 0.55, SIZE * 0.22, facing_away=facing_away, **angles)
    return pp.pose_keypoints(pose, c)


def _args(layout: str, people: list[np.ndarray], frame_id: int = 7, normalised: bool = False) -> list:
    flat: list[float] = []
    for common in people:
        joints = kp.from_common(common, layout).astype(np.float64)
        if normalised:
            joints[:, 0] /= SIZE
            joints[:, 1] /= SIZE
        flat += joints.reshape(-1).tolist()
    return [layout, frame_id, SIZE, SIZE, *flat]


@pytest.mark.parametrize("layout", kp.LAYOUTS)
def test_every_layout_parses_to_the_same_common_skeleton(layout: str) -> None:
    common = _common()
    frame = kp.parse_keypoint_args(_args(layout, [common]))
    assert (frame.layout, frame.frame_id, frame.width, frame.height, frame.count) == (layout, 7, SIZE, SIZE, 1)
    assert frame.people.shape == (1, len(kp.LAYOUT_JOINTS[layout]), 3) and not frame.normalised
    back = frame.common()[0]
    # coco17 has no hand/toe points: they come back missing and are extrapolated when drawn.
    named = [i for n, i in kp.C.items() if n in {j for j in kp.COMMON_FROM_LAYOUT[layout]}]
    np.testing.assert_allclose(back[named, :2], common[named, :2], atol=1e-3)
    assert (back[named, 2] > 0).all()
    labels = kp.keypoints_to_pose(frame).instances[0].labels
    reference = kp.keypoints_to_pose(kp.parse_keypoint_args(_args("coco17", [common])))
    # Every layout draws the puppet as the same body (at most a few edge pixels differ by rounding).
    assert (labels != reference.instances[0].labels).mean() < 0.002


@pytest.mark.parametrize("layout", kp.LAYOUTS)
def test_normalised_coordinates_by_rule_and_by_suffix(layout: str) -> None:
    common = _common()
    pixels = kp.parse_keypoint_args(_args(layout, [common]))
    auto = kp.parse_keypoint_args(_args(layout, [common], normalised=True))
    suffixed = kp.parse_keypoint_args([layout + "n", *_args(layout, [common], normalised=True)[1:]])
    assert auto.normalised and suffixed.normalised and not pixels.normalised
    np.testing.assert_allclose(auto.people, pixels.people, atol=1e-3)
    np.testing.assert_allclose(suffixed.people, pixels.people, atol=1e-3)
    # "px" forces pixels even when every value is small; a MediaPipe joint just off-frame stays normalised.
    tiny = kp.parse_keypoint_args([layout + "px", *_args(layout, [common], normalised=True)[1:]])
    assert not tiny.normalised and float(tiny.people[..., :2].max()) <= 2.0
    off = _args(layout, [common], normalised=True)
    off[4] = -0.05
    assert kp.parse_keypoint_args(off).normalised


def test_several_people_become_several_instances_nearest_last() -> None:
    big = _common()
    small = big.copy()
    small[:, :2] = small[:, :2] * 0.5 + 5
    frame = kp.parse_keypoint_args(_args("body25", [big, small]))
    assert frame.count == 2
    result = kp.keypoints_to_pose(frame)
    assert len(result.instances) == 2
    areas = [int((inst.labels > 0).sum()) for inst in result.instances]
    assert areas[0] < areas[1]  # the smaller (farther) one is drawn first
    assert [i for i, _ in kp.posed_people(frame)] == [1, 0]


def test_missing_joints_are_left_out_gracefully() -> None:
    common = _common(shoulder_l=90.0)
    args = _args("coco17", [common])
    names = kp.LAYOUT_JOINTS["coco17"]
    low = list(args)
    low[4 + 3 * names.index("left_wrist") + 2] = 0.1  # below min_score: the forearm and hand go
    inst = kp.keypoints_to_pose(kp.parse_keypoint_args(low)).instances[0]
    assert not np.isin(inst.labels, [PART["lower_arm_left_front"], PART["left_hand"]]).any()
    assert (inst.labels == PART["upper_arm_left_front"]).any()
    # Hips out of frame (a webcam): the torso still hangs below the shoulders.
    no_hips = list(args)
    for j in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"):
        no_hips[4 + 3 * names.index(j) + 2] = 0.0
    inst = kp.keypoints_to_pose(kp.parse_keypoint_args(no_hips)).instances[0]
    assert (inst.labels == PART["torso_front"]).sum() > 100
    assert not np.isin(inst.labels, list(range(5, 15))).any()  # no legs, no feet
    # Nobody visible at all, or nobody sent: an empty result, no error.
    nobody = [*args[:4], *[0.0] * (len(args) - 4)]
    assert kp.keypoints_to_pose(kp.parse_keypoint_args(nobody)).empty
    assert kp.keypoints_to_pose(kp.parse_keypoint_args(args[:4])).empty
    # Body partly outside the frame: drawn cropped, box inside the frame.
    shifted = kp.parse_keypoint_args(_args("coco17", [common + np.array([SIZE * 0.45, 0, 0], np.float32)]))
    inst = kp.keypoints_to_pose(shifted).instances[0]
    x, y, w, h = inst.box_xywh
    assert x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE


@pytest.mark.parametrize("args, code, words", [
    (["coco17", 1, 64, 64, *[1.0] * 50], "bad_keypoints", "51 values each"),
    (["mediapipe33", 1, 64, 64, *[1.0] * 100], "bad_keypoints", "mediapipe33"),
    (["coco17", 1, 64, 64, *[1.0] * 50, math.nan], "bad_keypoints", "NaN"),
    (["body25", 1, 64, 64, *[1.0] * 74, math.inf], "bad_keypoints", "right_heel"),
    (["coco18", 1, 64, 64], "bad_keypoints", "unknown keypoint layout"),
    (["coco17", 1, 64, 64, "x", *[1.0] * 50], "bad_keypoints", "must be numbers"),
    ([17, 1, 64, 64], "bad_keypoints", "layout name"),
    (["coco17", 1.5, 64, 64], "bad_keypoints", "frame_id"),
    (["coco17", 1, 64], "bad_keypoints", "needs"),
    (["coco17", 1, 0, 64], "bad_dimensions", "0x64"),
    (["coco17", 1, 64, 64, *[1.0] * 51 * 33], "bad_keypoints", "at most"),
])
def test_bad_messages_raise_clear_client_errors(args: list, code: str, words: str) -> None:
    with pytest.raises(ClientError) as info:
        kp.parse_keypoint_args(args)
    assert info.value.code == code
    assert words in info.value.message


def _expected_dp_segm(labels_full: np.ndarray) -> np.ndarray:
    """dp_segm over white, from the documented palette: part I -> PARULA[int(I * 255/24)], alpha 0.7."""
    lut = colormap_lut(cv2.COLORMAP_PARULA)
    out = np.full(labels_full.shape + (3,), 255, np.uint8)
    fg = labels_full > 0
    idx = np.clip(labels_full.astype(np.float32) * np.float32(255 / 24), 0, 255).astype(np.uint8)
    bgr = (255 * 0.3 + lut[idx].astype(np.float64) * 0.7).astype(np.uint8)
    out[fg] = bgr[fg][:, ::-1]
    return out


def _full_labels(result) -> np.ndarray:  # type: ignore[no-untyped-def]
    full = np.zeros((result.height, result.width), np.uint8)
    for inst in result.instances:
        x, y, w, h = inst.box_xywh
        view = full[y:y + h, x:x + w]
        view[inst.labels > 0] = inst.labels[inst.labels > 0]
    return full


@pytest.mark.parametrize("facing_away", [False, True])
def test_parts_colours_and_drawing_order_pixel_by_pixel(facing_away: bool) -> None:
    # The left forearm swings across the torso: arms are drawn over the torso.
    common = _common(facing_away=facing_away, shoulder_l=-30.0, elbow_l=-20.0, shoulder_r=100.0)
    result = kp.keypoints_to_pose(kp.parse_keypoint_args(_args("coco17", [common])))
    inst = result.instances[0]
    full = _full_labels(result)
    image = render_pose(result, "dp_segm")
    np.testing.assert_array_equal(image, _expected_dp_segm(full))
    side = "back" if facing_away else "front"
    present = set(np.unique(inst.labels)) - {0}
    assert PART[f"torso_{side}"] in present and PART[f"torso_{'front' if facing_away else 'back'}"] not in present
    assert {PART["head_left"], PART["head_right"], PART["left_hand"], PART["right_hand"], PART["left_foot"],
            PART["right_foot"], PART[f"upper_leg_left_{side}"], PART[f"lower_arm_right_{side}"]} <= present
    # Camera-facing: the person's left is on the image's right (and the other way round from behind).
    lw = common[kp.C["left_wrist"], :2]
    rw = common[kp.C["right_wrist"], :2]
    assert (lw[0] > rw[0]) != facing_away
    x, y, _, _ = inst.box_xywh
    hl = np.argwhere(inst.labels == PART["head_left"])[:, 1].mean()
    hr = np.argwhere(inst.labels == PART["head_right"])[:, 1].mean()
    assert (hl > hr) != facing_away
    # Drawing order: where the left forearm crosses the torso, the forearm shows.
    crossing = (full == PART[f"lower_arm_left_{side}"]) | (full == PART[f"upper_arm_left_{side}"])
    mid = (common[kp.C["neck"], :2] + common[kp.C["mid_hip"], :2]) / 2
    assert crossing[int(mid[1]) - 5:int(mid[1]) + 15, :].any()
    torso_mask = np.zeros_like(full, bool)
    trap = [s for s in kp.person_shapes(common) if s.kind == "trapezoid"][0]
    sub = np.zeros((SIZE, SIZE), np.uint8)
    uv = np.zeros((2, SIZE, SIZE), np.float32)
    kp._paint(sub, uv, trap, 0, 0)
    torso_mask = sub > 0
    assert (crossing & torso_mask).any()
    # U runs along limbs (0 at the shoulder end), V across (0.5 on the axis).
    arm = inst.labels == PART[f"upper_arm_right_{side}"]
    us = inst.uv[0][arm]
    assert us.min() < 0.2 and us.max() > 0.8 and (inst.uv[:, inst.labels == 0] == 0).all()


def test_openpose_json_csv_and_jsonl_files(tmp_path: Path) -> None:
    common = _common()
    body = kp.from_common(common, "body25")
    folder = tmp_path / "openpose"
    folder.mkdir()
    (folder / "clip_000000000003_keypoints.json").write_text(json.dumps(
        {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": body.reshape(-1).tolist()}]}))
    (folder / "clip_000000000004_keypoints.json").write_text(json.dumps({"version": 1.3, "people": []}))
    frames = kp.read_keypoint_file(folder)
    assert set(frames) == {"3", "4"} and frames["3"].layout == "body25" and frames["4"].count == 0
    sized = kp.with_size(frames["3"], SIZE, SIZE)
    np.testing.assert_allclose(sized.people[0], body, atol=1e-4)
    # CSV: joint names or indices, normalised via the layout suffix; unlisted joints are missing.
    coco = kp.from_common(common, "coco17")
    rows = ["frame,person,joint,x,y,score"]
    for j, name in enumerate(kp.LAYOUT_JOINTS["coco17"]):
        rows.append(f"img_0012.png,0,{name if j % 2 else j},{coco[j, 0] / SIZE},{coco[j, 1] / SIZE},0.9")
    rows.append(f"img_0013.png,0,nose,{coco[0, 0] / SIZE},{coco[0, 1] / SIZE},0.9")
    (tmp_path / "k.csv").write_text("\n".join(rows) + "\n")
    frames = kp.read_keypoint_file(tmp_path / "k.csv", "coco17n")
    assert set(frames) == {"12", "13"}
    np.testing.assert_allclose(kp.with_size(frames["12"], SIZE, SIZE).people[0, :, :2], coco[:, :2], atol=1e-3)
    assert (frames["13"].people[0, 1:, 2] == 0).all()
    with pytest.raises(ClientError):
        kp.read_keypoint_file(tmp_path / "k.csv")  # CSV needs its layout
    # JSON lines (what synth writes) round-trip.
    frame = kp.parse_keypoint_args(_args("mediapipe33", [common]))
    (tmp_path / "k.jsonl").write_text(kp.frames_to_jsonl([("000001", frame)]))
    back = kp.read_keypoint_file(tmp_path / "k.jsonl")["1"]
    np.testing.assert_allclose(back.people, frame.people, atol=1e-3)
    assert back.width == SIZE and back.layout == "mediapipe33"


def test_osc_args_round_trip() -> None:
    frame = kp.parse_keypoint_args(_args("coco17", [_common(), _common()]))
    for normalised in (False, True):
        again = kp.parse_keypoint_args(frame.to_osc_args(normalised))
        np.testing.assert_allclose(again.people, frame.people, atol=1e-3)
        assert again.normalised == normalised
