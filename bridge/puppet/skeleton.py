"""A procedural, articulated 2D puppet: random poses, smooth dances, several characters. Numpy only.

The puppet is a skeleton (:class:`Pose`: joint angles within :data:`JOINT_LIMITS`, plus where it
stands) on a body with proportions (:class:`Character`). :func:`pose_keypoints` places its joints
on :data:`bridge.pose.keypoints.COMMON_JOINTS` and, through :func:`bridge.pose.keypoints.from_common`, in any
keypoint layout, so a client (or ``pose2person demo``) can send it as keypoints.

Its pose image is, by construction, exactly ``render_pose(keypoints_to_pose(frame), style)`` of those
keypoints: the hand and toe points lie where :mod:`bridge.pose.keypoints` extrapolates them for coco17,
the neck and mid-hip are the shoulder and hip midpoints, so every layout draws the same body.
The person picture (:mod:`bridge.puppet.render`) dresses the same body parts, so pairs are aligned
pixel for pixel.

Angles are in degrees, in the body's own frame, for the person's side: 0 = the limb hangs straight
down, positive = the limb swings outward (away from the body's midline), negative = across the body.
``elbow``/``knee`` are relative to the upper limb. The puppet faces the camera unless ``facing_away``.
Everything random takes a ``numpy.random.Generator``, so a seed fixes every pose and picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..pose import keypoints as kp

#: Plausible joint ranges, degrees (see the module docstring for the sign convention).
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "lean": (-18.0, 18.0),  # torso from vertical, positive = towards the person's left
    "head": (-28.0, 28.0),  # head tilt relative to the torso
    "shoulder": (-35.0, 175.0),  # arm abduction: 0 hanging, 90 sideways, 175 overhead
    "elbow": (-20.0, 150.0),  # forearm relative to the upper arm, positive = further outward/up
    "hip": (-25.0, 75.0),  # leg abduction
    "knee": (-60.0, 25.0),  # shin relative to the thigh, negative = back towards the midline
}


@dataclass(frozen=True)
class Character:
    """How a puppet looks: colours (RGB), clothes and proportions (in units of the torso length)."""

    name: str
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    hair_style: str = "short"  # "short" | "long" | "bald"
    sleeves: str = "long"  # "long" | "short"
    bottom: str = "trousers"  # "trousers" | "shorts" | "skirt"
    shoulder_width: float = 0.74
    hip_width: float = 0.42
    upper_arm: float = 0.62
    lower_arm: float = 0.55
    thigh: float = 0.86
    shin: float = 0.82
    neck_length: float = 0.36


#: The built-in characters; ``pose2person synth --characters`` picks from these by name.
CHARACTERS: dict[str, Character] = {c.name: c for c in (
    Character("ada", skin=(233, 190, 160), hair=(60, 40, 30), shirt=(200, 60, 50), trousers=(40, 50, 90),
              shoes=(30, 30, 30)),
    Character("bo", skin=(150, 100, 70), hair=(20, 20, 20), shirt=(60, 140, 80), trousers=(90, 70, 50),
              shoes=(120, 60, 30), hair_style="long", sleeves="short", bottom="shorts", shoulder_width=0.68,
              hip_width=0.46, thigh=0.9, shin=0.86),
    Character("cy", skin=(250, 215, 190), hair=(200, 160, 60), shirt=(240, 200, 60), trousers=(120, 40, 120),
              shoes=(200, 200, 210), hair_style="long", sleeves="short", bottom="skirt", shoulder_width=0.66,
              hip_width=0.48, upper_arm=0.58, lower_arm=0.52),
    Character("dee", skin=(110, 70, 50), hair=(30, 25, 25), shirt=(50, 90, 170), trousers=(50, 50, 50),
              shoes=(150, 30, 30), hair_style="bald", shoulder_width=0.82, hip_width=0.4, upper_arm=0.66,
              lower_arm=0.58, thigh=0.84, shin=0.8),
)}
DEFAULT_CHARACTER = "ada"


@dataclass(frozen=True)
class Pose:
    """Joint angles (degrees, see :data:`JOINT_LIMITS`) and placement: ``x``/``y`` is the mid-hip in
    pixels, ``scale`` the torso length (neck to mid-hip) in pixels."""

    x: float
    y: float
    scale: float
    lean: float = 0.0
    head: float = 0.0
    shoulder_r: float = 10.0
    shoulder_l: float = 10.0
    elbow_r: float = 10.0
    elbow_l: float = 10.0
    hip_r: float = 5.0
    hip_l: float = 5.0
    knee_r: float = 0.0
    knee_l: float = 0.0
    facing_away: bool = False

    def clipped(self) -> "Pose":
        """This pose with every angle inside :data:`JOINT_LIMITS`."""
        changes = {}
        for f in fields(self):
            limit = JOINT_LIMITS.get(f.name.rsplit("_", 1)[0] if f.name[-2:] in ("_r", "_l") else f.name)
            if limit is not None:
                changes[f.name] = float(np.clip(getattr(self, f.name), *limit))
        return replace(self, **changes)

    def angles(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if f.name not in ("x", "y", "scale",
                                                                                               "facing_away")}


def limit_of(angle_name: str) -> tuple[float, float]:
    """The limit of a :class:`Pose` angle field (``elbow_l`` -> ``JOINT_LIMITS["elbow"]``)."""
    return JOINT_LIMITS[angle_name.rsplit("_", 1)[0] if angle_name[-2:] in ("_r", "_l") else angle_name]


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def pose_keypoints(pose: Pose, character: Character) -> np.ndarray:
    """The puppet's joints on the common skeleton: float32 ``(COMMON_COUNT, 3)`` in pixels, score 1
    (0.1 for the nose and eyes when seen from behind, as a tracker would report them)."""
    pose = pose.clipped()
    s = pose.scale
    # Body frame: +x towards the person's left, +y down; mirrored on screen when facing away.
    mirror = -1.0 if pose.facing_away else 1.0
    down = _rot(np.array([0.0, 1.0]), pose.lean)  # lean > 0 tips the torso towards the person's left
    left = _rot(np.array([1.0, 0.0]), pose.lean)  # across the torso, towards the person's left
    mid_hip = np.zeros(2)
    neck = mid_hip - down * s
    p: dict[str, np.ndarray] = {"mid_hip": mid_hip, "neck": neck}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder = neck + left * sign * character.shoulder_width / 2 * s
        hip = mid_hip + left * sign * character.hip_width / 2 * s
        sh_angle = getattr(pose, f"shoulder_{side[0]}")
        el_angle = getattr(pose, f"elbow_{side[0]}")
        # Outward for this side is +left for the left limbs, -left for the right ones.
        arm_dir = _rot(down, -sign * sh_angle)
        elbow = shoulder + arm_dir * character.upper_arm * s
        fore_dir = _rot(arm_dir, -sign * el_angle)
        wrist = elbow + fore_dir * character.lower_arm * s
        leg_dir = _rot(down, -sign * getattr(pose, f"hip_{side[0]}"))
        knee = hip + leg_dir * character.thigh * s
        shin_dir = _rot(leg_dir, -sign * getattr(pose, f"knee_{side[0]}"))
        ankle = knee + shin_dir * character.shin * s
        p.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_wrist": wrist, f"{side}_hip": hip,
                  f"{side}_knee": knee, f"{side}_ankle": ankle,
                  f"{side}_hand": wrist + (wrist - elbow) * kp.HAND_EXTENT,
                  f"{side}_toe": ankle + (ankle - knee) * kp.FOOT_EXTENT})
    head_up = _rot(-down, -pose.head)
    head_left = np.array([-head_up[1], head_up[0]]) * -1.0
    if float(head_left @ left) < 0:
        head_left = -head_left
    centre = neck + head_up * character.neck_length * s
    p["nose"] = centre - head_up * 0.05 * s
    for side, sign in (("left", 1.0), ("right", -1.0)):
        p[f"{side}_eye"] = centre + head_up * 0.03 * s + head_left * sign * 0.075 * s
        p[f"{side}_ear"] = centre + head_left * sign * 0.17 * s
    out = np.zeros((kp.COMMON_COUNT, 3), np.float32)
    origin = np.array([pose.x, pose.y])
    for name, i in kp.C.items():
        v = p[name]
        out[i, 0] = origin[0] + mirror * v[0]
        out[i, 1] = origin[1] + v[1]
        out[i, 2] = 1.0
    if pose.facing_away:
        for name in ("nose", "left_eye", "right_eye"):
            out[kp.C[name], 2] = 0.1
    return out


def _fit(pose: Pose, character: Character, size: int, rng: np.random.Generator | None, margin: float) -> Pose:
    """Move ``pose`` so the whole body lies inside the ``size`` square with ``margin`` pixels to spare
    (randomly within the room left when ``rng`` is given, centred otherwise); shrinks it if it cannot."""
    for _ in range(8):
        pts = pose_keypoints(pose, character)[:, :2]
        pad = margin + 0.25 * pose.scale  # head and limb widths beyond the joints
        lo, hi = pts.min(0) - pad, pts.max(0) + pad
        span = hi - lo
        if (span <= size).all():
            room = size - span
            offset = rng.uniform(0, 1, 2) * room if rng is not None else room / 2
            shift = (offset - lo)
            return replace(pose, x=pose.x + float(shift[0]), y=pose.y + float(shift[1]))
        pose = replace(pose, scale=pose.scale * 0.9 * float(size / span.max()))
    return pose


def random_pose(rng: np.random.Generator, size: int, character: Character, *,
                scale: tuple[float, float] = (0.2, 0.27), away_chance: float = 0.1, margin: float = 2.0) -> Pose:
    """A random plausible pose that fits a ``size`` x ``size`` frame; ``scale`` is the torso length as
    a fraction of ``size``."""
    def draw(name: str, rest: float, spread: float) -> float:
        lo, hi = limit_of(name)
        # Mostly near a relaxed pose, sometimes anywhere in range: plausible, yet covering the range.
        return float(np.clip(rest + rng.normal() * spread, lo, hi)) if rng.random() < 0.7 else float(rng.uniform(lo, hi))

    values = {
        "lean": draw("lean", 0.0, 6.0), "head": draw("head", 0.0, 10.0),
        "shoulder_r": draw("shoulder_r", 25.0, 45.0), "shoulder_l": draw("shoulder_l", 25.0, 45.0),
        "elbow_r": draw("elbow_r", 20.0, 45.0), "elbow_l": draw("elbow_l", 20.0, 45.0),
        "hip_r": draw("hip_r", 8.0, 14.0), "hip_l": draw("hip_l", 8.0, 14.0),
        "knee_r": draw("knee_r", -3.0, 12.0), "knee_l": draw("knee_l", -3.0, 12.0),
    }
    pose = Pose(0.0, 0.0, float(rng.uniform(*scale)) * size, facing_away=bool(rng.random() < away_chance), **values)
    return _fit(pose, character, size, rng, margin)


def dance(rng: np.random.Generator, size: int, character: Character, frames: int, *,
          beat: int = 12, scale: tuple[float, float] = (0.2, 0.27), margin: float = 2.0) -> list[Pose]:
    """A smooth motion of ``frames`` poses: random key poses every ``beat`` frames, eased between
    (cosine), facing the camera, at one size, swaying from side to side; every frame fits the square."""
    keys = [random_pose(rng, size, character, scale=scale, away_chance=0.0, margin=margin)
            for _ in range(frames // beat + 2)]
    body = float(np.mean([k.scale for k in keys]))
    angles = []
    for f in range(frames):
        k, t = divmod(f, beat)
        w = 0.5 - 0.5 * math.cos(math.pi * t / beat)
        angles.append({n: (1 - w) * v + w * getattr(keys[k + 1], n) for n, v in keys[k].angles().items()})
    for _ in range(8):  # one placement for the whole dance: the union of its bodies must fit
        pts = np.concatenate([pose_keypoints(Pose(0.0, 0.0, body, **a), character)[:, :2] for a in angles])
        pad = margin + 0.25 * body
        lo, hi = pts.min(0) - pad, pts.max(0) + pad
        if ((hi - lo) <= size).all():
            break
        body *= 0.95 * size / float((hi - lo).max())
    room = np.maximum(size - (hi - lo), 0.0)
    x0, y0 = float(room[0] / 2 - lo[0]), float(room[1] / 2 - lo[1])
    sway = float(room[0] / 2) * 0.9
    return [Pose(x0 + sway * math.sin(2 * math.pi * f / max(frames, 1)), y0, body, **a)
            for f, a in enumerate(angles)]


def keypoint_frame(poses: list[Pose], characters: list[Character], size: int, layout: str = "coco17",
                   frame_id: int = 0) -> kp.KeypointFrame:
    """The puppets as one keypoint message of ``layout`` (pixel coordinates, float32 as sent over OSC)."""
    people = [kp.from_common(pose_keypoints(p, c), layout) for p, c in zip(poses, characters)]
    flat = np.concatenate([x.reshape(-1) for x in people]) if people else np.zeros(0, np.float32)
    return kp.make_frame(layout, frame_id, size, size, flat.astype(np.float32), normalised=False)
