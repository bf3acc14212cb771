"""BlazePose's person detector on a whole frame: letterbox, run, decode against anchors, weighted NMS.

Semantics (``pose_detection_cpu.pbtxt`` and its calculators):

* Input: the frame letterboxed into 224x224 RGB (keep aspect ratio, zero border, so padding reads
  -1 after the value range), float32 in [-1, 1].
* Outputs: 2254 x 12 regressors and 2254 score logits. Values are ``x, y, w, h`` of the box
  centre and size, then 4 keypoints ``x, y`` (``reverse_output_order``: x before y), in input
  pixels relative to the anchor: ``x = raw / 224 * anchor_w + anchor_x`` (anchor size 1).
* Score: the logit clipped to +-100, then a sigmoid; kept when >= 0.5.
* Weighted non-maximum suppression, IoU threshold 0.3: the best remaining box absorbs every box
  overlapping it by more than that, and box and keypoints become the score-weighted mean of that
  group (the best box keeps its score).
* Letterbox removed: coordinates become fractions of the frame.

Keypoint 0 is the hip centre, keypoint 1 a point on the circle around the body; together they
define the landmark model's region (:func:`detection_roi`). Keypoints 2 and 3 are the
shoulder centre and the point above the head (unused by the pose graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .anchors import ssd_anchors
from .roi import Roi, crop, roi_from_alignment, transform_roi
from .runtime import TfliteModel

INPUT_SIZE = 224
MIN_SCORE = 0.5
NMS_IOU = 0.3
SCORE_CLIP = 100.0
ROI_SCALE = 1.25
# Tiles for small people (several side by side): the whole frame shrinks to 224 px, where a
# person 190 px high in 640x480 has a face of a few pixels and is missed. Three tiles along the
# long side, each 1.4 x a third of it (overlapping, so a person on a seam is whole in one), find
# 4 such people where the whole frame finds 1 (docs/TRACKER.md, several people).
TILES = 3
TILE_OVERLAP = 1.4


@dataclass(frozen=True)
class Detection:
    """One person found by the detector, in fractions of the frame.

    ``box`` is ``xmin, ymin, xmax, ymax``; ``keypoints`` is ``(4, 2)`` x, y.
    """

    score: float
    box: np.ndarray
    keypoints: np.ndarray


def letterbox(width: int, height: int) -> tuple[Roi, tuple[float, float, float, float]]:
    """The square region around the whole frame and its padding (left, top, right, bottom),
    as fractions of the square (MediaPipe's ``PadRoi`` for a 1:1 output)."""
    side = max(width, height)
    roi = Roi(0.5, 0.5, side / width, side / height, 0.0)
    pad_x = (1.0 - width / side) / 2.0
    pad_y = (1.0 - height / side) / 2.0
    return roi, (pad_x, pad_y, pad_x, pad_y)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """Regressors and logits -> (kept scores ``(k,)``, kept rows ``(k, 12)``): box as
    ``xmin, ymin, xmax, ymax`` then 4 keypoints, in fractions of the detector input."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw = raw_boxes.reshape(-1, 12)[keep].astype(np.float64)
    anc = anchors[keep].astype(np.float64)
    ax, ay, aw, ah = anc[:, 0:1], anc[:, 1:2], anc[:, 2:3], anc[:, 3:4]
    cx = raw[:, 0:1] / INPUT_SIZE * aw + ax
    cy = raw[:, 1:2] / INPUT_SIZE * ah + ay
    w = raw[:, 2:3] / INPUT_SIZE * aw
    h = raw[:, 3:4] / INPUT_SIZE * ah
    kx = raw[:, 4::2] / INPUT_SIZE * aw + ax
    ky = raw[:, 5::2] / INPUT_SIZE * ah + ay
    kps = np.stack([kx, ky], axis=-1).reshape(-1, 8)
    rows = np.concatenate([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, kps], axis=1)
    return scores[keep].astype(np.float64), rows


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of ``box`` (4,) with each of ``boxes`` (n, 4), ``xmin ymin xmax ymax``;
    0 where the union is empty."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores: np.ndarray, rows: np.ndarray, threshold: float = NMS_IOU,
                 max_count: int = 0) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's WEIGHTED non-maximum suppression; ``(score, row)`` best first.

    ``max_count`` > 0 stops after that many detections.
    """
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out: list[tuple[float, np.ndarray]] = []
    while remaining.size:
        best = remaining[0]
        overlap = iou(rows[best, :4], rows[remaining, :4]) > threshold
        overlap[0] = True  # the best box always joins its own group (IoU 1; 0 if degenerate)
        group, remaining = remaining[overlap], remaining[~overlap]
        weights = scores[group][:, None]
        out.append((float(scores[best]), (rows[group] * weights).sum(axis=0) / weights.sum()))
        if max_count and len(out) >= max_count:
            break
    return out


def detection_roi(detection: Detection, frame_width: int, frame_height: int) -> Roi:
    """The landmark model's region for a detection (``pose_detection_to_roi.pbtxt``)."""
    raw = roi_from_alignment(detection.keypoints[0], detection.keypoints[1], frame_width, frame_height)
    return transform_roi(raw, frame_width, frame_height, scale=ROI_SCALE, square_long=True)


class PoseDetector:
    """Whole RGB frames -> :class:`Detection` list, best first."""

    def __init__(self, model: TfliteModel, min_score: float = MIN_SCORE) -> None:
        if model.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"not BlazePose's detector: input {model.input_shape}")
        self.model = model
        self.min_score = min_score
        self.anchors = ssd_anchors(INPUT_SIZE)
        outputs = model.output_shapes
        self._boxes_name = next(n for n, s in outputs.items() if s[-1] == 12)
        self._scores_name = next(n for n, s in outputs.items() if s[-1] == 1)
        if outputs[self._boxes_name][1] != len(self.anchors):
            raise ValueError(f"detector has {outputs[self._boxes_name][1]} boxes, anchors {len(self.anchors)}")

    def input_tensor(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The letterboxed [-1, 1] input for an RGB uint8 frame, and its padding."""
        h, w = rgb.shape[:2]
        roi, padding = letterbox(w, h)
        square = crop(rgb, roi, INPUT_SIZE, INPUT_SIZE, border=cv2.BORDER_CONSTANT)
        tensor = square.astype(np.float32) * (2.0 / 255.0) - 1.0
        return tensor[None], padding

    def detect(self, rgb: np.ndarray, max_count: int = 0) -> list[Detection]:
        """People in an RGB uint8 frame, best first (at most ``max_count`` when > 0)."""
        tensor, (pl, pt, pr, pb) = self.input_tensor(rgb)
        out = self.model.run(tensor)
        scores, rows = decode(out[self._boxes_name], out[self._scores_name], self.anchors, self.min_score)
        found = []
        sx, sy = 1.0 - pl - pr, 1.0 - pt - pb
        for score, row in weighted_nms(scores, rows, NMS_IOU, max_count):
            xy = row.reshape(-1, 2).copy()  # box corners, then keypoints
            xy[:, 0] = (xy[:, 0] - pl) / sx
            xy[:, 1] = (xy[:, 1] - pt) / sy
            if not np.isfinite(xy).all() or math.isnan(score):
                continue
            found.append(Detection(score, xy[:2].reshape(4).astype(np.float32), xy[2:].astype(np.float32)))
        return found

    def detect_tiled(self, rgb: np.ndarray, tiles: int = TILES, whole: list[Detection] | None = None) -> list[Detection]:
        """People in the whole frame and in ``tiles`` overlapping tiles along its long side, merged
        (a detection overlapping a better one by IoU > 0.3 is the same person), best first, in
        fractions of the whole frame. ``whole``: the whole frame's detections if already run.
        Costs ``tiles`` (+1 without ``whole``) detector runs."""
        h, w = rgb.shape[:2]
        found = list(self.detect(rgb) if whole is None else whole)
        long_side = max(w, h)
        span = min(long_side, int(round(long_side / tiles * TILE_OVERLAP)))
        for start in np.linspace(0, long_side - span, tiles).round().astype(int):
            x0, y0, tw, th = (int(start), 0, span, h) if w >= h else (0, int(start), w, span)
            for det in self.detect(np.ascontiguousarray(rgb[y0:y0 + th, x0:x0 + tw])):
                box = det.box.reshape(2, 2) * (tw / w, th / h) + (x0 / w, y0 / h)
                points = det.keypoints * (tw / w, th / h) + (x0 / w, y0 / h)
                found.append(Detection(det.score, box.reshape(4).astype(np.float32), points.astype(np.float32)))
        found.sort(key=lambda d: -d.score)
        merged: list[Detection] = []
        for det in found:
            boxes = np.array([m.box for m in merged], np.float64).reshape(-1, 4)
            if not len(merged) or iou(det.box.astype(np.float64), boxes).max() <= NMS_IOU:
                merged.append(det)
        return merged
