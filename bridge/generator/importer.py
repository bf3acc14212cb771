"""``pose2person models import``: a pytorch-CycleGAN-and-pix2pix ``checkpoints/<name>/`` folder
(the Colab's output) becomes a model card, with its weights checked and the architecture,
sizes and direction read from ``train_opt.txt``."""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from ..cards import InputInfo, ModelCard, Provenance, RuntimeInfo, WeightsInfo, sha256_of, write_card
from ..errors import ModelLoadError
from .checkpoint import load_generator, parse_train_opt

log = logging.getLogger(__name__)


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
                             epoch: str = "latest", pose_source: str = "image", pose_style: str = "dp_segm",
                             framing: str = "squash", pad_color: tuple[int, int, int] = (255, 255, 255),
                             link: bool = False, force: bool = False) -> ModelCard:
    """Write ``dest_root/<name>/card.toml`` (+ the weights and ``train_opt.txt`` unless ``link``)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder")
    weights = pick_generator(folder, role, epoch)
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
    card = ModelCard(
        name=name, kind="generator",
        description=f"{model_kind} {weights.name} from {folder.name}",
        weights=WeightsInfo(file=weights_file, sha256=sha256_of(weights), size=weights.stat().st_size),
        architecture=asdict(spec),
        input=InputInfo(pose_source=pose_source, pose_style=pose_style, framing=framing, pad_color=pad_color,
                        load_size=load, crop_size=crop, preprocess=preprocess, direction=direction),
        runtime=RuntimeInfo(precision="fp32", norm_mode="stable"),
        provenance=Provenance(origin=str(folder), command=f"pose2person models import {folder} --name {name}",
                              notes=("pix2pix BatchNorm generator: served in 'stable' norm mode (frame statistics, "
                                     "dropout off); --norm-mode reference reproduces test.py with seeded dropout"
                                     if bn else "InstanceNorm generator: identical in train and eval mode")),
        folder=target,
    )
    write_card(card, target)
    log.info("imported %s as model %r (%s) into %s", weights.name, name, spec.describe(), target)
    return card
