"""BlazePose's landmark model on one region: crop, run, decode, refine from the heatmap, project back.

Semantics (``pose_landmark_by_roi_cpu.pbtxt``, ``tensors_to_pose_landmarks_and_segmentation.pbtxt``):

* Input: the region cropped to 256x256 RGB (replicated border), float32 in [0, 1].
* Outputs used: 39 x 5 landmarks (``x, y, z`` in crop pixels, visibility and presence logits),
  the pose flag (a probability), and the 64x64x39 heatmap.
* The pose is present when the flag is >= 0.5; otherwise nothing is returned (the tracker then
  treats the person as lost).
* Decoding: x, y, z divided by 256; visibility and presence through a sigmoid.
* Heatmap refinement (RefineLandmarksFromHeatmapCalculator, kernel 7, min confidence 0.5): for
  each landmark inside the heatmap, the sigmoid of the 7x7 window around ``(int(x*64), int(y*64))``
  (clipped at the edges); when its maximum is >= 0.5, x and y become the confidence-weighted mean
  of the window's column and row, divided by 64.
* Landmarks 0-32 are the body; 33 and 34 are the auxiliary pair (hip centre, body-circle point)
  that gives the next frame's region (``pose_landmarks_to_roi.pbtxt``: same alignment and
  transformation as the detector's keypoints). 35-38 are not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roi import Roi, crop, project_to_frame, roi_from_alignment, transform_roi
from .runtime import TfliteModel

INPUT_SIZE = 256
LANDMARK_COUNT = 33
RAW_LANDMARKS = 39
PRESENCE_THRESHOLD = 0.5
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5
ROI_SCALE = 1.25


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Landmarks:
    """One person's landmarks in one frame.

    ``points`` is ``(33, 5)`` float32: x, y as fractions of the frame, z (MediaPipe's relative
    depth, scaled by the region's width), visibility and presence in [0, 1]. ``auxiliary`` is
    ``(2, 2)``: the hip centre and the body-circle point, fractions of the frame. ``presence``
    is the pose flag; ``roi`` the region the landmarks were computed in.
    """

    points: np.ndarray
    auxiliary: np.ndarray
    presence: float
    roi: Roi

    def next_roi(self, frame_width: int, frame_height: int) -> Roi:
        """The region for the next frame, from the auxiliary landmarks."""
        raw = roi_from_alignment(self.auxiliary[0], self.auxiliary[1], frame_width, frame_height)
        return transform_roi(raw, frame_width, frame_height, scale=ROI_SCALE, square_long=True)


def refine_from_heatmap(points: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """``points`` ``(n, >=2)`` normalised to the crop, refined from ``heatmap`` ``(h, w, n)`` logits.

    Returns a new array; points outside the heatmap or with a weak window stay as they were.
    """
    out = points.copy()
    hm_h, hm_w, channels = heatmap.shape
    offset = (kernel - 1) // 2
    for i in range(min(channels, len(points))):
        # C++ float -> int conversion truncates toward zero.
        col, row = int(points[i, 0] * hm_w), int(points[i, 1] * hm_h)
        if not (0 <= col < hm_w and 0 <= row < hm_h):
            continue
        r0, r1 = max(0, row - offset), min(hm_h, row + offset + 1)
        c0, c1 = max(0, col - offset), min(hm_w, col + offset + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, i].astype(np.float64))
        total = conf.sum()
        if conf.max() >= min_confidence and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i, 0] = (cols * conf).sum() / hm_w / total
            out[i, 1] = (rows * conf).sum() / hm_h / total
    return out


class LandmarkModel:
    """RGB frame + region -> :class:`Landmarks`, or None when no pose is present there."""

    def __init__(self, model: TfliteModel) -> None:
        if model.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"not BlazePose's landmark model: input {model.input_shape}")
        shapes = model.output_shapes
        self.model = model
        self._landmarks = next(n for n, s in shapes.items() if len(s) == 2 and s[1] == RAW_LANDMARKS * 5)
        self._flag = next(n for n, s in shapes.items() if s == (1, 1))
        self._heatmap = next(n for n, s in shapes.items() if len(s) == 4 and s[-1] == RAW_LANDMARKS)

    def input_tensor(self, rgb: np.ndarray, roi: Roi) -> np.ndarray:
        """The model input for ``roi`` of an RGB uint8 frame: ``(1, 256, 256, 3)`` in [0, 1]."""
        patch = crop(rgb, roi, INPUT_SIZE, INPUT_SIZE)
        return (patch.astype(np.float32) * (1.0 / 255.0))[None]

    def run(self, rgb: np.ndarray, roi: Roi) -> Landmarks | None:
        out = self.model.run(self.input_tensor(rgb, roi))
        presence = float(out[self._flag].reshape(-1)[0])
        if not presence >= PRESENCE_THRESHOLD:  # also catches NaN
            return None
        raw = out[self._landmarks].reshape(RAW_LANDMARKS, 5).astype(np.float32)
        pts = np.empty((RAW_LANDMARKS, 5), dtype=np.float32)
        pts[:, :3] = raw[:, :3] / INPUT_SIZE
        pts[:, 3] = _sigmoid(raw[:, 3])
        pts[:, 4] = _sigmoid(raw[:, 4])
        pts = refine_from_heatmap(pts, out[self._heatmap][0])
        body = project_to_frame(pts[:LANDMARK_COUNT], roi)
        aux = project_to_frame(pts[LANDMARK_COUNT:LANDMARK_COUNT + 2, :2], roi)
        if not (np.isfinite(body).all() and np.isfinite(aux).all()):
            return None
        return Landmarks(body, aux, presence, roi)
