"""The training run: epochs, the linear-decay schedule, samples, checkpoints, resume and the model card.

Files in ``<checkpoints_dir>/<name>/`` (the reference's layout plus pictures)::

    train_opt.txt                      the options, reference format (the generator stage reads it)
    latest_net_G.pth  latest_net_D.pth           pix2pix (state dicts, ``torch.save``)
    latest_net_G_A.pth _G_B _D_A _D_B            cyclegan
    <epoch>_net_*.pth                  every ``save_epoch_freq`` epochs
    train_state.pt                     optimiser states, epoch, loss history (tensors and numbers only,
                                       so it loads with ``weights_only=True``); ``--continue`` reads it
    loss_log.txt                       one line per logged step, as the reference writes it
    samples.png  loss.png              rewritten as training goes (input | output | truth rows)
    card.toml                          a model card for the generator, servable from this folder

Schedule (the reference's ``linear`` policy): the learning rate is ``lr`` for ``n_epochs`` epochs,
then falls linearly, ``lr * (1 - (epoch - n_epochs) / (n_epochs_decay + 1))`` for 1-based epochs.
Resuming restarts the epoch that was running with the weights saved last (saved at each epoch's
end and every few minutes).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import cards
from ..generator.checkpoint import write_train_opt
from ..util.progress import ProgressBar
from . import data
from .models import CycleGAN, Pix2Pix, build_model
from .options import TrainOptions, as_json, reference_options, resolved
from .report import loss_plot, sample_grid

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
SAVE_EVERY_S = 300.0  # latest_* also saved this often, so a killed run loses little
SAMPLES = 4


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    images: int
    seconds: float
    epochs_done: int
    history: dict[str, list[float]] = field(default_factory=dict)
    history_iters: list[int] = field(default_factory=list)
    card_path: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(epoch: int, o: TrainOptions) -> float:
    """The reference ``linear`` policy for 1-based ``epoch``."""
    return 1.0 - max(0, epoch - o.n_epochs) / float(o.n_epochs_decay + 1)


def _save_nets(model: Pix2Pix | CycleGAN, run_dir: Path, prefix: str) -> None:
    for name, net in model.nets().items():
        sd = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        tmp = run_dir / f".{prefix}_net_{name}.pth.tmp"
        torch.save(sd, tmp)
        tmp.replace(run_dir / f"{prefix}_net_{name}.pth")


def _save_state(model: Pix2Pix | CycleGAN, run_dir: Path, epochs_done: int, steps: int, images: int,
                seconds: float, history: dict[str, list[float]], history_iters: list[int]) -> None:
    state = {"epochs_done": epochs_done, "steps": steps, "images": images, "seconds": seconds,
             "optimizers": {k: opt.state_dict() for k, opt in model.optimizers.items()},
             "history": history, "history_iters": history_iters}
    tmp = run_dir / f".{STATE_FILE}.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / STATE_FILE)


def _load(model: Pix2Pix | CycleGAN, run_dir: Path, device: torch.device) -> dict:
    for name, net in model.nets().items():
        path = run_dir / f"latest_net_{name}.pth"
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True), strict=True)
    state = torch.load(run_dir / STATE_FILE, map_location=device, weights_only=True)
    for k, opt in model.optimizers.items():
        opt.load_state_dict(state["optimizers"][k])
    return state


def write_model_card(o: TrainOptions, model: Pix2Pix | CycleGAN, folder: Path, weights: Path,
                     description: str = "", notes: str = "") -> Path:
    """A card for the trained generator in ``folder`` (the weights file is referenced relative to it)."""
    spec = model.spec
    rel = weights.name if weights.parent.resolve() == folder.resolve() else str(weights.resolve())
    card = cards.ModelCard(
        name=o.name, kind="generator",
        description=description or f"{o.mode} generator trained by pose2person train on {o.dataroot}",
        weights=cards.WeightsInfo(file=rel, sha256=cards.sha256_of(weights), size=weights.stat().st_size),
        architecture={"net_g": spec.net_g, "norm": spec.norm, "ngf": spec.ngf, "input_nc": spec.input_nc,
                      "output_nc": spec.output_nc, "use_dropout": spec.use_dropout},
        input=cards.InputInfo(pose_source=o.pose_source, pose_style=o.pose_style, framing=o.framing,
                              load_size=o.crop_size, crop_size=o.crop_size, preprocess="resize_and_crop",
                              direction="AtoB"),
        runtime=cards.RuntimeInfo(precision="fp32", norm_mode="stable"),
        provenance=cards.Provenance(license="MIT", origin="pose2person train",
                                    command=o.command, notes=notes),
    )
    return cards.write_card(card, folder)


def _sample_rows(model: Pix2Pix | CycleGAN, a: np.ndarray, b: np.ndarray, device: torch.device) -> list[list[np.ndarray]]:
    fake = data.to_uint8(model.generate(data.to_tensor(a).to(device)))
    return [[a[i], fake[i], b[i]] for i in range(len(a))]


def train(o: TrainOptions) -> TrainResult:
    """Run (or resume) the training described by ``o``; returns what was done."""
    o = resolved(o)
    device = pick_device(o.device)
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    run_dir = o.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    load_size = int(o.load_size or o.crop_size)
    root = Path(o.dataroot)
    if o.mode == "pix2pix":
        train_a, train_b, _ = data.load_pairs(root, "train", load_size)
    else:
        train_a, train_b = data.load_unpaired(root, "train", load_size)
    try:
        sample_a, sample_b, _ = data.load_pairs(root, "test", load_size, limit=SAMPLES)
    except FileNotFoundError:
        sample_a, sample_b = train_a[:SAMPLES], train_b[:SAMPLES]
    if load_size > o.crop_size:  # samples: the centre crop
        off = (load_size - o.crop_size) // 2
        sample_a = sample_a[:, off:off + o.crop_size, off:off + o.crop_size]
        sample_b = sample_b[:, off:off + o.crop_size, off:off + o.crop_size]
    model = build_model(o, device)
    epochs_done, steps, images, seconds = 0, 0, 0, 0.0
    history: dict[str, list[float]] = {}
    history_iters: list[int] = []
    if o.resume and (run_dir / STATE_FILE).is_file():
        state = _load(model, run_dir, device)
        epochs_done, steps, images, seconds = (int(state["epochs_done"]), int(state["steps"]), int(state["images"]),
                                               float(state["seconds"]))
        history = {k: list(v) for k, v in state["history"].items()}
        history_iters = list(state["history_iters"])
        log.info("resuming %s after epoch %d (%d steps)", run_dir, epochs_done, steps)
    elif o.resume:
        log.warning("--continue: no %s in %s; starting afresh", STATE_FILE, run_dir)
    write_train_opt(run_dir / "train_opt.txt", reference_options(o))
    (run_dir / "options.json").write_text(json.dumps(as_json(o), indent=2) + "\n")
    n = len(train_a)
    per_epoch = math.ceil(n / o.batch_size)
    planned = o.total_epochs * per_epoch
    if o.max_iters:
        planned = min(planned, o.max_iters)
    log.info("training %s (%s, %s) on %d images, %d steps/epoch, %d epochs, device %s", o.name, o.mode,
             model.spec.describe(), n, per_epoch, o.total_epochs, device)
    bar = ProgressBar(planned, f"train {o.name}", enabled=o.progress)
    bar.done = min(steps, planned)
    log_every = max(1, min(o.sample_every // 10, 50))
    pending: dict[str, list[float]] = {}
    last_save = time.monotonic()
    loss_log = (run_dir / "loss_log.txt").open("a")
    loss_log.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")
    started = time.monotonic() - seconds

    def snapshot(epoch: int) -> None:
        rows = _sample_rows(model, sample_a, sample_b, device)
        sample_grid(rows, ["input (pose)", "output", "truth"], run_dir / "samples.png",
                    f"{o.name}  epoch {epoch}  step {steps}")
        loss_plot(history, history_iters, run_dir / "loss.png", title=f"{o.name} losses (step {steps})")

    stop = False
    for epoch in range(epochs_done + 1, o.total_epochs + 1):
        factor = lr_factor(epoch, o)
        for opt in model.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = o.lr * factor
        rng = np.random.default_rng([o.seed, epoch])
        order = rng.permutation(n)
        b_order = rng.permutation(len(train_b)) if o.mode == "cyclegan" else order
        for k in range(per_epoch):
            idx = order[k * o.batch_size:(k + 1) * o.batch_size]
            pairs = [data.augment([train_a[i], train_b[j]], o.crop_size, o.flip, rng)
                     for i, j in zip(idx, b_order[k * o.batch_size:(k + 1) * o.batch_size])]
            a = data.to_tensor(np.stack([p[0] for p in pairs])).to(device, non_blocking=True)
            b = data.to_tensor(np.stack([p[1] for p in pairs])).to(device, non_blocking=True)
            losses = model.step(a, b)
            steps += 1
            images += len(idx)
            for name, value in losses.items():
                pending.setdefault(name, []).append(value)
            if steps % log_every == 0:
                for name, values in pending.items():
                    history.setdefault(name, []).append(float(np.mean(values)))
                history_iters.append(steps)
                elapsed = time.monotonic() - started
                loss_log.write(f"(epoch: {epoch}, iters: {steps}, time: {elapsed / max(steps, 1):.3f}, "
                               f"lr: {o.lr * factor:.7f}) "
                               + " ".join(f"{k}: {float(np.mean(v)):.3f}" for k, v in pending.items()) + "\n")
                loss_log.flush()
                pending = {}
            bar.update(1, " ".join(f"{k} {v:.3f}" for k, v in losses.items()))
            if steps % o.sample_every == 0:
                snapshot(epoch)
            if time.monotonic() - last_save > SAVE_EVERY_S:
                _save_nets(model, run_dir, "latest")
                _save_state(model, run_dir, epoch - 1, steps, images, time.monotonic() - started, history,
                            history_iters)
                last_save = time.monotonic()
            if o.max_iters and steps >= o.max_iters:
                stop = True
                break
        epochs_done = epoch if not stop else epoch - 1
        _save_nets(model, run_dir, "latest")
        if not stop and o.save_epoch_freq and epoch % o.save_epoch_freq == 0:
            _save_nets(model, run_dir, str(epoch))
        _save_state(model, run_dir, epochs_done, steps, images, time.monotonic() - started, history, history_iters)
        last_save = time.monotonic()
        snapshot(epoch)
        if stop:
            break
    bar.close()
    loss_log.close()
    seconds = time.monotonic() - started
    g_name = model.generator_names[0]
    weights = run_dir / f"latest_net_{g_name}.pth"
    if not weights.is_file():  # nothing was trained (all epochs were done already)
        _save_nets(model, run_dir, "latest")
    card_path = write_model_card(o, model, run_dir, weights)
    if o.model_dir is not None:
        card_path = export_model(o, model, run_dir, Path(o.model_dir))
    log.info("trained %d steps (%d images) in %.0f s: %.2f images/s", steps, images, seconds,
             images / seconds if seconds else 0.0)
    return TrainResult(run_dir, steps, images, seconds, epochs_done, history, history_iters, card_path)


def export_model(o: TrainOptions, model: Pix2Pix | CycleGAN, run_dir: Path, model_dir: Path) -> Path:
    """Copy the generator (as ``latest_net_G.pth``, the name ``--model test`` loads), ``train_opt.txt``
    and the pictures into ``model_dir`` and write its card there."""
    model_dir.mkdir(parents=True, exist_ok=True)
    g_name = model.generator_names[0]
    target = model_dir / "latest_net_G.pth"
    shutil.copyfile(run_dir / f"latest_net_{g_name}.pth", target)
    opts = reference_options(o)
    if g_name == "G_A":
        opts = {**opts, "model": "test", "model_suffix": ""}
    write_train_opt(model_dir / "train_opt.txt", opts)
    for picture in ("samples.png", "loss.png"):
        if (run_dir / picture).is_file():
            shutil.copyfile(run_dir / picture, model_dir / picture)
    return write_model_card(replace(o, name=model_dir.name), model, model_dir, target)
