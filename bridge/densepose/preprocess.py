"""Input preparation, exactly as ``DefaultPredictor`` + ``GeneralizedRCNN.preprocess_image``.

1. ``ResizeShortestEdge([s, s], max)``: output size by :func:`output_size` (detectron2's
   ``get_output_shape`` rounding), pixels by PIL ``Image.BILINEAR`` on the uint8 BGR array.
2. float32, HWC -> CHW, channels stay BGR; ``(x - PIXEL_MEAN) / PIXEL_STD``.
3. Zero padding bottom/right to a multiple of 32, *after* normalisation (``ImageList``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def output_size(height: int, width: int, short_side: int, max_side: int) -> tuple[int, int]:
    """(new_h, new_w): short side -> ``short_side``, long side capped at ``max_side``, each then
    rounded with ``int(x + 0.5)`` (640x480 -> 1067x800, 1280x720 -> 1333x750)."""
    size = float(short_side)
    scale = size / min(height, width)
    if height < width:
        newh, neww = size, scale * width
    else:
        newh, neww = scale * height, size
    if max(newh, neww) > max_side:
        scale = max_side * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def padded_size(height: int, width: int, divisibility: int = 32) -> tuple[int, int]:
    """``ImageList.from_tensors`` size: each side rounded up to a multiple of ``divisibility``."""
    return -(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility


def resize_bgr(frame_bgr: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """PIL bilinear resize of a uint8 (H, W, 3) array (no-op when the size already matches,
    as detectron2's ``ResizeTransform`` returns the same pixels then)."""
    if frame_bgr.shape[:2] == (new_h, new_w):
        return frame_bgr
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame_bgr)).resize((new_w, new_h), Image.BILINEAR))


def to_batch(resized_bgr: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float],
             divisibility: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, 3, H32, W32) tensor: normalised BGR, zero-padded bottom/right after normalisation."""
    h, w = resized_bgr.shape[:2]
    ph, pw = padded_size(h, w, divisibility)
    # detectron2: ``image.astype("float32").transpose(2, 0, 1)`` (also a writable copy: PIL's
    # arrays are read-only)
    image = torch.from_numpy(resized_bgr.astype(np.float32)).to(device).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=image.device).view(3, 1, 1)
    batch = torch.zeros((1, 3, ph, pw), dtype=torch.float32, device=image.device)
    batch[0, :, :h, :w] = (image - mean_t) / std_t
    return batch.to(dtype)
