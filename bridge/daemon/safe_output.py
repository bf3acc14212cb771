"""Safe output: what a client sees when the model cannot give it a frame.

In a show nothing may freeze, go magenta or show an error box. When the model raises on a
frame, is loading or restarting, or has stalled past the deadline, the frame is still
answered with its normal reply (``/frame/ready``, ``/frame/done``), carrying a safe picture
chosen by the client's policy, and preceded by ``/pose2person/frame/safe i frame_id s policy
s reason`` so patches that care can tell. Policies:

* ``last``: the client's last good output (the same size and format; else its input);
* ``input``: the frame as it came in (passthrough);
* ``black``: black (opaque);
* ``pattern``: SMPTE-style colour bars, unmistakably "not the show";
* ``off``: no picture: ``/pose2person/error`` with the failure's code, as for any error.

A camera frame in which the body tracker finds nobody (``no_person``, docs/TRACKER.md) is
covered the same way: the client sees its safe picture with the reason, not a generated
picture of an empty pose.

Errors caused by the client's own request (a missing file, a torn shared-memory frame, bad
keypoints) are never covered up: they are answered with ``/pose2person/error`` whatever the
policy. Numpy only; the stores are bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

import numpy as np

from ..errors import ClientError
from ..formats.pixels import channel_order, convert, has_alpha, is_float

POLICIES: tuple[str, ...] = ("last", "input", "black", "pattern", "off")
DEFAULT_POLICY = "last"
#: Failures of the model (not of the request) that a safe picture may stand in for.
MODEL_FAILURES = frozenset({"model_failed", "model_unavailable", "model_stalled"})
#: What a safe picture stands in for: a failure of the model, or a camera frame in which the body
#: tracker found nobody (a deliberate "nobody here" picture, never a generated empty pose).
COVERED = MODEL_FAILURES | {"no_person"}
LAST_FRAMES_MAX = 64  # clients whose last good output is kept
LAST_FRAMES_MAX_BYTES = 512 * 1024 * 1024  # and at most this much of it

# SMPTE-like bars: white, yellow, cyan, green, magenta, red, blue (RGB, 75 %)
_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0],
                  [0, 0, 191]], np.uint8)


class StageUnavailable(ClientError):
    """The active model cannot take frames right now (loading, restarting after a stall)."""

    def __init__(self, message: str, frame_id: int = -1) -> None:
        super().__init__("model_unavailable", message, frame_id)


class LastFrames:
    """The last good output per client, least recently updated dropped first. Thread-safe."""

    def __init__(self, max_clients: int = LAST_FRAMES_MAX, max_bytes: int = LAST_FRAMES_MAX_BYTES) -> None:
        self._frames: OrderedDict[Hashable, tuple[np.ndarray, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_clients, self.max_bytes = max_clients, max_bytes

    def put(self, client: Hashable, image: np.ndarray, fmt: str) -> None:
        if image.nbytes > self.max_bytes:
            return
        copy = np.array(image, copy=True)
        with self._lock:
            old = self._frames.pop(client, None)
            if old is not None and old[0].shape == copy.shape and old[0].dtype == copy.dtype:
                np.copyto(old[0], copy)  # reuse the buffer: no allocation per frame
                copy = old[0]
            self._frames[client] = (copy, fmt)
            total = sum(f.nbytes for f, _ in self._frames.values())
            while self._frames and (len(self._frames) > self.max_clients or total > self.max_bytes):
                _, (gone, _) = self._frames.popitem(last=False)
                total -= gone.nbytes

    def get(self, client: Hashable) -> tuple[np.ndarray, str] | None:
        with self._lock:
            return self._frames.get(client)

    def forget(self, client: Hashable) -> None:
        with self._lock:
            self._frames.pop(client, None)


def colour_bars(shape: tuple[int, ...], fmt: str) -> np.ndarray:
    """Vertical colour bars in ``fmt`` (any of the pixel formats), ``shape`` = (h, w, c)."""
    h, w = shape[0], shape[1]
    cols = (np.arange(w) * len(_BARS) // max(w, 1)).clip(0, len(_BARS) - 1)
    rgb = np.ascontiguousarray(np.broadcast_to(_BARS[cols][None, :, :], (h, w, 3)))
    return convert(rgb, "RGB8", fmt)


def black(shape: tuple[int, ...], fmt: str) -> np.ndarray:
    out = np.zeros(shape, np.float32 if is_float(fmt) else np.uint8)
    if has_alpha(fmt):
        out[..., channel_order(fmt).index("A")] = 1.0 if is_float(fmt) else 255
    return out


@dataclass
class SafeOutput:
    """One job's safe-output context: its client's policy and the shared last-frame store.

    After a stage failure, :meth:`substitute` gives the picture to publish and records why
    (:attr:`reason`), so the worker can send ``/frame/safe`` with the reply.
    """

    policy: str
    client: Hashable
    store: LastFrames
    reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.policy != "off"

    def substitute(self, image: np.ndarray, fmt: str, failure: ClientError) -> np.ndarray:
        """The safe picture for ``image`` (the frame's input, in ``fmt``) after ``failure``."""
        self.reason = f"{failure.code}: {failure.message}"[:300]
        if self.policy == "last":
            last = self.store.get(self.client)
            if last is not None and last[0].shape == image.shape and last[0].dtype == image.dtype \
                    and last[1] == fmt:
                return last[0].copy()
            return np.array(image, copy=True)
        if self.policy == "input":
            return np.array(image, copy=True)
        if self.policy == "black":
            return black(image.shape, fmt)
        return colour_bars(image.shape, fmt)

    def remember(self, result: np.ndarray, fmt: str) -> None:
        """Keep ``result`` as the client's last good output (only the ``last`` policy needs it)."""
        if self.policy == "last":
            self.store.put(self.client, result, fmt)
