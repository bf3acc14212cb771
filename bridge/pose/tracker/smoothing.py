"""Steady landmarks: a One Euro filter per person and per joint, with real timestamps.

Written to the semantics of MediaPipe's ``LandmarksSmoothingCalculator`` (one_euro_filter options)
and ``OneEuroFilter`` / ``LowPassFilter`` (mediapipe/util/filtering); our own code:

* every axis of every landmark has its own filter; x, y, z are filtered in frame pixels
  (MediaPipe turns normalised landmarks into pixels first, z scaled by the width like x);
* the value scale is the inverse of the object scale, here the region's mean side in pixels
  (``OBJECT_SCALE_ROI``: ``(w * W + h * H) / 2``), so speed is measured in "bodies per second" and
  a far (small) person is smoothed like a near one;
* the frequency comes from the timestamps: ``1 / (t - t_last)``, so dropped frames (a longer
  ``dt``) are handled; the first sample passes through unchanged;
* speed ``dx = (x - x_last_raw) * value_scale * frequency``, low-passed with the alpha of
  ``derivate_cutoff``; then ``cutoff = min_cutoff + beta * |dx|`` and the value is low-passed with
  ``alpha(cutoff) = 1 / (1 + frequency / (2 pi cutoff))``;
* a timestamp that does not advance returns the value unfiltered (MediaPipe's rule);
* MediaPipe's pose graph: min_cutoff 0.05, beta 80, derivate_cutoff 1.0 for the image landmarks.

Not filtered: visibility and presence (MediaPipe smooths visibility with its own low-pass; the
drawing only thresholds it). Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

DEFAULT_FREQUENCY = 30.0  # only for the very first sample (its output is the input anyway)
MIN_OBJECT_SCALE = 1e-6  # smaller objects pass through unfiltered (MediaPipe's min_allowed_object_scale)
LIMITS = {"min_cutoff": (1e-4, 1000.0), "beta": (0.0, 10000.0), "derivate_cutoff": (1e-4, 1000.0)}


@dataclass(frozen=True)
class SmoothingSettings:
    """One Euro settings; ``enabled`` False passes landmarks through as the model gave them."""

    enabled: bool = True
    min_cutoff: float = 0.05
    beta: float = 80.0
    derivate_cutoff: float = 1.0

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str:
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                return f"{name} must be a number in {lo:g}..{hi:g}, not {value!r}"
        return ""

    def with_values(self, **changes: Any) -> "SmoothingSettings":
        """A copy with ``changes``; raises ValueError on a value out of range."""
        return replace(self, **changes)


def settings_from_table(table: Mapping[str, Any] | None, where: str = "[smoothing]") -> SmoothingSettings:
    """Settings from a card's ``[smoothing]`` table (missing keys: MediaPipe's values)."""
    table = dict(table or {})
    unknown = set(table) - {"enabled", "min_cutoff", "beta", "derivate_cutoff"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    base = SmoothingSettings()
    try:
        return SmoothingSettings(enabled=bool(table.get("enabled", base.enabled)),
                                 min_cutoff=float(table.get("min_cutoff", base.min_cutoff)),
                                 beta=float(table.get("beta", base.beta)),
                                 derivate_cutoff=float(table.get("derivate_cutoff", base.derivate_cutoff)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def alpha(cutoff: float | np.ndarray, frequency: float) -> float | np.ndarray:
    """The low-pass weight of the new value for a cutoff (Hz) at a sampling frequency (Hz)."""
    return 1.0 / (1.0 + frequency / (2.0 * np.pi * cutoff))


def lag_bound_frames(speed_px_s: float, scale_px: float, fps: float, settings: SmoothingSettings) -> float:
    """The steady-state delay, in frames, of a joint moving at a constant ``speed_px_s`` (pixels/s)
    for an object of ``scale_px`` filmed at ``fps``: the filter then settles at
    ``cutoff = min_cutoff + beta * speed / scale`` and an exponential low-pass with weight ``a``
    trails a ramp by ``(1 - a) / a = fps / (2 pi cutoff)`` frames. The delay never exceeds it
    once the speed estimate has settled (a few frames at derivate_cutoff 1 Hz); the faster the
    motion, the smaller it is. 0 when smoothing is off."""
    if not settings.enabled:
        return 0.0
    cutoff = settings.min_cutoff + settings.beta * abs(speed_px_s) / max(scale_px, MIN_OBJECT_SCALE)
    return float(fps / (2.0 * np.pi * cutoff))


class OneEuroFilter:
    """A One Euro filter over an array of values (each element its own filter), e.g. ``(33, 3)``."""

    def __init__(self) -> None:
        self._x: np.ndarray | None = None  # filtered value
        self._raw: np.ndarray | None = None  # last raw value
        self._dx: np.ndarray | None = None  # filtered speed
        self._t: float | None = None

    @property
    def started(self) -> bool:
        return self._x is not None

    @property
    def last(self) -> np.ndarray | None:
        return None if self._x is None else self._x.copy()

    def reset(self) -> None:
        self._x = self._raw = self._dx = None
        self._t = None

    def apply(self, t: float, value: np.ndarray, value_scale: float, settings: SmoothingSettings) -> np.ndarray:
        """The filtered ``value`` (float64, same shape) at time ``t`` (seconds)."""
        value = np.asarray(value, dtype=np.float64)
        if self._x is not None and self._x.shape != value.shape:
            self.reset()
        if self._t is not None and t <= self._t:
            return value.copy()  # time did not advance: nothing sensible to do (MediaPipe returns the value)
        frequency = DEFAULT_FREQUENCY if self._t is None else 1.0 / (t - self._t)
        self._t = t
        if self._x is None or self._raw is None or self._dx is None:
            self._x, self._raw, self._dx = value.copy(), value.copy(), np.zeros_like(value)
            return value.copy()
        speed = (value - self._raw) * value_scale * frequency
        self._dx = self._dx + alpha(settings.derivate_cutoff, frequency) * (speed - self._dx)
        cutoff = settings.min_cutoff + settings.beta * np.abs(self._dx)
        self._x = self._x + alpha(cutoff, frequency) * (value - self._x)
        self._raw = value.copy()
        return self._x.copy()


class LandmarkSmoother:
    """One person's landmarks in frame pixels, smoothed over time (x, y and z per joint)."""

    def __init__(self) -> None:
        self.filter = OneEuroFilter()

    def apply(self, t: float, points_px: np.ndarray, object_scale_px: float, settings: SmoothingSettings) -> np.ndarray:
        """``points_px`` ``(J, >=2)``: x, y (and z) in pixels, further columns untouched.

        With smoothing off the filter is reset, so switching it on again starts from the present
        pose rather than an old one."""
        cols = min(3, points_px.shape[1])
        out = np.array(points_px, dtype=np.float64, copy=True)
        if object_scale_px < MIN_OBJECT_SCALE:
            return out
        scale = 1.0 / object_scale_px
        if settings.enabled:
            out[:, :cols] = self.filter.apply(t, out[:, :cols], scale, settings)
        else:
            self.filter.reset()
        return out
