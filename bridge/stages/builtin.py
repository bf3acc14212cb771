"""Built-in numpy stages: ``passthrough``, ``invert``, ``throttle:<ms>`` and ``fault:<kind>``.

They are colour-order agnostic, so the pipeline hands them the client's bytes unconverted.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ModelLoadError
from ..formats.pixels import has_alpha, is_float


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


class Fault(Passthrough):
    """A model that misbehaves on purpose, for rehearsing failures (and for the fault tests):

    * ``fault:raise``: every frame raises;
    * ``fault:raise-every:N``: every Nth frame raises, the others pass through;
    * ``fault:hang:S``: every frame takes S seconds (a stalled stage);
    * ``fault:hang-after:N``: N frames pass through, then every frame hangs for an hour.
    """

    def __init__(self, kind: str, n: float, spec: str) -> None:
        self.kind, self.n, self.name = kind, n, spec
        self.frames = 0

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        self.frames += 1
        if self.kind == "raise" or (self.kind == "raise-every" and self.frames % int(self.n) == 0):
            raise RuntimeError(f"{self.name}: injected failure on frame {self.frames}")
        if self.kind == "hang":
            time.sleep(self.n)
        elif self.kind == "hang-after" and self.frames > self.n:
            time.sleep(3600.0)
        return image


FAULT_KINDS = ("raise", "raise-every", "hang", "hang-after")


def make_fault(arg: str | None) -> Fault:
    kind, _, rest = (arg or "").partition(":")
    if kind not in FAULT_KINDS:
        raise ModelLoadError(f"fault needs one of {', '.join(FAULT_KINDS)}, e.g. fault:raise or fault:hang:5 "
                             f"(got {arg!r})")
    try:
        n = float(rest) if rest else (0.0 if kind == "raise" else 10.0)
    except ValueError:
        raise ModelLoadError(f"fault:{kind} needs a number, not {rest!r}") from None
    if kind == "raise-every" and n < 1 or n < 0 or n > 3600:
        raise ModelLoadError(f"fault:{kind}: {rest!r} is out of range")
    return Fault(kind, n, f"fault:{arg}")
