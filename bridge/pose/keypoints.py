"""Body keypoints as a pose source: parse them, map them to one skeleton, draw DensePose-style parts.

Clients that already track bodies (PoseNet/MoveNet/ml5 = ``coco17``, MediaPipe Pose = ``mediapipe33``,
OpenPose = ``body25``) send points instead of pixels::

    /pose2person/keypoints s layout i frame_id i width i height f x f y f score ...

The floats are flat so Pd and Max can send them: people one after another, each ``joints`` triples of
``x y score`` in the layout's joint order (tables below). ``width`` and ``height`` are the camera
frame's size in pixels; the pose image has that size.

Coordinates (the rule, in this order):

* layout name ending in ``n`` (``coco17n``, ``mediapipe33n``, ``body25n``): normalised, x in [0, 1]
  of ``width`` and y in [0, 1] of ``height`` (MediaPipe, MoveNet after swapping its y/x order);
* layout name ending in ``px`` (``coco17px``): pixels;
* plain layout name: normalised when every joint with a positive score has |x| <= 2 and |y| <= 2
  (MediaPipe sends off-frame joints slightly outside [0, 1]), pixels otherwise. A body whose
  visible joints all lie within two pixels of the frame's corner is not a body, so real pixel
  data is never misread.

Scores: a joint whose score is below ``min_score`` (default 0.3) is missing; so is OpenPose's
``0 0 0`` filler. Clients without scores send 1. Limbs with a missing end are left out, a missing
hip line is replaced by a torso extended below the shoulders (webcam framing), and a missing
hand or foot tip is extrapolated from the forearm or shin. Nothing about missing joints is an error.

Errors (``bridge.errors.ClientError``, code ``bad_keypoints``): unknown layout, a value count that
is not a whole number of people, NaN or infinite values, non-numeric values, too many people.
Impossible ``width``/``height`` give ``bad_dimensions``.

The common skeleton (:data:`COMMON_JOINTS`) is what every layout maps to; ``neck`` and
``mid_hip`` are the shoulder and hip midpoints where a layout has no such joint, ``*_hand`` is
the middle of the hand (MediaPipe: between index and pinky knuckles), ``*_toe`` the toes.

Drawing (:func:`keypoints_to_pose`) turns each person into a :class:`bridge.pose.types.PoseInstance`
in DensePose's 24-part vocabulary, as a camera-facing body: the person's left is the image's right.
When the person's left shoulder (or hip) is clearly on the image's left, the body faces away and
the ``*_back`` parts are used. U runs along each limb from its proximal joint (0) to its distal
joint (1); V runs across it from one edge (0) to the other (1). Painting order (later covers
earlier): legs, torso, head, arms; people are sorted by body size so nearer (bigger) people cover
farther ones. Numpy only.

Keypoint files for ``pose2person dataset build``: see :func:`read_keypoint_file`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ClientError
from .types import PART_NAMES, PoseInstance, PoseResult

ERROR_CODE = "bad_keypoints"
MAX_PEOPLE = 32  # per message; the UDP packet limit allows ~40 coco17 people
MAX_FRAME_SIDE = 16384  # as shm/open
DEFAULT_MIN_SCORE = 0.3
_AUTO_NORMALISED_LIMIT = 2.0  # |x|, |y| at or below this => normalised (see the module docstring)

#: The common skeleton every layout maps to.
COMMON_JOINTS: tuple[str, ...] = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "mid_hip",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
    "right_hand", "left_hand", "right_toe", "left_toe",
)
C = {name: i for i, name in enumerate(COMMON_JOINTS)}
COMMON_COUNT = len(COMMON_JOINTS)

#: Joint names of each layout, in wire order.
LAYOUT_JOINTS: dict[str, tuple[str, ...]] = {
    # PoseNet / MoveNet / ml5 / COCO keypoints.
    "coco17": (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    # MediaPipe Pose landmarks (BlazePose 33).
    "mediapipe33": (
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    # OpenPose BODY_25.
    "body25": (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
        "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ),
}
LAYOUTS: tuple[str, ...] = tuple(LAYOUT_JOINTS)

#: layout -> common joint -> the layout joints whose mean it is (all must be present).
#: Joints not listed (coco17 hands and toes, ...) are derived by :func:`to_common`.
_DIRECT = ("nose", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
           "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
           "right_eye", "left_eye", "right_ear", "left_ear")
COMMON_FROM_LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "coco17": {**{j: (j,) for j in _DIRECT},
               "neck": ("left_shoulder", "right_shoulder"), "mid_hip": ("left_hip", "right_hip")},
    "mediapipe33": {**{j: (j,) for j in _DIRECT},
                    "neck": ("left_shoulder", "right_shoulder"), "mid_hip": ("left_hip", "right_hip"),
                    "right_hand": ("right_index", "right_pinky"), "left_hand": ("left_index", "left_pinky"),
                    "right_toe": ("right_foot_index",), "left_toe": ("left_foot_index",)},
    "body25": {**{j: (j,) for j in _DIRECT}, "neck": ("neck",), "mid_hip": ("mid_hip",),
               "right_toe": ("right_big_toe",), "left_toe": ("left_big_toe",)},
}

# Body proportions used for drawing, in units of the body scale S (about the neck-to-mid-hip length).
HALF_WIDTH = {  # capsule radius per limb
    "upper_arm": 0.115, "lower_arm": 0.095, "hand": 0.085,
    "upper_leg": 0.155, "lower_leg": 0.12, "foot": 0.085,
}
HAND_EXTENT = 0.32  # hand tip beyond the wrist, as a fraction of the forearm
FOOT_EXTENT = 0.22  # toe beyond the ankle, as a fraction of the shin
HEAD_HALF_WIDTH = 0.19
HEAD_HALF_HEIGHT = 0.24
NECK_HALF_WIDTH = 0.09
TORSO_MIN_HALF_WIDTH = 0.17  # keeps a side-on torso visible
TORSO_PAD = 0.08  # torso edge beyond the shoulder/hip joints
FACING_AWAY_MARGIN = 0.08  # left shoulder this far (x S) left of the right one => facing away


@dataclass(frozen=True)
class KeypointFrame:
    """One keypoint message: ``people`` is float32 ``(P, J, 3)`` of x, y (pixels) and score.

    ``layout`` is the base layout name (suffix removed); ``normalised`` records how the client's
    coordinates were read (they are stored in pixels either way).
    """

    layout: str
    frame_id: int
    width: int
    height: int
    people: np.ndarray
    normalised: bool = False

    def __post_init__(self) -> None:
        joints = len(LAYOUT_JOINTS[self.layout])
        if self.people.ndim != 3 or self.people.shape[1:] != (joints, 3) or self.people.dtype != np.float32:
            raise ValueError(f"people must be float32 (P, {joints}, 3), got {self.people.dtype} {self.people.shape}")

    @property
    def count(self) -> int:
        return int(self.people.shape[0])

    def common(self) -> np.ndarray:
        """The people on the common skeleton: float32 ``(P, COMMON_COUNT, 3)``, score 0 = missing."""
        return np.stack([to_common(p, self.layout) for p in self.people]) if self.count else \
            np.zeros((0, COMMON_COUNT, 3), np.float32)

    def to_osc_args(self, normalised: bool = False) -> list[int | float | str]:
        """The message arguments that parse back into this frame (``normalised``: send the ``n`` layout)."""
        pts = self.people.copy()
        if normalised:
            pts[..., 0] /= self.width
            pts[..., 1] /= self.height
        name = self.layout + ("n" if normalised else "px")
        return [name, int(self.frame_id), int(self.width), int(self.height), *pts.reshape(-1).tolist()]


def _bad(message: str, frame_id: int = -1) -> ClientError:
    return ClientError(ERROR_CODE, message, frame_id)


def split_layout(name: str) -> tuple[str, bool | None]:
    """``"coco17n"`` -> ``("coco17", True)``; ``"coco17px"`` -> ``(.., False)``; plain -> ``(.., None)``."""
    key = name.strip().lower()
    if key in LAYOUT_JOINTS:
        return key, None
    if key.endswith("px") and key[:-2] in LAYOUT_JOINTS:
        return key[:-2], False
    if key.endswith("n") and key[:-1] in LAYOUT_JOINTS:
        return key[:-1], True
    raise _bad(f"unknown keypoint layout {name!r}; use one of {', '.join(LAYOUTS)} "
               f"(suffix 'n' for normalised or 'px' for pixel coordinates)")


def _whole(value: object, what: str, frame_id: int = -1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{what} must be an integer, got {value!r}", frame_id)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _bad(f"{what} must be an integer, got {value!r}", frame_id)
    return int(value)


def make_frame(layout: str, frame_id: int, width: int, height: int, values: Sequence[float] | np.ndarray,
               normalised: bool | None = None) -> KeypointFrame:
    """Validate flat ``x y score`` values of ``layout`` (a base name) into a :class:`KeypointFrame`.

    ``normalised=None`` applies the automatic rule of the module docstring.
    """
    if not (1 <= width <= MAX_FRAME_SIDE and 1 <= height <= MAX_FRAME_SIDE):
        raise ClientError("bad_dimensions", f"keypoint frame size {width}x{height} is outside 1..{MAX_FRAME_SIDE}",
                          frame_id)
    joints = len(LAYOUT_JOINTS[layout])
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size % (3 * joints):
        raise _bad(f"{flat.size} keypoint values is not a whole number of {layout} people "
                   f"({joints} joints x (x, y, score) = {3 * joints} values each)", frame_id)
    people = flat.size // (3 * joints)
    if people > MAX_PEOPLE:
        raise _bad(f"{people} people in one message; at most {MAX_PEOPLE}", frame_id)
    if not np.isfinite(flat).all():
        bad = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise _bad(f"keypoint value {bad} (person {bad // (3 * joints)}, joint "
                   f"{LAYOUT_JOINTS[layout][(bad // 3) % joints]}) is {flat[bad]}; NaN and infinity are not "
                   f"allowed (send score 0 for a missing joint)", frame_id)
    if np.abs(flat).max(initial=0.0) > 1e7:
        raise _bad("keypoint values beyond 1e7 are not coordinates", frame_id)
    pts = flat.reshape(people, joints, 3).astype(np.float32)
    if normalised is None:
        visible = pts[..., 2] > 0
        normalised = bool(visible.any()) and float(np.abs(pts[..., :2][visible]).max()) <= _AUTO_NORMALISED_LIMIT
    if normalised:
        pts[..., 0] *= np.float32(width)
        pts[..., 1] *= np.float32(height)
    return KeypointFrame(layout, int(frame_id), int(width), int(height), pts, bool(normalised))


def parse_keypoint_args(args: Sequence[int | float | str]) -> KeypointFrame:
    """The arguments of ``/pose2person/keypoints`` (after the address) -> :class:`KeypointFrame`.

    Raises :class:`ClientError` (``bad_keypoints``, ``bad_dimensions``) with a message that says
    what to fix; never anything else for any argument list.
    """
    if len(args) < 4:
        raise _bad(f"/pose2person/keypoints needs s layout i frame_id i width i height then x y score "
                   f"floats; got {len(args)} arguments")
    if not isinstance(args[0], str):
        raise _bad(f"the first argument must be the layout name (a string), got {args[0]!r}")
    frame_id = _whole(args[1], "frame_id")
    layout, normalised = split_layout(args[0])
    width = _whole(args[2], "width", frame_id)
    height = _whole(args[3], "height", frame_id)
    values = args[4:]
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(f"keypoint value {i} is {type(v).__name__} {v!r:.40}; x, y and score must be numbers",
                       frame_id)
    return make_frame(layout, frame_id, width, height, values, normalised)


# -- the common skeleton ----------------------------------------------------------------------

def to_common(person: np.ndarray, layout: str) -> np.ndarray:
    """One person's ``(J, 3)`` layout joints -> ``(COMMON_COUNT, 3)`` common joints (score 0 = missing).

    A joint made of several layout joints (a midpoint) takes their mean position and their lowest
    score; it is missing if any of them is. Joints with score <= 0 are missing.
    """
    names = LAYOUT_JOINTS[layout]
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((COMMON_COUNT, 3), np.float32)
    for joint, sources in COMMON_FROM_LAYOUT[layout].items():
        rows = person[[index[s] for s in sources]]
        score = float(rows[:, 2].min())
        if score > 0:
            out[C[joint], :2] = rows[:, :2].mean(axis=0)
            out[C[joint], 2] = score
    return out


def from_common(common: np.ndarray, layout: str) -> np.ndarray:
    """Common joints ``(COMMON_COUNT, 3)`` -> ``(J, 3)`` joints of ``layout`` (the synthetic puppet uses this).

    Layout joints that the common skeleton does not name (MediaPipe's eye corners, mouth, thumbs,
    heels; OpenPose's small toes and heels) are placed plausibly next to the named ones, such that
    :func:`to_common` of the result gives back ``common`` (neck/mid_hip are taken to be the
    shoulder/hip midpoints and the hand the middle of index and pinky). A made-up joint takes
    the score of the joint it is placed from.
    """
    xy = np.asarray(common, np.float64)[:, :2]
    p = {n: xy[i] for n, i in C.items()}
    scores = {n: float(common[i, 2]) for n, i in C.items()}
    base = {f"{s}_{j}": f"{s}_{b}" for s in ("left", "right") for j, b in (
        ("big_toe", "toe"), ("small_toe", "toe"), ("heel", "ankle"), ("index", "hand"), ("pinky", "hand"),
        ("thumb", "hand"), ("foot_index", "toe"), ("eye_inner", "eye"), ("eye_outer", "eye"))}
    base.update(mouth_left="nose", mouth_right="nose")
    names = LAYOUT_JOINTS[layout]
    pts: dict[str, np.ndarray] = {n: p[n] for n in _DIRECT}
    scale = max(float(np.linalg.norm(p["neck"] - p["mid_hip"])), 1e-3)
    if layout == "body25":
        pts.update(neck=p["neck"], mid_hip=p["mid_hip"])
        for side in ("left", "right"):
            toe, ankle = p[f"{side}_toe"], p[f"{side}_ankle"]
            across = _perp(toe - ankle) * 0.35
            pts[f"{side}_big_toe"] = toe
            pts[f"{side}_small_toe"] = toe + across
            pts[f"{side}_heel"] = ankle - (toe - ankle) * 0.3
    elif layout == "mediapipe33":
        for side in ("left", "right"):
            hand, wrist = p[f"{side}_hand"], p[f"{side}_wrist"]
            across = _perp(hand - wrist) * 0.35
            pts[f"{side}_index"] = hand + across
            pts[f"{side}_pinky"] = hand - across
            pts[f"{side}_thumb"] = wrist + (hand - wrist) * 0.5 + across * 1.6
            toe, ankle = p[f"{side}_toe"], p[f"{side}_ankle"]
            pts[f"{side}_foot_index"] = toe
            pts[f"{side}_heel"] = ankle - (toe - ankle) * 0.3
            eye = p[f"{side}_eye"]
            other = p["right_eye" if side == "left" else "left_eye"]
            half = (eye - other) * 0.25
            pts[f"{side}_eye_inner"] = eye - half
            pts[f"{side}_eye_outer"] = eye + half
        down = p["neck"] - (p["left_eye"] + p["right_eye"]) / 2
        down = down / max(float(np.linalg.norm(down)), 1e-6) * scale * 0.07
        pts["mouth_left"] = p["nose"] + down + (p["left_eye"] - p["nose"]) * 0.45 * np.array([1.0, 0.0])
        pts["mouth_right"] = p["nose"] + down + (p["right_eye"] - p["nose"]) * 0.45 * np.array([1.0, 0.0])
    out = np.zeros((len(names), 3), np.float32)
    for i, n in enumerate(names):
        out[i, :2] = pts[n]
        out[i, 2] = scores.get(n, scores.get(base.get(n, ""), 0.0))
    return out


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]], dtype=np.float64)


# -- drawing ----------------------------------------------------------------------------------

PART_INDEX: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}


@dataclass(frozen=True)
class _Shape:
    """A capsule (``kind="capsule"``: segment a->b, radius r), a tapered torso (``"trapezoid"``:
    axis a->b, half widths r and r2, V grows towards ``side``) or an ellipse (``"ellipse"``: centre a,
    axis towards b, half widths r (across) and r2 (along), split into two parts by ``part2``)."""

    kind: str
    part: int
    a: np.ndarray
    b: np.ndarray
    r: float
    r2: float = 0.0
    part2: int = 0
    sign: float = 1.0  # ellipse: +1 when the person's right is image-left of the up axis (facing the camera)
    neck: np.ndarray | None = None  # ellipse: the neck joint, joined to the head by a column of radius neck_r
    neck_r: float = 0.0


def body_scale(common: np.ndarray, min_score: float = DEFAULT_MIN_SCORE) -> float:
    """The body scale S in pixels (about neck to mid-hip), from whatever is visible; 0 if nothing is.

    Each bone gives an estimate (bone length / its typical share of S); foreshortening only shortens
    bones, so the largest estimate is taken.
    """
    ok = common[:, 2] >= min_score
    ratios = (("neck", "mid_hip", 1.0), ("left_shoulder", "right_shoulder", 0.74), ("left_hip", "right_hip", 0.45),
              ("left_shoulder", "left_elbow", 0.62), ("right_shoulder", "right_elbow", 0.62),
              ("left_elbow", "left_wrist", 0.55), ("right_elbow", "right_wrist", 0.55),
              ("left_hip", "left_knee", 0.85), ("right_hip", "right_knee", 0.85),
              ("left_knee", "left_ankle", 0.8), ("right_knee", "right_ankle", 0.8),
              ("nose", "neck", 0.38))
    best = 0.0
    for a, b, share in ratios:
        if ok[C[a]] and ok[C[b]]:
            best = max(best, float(np.linalg.norm(common[C[a], :2] - common[C[b], :2])) / share)
    if best == 0.0:
        face = [C[n] for n in ("left_eye", "right_eye", "left_ear", "right_ear") if ok[C[n]]]
        if len(face) >= 2:
            pts = common[face, :2]
            best = float(np.linalg.norm(pts.max(0) - pts.min(0))) / 0.3
    return best


def facing_away(common: np.ndarray, scale: float, min_score: float = DEFAULT_MIN_SCORE) -> bool:
    """True when the person's left side is clearly on the image's left (seen from behind)."""
    ok = common[:, 2] >= min_score
    for left, right in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_ear", "right_ear")):
        if ok[C[left]] and ok[C[right]]:
            return float(common[C[left], 0] - common[C[right], 0]) < -FACING_AWAY_MARGIN * scale
    return False


def person_shapes(common: np.ndarray, min_score: float = DEFAULT_MIN_SCORE) -> list[_Shape]:
    """The shapes that draw one person, in painting order (see the module docstring)."""
    ok = common[:, 2] >= min_score
    xy = common[:, :2].astype(np.float64)
    s = body_scale(common, min_score)
    if s <= 0:
        return []
    back = facing_away(common, s, min_score)
    fb = "back" if back else "front"
    shapes: list[_Shape] = []

    def j(name: str) -> np.ndarray | None:
        return xy[C[name]] if ok[C[name]] else None

    def capsule(part: str, a: np.ndarray | None, b: np.ndarray | None, r: float) -> None:
        if a is not None and b is not None:
            shapes.append(_Shape("capsule", PART_INDEX[part], a, b, r * s))

    def tip(side: str, limb: tuple[str, str, str], extent: float) -> np.ndarray | None:
        base, end, named = limb
        if ok[C[named]]:
            return xy[C[named]]
        a, b = j(f"{side}_{base}"), j(f"{side}_{end}")
        return None if a is None or b is None else b + (b - a) * extent

    # Legs.
    for side in ("right", "left"):
        hip, knee, ankle = j(f"{side}_hip"), j(f"{side}_knee"), j(f"{side}_ankle")
        capsule(f"upper_leg_{side}_{fb}", hip, knee, HALF_WIDTH["upper_leg"])
        capsule(f"lower_leg_{side}_{fb}", knee, ankle, HALF_WIDTH["lower_leg"])
        capsule(f"{side}_foot", ankle, tip(side, ("knee", "ankle", f"{side}_toe"), FOOT_EXTENT), HALF_WIDTH["foot"])

    # Torso: from the neck down to the mid-hip, as wide as the shoulders at the top and the hips at the bottom.
    neck, mid_hip = j("neck"), j("mid_hip")
    ls, rs, lh, rh = j("left_shoulder"), j("right_shoulder"), j("left_hip"), j("right_hip")
    if neck is not None and mid_hip is None and ls is not None and rs is not None:
        down = _perp(ls - rs) if not back else -_perp(ls - rs)  # image-down for a camera-facing body
        down = down / max(float(np.linalg.norm(down)), 1e-6)
        mid_hip = neck + down * s
    if neck is not None and mid_hip is not None:
        top = (float(np.linalg.norm(ls - rs)) / 2 / s if ls is not None and rs is not None else 0.37) + TORSO_PAD
        bottom = (float(np.linalg.norm(lh - rh)) / 2 / s if lh is not None and rh is not None else 0.22) + TORSO_PAD + 0.06
        shapes.append(_Shape("trapezoid", PART_INDEX[f"torso_{fb}"], neck, mid_hip,
                             max(top, TORSO_MIN_HALF_WIDTH) * s, max(bottom, TORSO_MIN_HALF_WIDTH) * s))

    # Head: an ellipse around the face points, split into the person's right and left halves.
    face = [n for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear") if ok[C[n]]]
    if face:
        eyes_ears = [n for n in face if n != "nose"]
        centre = np.mean([xy[C[n]] for n in (eyes_ears or face)], axis=0)
        if neck is not None:
            up = centre - neck
            if float(np.linalg.norm(up)) < 0.05 * s:
                up = np.array([0.0, -1.0])
        else:
            up = np.array([0.0, -1.0])
        up = up / max(float(np.linalg.norm(up)), 1e-6)
        centre = centre + up * 0.02 * s
        # Across-axis pointing to the person's right: image-left for a camera-facing body.
        # 'r' is the half width (across), 'r2' the half height (along up); b - a is the unit up vector;
        # 'neck' is where the neck joins the torso (DensePose counts the neck as head).
        shapes.append(_Shape("ellipse", PART_INDEX["head_right"], centre, centre + up,
                             HEAD_HALF_WIDTH * s, HEAD_HALF_HEIGHT * s, PART_INDEX["head_left"],
                             -1.0 if back else 1.0, neck, NECK_HALF_WIDTH * s))

    # Arms.
    for side in ("right", "left"):
        sh, el, wr = j(f"{side}_shoulder"), j(f"{side}_elbow"), j(f"{side}_wrist")
        capsule(f"upper_arm_{side}_{fb}", sh, el, HALF_WIDTH["upper_arm"])
        capsule(f"lower_arm_{side}_{fb}", el, wr, HALF_WIDTH["lower_arm"])
        capsule(f"{side}_hand", wr, tip(side, ("elbow", "wrist", f"{side}_hand"), HAND_EXTENT), HALF_WIDTH["hand"])
    return shapes


def _shape_bounds(sh: _Shape) -> tuple[float, float, float, float]:
    if sh.kind == "ellipse":
        r = max(sh.r, sh.r2)
        x0, y0, x1, y1 = sh.a[0] - r, sh.a[1] - r, sh.a[0] + r, sh.a[1] + r
        if sh.neck is not None:
            x0, y0 = min(x0, sh.neck[0] - sh.neck_r), min(y0, sh.neck[1] - sh.neck_r)
            x1, y1 = max(x1, sh.neck[0] + sh.neck_r), max(y1, sh.neck[1] + sh.neck_r)
        return x0, y0, x1, y1
    r = max(sh.r, sh.r2)
    return (min(sh.a[0], sh.b[0]) - r, min(sh.a[1], sh.b[1]) - r, max(sh.a[0], sh.b[0]) + r,
            max(sh.a[1], sh.b[1]) + r)


def _paint(labels: np.ndarray, uv: np.ndarray, sh: _Shape, x0: int, y0: int) -> None:
    """Paint one shape into the ``labels``/``uv`` canvas whose top-left pixel is frame (x0, y0)."""
    h, w = labels.shape
    bx0, by0, bx1, by1 = _shape_bounds(sh)
    ix0, iy0 = max(int(math.floor(bx0)) - x0, 0), max(int(math.floor(by0)) - y0, 0)
    ix1, iy1 = min(int(math.ceil(bx1)) - x0 + 1, w), min(int(math.ceil(by1)) - y0 + 1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    # Pixel centres, in frame coordinates.
    px = (np.arange(ix0, ix1, dtype=np.float64) + x0 + 0.5)[None, :]
    py = (np.arange(iy0, iy1, dtype=np.float64) + y0 + 0.5)[:, None]
    if sh.kind == "ellipse":
        up = sh.b - sh.a  # unit vector from the chin to the crown
        right = np.array([up[1], -up[0]]) * sh.sign  # to the person's right
        dx, dy = px - sh.a[0], py - sh.a[1]
        across = dx * right[0] + dy * right[1]
        along = dx * up[0] + dy * up[1]
        in_head = (across / sh.r) ** 2 + (along / sh.r2) ** 2 <= 1.0
        u = np.clip(0.5 - along / (2 * sh.r2), 0, 1)  # 0 at the crown, 1 at the chin (and on the neck)
        half_width = sh.r * np.sqrt(np.clip(1 - (along / sh.r2) ** 2, 1e-6, 1))
        v = np.clip(np.abs(across) / half_width, 0, 1)  # 0 on the midline, 1 at the side
        inside = in_head
        if sh.neck is not None and sh.neck_r > 0:
            # The neck column: from the head centre to the neck joint, below the head.
            n_axis = sh.neck - sh.a
            n_len = max(float(np.linalg.norm(n_axis)), 1e-6)
            tn = np.clip((dx * n_axis[0] + dy * n_axis[1]) / n_len ** 2, 0, 1)
            in_neck = (dx - tn * n_axis[0]) ** 2 + (dy - tn * n_axis[1]) ** 2 <= sh.neck_r ** 2
            neck_only = in_neck & ~in_head
            v = np.where(neck_only, np.clip(np.abs(across) / sh.neck_r, 0, 1), v)
            inside = in_head | in_neck
        part = np.where(across >= 0, sh.part, sh.part2)
    else:
        axis = sh.b - sh.a
        length = max(float(np.linalg.norm(axis)), 1e-6)
        unit = axis / length
        dx, dy = px - sh.a[0], py - sh.a[1]
        t = (dx * unit[0] + dy * unit[1]) / length
        side = dx * -unit[1] + dy * unit[0]
        if sh.kind == "capsule":
            tc = np.clip(t, 0, 1)
            dist2 = (dx - tc * axis[0]) ** 2 + (dy - tc * axis[1]) ** 2
            inside = dist2 <= sh.r ** 2
            u = np.clip((t * length + sh.r) / (length + 2 * sh.r), 0, 1)
            v = np.clip(0.5 + side / (2 * sh.r), 0, 1)
        else:  # trapezoid
            half = sh.r + (sh.r2 - sh.r) * np.clip(t, 0, 1)
            inside = (t >= 0) & (t <= 1) & (np.abs(side) <= half)
            u = np.clip(t, 0, 1)
            v = np.clip(0.5 + side / (2 * half), 0, 1)
        part = np.full(inside.shape, sh.part)
    region = labels[iy0:iy1, ix0:ix1]
    region[inside] = np.broadcast_to(part, inside.shape)[inside]
    uv[0, iy0:iy1, ix0:ix1][inside] = np.broadcast_to(u, inside.shape)[inside]
    uv[1, iy0:iy1, ix0:ix1][inside] = np.broadcast_to(v, inside.shape)[inside]


def draw_person(common: np.ndarray, width: int, height: int,
                min_score: float = DEFAULT_MIN_SCORE) -> PoseInstance | None:
    """One person's common joints -> a :class:`PoseInstance` cropped to its pixels, or None if nothing shows."""
    shapes = person_shapes(common, min_score)
    if not shapes:
        return None
    bounds = np.array([_shape_bounds(sh) for sh in shapes])
    x0 = max(int(math.floor(bounds[:, 0].min())), 0)
    y0 = max(int(math.floor(bounds[:, 1].min())), 0)
    x1 = min(int(math.ceil(bounds[:, 2].max())) + 1, width)
    y1 = min(int(math.ceil(bounds[:, 3].max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    labels = np.zeros((y1 - y0, x1 - x0), np.uint8)
    uv = np.zeros((2, y1 - y0, x1 - x0), np.float32)
    for sh in shapes:
        _paint(labels, uv, sh, x0, y0)
    rows, cols = np.flatnonzero(labels.any(1)), np.flatnonzero(labels.any(0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    labels, uv = labels[r0:r1, c0:c1].copy(), np.ascontiguousarray(uv[:, r0:r1, c0:c1])
    visible = common[:, 2] >= min_score
    score = float(common[visible, 2].mean()) if visible.any() else 0.0
    return PoseInstance((x0 + c0, y0 + r0, c1 - c0, r1 - r0), labels, uv, score)


def keypoints_to_pose(frame: KeypointFrame, min_score: float = DEFAULT_MIN_SCORE) -> PoseResult:
    """Every person of ``frame`` drawn as DensePose parts: one instance each, nearer people last.

    People with nothing visible are left out; an empty frame gives an empty result.
    """
    return PoseResult(frame.width, frame.height, tuple(inst for _, inst in posed_people(frame, min_score)))


def posed_people(frame: KeypointFrame, min_score: float = DEFAULT_MIN_SCORE) -> list[tuple[int, PoseInstance]]:
    """(index of the person in ``frame``, its instance) in drawing order: what :func:`keypoints_to_pose`
    draws, with the link back to the person (the puppet renderer dresses each person)."""
    commons = frame.common()
    order = sorted(range(frame.count), key=lambda i: body_scale(commons[i], min_score))  # stable
    out = []
    for i in order:
        inst = draw_person(commons[i], frame.width, frame.height, min_score)
        if inst is not None:
            out.append((i, inst))
    return out


# -- keypoint files (dataset builder) ---------------------------------------------------------

def frame_key(name: str) -> str:
    """File stems and CSV frame columns -> a lookup key: the integer frame index if the name ends in
    digits (``clip_000000000012_keypoints`` -> ``"12"``), else the name itself."""
    stem = re.sub(r"_keypoints$", "", Path(name).stem if "/" in name or "." in name else name)
    digits = re.search(r"(\d+)$", stem)
    return str(int(digits.group(1))) if digits else stem


def _layout_for_count(values: int, layout: str | None, where: str) -> str:
    if layout is not None:
        return split_layout(layout)[0]
    for name, joints in LAYOUT_JOINTS.items():
        if values == 3 * len(joints):
            return name
    raise _bad(f"{where}: {values} values per person is not coco17 (51), mediapipe33 (99) or body25 (75)")


def read_openpose_json(path: Path, layout: str | None = None, width: int = 0, height: int = 0) -> KeypointFrame:
    """One OpenPose ``--write_json`` file: ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}``, pixels.

    The layout comes from the count (75 = body25, 51 = coco17, 99 = mediapipe33) unless given.
    ``width``/``height`` 0 means "not known yet" (the dataset builder fills in the frame size).
    """
    data = json.loads(Path(path).read_text())
    people = [p.get("pose_keypoints_2d") or [] for p in data.get("people", [])]
    people = [p for p in people if p]
    lay = _layout_for_count(len(people[0]), layout, str(path)) if people else split_layout(layout or "body25")[0]
    norm = split_layout(layout)[1] if layout else None
    flat = [float(v) for p in people for v in p]
    if width and height:
        return make_frame(lay, 0, width, height, flat, norm)
    return _placeholder(lay, flat, norm)


def _placeholder(layout: str, flat: Sequence[float] | np.ndarray, normalised: bool | None) -> KeypointFrame:
    """A file frame whose size is not known yet: values kept as read, ``normalised`` decided now."""
    frame = make_frame(layout, 0, MAX_FRAME_SIDE, MAX_FRAME_SIDE, flat, False)
    if normalised is None:
        visible = frame.people[..., 2] > 0
        normalised = bool(visible.any()) and \
            float(np.abs(frame.people[..., :2][visible]).max()) <= _AUTO_NORMALISED_LIMIT
    return KeypointFrame(frame.layout, frame.frame_id, frame.width, frame.height, frame.people, normalised)


def read_keypoint_file(path: str | Path, layout: str | None = None) -> dict[str, KeypointFrame]:
    """Keypoints for the dataset builder, keyed by frame (see :func:`frame_key`).

    Accepted, by what ``path`` is:

    * a folder of OpenPose JSON files (``<name>_<12 digits>_keypoints.json``) or one such file:
      pixel coordinates, layout from the count;
    * ``.jsonl`` (what ``pose2person synth`` writes): one object per line,
      ``{"key": "000012", "layout": "coco17", "width": 256, "height": 256, "people": [[x, y, score, ...], ...]}``;
    * ``.csv``, one row per joint with a header: ``frame,person,joint,x,y,score``, where ``frame`` is the
      video frame index or the image file name, ``joint`` the joint index or name in ``layout``
      (required for CSV, e.g. ``coco17`` or ``coco17n``), coordinates as the layout suffix or the
      automatic rule say; joints not listed are missing.

    Frame sizes: JSON/CSV frames carry size 16384 x 16384 until the builder sets the real one with
    :func:`with_size` (normalised CSV coordinates are resolved there too).
    """
    p = Path(path)
    out: dict[str, KeypointFrame] = {}
    if p.is_dir():
        for f in sorted(p.glob("*.json")):
            out[frame_key(f.name)] = read_openpose_json(f, layout)
        return out
    if p.suffix.lower() == ".json":
        out[frame_key(p.name)] = read_openpose_json(p, layout)
        return out
    if p.suffix.lower() == ".jsonl":
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                lay, norm = split_layout(str(rec["layout"]))
                flat = [float(v) for person in rec["people"] for v in person]
                frame = make_frame(lay, int(rec.get("frame_id", n - 1)), int(rec["width"]), int(rec["height"]), flat,
                                   norm)
            except (KeyError, TypeError, ValueError) as exc:
                raise _bad(f"{p}:{n}: {exc}") from None
            out[frame_key(str(rec["key"]))] = frame
        return out
    if p.suffix.lower() == ".csv":
        if layout is None:
            raise _bad(f"{p}: a CSV keypoint file needs its layout (e.g. --keypoint-layout coco17)")
        lay, norm = split_layout(layout)
        names = LAYOUT_JOINTS[lay]
        rows: dict[str, dict[int, np.ndarray]] = {}
        with p.open(newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                try:
                    joint_text = row["joint"].strip()
                    joint = int(joint_text) if joint_text.isdigit() else names.index(joint_text)
                    person = int(row["person"])
                    values = (float(row["x"]), float(row["y"]), float(row.get("score") or 1.0))
                except (KeyError, ValueError, AttributeError) as exc:
                    raise _bad(f"{p}:{n}: bad row {row} ({exc})") from None
                if not 0 <= joint < len(names) or not 0 <= person < MAX_PEOPLE:
                    raise _bad(f"{p}:{n}: joint {joint} / person {person} out of range for {lay}")
                people = rows.setdefault(frame_key(row["frame"].strip()), {})
                people.setdefault(person, np.zeros((len(names), 3), np.float64))[joint] = values
        for key, people in rows.items():
            flat = np.concatenate([people[i].reshape(-1) for i in sorted(people)])
            out[key] = _placeholder(lay, flat, norm)
        return out
    raise _bad(f"{p}: keypoint files are OpenPose .json (or a folder of them), .jsonl or .csv")


def with_size(frame: KeypointFrame, width: int, height: int) -> KeypointFrame:
    """``frame`` for a ``width`` x ``height`` image: sets the size and resolves normalised file coordinates.

    Frames read from files carry a placeholder size (16384 x 16384); their pixel coordinates stay as
    they are and normalised ones (the layout suffix or the automatic rule, decided when read) are
    scaled to the frame. Frames with a real size only get the new size.
    """
    pts = frame.people.copy()
    if frame.width == MAX_FRAME_SIDE and frame.height == MAX_FRAME_SIDE and frame.normalised:
        pts[..., 0] *= np.float32(width)
        pts[..., 1] *= np.float32(height)
    return KeypointFrame(frame.layout, frame.frame_id, width, height, pts, frame.normalised)


def frames_to_jsonl(records: Iterable[tuple[str, KeypointFrame]]) -> str:
    """The ``.jsonl`` text :func:`read_keypoint_file` reads (pixel coordinates, ``px`` layout)."""
    lines = []
    for key, f in records:
        people = [[float(v) for v in person.reshape(-1)] for person in f.people]  # float32 values, exact
        lines.append(json.dumps({"key": key, "layout": f.layout + "px", "frame_id": f.frame_id, "width": f.width,
                                 "height": f.height, "people": people}, separators=(",", ":")))
    return "\n".join(lines) + ("\n" if lines else "")
