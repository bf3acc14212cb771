"""The person mask: MediaPipe's selfie segmentation model (``selfie_segmentation.tflite``, the
"general" 256x256 model of ``selfie_segmentation_cpu.pbtxt``, model selection 0).

Semantics of the graph (our own code): the whole frame is resized to 256x256 **without** keeping
the aspect ratio (``keep_aspect_ratio: false``), RGB in [0, 1]; the model's one output is a
256x256x1 probability already (``TensorsToSegmentationCalculator`` with ``activation: NONE``),
resized back to the frame's size (bilinear). A pixel belongs to a person where it is >= 0.5.

The model finds every person in view (not one chosen person); :mod:`bridge.pose.shaped` decides
which mask pixels belong to a tracked person.

Thread contract: as :class:`~bridge.pose.tracker.runtime.TfliteModel` (calls are serialised).
"""

from __future__ import annotations

import cv2
import numpy as np

from .runtime import TfliteModel

INPUT_SIZE = 256
MASK_THRESHOLD = 0.5


class PersonSegmenter:
    """RGB uint8 frame -> float32 person probability at the frame's size."""

    def __init__(self, model: TfliteModel) -> None:
        if model.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"{model.path.name}: input {model.input_shape}, expected (1, 256, 256, 3)")
        self.model = model

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        out = next(iter(self.model.run(x[None]).values()))[0, :, :, 0]
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)

    def mask(self, rgb: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
        """bool (H, W): where the model sees a person."""
        return self.probability(rgb) >= threshold
