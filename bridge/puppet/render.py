"""The puppet's person picture: the body parts of :func:`bridge.pose.keypoints.keypoints_to_pose`, dressed.

Each pixel of each part gets its character's colour for that garment (shirt, sleeves, trousers or
shorts or skirt, shoes, skin, hair), shaded as a cylinder across the limb (V) and lit from above
(U), with dark seams along part borders; faces, hair and skirts are placed with the same U/V and
joints. The picture is therefore aligned pixel for pixel with the pose image of the same keypoints,
and a deterministic function of them: the mapping a generator learns. White background (the
artist's padding). Numpy only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..pose import keypoints as kp
from ..pose.types import PoseInstance
from .skeleton import Character

BACKGROUND = (255, 255, 255)
SEAM_DARKEN = 0.62
TORSO = (1, 2)
HANDS = (3, 4)
FEET = (5, 6)
UPPER_LEGS = (7, 8, 9, 10)
LOWER_LEGS = (11, 12, 13, 14)
UPPER_ARMS = (15, 16, 17, 18)
LOWER_ARMS = (19, 20, 21, 22)
HEAD = (23, 24)


def part_colours(c: Character) -> np.ndarray:
    """(25, 3) float32 base colour of every part label for character ``c`` (row 0 unused)."""
    col = np.zeros((25, 3), np.float32)
    col[list(TORSO)] = c.shirt
    col[list(UPPER_ARMS)] = c.shirt
    col[list(LOWER_ARMS)] = c.shirt if c.sleeves == "long" else c.skin
    col[list(HANDS)] = c.skin
    col[list(UPPER_LEGS)] = c.trousers if c.bottom != "skirt" else c.skin
    col[list(LOWER_LEGS)] = c.trousers if c.bottom == "trousers" else c.skin
    col[list(FEET)] = c.shoes
    col[list(HEAD)] = c.skin
    return col


def _dress(inst: PoseInstance, c: Character) -> np.ndarray:
    """(h, w, 3) float32 colours of one instance's box (meaningful where its labels > 0)."""
    labels = inst.labels
    u, v = inst.uv[0], inst.uv[1]
    rgb = part_colours(c)[labels]
    head = np.isin(labels, HEAD)
    away = bool((labels == 1).any())  # torso_back: seen from behind
    if c.hair_style != "bald":
        hairline = 0.3 + 0.06 * v if c.hair_style == "short" else np.where(v > 0.78, 0.95, 0.32)
        hair = head & ((u < hairline) | away) & (u < 0.97)
        rgb[hair] = c.hair
    if not away:
        eyes = head & (np.abs(u - 0.52) < 0.05) & (np.abs(v - 0.42) < 0.12)
        mouth = head & (np.abs(u - 0.76) < 0.025) & (v < 0.28)
        rgb[eyes] = (35, 30, 40)
        rgb[mouth] = (150, 60, 60)
    # Cylinder shading across the part (V = 0.5 is its middle; the head's V is 0 on its midline),
    # light from above along U.
    across = np.where(head, 1.0 - 0.25 * v ** 2, 0.7 + 0.3 * np.sin(np.pi * v))
    light = np.where(head, 1.0, 1.0 - 0.12 * u)
    return rgb * (across * light)[..., None]


def _paint_extras(canvas: np.ndarray, owner: np.ndarray, labels_full: np.ndarray, common: np.ndarray,
                  c: Character, me: int, min_score: float) -> None:
    """Hair volume and skirts, which reach beyond the body parts: painted on background pixels (and, for
    a skirt, over this person's thighs)."""
    h, w = owner.shape
    ys, xs = np.mgrid[0:h, 0:w]
    px, py = xs + 0.5, ys + 0.5
    for shape in kp.person_shapes(common, min_score):
        if shape.kind != "ellipse" or c.hair_style == "bald":
            continue
        up = shape.b - shape.a
        right = np.array([up[1], -up[0]])
        grow, drop = (1.12, 0.0) if c.hair_style == "short" else (1.25, 0.55)
        dx, dy = px - shape.a[0], py - shape.a[1]
        across = dx * right[0] + dy * right[1]
        along = dx * up[0] + dy * up[1] + drop * shape.r2  # long hair hangs lower
        inside = (across / (shape.r * grow)) ** 2 + (along / (shape.r2 * (grow + drop))) ** 2 <= 1.0
        if c.hair_style == "short":
            inside &= (dx * up[0] + dy * up[1]) > 0.1 * shape.r2  # only above the ears
        sel = inside & (owner < 0)
        canvas[sel] = c.hair
        owner[sel] = me
    if c.bottom == "skirt":
        ok = common[:, 2] >= min_score
        j = {n: common[kp.C[n], :2].astype(np.float64) for n in ("left_hip", "right_hip", "left_knee", "right_knee")}
        if all(ok[kp.C[n]] for n in j):
            top = (j["left_hip"] + j["right_hip"]) / 2
            bottom = top + ((j["left_knee"] + j["right_knee"]) / 2 - top) * 0.62
            axis = bottom - top
            length = max(float(np.linalg.norm(axis)), 1e-6)
            unit = axis / length
            t = ((px - top[0]) * unit[0] + (py - top[1]) * unit[1]) / length
            side = np.abs((px - top[0]) * -unit[1] + (py - top[1]) * unit[0])
            hw_top = float(np.linalg.norm(j["left_hip"] - j["right_hip"])) / 2 + 0.1 * length
            half = hw_top * (1 + 0.7 * np.clip(t, 0, 1))
            inside = (t >= -0.05) & (t <= 1) & (side <= half)
            sel = inside & ((owner < 0) | ((owner == me) & np.isin(labels_full, UPPER_LEGS + LOWER_LEGS)))
            shade = (0.78 + 0.22 * np.cos(np.clip(side / np.maximum(half, 1e-6), 0, 1) * np.pi / 2))
            canvas[sel] = np.asarray(c.trousers, np.float32) * shade[sel][:, None]
            owner[sel] = me
            labels_full[sel] = 0  # no seams inside the skirt


def render_person(frame: kp.KeypointFrame, characters: Sequence[Character],
                  min_score: float = kp.DEFAULT_MIN_SCORE) -> np.ndarray:
    """The dressed puppets of ``frame`` (person i wears ``characters[i]``): (height, width, 3) uint8 RGB.

    The same people, parts and drawing order as ``keypoints_to_pose(frame, min_score)``.
    """
    h, w = frame.height, frame.width
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = BACKGROUND
    owner = np.full((h, w), -1, np.int32)  # which person painted each pixel
    labels_full = np.zeros((h, w), np.uint8)
    commons = frame.common()
    for order, (i, inst) in enumerate(kp.posed_people(frame, min_score)):
        x, y, bw, bh = inst.box_xywh
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if x0 >= x1 or y0 >= y1:
            continue
        sub = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        fg = inst.labels[sub] > 0
        colours = _dress(inst, characters[i])[sub]
        region = canvas[y0:y1, x0:x1]
        region[fg] = colours[fg]
        owner[y0:y1, x0:x1][fg] = order
        labels_full[y0:y1, x0:x1][fg] = inst.labels[sub][fg]
        _paint_extras(canvas, owner, labels_full, commons[i], characters[i], order, min_score)
    # Seams: a pixel whose 4-neighbour belongs to another part or person (the figure's outline too).
    ident = np.where(owner >= 0, owner * 32 + labels_full.astype(np.int32), -1)
    seam = np.zeros((h, w), bool)
    seam[1:, :] |= ident[1:, :] != ident[:-1, :]
    seam[:-1, :] |= ident[:-1, :] != ident[1:, :]
    seam[:, 1:] |= ident[:, 1:] != ident[:, :-1]
    seam[:, :-1] |= ident[:, :-1] != ident[:, 1:]
    seam &= owner >= 0
    canvas[seam] *= SEAM_DARKEN
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
