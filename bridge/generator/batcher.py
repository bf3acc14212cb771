"""Batching frames of several clients through one generator (``--max-batch N``, local engine).

The pipeline runs N worker threads over exclusive mailboxes (each client at most one frame in
flight, as with the Ray engine); each worker's ``process`` call hands its frame to this stage's
model threads and waits. A pose thread makes the pose images (DensePose, keypoint renders)
one frame at a time; the generator thread takes every pose image that is ready (up to N) and
generates them as one batch. So batches form by themselves under load, a lone client never
waits for company (no timer, no added latency), and the pose of the next frames is computed
while the generator works on the current batch: the two stages overlap on consecutive frames.
Each model has one owner thread: the pose models the pose thread, the generator the other.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

import numpy as np

from ..pose_types import PoseResult
from .stage import GeneratorStage

log = logging.getLogger(__name__)


class BatchingStage:
    """A :class:`GeneratorStage` behind one model thread that batches concurrent calls."""

    def __init__(self, inner: GeneratorStage, max_batch: int) -> None:
        self.inner, self.max_batch = inner, max_batch
        self.name, self.input_format, self.nbytes = inner.name, inner.input_format, inner.nbytes
        self._waiting: deque[tuple[str, Any, Future[np.ndarray]]] = deque()
        self._cond = threading.Condition()
        self.batches: deque[int] = deque(maxlen=256)  # recent batch sizes, for the benchmark and tests
        self._largest = 1
        self._posed: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()  # bounded by the workers
        self._posed_cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pose_loop, name=f"p2p-pose-{inner.name}", daemon=True),
                         threading.Thread(target=self._loop, name=f"p2p-batch-{inner.name}", daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def last_pose(self) -> np.ndarray | None:
        return self.inner.last_pose

    def describe(self) -> str:
        return f"{self.inner.describe()}, batches of up to {self.max_batch}"

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        return self._submit("image", image)

    def generate_from_pose(self, result: PoseResult) -> np.ndarray:
        return self._submit("pose", result)

    def _submit(self, kind: str, payload: Any) -> np.ndarray:
        done: Future[np.ndarray] = Future()
        with self._cond:
            self._waiting.append((kind, payload, done))
            self._cond.notify()
        return done.result()  # the caller's input stays valid: it blocks until its frame is done

    def _pose_loop(self) -> None:
        """Pose images, one frame at a time, while the generator works on the previous batch: with
        DensePose the two stages overlap on consecutive frames."""
        from ..pose_render import render_pose

        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._waiting))
                kind, payload, fut = self._waiting.popleft()
            try:  # a failing pose (one client's frame) fails only that frame
                pose = (self.inner.pose.pose_image(payload) if kind == "image"
                        else render_pose(payload, self.inner.pose_style, None))
            except Exception as exc:
                fut.set_exception(exc)
                continue
            with self._posed_cond:
                self._posed.append((pose, fut))
                self._posed_cond.notify()

    def _loop(self) -> None:
        """The generator: every pose image that is ready (up to ``max_batch``) in one call."""
        while True:
            with self._posed_cond:
                self._posed_cond.wait_for(lambda: bool(self._posed))
                batch = [self._posed.popleft() for _ in range(min(self.max_batch, len(self._posed)))]
            poses = [p for p, _ in batch]
            futures = [f for _, f in batch]
            self.batches.append(len(poses))
            if len(poses) > self._largest:
                self._largest = len(poses)
                log.info("model %s: a batch of %d frames", self.name, len(poses))
            try:
                outs = self.inner.generate_batch(poses)
            except Exception as exc:  # the network failed: every frame of the batch hears it
                for fut in futures:
                    fut.set_exception(exc)
                continue
            for fut, out in zip(futures, outs):
                fut.set_result(out)
