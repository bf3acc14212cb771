"""Pose coverage: how well a dataset's poses cover the poses an audience will make.

A model of a person draws well only the poses it has seen something close to (docs/TRAINING.md:
a 40-s single dance left arms blurry in every pose the dance lacked). This module measures that
before any training:

* **Probe poses**: a fixed, seeded set of :data:`PROBE_COUNT` poses drawn from the synthetic
  puppet's pose distribution (:func:`bridge.puppet.skeleton.random_pose`: all four characters,
  one in ten seen from behind), shipped as ``probe_poses.npz`` beside this module (common-skeleton
  keypoints fitted into a unit square). ``python -m bridge.puppet.probes`` rewrites the file; the
  test-suite checks it is exactly what that function makes.
* **The joint-angle space** (:func:`pose_features`): for each pose, the direction in the picture
  of ten body segments (torso, head, both upper arms, forearms, thighs, shins), in degrees, 0 =
  pointing down, plus how far it faces away (0 = facing the camera, 90 = side view, 180 = seen from
  behind, from the signed widths of the shoulder and hip lines against the torso length).
  Directions do not change when a body moves or scales, so framing and distance to the camera do
  not matter. **Mirrors are different poses**: the left and right limbs keep their names (the pose
  image draws them in different colours, so a model that saw the left arm raised has not seen the
  right one raised), and a body seen from behind is a different pose from the same body seen from
  the front.
* **Distance** (:func:`distances`): the root mean square, over the eleven angles, of the
  difference (segment directions wrap around: 350 and 10 degrees are 20 apart). A segment a
  dataset pose lacks (legs out of the frame, a joint below the score threshold) counts
  :data:`MISSING_DEG` off, as far as two unrelated directions are on average.
* **Covered**: a probe whose nearest dataset pose is within :data:`THRESHOLD_DEG`. The threshold
  is where the puppet's own training set (3,000 varied poses) covers nearly every probe and a
  single dance does not (docs/BENCHMARKS.md, "Pose coverage").
* **What to film next** (:func:`advice`): for each probe not covered, the angle farthest from its
  nearest dataset pose names what is missing, in words (:func:`describe`: "right arm raised
  overhead", "seen from behind", ...); the most frequent are the advice.

Numpy and OpenCV (the picture); no torch.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..pose import keypoints as kp
from ..pose.render import render_pose

PROBE_FILE = Path(__file__).with_name("probe_poses.npz")
PROBE_COUNT = 300
PROBE_SEED = 20261207
THRESHOLD_DEG = 20.0  # RMS joint-angle distance within which a probe counts as covered
MISSING_DEG = 90.0
FACING_FRONT_WIDTH = 1.1  # (shoulder + hip line widths) / torso length of a body facing the camera

#: (feature name, from joint, to joint); "torso" points from the hips up, the rest away from the body.
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("torso", "mid_hip", "neck"),
    ("head", "neck", "head"),  # "head": the ears' midpoint (the nose when an ear is missing)
    ("right_upper_arm", "right_shoulder", "right_elbow"),
    ("right_forearm", "right_elbow", "right_wrist"),
    ("left_upper_arm", "left_shoulder", "left_elbow"),
    ("left_forearm", "left_elbow", "left_wrist"),
    ("right_thigh", "right_hip", "right_knee"),
    ("right_shin", "right_knee", "right_ankle"),
    ("left_thigh", "left_hip", "left_knee"),
    ("left_shin", "left_knee", "left_ankle"),
)
FEATURES: tuple[str, ...] = tuple(s[0] for s in SEGMENTS) + ("facing",)
_FACING = len(FEATURES) - 1


@dataclass(frozen=True)
class Features:
    """``angles`` float64 ``(N, F)`` in degrees (see the module docstring), ``present`` bool ``(N, F)``."""

    angles: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return int(self.angles.shape[0])


def _points(commons: np.ndarray, name: str, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(xy ``(N, 2)``, present ``(N,)``) of one joint of every pose; "head" is the ears' midpoint,
    or the nose where an ear is missing."""
    if name == "head":
        (r_xy, r_ok), (l_xy, l_ok) = _points(commons, "right_ear", min_score), _points(commons, "left_ear", min_score)
        nose_xy, nose_ok = _points(commons, "nose", min_score)
        both = r_ok & l_ok
        return np.where(both[:, None], (r_xy + l_xy) / 2, nose_xy), both | nose_ok
    row = commons[:, kp.C[name]]
    return row[:, :2], row[:, 2] >= min_score


def _direction(v: np.ndarray) -> np.ndarray:
    """Degrees of vectors ``(N, 2)``: 0 = pointing down the picture, 90 = to the picture's right, +-180 = up."""
    return np.degrees(np.arctan2(v[:, 0], v[:, 1]))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def pose_features(commons: np.ndarray, min_score: float = kp.DEFAULT_MIN_SCORE) -> Features:
    """The joint-angle features of people on the common skeleton (``(N, COMMON_COUNT, 3)``, pixels)."""
    commons = np.asarray(commons, np.float64).reshape(-1, kp.COMMON_COUNT, 3)
    n = commons.shape[0]
    angles = np.zeros((n, len(FEATURES)), np.float64)
    present = np.zeros((n, len(FEATURES)), bool)
    for f, (_, a, b) in enumerate(SEGMENTS):
        (pa, oka), (pb, okb) = _points(commons, a, min_score), _points(commons, b, min_score)
        v = pb - pa
        ok = oka & okb & (np.hypot(v[:, 0], v[:, 1]) > 1e-6)
        angles[:, f] = np.where(ok, _direction(v), 0.0)
        present[:, f] = ok
    (neck, ok_n), (hip, ok_h) = _points(commons, "neck", min_score), _points(commons, "mid_hip", min_score)
    up = neck - hip
    length = np.hypot(up[:, 0], up[:, 1])
    ok = ok_n & ok_h & (length > 1e-6)
    unit = up / np.maximum(length, 1e-6)[:, None]
    signed = np.zeros(n)
    for joint in ("shoulder", "hip"):
        (left, ok_l), (right, ok_r) = (_points(commons, f"left_{joint}", min_score),
                                       _points(commons, f"right_{joint}", min_score))
        # Signed width: positive when the person's left is on the picture's right (facing us).
        signed += _cross(unit, left - right)
        ok &= ok_l & ok_r
    ratio = np.clip(signed / np.maximum(length, 1e-6) / FACING_FRONT_WIDTH, -1.0, 1.0)
    angles[:, _FACING] = np.where(ok, np.degrees(np.arccos(ratio)), 0.0)
    present[:, _FACING] = ok
    return Features(angles, present)


def _differences(a: Features, b: Features) -> np.ndarray:
    """``(len(a), len(b), F)`` absolute angle differences, :data:`MISSING_DEG` where either lacks one."""
    diff = np.abs(a.angles[:, None, :] - b.angles[None, :, :])
    diff[..., :_FACING] = np.minimum(diff[..., :_FACING], 360.0 - diff[..., :_FACING])
    both = a.present[:, None, :] & b.present[None, :, :]
    return np.where(both, diff, MISSING_DEG)


def nearest(probes: Features, data: Features, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For every probe: (RMS distance to the nearest dataset pose, that pose's index); inf / -1
    when the dataset is empty."""
    best = np.full(len(probes), np.inf)
    index = np.full(len(probes), -1, np.int64)
    for start in range(0, len(data), chunk):
        part = Features(data.angles[start:start + chunk], data.present[start:start + chunk])
        d = np.sqrt(np.mean(_differences(probes, part) ** 2, axis=-1))
        j = d.argmin(1)
        dj = d[np.arange(len(probes)), j]
        better = dj < best
        best[better], index[better] = dj[better], j[better] + start
    return best, index


def distances(a: Features, b: Features) -> np.ndarray:
    """``(len(a), len(b))`` RMS joint-angle distances."""
    return np.sqrt(np.mean(_differences(a, b) ** 2, axis=-1))


# -- probes -----------------------------------------------------------------------------------

def load_probes(path: Path = PROBE_FILE) -> np.ndarray:
    """The shipped probe poses: float32 ``(PROBE_COUNT, COMMON_COUNT, 3)``, in a unit square."""
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["keypoints"], np.float32)


# -- words ------------------------------------------------------------------------------------

def _side(name: str) -> str:
    return name.split("_", 1)[0]


def _bend(angles: np.ndarray, upper: str, lower: str) -> float:
    d = abs(angles[FEATURES.index(lower)] - angles[FEATURES.index(upper)]) % 360.0
    return min(d, 360.0 - d)


def describe(feature: str, angles: np.ndarray) -> str:
    """The pose of one body part of a probe (``angles``: its :data:`FEATURES` row), in words."""
    value = float(angles[FEATURES.index(feature)])
    lift = abs(value)  # 0 = pointing down, 180 = pointing up
    if feature == "facing":
        return "facing the camera" if value < 45 else ("side view" if value < 135 else "seen from behind")
    if feature == "torso":
        tilt = 180.0 - lift
        return "torso upright" if tilt < 8 else ("torso leaning sideways" if tilt < 20 else "torso leaning far over")
    if feature == "head":
        tilt = _bend(angles, "torso", "head")
        return "head straight" if tilt < 12 else "head tilted to one side"
    side = _side(feature)
    if feature.endswith("upper_arm"):
        return (f"{side} arm down" if lift < 35 else
                f"{side} arm out to the side" if lift < 120 else f"{side} arm raised overhead")
    if feature.endswith("forearm"):
        bend = _bend(angles, f"{side}_upper_arm", feature)
        return (f"{side} arm held straight" if bend < 45 else
                f"{side} elbow bent" if bend < 100 else f"{side} elbow sharply bent")
    if feature.endswith("thigh"):
        return (f"{side} leg straight down" if lift < 15 else
                f"{side} leg stepping out" if lift < 40 else f"{side} leg lifted high (kick, high step)")
    bend = _bend(angles, f"{side}_thigh", feature)
    return (f"{side} knee straight" if bend < 20 else
            f"{side} knee bent" if bend < 50 else f"{side} knee deeply bent (crouch, kick)")


_UPPER = {"right_forearm": "right_upper_arm", "left_forearm": "left_upper_arm", "right_shin": "right_thigh",
          "left_shin": "left_thigh", "head": "torso"}


def culprit(diff: np.ndarray) -> str:
    """The feature that most separates a probe from its nearest pose (``diff``: per-feature
    differences). A forearm, shin or head mostly follows its upper segment (directions are in the
    picture), so when the upper segment is off by at least half as much, it is named instead."""
    name = FEATURES[int(diff.argmax())]
    upper = _UPPER.get(name)
    if upper is not None and diff[FEATURES.index(upper)] >= 0.5 * diff.max():
        return upper
    return name


# -- the report -------------------------------------------------------------------------------

@dataclass
class CoverageReport:
    """Coverage of the probes by a dataset's poses (see the module docstring)."""

    distances: np.ndarray  # per probe, degrees
    nearest_index: np.ndarray  # per probe, the nearest dataset pose (-1: none)
    threshold: float
    dataset_poses: int
    advice: list[tuple[str, int]]  # (what to film, probes it would cover) most first

    @property
    def covered(self) -> float:
        return float(np.mean(self.distances <= self.threshold)) if len(self.distances) else 0.0

    def as_dict(self) -> dict[str, object]:
        finite = self.distances[np.isfinite(self.distances)]
        return {
            "probes": int(len(self.distances)),
            "dataset_poses": self.dataset_poses,
            "threshold_deg": self.threshold,
            "covered": round(self.covered, 4),
            "median_distance_deg": round(float(np.median(finite)), 2) if finite.size else None,
            "film_next": [{"pose": what, "probes": n} for what, n in self.advice],
            "space": "RMS over 10 segment directions + facing, degrees; left and right kept apart "
                     "(bridge/datasets/coverage.py)",
        }

    def lines(self) -> list[str]:
        """What ``dataset build`` and ``dataset coverage`` print."""
        out = [f"pose coverage: {self.covered:.0%} of {len(self.distances)} probe poses have a dataset pose within "
               f"{self.threshold:.0f} degrees (RMS joint angle; {self.dataset_poses} training poses)"]
        if self.advice:
            out.append("film next: " + "; ".join(f"{what} ({n} probes)" for what, n in self.advice))
        elif self.dataset_poses:
            out.append("film next: nothing stands out; more varied poses still help")
        return out


def advice(probe_features: Features, data: Features, dists: np.ndarray, index: np.ndarray, threshold: float,
           top: int = 5) -> list[tuple[str, int]]:
    """For each uncovered probe, the body part farthest from its nearest dataset pose, in words;
    the ``top`` most frequent (what to film next) with how many probes each would help."""
    counts: Counter = Counter()
    for p in np.flatnonzero(dists > threshold):
        row = probe_features.angles[p]
        if index[p] < 0:
            worst = 0
        else:
            one = Features(data.angles[index[p]:index[p] + 1], data.present[index[p]:index[p] + 1])
            diff = _differences(Features(probe_features.angles[p:p + 1], probe_features.present[p:p + 1]), one)[0, 0]
            worst = FEATURES.index(culprit(diff))
        counts[describe(FEATURES[worst], row)] += 1
    return counts.most_common(top)


def coverage(data_commons: np.ndarray, probes: np.ndarray | None = None, threshold: float = THRESHOLD_DEG,
             min_score: float = kp.DEFAULT_MIN_SCORE) -> CoverageReport:
    """Coverage of ``probes`` (default: the shipped ones) by the poses ``data_commons``
    (``(N, COMMON_COUNT, 3)`` common-skeleton keypoints, any pixel scale)."""
    probes = load_probes() if probes is None else probes
    pf = pose_features(probes, min_score)
    df = pose_features(data_commons, min_score)
    dists, index = nearest(pf, df)
    return CoverageReport(dists, index, threshold, len(df), advice(pf, df, dists, index, threshold))


# -- the picture ------------------------------------------------------------------------------

def fit_common(common: np.ndarray, size: int, margin: float = 0.12) -> np.ndarray:
    """One person's common keypoints moved and scaled so the visible body fills a ``size`` square."""
    out = np.array(common, np.float32, copy=True)
    visible = out[:, 2] >= kp.DEFAULT_MIN_SCORE
    if not visible.any():
        return out
    lo, hi = out[visible, :2].min(0), out[visible, :2].max(0)
    span = float(max((hi - lo).max(), 1e-6))
    scale = size * (1 - 2 * margin) / span
    out[:, :2] = (out[:, :2] - (lo + hi) / 2) * scale + size / 2
    return out


def draw_common(common: np.ndarray | None, size: int, style: str = "dp_segm") -> np.ndarray:
    """RGB picture of one person (the keypoint drawing the daemon serves), white when None."""
    if common is None:
        return np.full((size, size, 3), 255, np.uint8)
    frame = kp.KeypointFrame("coco17", 0, size, size, kp.from_common(fit_common(common, size), "coco17")[None])
    return render_pose(kp.keypoints_to_pose(frame), style)


def write_picture(report: CoverageReport, probes: np.ndarray, data_commons: np.ndarray, path: Path,
                  count: int = 8, size: int = 112) -> None:
    """``count`` worst-covered probes, each beside the nearest dataset pose, with the distance and
    what is missing; two pairs per row."""
    probes = np.asarray(probes)
    order = np.argsort(-report.distances, kind="stable")[:count]
    pf = pose_features(probes)
    df = pose_features(data_commons) if len(data_commons) else None
    tiles = []
    for p in order:
        j = int(report.nearest_index[p])
        probe_img = draw_common(probes[p], size)
        near_img = draw_common(data_commons[j] if j >= 0 else None, size)
        if j >= 0 and df is not None:
            one = Features(df.angles[j:j + 1], df.present[j:j + 1])
            diff = _differences(Features(pf.angles[p:p + 1], pf.present[p:p + 1]), one)[0, 0]
            what = describe(culprit(diff), pf.angles[p])
        else:
            what = "no dataset pose"
        caption = np.full((30, 2 * size, 3), 255, np.uint8)
        cv2.putText(caption, f"probe {p}: {report.distances[p]:.0f} deg off", (4, 12), cv2.FONT_HERSHEY_SIMPLEX,
                    0.36, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(caption, what[:38], (4, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (160, 0, 0), 1, cv2.LINE_AA)
        tile = np.concatenate([caption, np.concatenate([probe_img, near_img], 1)], 0)
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=200))
    if not tiles:
        return
    while len(tiles) % 2:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)]
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(header, "worst-covered probe poses | nearest pose in the dataset", (4, 15), cv2.FONT_HERSHEY_SIMPLEX,
                0.42, (0, 0, 0), 1, cv2.LINE_AA)
    picture = np.concatenate([header, *rows], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), picture[..., ::-1])


# -- datasets on disk -------------------------------------------------------------------------

def dataset_poses(folder: Path, split: str = "train") -> np.ndarray:
    """Common keypoints of a dataset folder's ``split`` poses, from its ``keypoints.jsonl``
    (``dataset build`` and ``pose2person synth`` write it); one person per frame (the first).

    Raises FileNotFoundError when the folder has no ``keypoints.jsonl``."""
    path = Path(folder) / "keypoints.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (datasets built before pose coverage have none: build again)")
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("split", "train") != split or not rec.get("people"):
            continue
        layout, _ = kp.split_layout(str(rec["layout"]))
        frame = kp.make_frame(layout, 0, int(rec["width"]), int(rec["height"]), rec["people"][0], False)
        out.append(frame.common()[0])
    return np.stack(out) if out else np.zeros((0, kp.COMMON_COUNT, 3), np.float32)


def report_folder(folder: Path, picture: bool = True) -> CoverageReport:
    """Coverage of a dataset folder's training poses; writes ``coverage.png`` there when asked."""
    poses = dataset_poses(folder)
    probes = load_probes()
    report = coverage(poses, probes)
    if picture:
        write_picture(report, probes, poses, Path(folder) / "coverage.png")
    return report


def commons_of(frames: Iterable[kp.KeypointFrame]) -> np.ndarray:
    """The first person of each keypoint frame on the common skeleton."""
    rows = [f.common()[0] for f in frames if f.count]
    return np.stack(rows) if rows else np.zeros((0, kp.COMMON_COUNT, 3), np.float32)
