"""SSD anchors of BlazePose's detector, as MediaPipe's ``SsdAnchorsCalculator`` makes them.

The detector's options (``pose_detection_cpu.pbtxt``): 224x224 input, 5 layers with strides
8, 16, 32, 32, 32, one aspect ratio (1.0) plus the interpolated-scale anchor, offsets 0.5,
``fixed_anchor_size: true``. Consecutive layers with the same stride share one feature map and
their anchors are interleaved per cell, so the 2254 anchors are 28x28x2 + 14x14x2 + 7x7x6.
With a fixed anchor size every anchor is 1x1 (in input units) and only its centre matters.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DETECTOR_STRIDES: tuple[int, ...] = (8, 16, 32, 32, 32)


def ssd_anchors(input_size: int = 224, strides: Sequence[int] = DETECTOR_STRIDES,
                aspect_ratio_count: int = 1, interpolated_scale: bool = True,
                offset: float = 0.5) -> np.ndarray:
    """Anchor centres and sizes, ``(n, 4)`` float32 rows of ``x_center, y_center, w, h`` in [0, 1].

    Contract: the order is the model's output order (layer groups in stride order, then row,
    column, anchor within a cell). Sizes are 1.0 (``fixed_anchor_size``).
    """
    rows: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        group_end = layer
        while group_end < len(strides) and strides[group_end] == strides[layer]:
            group_end += 1
        per_cell = (group_end - layer) * (aspect_ratio_count + (1 if interpolated_scale else 0))
        side = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32), indexing="ij")
        centres = np.stack([(xs + offset) / side, (ys + offset) / side], axis=-1).reshape(-1, 1, 2)
        centres = np.repeat(centres, per_cell, axis=1).reshape(-1, 2)
        rows.append(np.concatenate([centres, np.ones_like(centres)], axis=1))
        layer = group_end
    return np.concatenate(rows).astype(np.float32)
