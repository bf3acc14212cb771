"""Built-in numpy stages: ``passthrough``, ``invert`` and ``throttle:<ms>``.

They are colour-order agnostic, so the pipeline hands them the client's bytes unconverted.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ModelLoadError
from ..pixels import has_alpha, is_float


class Passthrough:
    """Returns the input unchanged (the same array object: no copy)."""

    name = "passthrough"

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        return image


class Invert:
    """255 minus each colour channel (1.0 minus, for float formats); alpha is kept."""

    name = "invert"

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        top = np.float32(1.0) if is_float(fmt) else np.uint8(255)
        out = np.subtract(top, image, dtype=image.dtype)
        if has_alpha(fmt):
            out[..., 3] = image[..., 3]
        return out


class Throttle(Passthrough):
    """Passthrough that takes at least ``delay_s`` per frame: simulates a slow GPU model so a
    patch's behaviour under load (dropped frames, latency) can be rehearsed without one."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.name = f"throttle:{delay_s * 1000:g}"

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        time.sleep(self.delay_s)
        return image


def make_passthrough(arg: str | None) -> Passthrough:
    return Passthrough()


def make_invert(arg: str | None) -> Invert:
    return Invert()


def make_throttle(arg: str | None) -> Throttle:
    try:
        ms = float(arg) if arg is not None else 50.0
    except ValueError:
        raise ModelLoadError(f"throttle needs milliseconds, e.g. throttle:50 (got {arg!r})") from None
    if not 0 <= ms <= 10_000:
        raise ModelLoadError("throttle delay must be 0..10000 ms")
    return Throttle(ms / 1000.0)
