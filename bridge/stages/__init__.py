"""Model stages: what the pipeline worker runs on each frame, and the catalog of names.

A stage maps one frame to one frame of the same shape and format. Built-in stages are
numpy only; model-card stages (generator, DensePose) live in their own packages and are
imported only when a card is loaded, so the transport layer never imports torch.

Names resolve in this order: a built-in (``passthrough``, ``invert``; with
``PipelineConfig.test_models`` also the test stages ``throttle:<ms>`` and ``fault:<kind>``),
then a model card (``models/<name>/card.toml``) in the configured model directories. Without
``test_models`` the test stages are neither listed nor accepted: they exist to make a model
slow or fail on purpose, which nobody on the network should be able to ask for.

A daemon's catalog is *cached* (``Catalog(config, cached=True)``): listing, states and name
checks read a snapshot that :meth:`Catalog.refresh` rebuilds off the event loop, so a message
that names a model never touches the disk (docs/SECURITY.md, work budgets).

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`, and (lazily, when a card is loaded) :mod:`bridge.generator` and
:mod:`bridge.densepose`. Never the daemon, the transports or the command line.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..cards import SERVABLE_KINDS, ModelCard, default_model_dirs, find_card, find_cards
from ..config import PipelineConfig
from ..errors import ModelLoadError

log = logging.getLogger(__name__)


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

#: Built-ins that exist only with ``--test-models`` (a slow model, a failing model).
TEST_STAGES: frozenset[str] = frozenset({"throttle", "fault"})


def split_name(spec: str) -> tuple[str, str | None]:
    """``"throttle:50"`` -> ``("throttle", "50")``; ``"invert"`` -> ``("invert", None)``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


class Catalog:
    """Built-ins plus the model cards of ``config.model_dirs`` and the default directories.

    ``cached=True``: :meth:`cards`, :meth:`states`, :meth:`available`, :meth:`validate` and
    :meth:`card` read the snapshot the last :meth:`refresh` made (the first one is made here);
    only :meth:`load` (on the loader thread) reads the disk again. Thread-safe: a refresh
    swaps one immutable snapshot."""

    def __init__(self, config: PipelineConfig | None = None, *, cached: bool = False) -> None:
        self.config = config or PipelineConfig()
        self.dirs: tuple[Path, ...] = tuple(self.config.model_dirs) + tuple(
            d for d in default_model_dirs() if d not in self.config.model_dirs)
        self._snapshot: tuple[dict[str, ModelCard], dict[str, str]] | None = None
        if cached:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the model folders (cards and weight files' existence). Call off the loop."""
        cards = find_cards(self.dirs)
        self._snapshot = (cards, self._states(cards))

    def builtins(self) -> list[str]:
        """The built-in names this catalog offers (test stages only with ``test_models``)."""
        return [n for n in REGISTRY if self.config.test_models or n not in TEST_STAGES]

    def _is_builtin(self, name: str) -> bool:
        return name in REGISTRY and (self.config.test_models or name not in TEST_STAGES)

    def cards(self) -> dict[str, ModelCard]:
        snapshot = self._snapshot
        return dict(snapshot[0]) if snapshot is not None else find_cards(self.dirs)

    def available(self) -> list[str]:
        """Built-in names, then servable cards (generators and DensePose), in that order."""
        return self.builtins() + [n for n, c in sorted(self.cards().items())
                                  if n not in REGISTRY and c.kind in SERVABLE_KINDS]

    def states(self) -> dict[str, str]:
        """Every servable name -> ``"ready"`` or why it cannot run now, in :meth:`available` order.

        Cheap (file existence only, no hashing): what a client's model menu needs. A card is not
        ready when its weights file is missing, or when its pose source needs a DensePose card
        whose weights are missing. (A keypoint model is ready without the camera tracker: it
        still serves keypoint messages; camera frames then get ``tracker_unavailable``.)
        """
        snapshot = self._snapshot
        return dict(snapshot[1]) if snapshot is not None else self._states(find_cards(self.dirs))

    def _states(self, cards: dict[str, ModelCard]) -> dict[str, str]:
        out: dict[str, str] = {name: "ready" for name in self.builtins()}
        for name, card in sorted(cards.items()):
            if name in REGISTRY or card.kind not in SERVABLE_KINDS:
                continue
            out[name] = _card_state(card, self, cards)
        return out

    def runnable(self, active: str | None = None) -> list[str]:
        """The names a menu should offer: ready models, with ``active`` (already running) included."""
        names = [n for n, state in self.states().items() if state == "ready"]
        if active and split_name(active)[0] not in names:
            names.append(active)
        return names

    def card(self, name: str) -> ModelCard | None:
        if name in REGISTRY:
            return None
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot[0].get(name)
        return find_card(name, self.dirs)

    def validate(self, spec: str, *, fresh: bool = False) -> None:
        """Raise ModelLoadError unless ``spec`` names a built-in or a readable card.
        ``fresh``: look on disk rather than in the snapshot (the loader thread does)."""
        name, _ = split_name(spec)
        if self._is_builtin(name):
            return
        if name in TEST_STAGES:
            raise ModelLoadError(f"unknown model {spec!r} ({name} is a test stage: the daemon needs "
                                 f"--test-models); available: {', '.join(self.available())}")
        card = find_card(name, self.dirs) if fresh and name not in REGISTRY else self.card(name)
        if card is None:
            raise ModelLoadError(f"unknown model {spec!r}; available: {', '.join(self.available())}")
        if card.kind not in SERVABLE_KINDS:
            raise ModelLoadError(f"{name!r} is the camera tracker's card, not a model to serve; "
                                 f"available: {', '.join(self.available())}")

    def load(self, spec: str) -> Stage:
        """Build the stage for ``spec``; raise ModelLoadError. Runs on the loader thread."""
        self.validate(spec, fresh=True)
        name, arg = split_name(spec)
        try:
            if name in REGISTRY:
                module_name, _, factory_name = REGISTRY[name].partition(":")
                factory: StageFactory = getattr(importlib.import_module(module_name), factory_name)
                return factory(arg)
            card = find_card(name, self.dirs)
            assert card is not None
            return _load_card_stage(card, self)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"model {spec!r} failed to load: {type(exc).__name__}: {exc}") from exc


def _card_state(card: ModelCard, catalog: Catalog, cards: dict[str, ModelCard]) -> str:
    try:
        if not card.weights_path().is_file():
            return "weights missing"
    except ModelLoadError:
        return "no weights"
    pose = catalog.config.pose or card.input.pose_source
    if card.kind == "generator" and pose == "densepose":
        dp = cards.get(catalog.config.densepose_model)
        if dp is None:
            return f"pose source densepose: no card {catalog.config.densepose_model}"
        try:
            if not dp.weights_path().is_file():
                return f"pose source densepose: {dp.name} weights missing"
        except ModelLoadError:
            return f"pose source densepose: {dp.name} names no weights"
    return "ready"


def _leave_a_core_to_the_tracker(stage: object) -> None:
    """For ``--threads`` auto and ``--pipeline-depth`` auto or 2+: a generator on the CPU whose
    camera frames go through the body tracker (a loaded poser: the case the local engine pipelines,
    ``LocalEngine.depth_for``) gets one core fewer than the machine has, so the tracker posing the
    next frame does not fight the generator for every core (2 cores: 29 -> 30 frames/s and p95
    90 -> 74 ms, docs/BENCHMARKS.md "Camera to person"). Process-wide, like ``--threads``; logged."""
    import os

    cores = os.cpu_count() or 1
    device = getattr(getattr(getattr(stage, "engine", None), "device", None), "type", "cpu")
    if getattr(getattr(stage, "pose", None), "poser", None) is None or device != "cpu" or cores < 2:
        return
    import torch

    if torch.get_num_threads() > cores - 1:
        torch.set_num_threads(cores - 1)
        log.info("torch uses %d of %d cores: one is left to the camera tracker (--threads overrides)",
                 cores - 1, cores)


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
                               pose=cfg.pose, warm_up=cfg.warm_up, max_people=cfg.max_people)
    pose = cfg.pose or card.input.pose_source
    dp_card = catalog.card(cfg.densepose_model) if pose == "densepose" else None
    tracker_card = _tracker_card(catalog) if pose in ("keypoints", "tracker-densepose") else None
    stage = make_generator_stage(card, options, dp_card, tracker_card)
    if not cfg.threads and cfg.pipeline_depth != 1:
        _leave_a_core_to_the_tracker(stage)
    return stage


def _tracker_card(catalog: Catalog) -> ModelCard | None:
    from ..pose.tracker.weights import TRACKER_CARD

    card = find_card(TRACKER_CARD, catalog.dirs)
    return card if card is not None and card.kind == "tracker" else None


def tracker_smoothing(catalog: Catalog) -> object:
    """The camera tracker card's ``[smoothing]`` settings (MediaPipe's where the card or table is
    missing or wrong): what a client's ``/pose2person/smoothing`` starts from."""
    from ..pose.tracker.smoothing import SmoothingSettings, settings_from_table

    card = _tracker_card(catalog)
    table = card.extra.get("smoothing") if card is not None else None
    try:
        return settings_from_table(table if isinstance(table, dict) else None)
    except ValueError:
        return SmoothingSettings()


_default = Catalog()


def available() -> list[str]:
    """Model names of the default catalog (built-ins, shipped and user model cards)."""
    return _default.available()


def validate_name(spec: str) -> None:
    _default.validate(spec)


def load(spec: str) -> Stage:
    return _default.load(spec)
