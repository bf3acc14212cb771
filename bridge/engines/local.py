"""The local engine: the model runs in the daemon, on the pipeline's one worker thread.

Loading runs on a separate loader thread, so a slow load never stalls frames. Recently used
models stay loaded (an artist flips between colour styles) within a byte budget of weights;
the active one is never evicted. This is the daemon's behaviour from before engines existed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import OrderedDict
from typing import Any

from ..config import EngineConfig
from ..stages import Catalog, Stage

log = logging.getLogger(__name__)

#: frames per client in flight for stages that overlap pose and generator (``--pipeline-depth auto``)
AUTO_DEPTH = 2


class ResidentStages:
    """Loaded stages in least-recently-used order within ``budget_bytes`` of weights (``nbytes``).

    Not thread-safe: one owner thread (the loop for the local engine, a Ray replica's own loop).
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._stages: OrderedDict[str, Stage] = OrderedDict()

    def get(self, spec: str) -> Stage | None:
        return self._stages.get(spec)

    def names(self) -> list[str]:
        return list(self._stages)

    def put(self, spec: str, stage: Stage, active: Stage | None = None) -> None:
        """Make ``stage`` the most recent, then evict what no longer fits, never ``active``
        (default: ``stage`` itself, i.e. ``stage`` becomes the active model). A stage that is
        replaced or evicted is closed if it can be (its threads stop once idle)."""
        old = self._stages.get(spec)
        if old is not None and old is not stage:
            _close(old)
        self._stages[spec] = stage
        self._stages.move_to_end(spec)
        self._evict(stage if active is None else active)

    def _evict(self, active: Stage) -> None:
        def total() -> int:
            return sum(int(getattr(st, "nbytes", 0)) for st in self._stages.values())

        while total() > self.budget_bytes and len(self._stages) > 1:
            name = next(iter(self._stages))
            if self._stages[name] is active:
                self._stages.move_to_end(name)
                continue
            _close(self._stages.pop(name))
            log.info("model %s unloaded (memory budget %d MiB)", name, self.budget_bytes >> 20)


def _close(stage: Stage) -> None:
    close = getattr(stage, "close", None)
    if close is not None:
        close()


class LockedStage:
    """With several workers (``--max-batch``, ``--pipeline-depth``), a stage that cannot batch
    still sees one frame at a time: its model state has one user, and the pipeline takes one
    frame at a time for it (``frames_in_flight``), so waiting frames stay in their mailboxes where
    newer ones replace them. Attributes pass through (name, input_format, last_pose)."""

    frames_in_flight = 1

    def __init__(self, inner: Stage) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != "generate_from_pose":
            return attr

        # Only a stage that has it gets it: keypoint jobs ask getattr(stage, "generate_from_pose")
        # to tell generators from built-ins, which get the pose image instead.
        def generate_from_pose(pose: Any) -> Any:
            with self._lock:
                return attr(pose)

        return generate_from_pose

    def process(self, image: Any, fmt: str) -> Any:
        with self._lock:
            return self._inner.process(image, fmt)


class LocalEngine:
    """In-process stages (see the module docstring)."""

    kind = "local"

    def __init__(self, catalog: Catalog, config: EngineConfig | None = None) -> None:
        self.catalog = catalog
        # One worker thread owns the model; with --max-batch N and --pipeline-depth D there are
        # N * D workers (up to D frames in flight per client) feeding a generator's pose and
        # model threads (bridge/generator/batcher.py). Depth 0 = auto: see depth_for().
        self.max_batch = catalog.config.max_batch
        self._depth = catalog.config.pipeline_depth
        self.pipeline_depth = self._depth or AUTO_DEPTH
        self.max_in_flight = self.max_batch * self.pipeline_depth
        self.workers_at_start = self.max_batch * (self._depth or 1)
        self._resident = ResidentStages(catalog.config.memory_budget_mb * 1024 * 1024)
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="p2p-loader")

    async def async_start(self, spec: str) -> Stage:
        return await self.async_switch(spec)

    async def async_switch(self, spec: str) -> Stage:
        """A resident model at once; otherwise loaded (and warmed up) on the loader thread."""
        stage = self._resident.get(spec)
        if stage is None:
            stage = self._batching(await asyncio.get_running_loop().run_in_executor(self._loader, self.catalog.load,
                                                                                     spec))
        self._resident.put(spec, stage)
        return stage

    def depth_for(self, stage: Stage) -> int:
        """Frames of one client ``stage`` may have in flight: the ``--pipeline-depth`` given, or
        (auto) 2 where the pose work of the next frame overlaps this frame's generator and pays:
        a generator whose pose is DensePose on an accelerator (host-side work and kernels
        overlap), or one whose camera frames go through the body tracker (TFLite, its own
        threads: on 2 CPU cores 22 -> 30 frames/s at the same p95, docs/BENCHMARKS.md, "Camera
        to person"); else 1. A keypoint render or a given pose image is too quick to be worth a
        frame's freshness, and DensePose on a CPU competes with the generator for the cores."""
        if self._depth:
            return self._depth
        pose = getattr(stage, "pose", None)
        if getattr(pose, "poser", None) is not None:
            return AUTO_DEPTH
        if getattr(stage, "pose_source", None) != "densepose":
            return 1
        device = getattr(getattr(getattr(stage, "engine", None), "device", None), "type", "cpu")
        return AUTO_DEPTH if device != "cpu" else 1

    def _batching(self, stage: Stage) -> Stage:
        depth = self.depth_for(stage)
        if hasattr(stage, "generate_batch") and (self.max_batch > 1 or depth > 1):
            from ..generator.batcher import BatchingStage

            batching = (f"frames of up to {self.max_batch} clients are generated in one batch"
                        if self.max_batch > 1 else "one frame per network call")
            log.info("model %s: pose and generator on their own threads, %s, %d frame(s) per client in flight",
                     stage.name, batching, depth)
            return BatchingStage(stage, self.max_batch, depth)  # type: ignore[arg-type]
        return LockedStage(stage) if self.max_in_flight > 1 else stage

    async def async_reload(self, spec: str) -> Stage:
        """A fresh instance of ``spec`` (after a stall: the old one may be stuck in a frame)."""
        stage = self._batching(await asyncio.get_running_loop().run_in_executor(self._loader, self.catalog.load, spec))
        self._resident.put(spec, stage)
        return stage

    def resident_models(self) -> list[str]:
        return self._resident.names()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    async def async_stop(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
