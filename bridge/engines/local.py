"""The local engine: the model runs in the daemon, on the pipeline's one worker thread.

Loading runs on a separate loader thread, so a slow load never stalls frames. Recently used
models stay loaded (an artist flips between colour styles) within a byte budget of weights;
the active one is never evicted. This is the daemon's behaviour from before engines existed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import OrderedDict
from typing import Any

from ..config import EngineConfig
from ..stages import Catalog, Stage

log = logging.getLogger(__name__)


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
        (default: ``stage`` itself, i.e. ``stage`` becomes the active model)."""
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
            del self._stages[name]
            log.info("model %s unloaded (memory budget %d MiB)", name, self.budget_bytes >> 20)


class LocalEngine:
    """In-process stages (see the module docstring)."""

    kind = "local"
    max_in_flight = 1  # one worker thread owns the model

    def __init__(self, catalog: Catalog, config: EngineConfig | None = None) -> None:
        self.catalog = catalog
        self._resident = ResidentStages(catalog.config.memory_budget_mb * 1024 * 1024)
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="p2p-loader")

    async def async_start(self, spec: str) -> Stage:
        return await self.async_switch(spec)

    async def async_switch(self, spec: str) -> Stage:
        """A resident model at once; otherwise loaded (and warmed up) on the loader thread."""
        stage = self._resident.get(spec)
        if stage is None:
            stage = await asyncio.get_running_loop().run_in_executor(self._loader, self.catalog.load, spec)
        self._resident.put(spec, stage)
        return stage

    async def async_reload(self, spec: str) -> Stage:
        """A fresh instance of ``spec`` (after a stall: the old one may be stuck in a frame)."""
        stage = await asyncio.get_running_loop().run_in_executor(self._loader, self.catalog.load, spec)
        self._resident.put(spec, stage)
        return stage

    def resident_models(self) -> list[str]:
        return self._resident.names()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    async def async_stop(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
