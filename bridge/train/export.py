"""A run's model card, the servable copy in ``--model-dir``, and its registration for ``serve``.

``serve`` (:class:`bridge.stages.Catalog`) looks for cards in ``--models-dir`` folders, the
checkout's ``models/`` and the user models dir (``$POSE2PERSON_MODELS`` or
``~/.local/share/pose2person/models``). A ``--model-dir`` anywhere else (``models/me`` relative to
some other working directory) is *registered*: a card of the same name is written in the user
models dir, pointing at the weights by absolute path, with a ``[registered] folder`` table saying
where the model lives. A registration is replaced by the next one of the same name; a card of
that name that is not a registration (an imported model) is never overwritten, and a name the
checkout's ``models/`` already uses (which ``serve`` would find first) is not registered either:
the line returned then gives the ``--models-dir`` flag to serve it with.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .. import cards
from ..generator.checkpoint import write_train_opt
from .options import TrainOptions, reference_options

log = logging.getLogger(__name__)
REGISTERED = "registered"


def write_model_card(o: TrainOptions, spec: Any, folder: Path, weights: Path, *, notes: str = "",
                     dataset: Mapping[str, Any] | None = None) -> Path:
    """A card for the generator ``weights`` (of ``spec``, a GeneratorSpec) in ``folder``; the weights
    are referenced relative to it when they are in it, else by absolute path."""
    rel = weights.name if weights.parent.resolve() == folder.resolve() else str(weights.resolve())
    card = cards.ModelCard(
        name=o.name, kind="generator",
        description=f"{o.mode} generator trained by pose2person train on {o.dataroot}",
        weights=cards.WeightsInfo(file=rel, sha256=cards.sha256_of(weights), size=weights.stat().st_size),
        architecture={"net_g": spec.net_g, "norm": spec.norm, "ngf": spec.ngf, "input_nc": spec.input_nc,
                      "output_nc": spec.output_nc, "use_dropout": spec.use_dropout},
        input=cards.InputInfo(pose_source=o.pose_source, pose_style=o.pose_style, framing=o.framing,
                              pad_color=tuple(o.pad_color), load_size=o.crop_size,  # type: ignore[arg-type]
                              crop_size=o.crop_size, preprocess="resize_and_crop", direction="AtoB"),
        runtime=cards.RuntimeInfo(precision="fp32", norm_mode="stable"),
        provenance=cards.Provenance(license="MIT", origin="pose2person train", command=o.command, notes=notes),
        extra={"dataset": dict(dataset)} if dataset else {},
    )
    return cards.write_card(card, folder)


def export_model(o: TrainOptions, spec: Any, run_dir: Path, weights: Path, model_dir: Path, *, cyclegan: bool,
                 notes: str = "", dataset: Mapping[str, Any] | None = None) -> Path:
    """Copy the chosen generator ``weights`` (as ``latest_net_G.pth``, the name the reference's
    ``--model test`` loads), ``train_opt.txt`` and the pictures into ``model_dir``; write its card."""
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / "latest_net_G.pth"
    shutil.copyfile(weights, target)
    opts = reference_options(o)
    if cyclegan:
        opts = {**opts, "model": "test", "model_suffix": ""}
    write_train_opt(model_dir / "train_opt.txt", opts)
    for picture in ("samples.png", "loss.png", "scores.png"):
        if (run_dir / picture).is_file():
            shutil.copyfile(run_dir / picture, model_dir / picture)
    return write_model_card(replace(o, name=model_dir.name), spec, model_dir, target, notes=notes, dataset=dataset)


def _searched(folder: Path) -> bool:
    """Whether ``serve`` finds cards in ``folder`` without flags (its parent is a default models dir)."""
    parent = folder.resolve().parent
    return any(parent == d.resolve() for d in (cards.shipped_models_dir(), cards.user_models_dir()))


def register_model(model_dir: Path) -> str:
    """Make the card in ``model_dir`` findable by ``serve --model NAME``; returns one line saying how."""
    model_dir = model_dir.resolve()
    card = cards.load_card(model_dir)
    if _searched(model_dir):
        return f"serve it with: pose2person serve --model {card.name}"
    try:
        shipped = cards.find_card(card.name, [cards.shipped_models_dir()])
    except cards.ModelLoadError:  # an unreadable card of that name: serve would fail on it first
        shipped = card
    if shipped is not None:  # serve searches the checkout's models/ first: a registration would be hidden
        log.warning("not registering %s: the checkout ships a model called %r", model_dir, card.name)
        return (f"the checkout ships a model called {card.name!r}; serve this one with: "
                f"pose2person serve --model {card.name} --models-dir {model_dir.parent}")
    home = cards.user_models_dir() / card.name
    if (home / cards.CARD_FILE).is_file():
        try:
            existing = cards.load_card(home)
        except cards.ModelLoadError:
            existing = None
        if existing is None or REGISTERED not in existing.extra:
            log.warning("not registering %s: %s holds another model called %r", model_dir, home, card.name)
            return (f"a different model called {card.name!r} is in {home.parent}; serve this one with: "
                    f"pose2person serve --model {card.name} --models-dir {model_dir.parent}")
    pointer = replace(card, weights=replace(card.weights, file=str(card.weights_path())),
                      extra={**card.extra, REGISTERED: {"folder": str(model_dir)}})
    cards.write_card(pointer, home)
    log.info("registered %s as model %r in %s", model_dir, card.name, home.parent)
    return f"registered in {home.parent}; serve it with: pose2person serve --model {card.name}"
