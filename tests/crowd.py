"""Footage of several people for the tracker tests and benches: registry photos composited.

The people are cut out of the photos in :mod:`photos` (astronaut, Grace Hopper) as rectangles
with a soft elliptical edge, scaled to a given height and pasted over a grey background with a
little sensor noise. Deterministic (seeded). RGB uint8, 640x480 by default.
"""

from __future__ import annotations

import functools

import numpy as np

from photos import photo_bgr

BACKGROUND = 90
#: the cut-outs (x0, y0, x1, y1) in the original photos: head and upper body
CUTS = {"astronaut": (20, 0, 400, 512), "grace_hopper": (0, 40, 512, 600)}


@functools.lru_cache(maxsize=16)
def person(name: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The person cut out of photo ``name`` at ``height`` pixels: RGB uint8 and an alpha in [0, 1]
    (an ellipse with a soft edge, so the rectangle's corners do not show)."""
    import cv2

    x0, y0, x1, y1 = CUTS[name]
    rgb = cv2.cvtColor(photo_bgr(name)[y0:y1, x0:x1], cv2.COLOR_BGR2RGB)
    width = int(round(rgb.shape[1] * height / rgb.shape[0]))
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height) / height) ** 2  # ellipse resting on the bottom
    alpha = np.clip((1.05 - r) / 0.1, 0.0, 1.0)
    return rgb, alpha.astype(np.float32)


def compose(placements: list[tuple[str, float, float, int]], size: tuple[int, int] = (640, 480),
            noise: float = 3.0, seed: int = 0) -> np.ndarray:
    """One frame: ``(name, centre_x, bottom_y, height)`` per person, drawn in order (later in front)."""
    w, h = size
    frame = np.full((h, w, 3), BACKGROUND, np.float32)
    for name, cx, bottom, height in placements:
        rgb, alpha = person(name, int(height))
        ph, pw = alpha.shape
        x0, y0 = int(round(cx - pw / 2)), int(round(bottom - ph))
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        a = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, None]
        frame[fy0:fy1, fx0:fx1] = a * rgb[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] + (1 - a) * frame[fy0:fy1, fx0:fx1]
    if noise:
        frame += np.random.default_rng(seed).normal(0, noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def crossing(frames: int = 30, height: int = 300, size: tuple[int, int] = (640, 480),
             front: str = "grace_hopper") -> list[np.ndarray]:
    """Two people walking across each other: the astronaut from left to right, Grace Hopper from
    right to left, ``front`` passing in front of the other half-way."""
    w, h = size
    out = []
    for i in range(frames):
        u = i / (frames - 1)
        a = ("astronaut", w * (0.2 + 0.6 * u), h, height)
        g = ("grace_hopper", w * (0.8 - 0.6 * u), h, height)
        out.append(compose([a, g] if front == "grace_hopper" else [g, a], size, seed=i))
    return out


def group(count: int, frames: int = 10, size: tuple[int, int] = (640, 480), still: bool = False) -> list[np.ndarray]:
    """``count`` people side by side (the two photos alternating), swaying a little unless ``still``."""
    w, h = size
    height = {1: 360, 2: 300, 3: 220, 4: 190}.get(count, int(h * 0.8 / max(1, count // 2)))
    out = []
    for i in range(frames):
        sway = 0.0 if still else 6.0 * np.sin(i / 4)
        people = [(("astronaut", "grace_hopper")[k % 2], w * (k + 0.5) / count + sway, h, height)
                  for k in range(count)]
        out.append(compose(people, size, seed=i))
    return out
