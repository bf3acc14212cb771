"""Pose images from a :class:`~bridge.pose.types.PoseResult`: the picture a generator was trained on.

A generator only understands the render style of its training data, so the style is chosen
per generator model card (``[input] pose_style``). numpy + cv2 only; no torch.

API (shared with the keypoint renderer and the synthetic puppet, keep it stable)::

    STYLES: tuple[str, ...]
    render_pose(result, style, frame_bgr=None) -> (result.height, result.width, 3) uint8 RGB

Styles. "Colormap over canvas" below is detectron2's ``MatrixVisualizer`` rule
(``projects/DensePose/densepose/vis/base.py``), reproduced bit for bit: per instance, in
``result.instances`` order (later ones on top), inside its integer box ``x, y, w, h``::

    val  = uint8(clip(float32(matrix) * val_scale, 0, 255))      # truncation
    col  = applyColorMap(val, cmap)                              # BGR
    col[label == 0] = canvas                                     # background keeps the canvas
    canvas[box] = uint8(canvas[box] * (1 - alpha) + col * alpha) # float64, truncation

==================  ==========================================================================
``dp_segm``         detectron2 ``apply_net.py show dp_segm``: matrix = part index I, val_scale
                    255/24 (I=1..24 -> colormap index 10, 21, ..., 255), PARULA, alpha 0.7, over
                    the grayscale camera frame (``BGR2GRAY`` tiled to 3 channels).
``u`` / ``v``       ``apply_net.py show dp_u`` / ``dp_v``: matrix = the uint8 IUV packing of U
                    (V), i.e. ``uint8(U * 255)`` with torch's wrap-around cast, masked by I,
                    PARULA, alpha 0.7, over the grayscale frame.
``vid2densepose``   Flode-Labs/vid2densepose (MagicAnimate's training data): matrix = I as
                    ``dp_segm``, VIRIDIS, alpha 0.7, over a flat ``VIRIDIS(0)`` canvas
                    (RGB 68, 1, 84). The frame is not used.
``black``           controlnet_aux ``DenseposeDetector`` default: I as ``dp_segm``, PARULA,
                    alpha 1.0 (pure colormap colours), on black. The frame is not used.
``iuv``             the raw IUV packing as an image: RGB = (I, uint8(U*255), uint8(V*255)) with
                    the wrap-around cast, black where I = 0; instances overwrite (no blend).
``iuv_cv2``         the same packing as a Detectron1-style IUV PNG written by ``cv2.imwrite`` of
                    an ``[I, U, V]`` HxWx3 array and read back as RGB: RGB = (V, U, I).
==================  ==========================================================================

``frame_bgr`` is the (H, W, 3) uint8 BGR camera frame. Only ``dp_segm``, ``u`` and ``v`` use
it; when it is None they draw over a **white** canvas (grayscale 255). The other styles ignore
it. Boxes that reach outside the frame are cropped to it (detectron2 never produces such boxes,
since it clips them; keypoint/puppet sources may). Zero-sized boxes draw nothing, as in
detectron2 (``w <= 0 or h <= 0`` returns early).

Colour order: everything is drawn in BGR, exactly as detectron2 does, and converted to RGB in
one place, :func:`_bgr_to_rgb`, on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from .types import PART_COUNT, PoseInstance, PoseResult

Style = Literal["dp_segm", "vid2densepose", "black", "iuv", "iuv_cv2", "u", "v"]
STYLES: tuple[str, ...] = ("dp_segm", "vid2densepose", "black", "iuv", "iuv_cv2", "u", "v")

#: detectron2 ``DensePoseDataRelative.N_PART_LABELS`` = 24: I * 255/24 spans the colormap.
SEGM_VAL_SCALE = 255.0 / PART_COUNT
DEFAULT_ALPHA = 0.7
BLANK_GRAY = 255  # canvas of the frame-based styles when no frame is given (white)


@dataclass(frozen=True)
class _ColormapStyle:
    channel: Literal["i", "u", "v"]  # which plane of the IUV packing is the matrix
    cmap: int  # cv2.COLORMAP_*
    alpha: float
    val_scale: float
    canvas: Literal["gray_frame", "cmap_zero", "black"]


_COLORMAP_STYLES: dict[str, _ColormapStyle] = {
    "dp_segm": _ColormapStyle("i", cv2.COLORMAP_PARULA, DEFAULT_ALPHA, SEGM_VAL_SCALE, "gray_frame"),
    "u": _ColormapStyle("u", cv2.COLORMAP_PARULA, DEFAULT_ALPHA, 1.0, "gray_frame"),
    "v": _ColormapStyle("v", cv2.COLORMAP_PARULA, DEFAULT_ALPHA, 1.0, "gray_frame"),
    "vid2densepose": _ColormapStyle("i", cv2.COLORMAP_VIRIDIS, DEFAULT_ALPHA, SEGM_VAL_SCALE, "cmap_zero"),
    "black": _ColormapStyle("i", cv2.COLORMAP_PARULA, 1.0, SEGM_VAL_SCALE, "black"),
}

_LUTS: dict[int, np.ndarray] = {}


def colormap_lut(cmap: int) -> np.ndarray:
    """(256, 3) uint8 BGR table equal to ``cv2.applyColorMap`` of 0..255 (cached)."""
    lut = _LUTS.get(cmap)
    if lut is None:
        lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cmap).reshape(256, 3)
        lut.setflags(write=False)
        _LUTS[cmap] = lut
    return lut


def wrap_to_uint8(values: np.ndarray) -> np.ndarray:
    """float -> uint8 the way torch's CPU ``.type(torch.uint8)`` does it: truncate toward zero,
    then wrap modulo 256 (-1.5 -> 255, 256.7 -> 0). NaN and infinities become 0, as in torch.

    detectron2 packs ``uv * 255`` with that cast, so a U of 1.003 becomes 255.8 -> 255 but a U
    of 1.004 becomes 256.0 -> 0 and a slightly negative U below -1/255 becomes 255.
    """
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    return (np.trunc(v).astype(np.int64) & 0xFF).astype(np.uint8)


def iuv_array(instance: PoseInstance) -> np.ndarray:
    """detectron2's ``iuv_arr`` of one instance: (3, h, w) uint8 = I, U*255, V*255 (wrapped).

    detectron2 computes it in float32 (``labels.float()``, ``uv * 255.0``) before the cast;
    the same float32 product is used here so values on the edge of an integer agree.
    """
    uv255 = instance.uv.astype(np.float32) * np.float32(255.0)
    out = np.empty((3,) + instance.labels.shape, dtype=np.uint8)
    out[0] = instance.labels
    out[1] = wrap_to_uint8(uv255[0])
    out[2] = wrap_to_uint8(uv255[1])
    return out


def _bgr_to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """The one place colour order changes: BGR canvas -> contiguous RGB output."""
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def _canvas(kind: str, result: PoseResult, frame_bgr: np.ndarray | None, cmap: int) -> np.ndarray:
    shape = (result.height, result.width, 3)
    if kind == "gray_frame":
        if frame_bgr is None:
            return np.full(shape, BLANK_GRAY, dtype=np.uint8)
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if kind == "cmap_zero":
        return np.broadcast_to(colormap_lut(cmap)[0], shape).copy()
    return np.zeros(shape, dtype=np.uint8)


def _visible_window(instance: PoseInstance, width: int, height: int) -> tuple[slice, slice, slice, slice] | None:
    """(canvas rows, canvas cols, instance rows, instance cols) of the part of the box inside
    the frame, or None when nothing of it is."""
    x, y, w, h = instance.box_xywh
    if w <= 0 or h <= 0:
        return None
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1), slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)


def _draw_colormap(canvas: np.ndarray, instance: PoseInstance, style: _ColormapStyle) -> None:
    window = _visible_window(instance, canvas.shape[1], canvas.shape[0])
    if window is None:
        return
    cy, cx, iy, ix = window
    iuv = iuv_array(instance)[:, iy, ix]
    matrix = iuv[{"i": 0, "u": 1, "v": 2}[style.channel]]
    # float32 product then clip + truncating cast: detectron2's ``matrix_scaled_8u``.
    val = np.clip(matrix.astype(np.float32) * np.float32(style.val_scale), 0, 255).astype(np.uint8)
    col = colormap_lut(style.cmap)[val]
    region = canvas[cy, cx]
    background = iuv[0] == 0
    col[background] = region[background]
    canvas[cy, cx] = region * (1.0 - style.alpha) + col * style.alpha  # float64 -> uint8 truncates


def _draw_iuv(canvas: np.ndarray, instance: PoseInstance, channels_bgr: tuple[int, int, int]) -> None:
    window = _visible_window(instance, canvas.shape[1], canvas.shape[0])
    if window is None:
        return
    cy, cx, iy, ix = window
    iuv = iuv_array(instance)[:, iy, ix]
    fg = iuv[0] > 0
    region = canvas[cy, cx]
    for plane, source in enumerate(channels_bgr):
        region[..., plane][fg] = iuv[source][fg]


def render_pose(result: PoseResult, style: str, frame_bgr: np.ndarray | None = None) -> np.ndarray:
    """Draw ``result`` in ``style``; return a new (height, width, 3) uint8 **RGB** image.

    ``frame_bgr`` must be (result.height, result.width, 3) uint8 when given (ValueError
    otherwise); it is never modified. Unknown style -> ValueError listing :data:`STYLES`.
    """
    if style not in STYLES:
        raise ValueError(f"unknown pose style {style!r}; styles: {', '.join(STYLES)}")
    if frame_bgr is not None:
        expected = (result.height, result.width, 3)
        if frame_bgr.shape != expected or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame_bgr must be uint8 {expected}, got {frame_bgr.dtype} {frame_bgr.shape}")
    if style in ("iuv", "iuv_cv2"):
        canvas = np.zeros((result.height, result.width, 3), dtype=np.uint8)
        # Canvas planes are B, G, R; sources are IUV planes 0=I, 1=U, 2=V.
        channels_bgr = (2, 1, 0) if style == "iuv" else (0, 1, 2)
        for instance in result.instances:
            _draw_iuv(canvas, instance, channels_bgr)
        return _bgr_to_rgb(canvas)
    spec = _COLORMAP_STYLES[style]
    canvas = _canvas(spec.canvas, result, frame_bgr, spec.cmap)
    for instance in result.instances:
        _draw_colormap(canvas, instance, spec)
    return _bgr_to_rgb(canvas)
