"""Rotated regions of interest: how BlazePose turns two points into a crop, and a crop back into a frame.

A region (:class:`Roi`) is MediaPipe's ``NormalizedRect``: centre, width and height as fractions
of the frame's width and height, and a rotation in radians (positive turns clockwise on screen,
because y points down). The steps, with MediaPipe's calculator for each:

* :func:`roi_from_alignment` (AlignmentPointsRectsCalculator + DetectionsToRects' rotation):
  centre = the first point; side = 2 x the distance to the second point, in pixels; rotation =
  normalise(90 deg - atan2(-(y1 - y0), x1 - x0)), so the body stands upright in the crop.
* :func:`transform_roi` (RectTransformationCalculator with ``square_long`` and scale 1.25).
* :func:`crop` (ImageToTensorCalculator, OpenCV path): the rect's corners from ``cv2.boxPoints``
  (angle in degrees) map to the output's corners through ``cv2.getPerspectiveTransform``, then
  ``cv2.warpPerspective`` with bilinear sampling.
* :func:`project_to_frame` (LandmarkProjectionCalculator with a NORM_RECT): a point (x, y) in the
  crop, in [0, 1], goes to ``R(rotation) @ (x - 0.5, y - 0.5) * (w, h) + centre``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def normalize_radians(angle: float) -> float:
    """``angle`` wrapped into [-pi, pi), as MediaPipe's ``NormalizeRadians``."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass(frozen=True)
class Roi:
    """A rotated rectangle in a frame, normalised to the frame's width and height."""

    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0

    def pixels(self, frame_width: int, frame_height: int) -> tuple[float, float, float, float]:
        """Centre x, centre y, width, height in pixels."""
        return (self.x_center * frame_width, self.y_center * frame_height,
                self.width * frame_width, self.height * frame_height)

    def corners(self, frame_width: int, frame_height: int) -> np.ndarray:
        """The four corners in pixels, ``(4, 2)`` float32, in ``cv2.boxPoints`` order."""
        cx, cy, w, h = self.pixels(frame_width, frame_height)
        return cv2.boxPoints(((cx, cy), (w, h), math.degrees(self.rotation))).astype(np.float32)

    def box(self, frame_width: int, frame_height: int) -> tuple[float, float, float, float]:
        """The axis-aligned bounds of the rotated rectangle in pixels: ``x0, y0, x1, y1``."""
        c = self.corners(frame_width, frame_height)
        return float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())


def roi_from_alignment(center: np.ndarray, scale_point: np.ndarray, frame_width: int, frame_height: int,
                       target_angle: float = math.pi / 2) -> Roi:
    """The region whose centre is ``center`` and whose side is twice the distance to ``scale_point``.

    Both points are normalised ``(x, y)``. The rotation makes the direction centre -> scale point
    point up in the crop (``target_angle`` 90 degrees).
    """
    x0, y0 = float(center[0]) * frame_width, float(center[1]) * frame_height
    x1, y1 = float(scale_point[0]) * frame_width, float(scale_point[1]) * frame_height
    side = 2.0 * math.hypot(x1 - x0, y1 - y0)
    rotation = normalize_radians(target_angle - math.atan2(-(y1 - y0), x1 - x0))
    return Roi(x0 / frame_width, y0 / frame_height, side / frame_width, side / frame_height, rotation)


def transform_roi(roi: Roi, frame_width: int, frame_height: int, scale: float = 1.25,
                  square_long: bool = True) -> Roi:
    """``roi`` made square on its long side (in pixels) and scaled by ``scale`` about its centre."""
    width, height = roi.width, roi.height
    if square_long:
        long_side = max(width * frame_width, height * frame_height)
        width, height = long_side / frame_width, long_side / frame_height
    return Roi(roi.x_center, roi.y_center, width * scale, height * scale, roi.rotation)


def crop_matrix(roi: Roi, frame_width: int, frame_height: int, out_width: int, out_height: int) -> np.ndarray:
    """The 3x3 perspective matrix that maps frame pixels to crop pixels (what ``crop`` warps with)."""
    src = roi.corners(frame_width, frame_height)
    dst = np.array([[0, out_height], [0, 0], [out_width, 0], [out_width, out_height]], dtype=np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def crop(image: np.ndarray, roi: Roi, out_width: int, out_height: int,
         border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """The region of ``image`` resampled to ``out_width`` x ``out_height`` (same dtype and channels).

    ``border`` is what lies outside the frame: replicated edge pixels for the landmark model,
    zeros for the detector's letterbox (MediaPipe's ``BORDER_ZERO``).
    """
    h, w = image.shape[:2]
    matrix = crop_matrix(roi, w, h, out_width, out_height)
    return cv2.warpPerspective(image, matrix, (out_width, out_height), flags=cv2.INTER_LINEAR,
                               borderMode=border, borderValue=0)


def project_to_frame(points: np.ndarray, roi: Roi) -> np.ndarray:
    """Points normalised to the crop, ``(n, >=2)`` with x, y first, -> normalised to the frame.

    Columns after the first two are kept unchanged except a third (z), which is scaled by the
    region's width as MediaPipe does. Returns a new float32 array.
    """
    out = np.array(points, dtype=np.float32, copy=True)
    x = out[:, 0] - 0.5
    y = out[:, 1] - 0.5
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    out[:, 0] = (c * x - s * y) * roi.width + roi.x_center
    out[:, 1] = (s * x + c * y) * roi.height + roi.y_center
    if out.shape[1] > 2:
        out[:, 2] = out[:, 2] * roi.width
    return out
