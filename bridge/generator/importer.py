"""``pose2person models import``: a pytorch-CycleGAN-and-pix2pix ``checkpoints/<name>/`` folder
(the Colab's output) becomes a model card, with its weights checked and the architecture,
sizes and direction read from ``train_opt.txt``.

The card's pose source (what the generator was trained on) is never silently ``image``: with
``pose_source="auto"`` (:func:`resolve_pose_settings`), in this order,

1. a ``card.toml`` in the folder (``pose2person train`` writes one beside its checkpoints) gives
   pose source, pose style, framing and pad colour, for every ``--epoch`` (``best`` is the run's
   ``best_net_G.pth``: the best held-out PSNR); a card ``pose2person train`` wrote also gives the
   rest of its input contract (sizes) and its ``[dataset]`` table;
2. else ``train_opt.txt``'s ``dataroot`` and ``name`` (the folder's name without one), lower-cased,
   ``-`` and spaces read as ``_``: a mention of ``densepose``, ``dp_segm``, ``iuv`` or ``dense``
   means ``densepose`` (pose style ``iuv`` if ``iuv`` is mentioned, else ``dp_segm``); of
   ``keypoint``, ``openpose``, ``skeleton``, ``mediapipe``, ``coco17``, ``body25``/``body_25`` or
   ``puppet`` means ``keypoints``;
3. else (no mention, or mentions of both kinds) it cannot tell: ``ask`` is called when given (the
   command asks at a terminal), otherwise :class:`ConfigError` names ``--pose-source``.

An explicit pose source, pose style, framing or pad colour always wins over all of that.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..cards import (CARD_FILE, POSE_SOURCES, InputInfo, ModelCard, Provenance, RuntimeInfo, WeightsInfo, load_card,
                     sha256_of, write_card)
from ..errors import ConfigError, ModelLoadError
from .checkpoint import load_generator, parse_train_opt

log = logging.getLogger(__name__)

DENSEPOSE_WORDS = ("densepose", "dp_segm", "iuv", "dense")
KEYPOINT_WORDS = ("keypoint", "openpose", "skeleton", "mediapipe", "coco17", "body25", "body_25", "puppet")
POSE_SOURCE_FLAG = "--pose-source " + "|".join(POSE_SOURCES)


@dataclass(frozen=True)
class PoseSettings:
    """The card's ``[input]`` pose settings and ``reason``, one phrase saying where they came from."""

    pose_source: str
    pose_style: str
    framing: str
    pad_color: tuple[int, int, int]
    reason: str

    def describe(self) -> str:
        style = f", pose style {self.pose_style}" if self.pose_source == "densepose" else ""
        return f"pose source {self.pose_source}{style}, framing {self.framing} ({self.reason})"


def _mentions(text: str, words: tuple[str, ...]) -> str | None:
    return next((w for w in words if w in text), None)


def guess_pose_source(folder: Path, opts: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """``(pose source, pose style, why)`` from the dataset name and run name (rule 2 above);
    the source is None when the names do not tell (``why`` then says what was looked at)."""
    named = {"dataroot": opts.get("dataroot", ""), "name": opts.get("name", "") or Path(folder).name}
    where = ("train_opt.txt's " if opts else "the folder's ") + ", ".join(
        f"{k} {v!r}" for k, v in named.items() if v)
    text = " ".join(named.values()).lower().replace("-", "_").replace(" ", "_")
    dense, keys = _mentions(text, DENSEPOSE_WORDS), _mentions(text, KEYPOINT_WORDS)
    if dense and keys:
        return None, None, f"both {dense!r} (densepose) and {keys!r} (keypoints) in {where}"
    if dense:
        return "densepose", ("iuv" if "iuv" in text else "dp_segm"), f"{dense!r} in {where}"
    if keys:
        return "keypoints", None, f"{keys!r} in {where}"
    return None, None, f"no pose kind named in {where}"


def _folder_card(folder: Path) -> ModelCard | None:
    """The generator card in the folder (``pose2person train`` writes one), or None."""
    if not (folder / CARD_FILE).is_file():
        return None
    try:
        card = load_card(folder)
    except ModelLoadError as exc:
        log.warning("ignoring %s: %s", folder / CARD_FILE, exc)
        return None
    return card if card.kind == "generator" else None


def _from_train(card: ModelCard) -> bool:
    """Whether ``pose2person train`` wrote the card."""
    return card.provenance.origin == "pose2person train" or card.provenance.command.startswith("pose2person train")


def resolve_pose_settings(folder: Path, *, pose_source: str = "auto", pose_style: str | None = None,
                          framing: str | None = None, pad_color: tuple[int, int, int] | None = None,
                          ask: Callable[[str], str] | None = None) -> PoseSettings:
    """The pose settings for a card of ``folder`` (the module docstring's rules): given values win,
    then the folder's card, then the names in ``train_opt.txt``; ``ask(why)`` returns one of
    ``image``/``densepose``/``keypoints`` when those cannot tell. Raises :class:`ConfigError` when
    they cannot tell and there is no ``ask``. Logs the choice and why (at INFO unless all was given)."""
    folder = Path(folder).expanduser().resolve()
    opt_path = folder / "train_opt.txt"
    opts = parse_train_opt(opt_path) if opt_path.is_file() else {}
    card = _folder_card(folder)
    guessed_style: str | None = None
    if pose_source != "auto":
        if pose_source not in POSE_SOURCES:
            raise ConfigError(f"pose source must be one of auto, {', '.join(POSE_SOURCES)}, not {pose_source!r}")
        source, reason = pose_source, "as given"
    elif card is not None:
        trained = _from_train(card)
        source = card.input.pose_source
        reason = f"from the {CARD_FILE} in {folder.name}/" + (" that pose2person train wrote" if trained else "")
    else:
        guessed, guessed_style, why = guess_pose_source(folder, opts)
        if guessed is not None:
            source, reason = guessed, why
        elif ask is not None:
            source, reason = ask(f"cannot tell what {folder.name} was trained on: {why}"), "chosen at the prompt"
            if source not in POSE_SOURCES:
                raise ConfigError(f"pose source must be one of {', '.join(POSE_SOURCES)}, not {source!r}")
        else:
            raise ConfigError(f"cannot tell what {folder} was trained on ({why}): say which with "
                              f"{POSE_SOURCE_FLAG} (densepose for DensePose renders)")
    from_card = card.input if card is not None else None  # a given source keeps the run's other settings
    settings = PoseSettings(
        pose_source=source,
        pose_style=pose_style or (from_card.pose_style if from_card else None) or guessed_style or "dp_segm",
        framing=framing or (from_card.framing if from_card else "squash"),
        pad_color=pad_color or (from_card.pad_color if from_card else (255, 255, 255)),
        reason=reason)
    log.log(logging.DEBUG if reason == "as given" else logging.INFO, "%s: %s", folder.name, settings.describe())
    return settings


def pick_generator(folder: Path, role: str = "auto", epoch: str = "latest") -> Path:
    """The generator file to serve: ``auto`` takes ``G`` (pix2pix), else ``G_A`` (CycleGAN, A -> B)."""
    roles = ["G", "G_A"] if role == "auto" else [role]
    for r in roles:
        path = folder / f"{epoch}_net_{r}.pth"
        if path.is_file():
            return path
    found = sorted(p.name for p in folder.glob("*_net_G*.pth"))
    raise ModelLoadError(f"{folder}: no {' or '.join(f'{epoch}_net_{r}.pth' for r in roles)}"
                         + (f" (found: {', '.join(found)})" if found else " (no generator checkpoints at all)"))


def import_checkpoint_folder(folder: Path, dest_root: Path, *, name: str | None = None, role: str = "auto",
                             epoch: str = "latest", pose_source: str = "auto", pose_style: str | None = None,
                             framing: str | None = None, pad_color: tuple[int, int, int] | None = None,
                             ask: Callable[[str], str] | None = None, link: bool = False,
                             force: bool = False) -> ModelCard:
    """Write ``dest_root/<name>/card.toml`` (+ the weights and ``train_opt.txt`` unless ``link``).
    Pose settings left ``auto``/None come from :func:`resolve_pose_settings` (which may raise
    :class:`ConfigError` when it cannot tell and there is no ``ask``)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder")
    weights = pick_generator(folder, role, epoch)
    pose = resolve_pose_settings(folder, pose_source=pose_source, pose_style=pose_style, framing=framing,
                                 pad_color=pad_color, ask=ask)
    opt_path = folder / "train_opt.txt"
    opts = parse_train_opt(opt_path) if opt_path.is_file() else {}
    spec, _ = load_generator(weights, None, opt_path if opts else None)  # proves it loads, strictly
    name = name or folder.name
    target = Path(dest_root).expanduser() / name
    if (target / "card.toml").exists() and not force:
        raise ModelLoadError(f"a model called {name!r} already exists at {target} (use --force to replace it)")
    target.mkdir(parents=True, exist_ok=True)
    if link:
        weights_file = str(weights)
    else:
        shutil.copy2(weights, target / weights.name)
        weights_file = weights.name
        if opts:
            shutil.copy2(opt_path, target / "train_opt.txt")
    direction = opts.get("direction", "AtoB")
    crop = int(opts.get("crop_size", "256"))
    preprocess = opts.get("preprocess", "resize_and_crop")
    load = crop if preprocess.startswith("resize_and_crop") else int(opts.get("load_size", str(crop)))
    if preprocess not in ("resize_and_crop", "scale_width", "none"):
        log.warning("train_opt preprocess %r: serving uses resize_and_crop's squash (test path)", preprocess)
        preprocess = "resize_and_crop"
    model_kind = opts.get("model", "pix2pix" if weights.name.endswith("_net_G.pth") else "cycle_gan")
    bn = spec.norm == "batch"
    command = f"pose2person models import {folder} --name {name} --epoch {epoch} --pose-source {pose.pose_source}"
    inp = InputInfo(pose_source=pose.pose_source, pose_style=pose.pose_style, framing=pose.framing,
                    pad_color=pose.pad_color, load_size=load, crop_size=crop, preprocess=preprocess,
                    direction=direction)
    notes = ("pix2pix BatchNorm generator: served in 'stable' norm mode (frame statistics, dropout off); "
             "--norm-mode reference reproduces test.py with seeded dropout"
             if bn else "InstanceNorm generator: identical in train and eval mode")
    extra: dict[str, object] = {}
    run_card = _folder_card(folder)
    if run_card is not None and _from_train(run_card):
        # Our own run: its card's whole input contract (sizes, aspect, mapping) holds for every
        # epoch, with the pose settings as resolved above (given ones win); its [dataset] stays.
        inp = replace(run_card.input, pose_source=pose.pose_source, pose_style=pose.pose_style,
                      framing=pose.framing, pad_color=pose.pad_color)
        extra = {k: v for k, v in run_card.extra.items() if k == "dataset"}
        notes = f"epoch {epoch} of a pose2person train run ({folder}); " + notes
    card = ModelCard(
        name=name, kind="generator",
        description=f"{model_kind} {weights.name} from {folder.name}",
        weights=WeightsInfo(file=weights_file, sha256=sha256_of(weights), size=weights.stat().st_size),
        architecture=asdict(spec), input=inp,
        runtime=RuntimeInfo(precision="fp32", norm_mode="stable"),
        provenance=Provenance(origin=str(folder), command=command, notes=notes),
        extra=extra, folder=target,
    )
    write_card(card, target)
    log.info("imported %s as model %r (%s) into %s", weights.name, name, spec.describe(), target)
    return card
