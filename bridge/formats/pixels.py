"""Pixel formats and the conversions between them (numpy only).

Every frame inside the bridge is an ``(height, width, channels)`` array plus a format
name from :data:`bridge.protocol.SHM_FORMATS` (``BGRA8``, ``RGBA8``, ``RGB8``, ``BGR8``,
``RGBAF32``) and an origin (top-left or bottom-left rows). Colour order and orientation
are converted here and nowhere else, and only when a model asks for a format other than
the client's: order-agnostic models (passthrough, invert) see the client's bytes as-is.
"""

from __future__ import annotations

import numpy as np

from ..protocol import SHM_FORMATS

FORMATS = tuple(SHM_FORMATS)


def channel_order(fmt: str) -> str:
    """``"BGRA"``, ``"RGB"`` ... for a format name."""
    return SHM_FORMATS[fmt][2]


def has_alpha(fmt: str) -> bool:
    return SHM_FORMATS[fmt][0] == 4


def is_float(fmt: str) -> bool:
    return SHM_FORMATS[fmt][1] == "float32"


def format_for(channels: int, order: str = "BGR") -> str:
    """Format name for an 8-bit image with ``channels`` (3 or 4) in BGR(A) or RGB(A) order."""
    name = {3: order[:3], 4: order[:3] + "A"}[channels] + "8"
    if name not in SHM_FORMATS:
        raise ValueError(f"no format for {channels} channels in {order} order")
    return name


def convert(image: np.ndarray, src: str, dst: str, *, flip_rows: bool = False) -> np.ndarray:
    """Convert ``image`` from format ``src`` to ``dst`` (and flip rows if asked).

    uint8 <-> float32 maps 0..255 to 0.0..1.0 (rounding to nearest, clipped). Missing
    alpha becomes opaque; dropped alpha is discarded. Returns a new C-contiguous array
    unless nothing changes, in which case ``image`` itself is returned.
    """
    if src == dst and not flip_rows:
        return image
    src_order, dst_order = channel_order(src), channel_order(dst)
    data = image[::-1] if flip_rows else image
    idx = [src_order.index(c) for c in dst_order if c in src_order]
    if idx != list(range(data.shape[2])) or len(idx) != len(dst_order):
        picked = data[..., idx]
    else:
        picked = data
    if len(dst_order) == 4 and "A" not in src_order:
        opaque = 1.0 if is_float(src) else 255
        alpha = np.full(picked.shape[:2] + (1,), opaque, dtype=picked.dtype)
        picked = np.concatenate([picked, alpha], axis=2)
    if is_float(src) and not is_float(dst):
        picked = np.clip(np.rint(picked * 255.0), 0, 255).astype(np.uint8)
    elif not is_float(src) and is_float(dst):
        picked = picked.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(picked)
