"""Model stages: what the pipeline worker runs on each frame, and the catalog of names.

A stage maps one frame to one frame of the same shape and format. Built-in stages are
numpy only; model-card stages (generator, DensePose) live in their own packages and are
imported only when a card is loaded, so the transport layer never imports torch.

Names resolve in this order: a built-in (``passthrough``, ``invert``, ``throttle:<ms>``),
then a model card (``models/<name>/card.toml``) in the configured model directories.

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`, and (lazily, when a card is loaded) :mod:`bridge.generator` and
:mod:`bridge.densepose`. Never the daemon, the transports or the command line.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..cards import ModelCard, default_model_dirs, find_card, find_cards
from ..config import PipelineConfig
from ..errors import ModelLoadError


class Stage(Protocol):
    """Contract of a model stage.

    ``process`` receives a read-only ``(h, w, c)`` array in format ``fmt`` (see
    :mod:`bridge.formats.pixels`) and returns an array of the same shape and dtype, in the same
    format. It runs on the single pipeline worker thread and may keep no reference to
    its input after returning (shared-memory inputs are only valid during the call).
    A stage may declare ``input_format`` (e.g. ``"RGB8"``) to get its input converted,
    and ``nbytes`` (resident weights) for the memory budget of resident models.
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
    "fault": "bridge.stages.builtin:make_fault",
}


def split_name(spec: str) -> tuple[str, str | None]:
    """``"throttle:50"`` -> ``("throttle", "50")``; ``"invert"`` -> ``("invert", None)``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


class Catalog:
    """Built-ins plus the model cards of ``config.model_dirs`` and the default directories."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.dirs: tuple[Path, ...] = tuple(self.config.model_dirs) + tuple(
            d for d in default_model_dirs() if d not in self.config.model_dirs)

    def cards(self) -> dict[str, ModelCard]:
        return find_cards(self.dirs)

    def available(self) -> list[str]:
        """Built-in names, then servable cards (generators and DensePose), in that order."""
        return list(REGISTRY) + [n for n in sorted(self.cards()) if n not in REGISTRY]

    def card(self, name: str) -> ModelCard | None:
        return None if name in REGISTRY else find_card(name, self.dirs)

    def validate(self, spec: str) -> None:
        """Raise ModelLoadError unless ``spec`` names a built-in or a readable card."""
        name, _ = split_name(spec)
        if name in REGISTRY:
            return
        if self.card(name) is None:
            raise ModelLoadError(f"unknown model {spec!r}; available: {', '.join(self.available())}")

    def load(self, spec: str) -> Stage:
        """Build the stage for ``spec``; raise ModelLoadError. Runs on the loader thread."""
        self.validate(spec)
        name, arg = split_name(spec)
        try:
            if name in REGISTRY:
                module_name, _, factory_name = REGISTRY[name].partition(":")
                factory: StageFactory = getattr(importlib.import_module(module_name), factory_name)
                return factory(arg)
            card = self.card(name)
            assert card is not None
            return _load_card_stage(card, self)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"model {spec!r} failed to load: {type(exc).__name__}: {exc}") from exc


def _load_card_stage(card: ModelCard, catalog: Catalog) -> Stage:
    cfg = catalog.config
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)  # process-wide: every model in this daemon shares the cores
    if card.kind == "densepose":
        from .densepose_stage import make_densepose_stage

        return make_densepose_stage(card, cfg)
    from ..generator.stage import GeneratorOptions, make_generator_stage

    options = GeneratorOptions(device=cfg.device, precision=cfg.precision, norm_mode=cfg.norm_mode, accel=cfg.accel,
                               pose=cfg.pose, warm_up=cfg.warm_up)
    pose = cfg.pose or card.input.pose_source
    dp_card = catalog.card(cfg.densepose_model) if pose == "densepose" else None
    return make_generator_stage(card, options, dp_card)


_default = Catalog()


def available() -> list[str]:
    """Model names of the default catalog (built-ins, shipped and user model cards)."""
    return _default.available()


def validate_name(spec: str) -> None:
    _default.validate(spec)


def load(spec: str) -> Stage:
    return _default.load(spec)
