"""Picture quality against a truth: PSNR, SSIM, and held-out scores with the baselines a model must beat.

No torch here (numpy and OpenCV), so :mod:`bridge.puppet.eval` and the per-epoch scores of a
training run compute the same numbers. Baselines: the mean training image (what a model that
ignores the pose would best output) and a blank white frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures, in dB (``inf`` when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) SSIM, Gaussian window 11 / sigma 1.5, per RGB channel, averaged."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def spread_indices(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``, first and last included: frames far
    apart in a clip, not neighbours (which are near duplicates)."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


@dataclass(frozen=True)
class Scores:
    """Mean PSNR/SSIM of ``count`` outputs against their truths, and of the baselines."""

    count: int
    psnr: float
    ssim: float
    mean_image_psnr: float
    mean_image_ssim: float
    white_psnr: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def line(self) -> str:
        return (f"PSNR {self.psnr:.2f} dB, SSIM {self.ssim:.3f} on {self.count} frames "
                f"(mean image: {self.mean_image_psnr:.2f} dB / {self.mean_image_ssim:.3f}; "
                f"white frame: {self.white_psnr:.2f} dB)")


def score(outputs: np.ndarray, truths: np.ndarray, mean_image: np.ndarray) -> Scores:
    """Scores of uint8 ``outputs`` against ``truths`` (N, H, W, 3), with ``mean_image`` (H, W, 3) and a
    white frame as the baselines."""
    white = np.full_like(truths[0], 255)
    return Scores(
        count=len(truths),
        psnr=float(np.mean([psnr(o, t) for o, t in zip(outputs, truths)])),
        ssim=float(np.mean([ssim(o, t) for o, t in zip(outputs, truths)])),
        mean_image_psnr=float(np.mean([psnr(mean_image, t) for t in truths])),
        mean_image_ssim=float(np.mean([ssim(mean_image, t) for t in truths])),
        white_psnr=float(np.mean([psnr(white, t) for t in truths])),
    )
