"""Pictures of progress, drawn with PIL and numpy (no matplotlib): a sample grid and a loss plot."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def sample_grid(rows: Sequence[Sequence[np.ndarray]], header: Sequence[str], path: Path, caption: str = "") -> None:
    """One row per sample of equally sized RGB uint8 tiles (e.g. input | output | truth), labelled."""
    tile_h, tile_w = rows[0][0].shape[:2]
    top = 16 + (14 if caption else 0)
    grid = Image.new("RGB", (tile_w * len(rows[0]), top + tile_h * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    if caption:
        draw.text((4, 2), caption, fill=(0, 0, 0))
    for c, title in enumerate(header):
        draw.text((c * tile_w + 4, top - 14), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            grid.paste(Image.fromarray(np.ascontiguousarray(tile)), (c * tile_w, top + r * tile_h))
    tmp = path.with_suffix(".tmp.png")
    grid.save(tmp)
    tmp.replace(path)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < 3 or window <= 1:
        return values
    window = min(window, len(values))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def loss_plot(history: Mapping[str, Sequence[float]], iters: Sequence[int], path: Path,
              size: tuple[int, int] = (720, 400), title: str = "losses") -> None:
    """Each loss against the iteration, smoothed (moving mean) on a log-scaled y axis, with a legend."""
    w, h = size
    left, right, top, bottom = 60, 150, 24, 36
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((left, 4), title, fill=(0, 0, 0))
    x = np.asarray(iters, dtype=np.float64)
    series = {k: np.asarray(v, dtype=np.float64) for k, v in history.items() if len(v) == len(x) and len(v) > 0}
    draw.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    if len(x) < 2 or not series:
        img.save(path)
        return
    window = max(len(x) // 50, 1)
    smoothed = {k: np.maximum(_smooth(v, window), 1e-4) for k, v in series.items()}
    lo = float(np.log10(min(float(s.min()) for s in smoothed.values())))
    hi = float(np.log10(max(float(s.max()) for s in smoothed.values())))
    lo, hi = np.floor(lo * 2) / 2, np.ceil(hi * 2) / 2 + (0.5 if np.ceil(hi * 2) / 2 == np.floor(lo * 2) / 2 else 0)
    x0, x1 = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1

    def px(xv: np.ndarray, yv: np.ndarray) -> list[tuple[float, float]]:
        xs = left + (xv - x0) / (x1 - x0) * (w - right - left)
        ys = (h - bottom) - (np.log10(yv) - lo) / (hi - lo) * (h - bottom - top)
        return list(zip(xs.tolist(), ys.tolist()))

    for e in np.arange(lo, hi + 1e-9, 0.5):
        y = (h - bottom) - (e - lo) / (hi - lo) * (h - bottom - top)
        draw.line([left, y, w - right, y], fill=(225, 225, 225))
        draw.text((4, y - 6), f"{10 ** e:.3g}", fill=(0, 0, 0))
    for frac in (0.0, 0.5, 1.0):
        xv = x0 + frac * (x1 - x0)
        xp = left + frac * (w - right - left)
        draw.text((xp - 12, h - bottom + 6), f"{int(xv)}", fill=(0, 0, 0))
    draw.text(((w - right + left) // 2 - 20, h - 16), "iteration", fill=(0, 0, 0))
    for i, (name, values) in enumerate(smoothed.items()):
        colour = COLOURS[i % len(COLOURS)]
        draw.line(px(x, values), fill=colour, width=2)
        ly = top + 6 + i * 16
        draw.line([w - right + 10, ly + 6, w - right + 30, ly + 6], fill=colour, width=3)
        draw.text((w - right + 36, ly), f"{name} {values[-1]:.3g}", fill=(0, 0, 0))
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)
