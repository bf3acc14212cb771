"""Model stages: what the pipeline worker runs on each frame, and the registry of names.

A stage maps one frame to one frame of the same shape and format. Built-in stages are
numpy only; torch stages (generator, DensePose) live in their own modules and are
imported only when their name is asked for, so the transport layer never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np

from ..errors import ModelLoadError


class Stage(Protocol):
    """Contract of a model stage.

    ``process`` receives a read-only ``(h, w, c)`` array in format ``fmt`` (see
    :mod:`bridge.pixels`) and returns an array of the same shape and dtype, in the same
    format. It runs on the single pipeline worker thread and may keep no reference to
    its input after returning (shared-memory inputs are only valid during the call).
    """

    name: str

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray: ...


StageFactory = Callable[[str | None], Stage]

#: name -> "module:factory"; the factory receives the text after ``name:`` (or None).
#: Kept as import strings so that optional, heavy stages load only when used.
REGISTRY: dict[str, str] = {
    "passthrough": "bridge.stages.builtin:make_passthrough",
    "invert": "bridge.stages.builtin:make_invert",
    "throttle": "bridge.stages.builtin:make_throttle",
}


def available() -> list[str]:
    """Registered model names, in registry order."""
    return list(REGISTRY)


def split_name(spec: str) -> tuple[str, str | None]:
    """``"throttle:50"`` -> ``("throttle", "50")``; ``"invert"`` -> ``("invert", None)``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def validate_name(spec: str) -> None:
    """Raise ModelLoadError unless ``spec`` names a registered model."""
    name, _ = split_name(spec)
    if name not in REGISTRY:
        raise ModelLoadError(f"unknown model {spec!r}; available: {', '.join(available())}")


def load(spec: str) -> Stage:
    """Build the stage for ``spec`` (``name`` or ``name:argument``); raise ModelLoadError."""
    validate_name(spec)
    name, arg = split_name(spec)
    module_name, _, factory_name = REGISTRY[name].partition(":")
    try:
        factory: StageFactory = getattr(importlib.import_module(module_name), factory_name)
        return factory(arg)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model {spec!r} failed to load: {exc}") from exc
