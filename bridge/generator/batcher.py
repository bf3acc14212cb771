"""A generator stage as a two-step pipeline: a pose thread, then a batching generator thread.

Used by the local engine when frames may overlap: ``--max-batch N`` (frames of several clients
in one network call) and ``--pipeline-depth D`` (up to D frames of one client in flight).

* The pipeline runs ``N * D`` worker threads over exclusive mailboxes; each worker's
  ``process`` call hands its frame to this stage and blocks until its picture is ready.
* The **pose thread** makes the pose images (DensePose on camera frames, keypoint renders), one
  frame at a time, in the order the frames came in.
* The **generator thread** takes every pose image that is ready (up to N) and generates them as
  one batch. Batches form by themselves under load; a lone frame never waits for company (no
  timer, no added latency).
* So the pose of frame k+1 is computed while the generator works on frame k, for one client
  (depth 2) as for several: the two stages overlap on consecutive frames. Each model has one
  owner thread (the pose models the pose thread, the generator the other).

Timings: the two threads measure each frame's ``pose`` and ``generator`` time, and the calling
worker files them under its frame (bridge/util/metrics.py), so ``/status/stages`` reads the same as
for the one-thread stage. :meth:`BatchingStage.close` stops the threads once their queues are
empty (an evicted or replaced model); a call that still arrives then runs on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np

from ..pose.types import PoseResult
from ..util.frame_context import current_frame, frame_context
from ..util.metrics import record
from .stage import GeneratorStage, unmirror

log = logging.getLogger(__name__)


class _Frame:
    """One call travelling through the two threads."""

    __slots__ = ("kind", "payload", "on_posed", "done", "pose", "pose_ms", "generator_ms", "context")

    def __init__(self, kind: str, payload: Any, on_posed: Callable[[], None] | None) -> None:
        self.kind, self.payload, self.on_posed = kind, payload, on_posed
        self.context = current_frame()  # the caller's frame context, for the pose thread
        self.done: Future[np.ndarray] = Future()
        self.pose: np.ndarray | None = None
        self.pose_ms = self.generator_ms = 0.0


class BatchingStage:
    """A :class:`GeneratorStage` behind a pose thread and a generator thread (see the module
    docstring). ``frames_in_flight`` (N * D) and ``pipeline_depth`` (D) tell the pipeline how
    many frames it may hand over at once, in all and per client."""

    def __init__(self, inner: GeneratorStage, max_batch: int, depth: int = 1) -> None:
        self.inner, self.max_batch = inner, max_batch
        self.pipeline_depth = max(1, depth)
        self.frames_in_flight = max(1, max_batch) * self.pipeline_depth
        self.name, self.input_format, self.nbytes = inner.name, inner.input_format, inner.nbytes
        self._waiting: deque[_Frame] = deque()  # bounded by the pipeline's workers
        self._cond = threading.Condition()
        self._posed: deque[_Frame] = deque()
        self._posed_cond = threading.Condition()
        self._closed = False
        self._inline = threading.Lock()  # after close: late calls run one at a time on their caller
        self.batches: deque[int] = deque(maxlen=256)  # recent batch sizes, for the benchmark and tests
        # Recent (kind, start, end) perf_counter stamps of the two threads' work, for the tests and
        # the benchmark that show the overlap.
        self.trace: deque[tuple[str, float, float]] = deque(maxlen=512)
        self._largest = 1
        self._threads = [threading.Thread(target=self._pose_loop, name=f"p2p-pose-{inner.name}", daemon=True),
                         threading.Thread(target=self._generator_loop, name=f"p2p-batch-{inner.name}", daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def last_pose(self) -> np.ndarray | None:
        return self.inner.last_pose

    @property
    def pose_source(self) -> str:
        return self.inner.pose_source

    def describe(self) -> str:
        return (f"{self.inner.describe()}, batches of up to {self.max_batch}, "
                f"{self.pipeline_depth} frame(s) per client in flight")

    def process(self, image: np.ndarray, fmt: str, on_posed: Callable[[], None] | None = None) -> np.ndarray:
        """The picture for ``image``; ``on_posed`` (if given) is called on the pose thread once the
        frame's pose step is over (the pipeline then takes the client's next frame)."""
        mirror = current_frame().mirror  # flipped as GeneratorStage.process flips (see unmirror)
        image = unmirror(image, mirror)
        check = getattr(self.inner.pose, "check_frame", None)
        if check is not None:  # a cheap per-frame check: on this (the caller's) thread, in parallel
            check(image)
        return unmirror(self._submit("image", image, on_posed), mirror)

    def generate_from_pose(self, result: PoseResult, on_posed: Callable[[], None] | None = None) -> np.ndarray:
        return self._submit("pose", result, on_posed)

    def close(self) -> None:
        """Stop both threads once the frames already handed over are done. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _submit(self, kind: str, payload: Any, on_posed: Callable[[], None] | None) -> np.ndarray:
        frame = _Frame(kind, payload, on_posed)
        with self._cond:
            closed = self._closed
            if not closed:
                self._waiting.append(frame)
                self._cond.notify()
        if closed:  # a frame that read the stage just before it was replaced
            with self._inline:
                return self.inner.process(payload, "RGB8") if kind == "image" else self.inner.generate_from_pose(payload)
        try:
            return frame.done.result()  # the caller's input stays valid: it blocks until its frame is done
        finally:  # the frame's stage timings, filed on the caller's (the worker's) thread
            record("pose", frame.pose_ms)
            if frame.generator_ms:
                record("generator", frame.generator_ms)

    def _pose_loop(self) -> None:
        from ..pose.render import render_pose

        # frames were checked on their caller's thread already (process)
        pose_image = getattr(self.inner.pose, "pose_image_unchecked", self.inner.pose.pose_image)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._waiting) or self._closed)
                if not self._waiting:  # closed and drained
                    break
                frame = self._waiting.popleft()
            start = time.perf_counter()
            failure: Exception | None = None
            try:  # a failing pose (one client's frame) fails only that frame
                with frame_context(frame.context):  # which client: the tracker's stream, view
                    frame.pose = (pose_image(frame.payload) if frame.kind == "image"
                                  else render_pose(frame.payload, self.inner.pose_style, None))
            except Exception as exc:
                failure = exc
            end = time.perf_counter()
            frame.pose_ms = (end - start) * 1e3
            self.trace.append(("pose", start, end))
            if frame.on_posed is not None:
                frame.on_posed()
            if failure is not None:
                frame.done.set_exception(failure)
                continue
            if frame.context.view == "pose":  # the client asked for the pose image itself
                self.inner.last_pose = frame.pose
                frame.done.set_result(frame.pose)
                continue
            with self._posed_cond:
                self._posed.append(frame)
                self._posed_cond.notify()
        with self._posed_cond:  # tell the generator thread no more pose images will come
            self._posed.append(None)  # type: ignore[arg-type]
            self._posed_cond.notify()

    def _generator_loop(self) -> None:
        """The generator: every pose image that is ready (up to ``max_batch``) in one call."""
        while True:
            with self._posed_cond:
                self._posed_cond.wait_for(lambda: bool(self._posed))
                batch: list[_Frame] = []
                while self._posed and len(batch) < self.max_batch and self._posed[0] is not None:
                    batch.append(self._posed.popleft())
                if not batch:  # the pose thread's end marker: closed and drained
                    log.debug("model %s: pose and generator threads stopped", self.name)
                    return
            self.batches.append(len(batch))
            if len(batch) > self._largest:
                self._largest = len(batch)
                log.info("model %s: a batch of %d frames", self.name, len(batch))
            start = time.perf_counter()
            try:
                outs: list[np.ndarray] | None = self.inner.generate_batch([f.pose for f in batch])  # type: ignore[misc]
                failure = None
            except Exception as exc:  # the network failed: every frame of the batch hears it
                outs, failure = None, exc
            end = time.perf_counter()
            self.trace.append(("generator", start, end))
            for i, f in enumerate(batch):
                f.generator_ms = (end - start) * 1e3
                if outs is None:
                    f.done.set_exception(failure)  # type: ignore[arg-type]
                else:
                    f.done.set_result(outs[i])
