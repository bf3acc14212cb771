"""Pose images for tests of models whose pose source is ``image``: what a client that renders
DensePose-style poses sends (a random puppet pose in ``dp_segm`` over a grey noise camera frame).

Such models refuse frames that do not look like pose images (``not_a_pose_image``), so the
reference-path tests feed them these: random enough to exercise every pixel of the network, and
valid pose images.
"""

from __future__ import annotations

import numpy as np

from bridge.pose import keypoints as kp
from bridge.pose.render import render_pose
from bridge.puppet import skeleton


def pose_picture_bgr(h: int, w: int, seed: int, noise: bool = True) -> np.ndarray:
    """(h, w, 3) uint8 BGR: a puppet's parts in ``dp_segm`` over a grey noise frame (``noise``
    False: a smooth grey gradient, which survives video compression as real footage does)."""
    rng = np.random.default_rng(seed)
    side = min(h, w)
    character = next(iter(skeleton.CHARACTERS.values())) if isinstance(skeleton.CHARACTERS, dict) \
        else skeleton.CHARACTERS[0]
    pose = skeleton.random_pose(rng, side, character)
    square = skeleton.keypoint_frame([pose], [character], side)
    people = square.people.copy()
    people[..., 0] += (w - side) / 2
    people[..., 1] += (h - side) / 2
    frame = kp.make_frame("coco17", 0, w, h, people.reshape(-1), normalised=False)
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8) if noise else \
        np.linspace(60, 200, w, dtype=np.float32)[None].repeat(h, 0).astype(np.uint8)
    rgb = render_pose(kp.keypoints_to_pose(frame), "dp_segm", np.repeat(grey[..., None], 3, axis=2))
    return np.ascontiguousarray(rgb[..., ::-1])


def pose_picture_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(pose_picture_bgr(h, w, seed)[..., ::-1])


def pose_picture_bgra(h: int, w: int, seed: int) -> np.ndarray:
    bgr = pose_picture_bgr(h, w, seed)
    return np.concatenate([bgr, np.full((h, w, 1), 255, np.uint8)], axis=2)
