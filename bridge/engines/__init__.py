"""Engines: where the model stage runs for the pipeline (``serve --engine local|ray``).

The pipeline (:mod:`bridge.daemon.pipeline`) owns the latest-frame-wins mailboxes, the statistics
and its worker threads; an engine owns the model. The contract:

* :meth:`Engine.async_start` loads (and warms up) the first model and returns the
  :class:`~bridge.stages.Stage` the workers call; :meth:`Engine.async_switch` does the same for a
  switch and returns only once the new model serves everywhere (the pipeline then swaps the
  reference at a frame boundary, and ``/pose2person/model/ready`` follows);
* :attr:`Engine.max_in_flight` is how many frames may be processed at once: the pipeline starts
  that many workers. The local engine says 1 (one worker thread owns the model, as always); the
  Ray engine says one per replica it may have, each worker blocking on one remote frame, so
  several clients' frames run at once while each client keeps at most one in flight;
* ``stage.process`` raises :class:`~bridge.errors.ClientError` for frames the engine lost
  (``replica_lost``), which the worker answers like any other frame error;
* :meth:`Engine.describe` is a small JSON-able dict for ``/health``.

Engines are chosen by name from an import-string table, so ``import bridge.daemon.pipeline`` never
imports Ray (only :mod:`bridge.engines.ray_engine` does).

May import: :mod:`bridge.stages` and everything it may import; Ray (``ray_engine`` only).
Never the daemon, the transports or the command line.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ..config import EngineConfig
from ..stages import Catalog, Stage

#: engine kind -> "module:class"; the class is built as ``cls(catalog, engine_config)``.
ENGINES: dict[str, str] = {
    "local": "bridge.engines.local:LocalEngine",
    "ray": "bridge.engines.ray_engine:RayEngine",
}


class Engine(Protocol):
    """See the module docstring."""

    kind: str
    max_in_flight: int

    async def async_start(self, spec: str) -> Stage: ...

    async def async_switch(self, spec: str) -> Stage: ...

    def resident_models(self) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...

    async def async_stop(self) -> None: ...


def create_engine(catalog: Catalog, config: EngineConfig | None = None) -> Engine:
    """Build the engine ``config.kind`` names (the module is imported only now)."""
    config = config or EngineConfig()
    module_name, _, class_name = ENGINES[config.kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = cls(catalog, config)
    return engine


__all__ = ["ENGINES", "Engine", "create_engine"]
