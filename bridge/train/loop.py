"""The training run: the plan, epochs, the linear-decay schedule, held-out scores, checkpoints,
stopping, resume and the model card.

Files in ``<checkpoints_dir>/<name>/`` (the reference's layout plus pictures and scores)::

    train_opt.txt                      the options, reference format (the generator stage reads it)
    options.json                       every option as this run resolved it (``--continue`` reuses them)
    latest_net_G.pth  latest_net_D.pth           pix2pix (state dicts, ``torch.save``)
    latest_net_G_A.pth _G_B _D_A _D_B            cyclegan
    <epoch>_net_*.pth                  every ``save_epoch_freq`` epochs, and the ``--pick N`` epoch
    best_net_G.pth (cyclegan: _G_A, _G_B)        the generator of the best held-out PSNR so far
    train_state.pt                     optimiser states, epoch, loss history (tensors and numbers only,
                                       so it loads with ``weights_only=True``); ``--continue`` reads it
    loss_log.txt                       one line per logged step, as the reference writes it
    scores.jsonl                       held-out PSNR/SSIM and baselines, one line per epoch (:mod:`.heldout`)
    samples/epoch_003.png              input | output | truth rows of spread-out test frames, per epoch, kept
    samples.png  loss.png              the latest grid and the loss plot, rewritten as training goes
    card.toml                          a model card for the chosen epoch's generator (``--pick``)

Schedule (the reference's ``linear`` policy): the learning rate is ``lr`` for ``n_epochs`` epochs,
then falls linearly, ``lr * (1 - (epoch - n_epochs) / (n_epochs_decay + 1))`` for 1-based epochs.
With a time budget and no schedule given, the epochs are planned from a few measured warm-up steps
(:mod:`.recipe`). Stopping: at ``max_iters``, at the budget's deadline, or on SIGINT/SIGTERM (Ctrl-C)
the current step finishes, the weights and state are saved and the card is written as at a normal
end. Resuming restarts the epoch that was running with the weights saved last (saved at each
epoch's end, every few minutes, and when stopped).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

import numpy as np
import torch

from ..generator.checkpoint import write_train_opt
from ..util.progress import ProgressBar
from . import data
from .export import export_model, register_model, write_model_card
from .heldout import SAMPLES_DIR, HeldOut, append_scores, best_record, read_scores
from .models import CycleGAN, Pix2Pix, build_model
from .options import TrainOptions, as_json, is_given, pick_epoch, reference_options, resolved
from .recipe import SCHEDULE_FLAGS, Hardware, Plan, apply_recipe, choose_recipe, eta_of, plan_schedule
from .report import loss_plot
from .settings import read_settings, merge_settings

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
SAVE_EVERY_S = 300.0  # latest_* also saved this often, so a killed run loses little
WARMUP_STEPS = 3  # timed after one untimed step (the first allocates)
#: Options a ``--continue`` takes from the run's options.json unless given again (the network must
#: match its checkpoints, and the learning-rate schedule must not change halfway).
KEPT_ON_RESUME = ("net_g", "ngf", "ndf", "n_layers_d", "norm", "dropout", "load_size", "crop_size", "batch_size",
                  "n_epochs", "n_epochs_decay", "max_iters", "pose_source", "pose_style", "framing", "pad_color",
                  "keypoint_layout", "lr", "gan_mode", "pool_size", "save_epoch_freq", "score_every")


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
    stopped: str = ""  # "", "signal", "budget" or "max_iters": why it ended before its schedule did
    picked: str = ""  # which weights the card holds, in words
    served: str = ""  # how serve finds the exported model (``--model-dir``)
    plan: Plan | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def detect_hardware(device: torch.device) -> Hardware:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return Hardware(device=device.type, cpu_threads=torch.get_num_threads(), gpu_name=gpu)


def lr_factor(epoch: int, o: TrainOptions) -> float:
    """The reference ``linear`` policy for 1-based ``epoch``."""
    return 1.0 - max(0, epoch - o.n_epochs) / float(o.n_epochs_decay + 1)


def _save_nets(model: Pix2Pix | CycleGAN, run_dir: Path, prefix: str, names: tuple[str, ...] | None = None) -> None:
    for name, net in model.nets().items():
        if names is not None and name not in names:
            continue
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


class _StopSignals:
    """While active (main thread only), SIGINT and SIGTERM ask the loop to stop after the current
    step instead of killing it; a second one acts as usual (Ctrl-C twice: stop without saving)."""

    def __init__(self) -> None:
        self.received = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        log.warning("%s: stopping after this step, then saving and exporting (again to stop at once)",
                    "Ctrl-C" if signum == signal.SIGINT else self.received)
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc: object) -> None:
        self._restore()


def _with_recipe(o: TrainOptions, hw: Hardware) -> TrainOptions:
    if o.given is None:
        return o
    name, values = choose_recipe(hw, o.mode, o.recipe)
    current = {k: getattr(o, k) for k in values}
    chosen = apply_recipe(current, o.given, values)
    log.info("recipe %s for %s%s", name, hw.describe(),
             "" if not set(values) & o.given else f" (given: {', '.join(sorted(set(values) & o.given))})")
    return replace(o, **chosen)


def _with_previous_run(o: TrainOptions) -> TrainOptions:
    """``--continue``: the run's own options for what was not given again."""
    path = o.run_dir / "options.json"
    if o.given is None or not path.is_file():
        return o
    try:
        before = json.loads(path.read_text())
    except ValueError:
        return o
    kept = {k: before[k] for k in KEPT_ON_RESUME if k in before and k not in o.given}
    if "pad_color" in kept:
        kept["pad_color"] = tuple(kept["pad_color"])
    return replace(o, **kept, given=o.given | set(SCHEDULE_FLAGS) if "n_epochs" in kept else o.given)


def _batches(o: TrainOptions, train_a: np.ndarray, train_b: np.ndarray, order: np.ndarray, b_order: np.ndarray,
             rng: np.random.Generator, device: torch.device) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    for k in range(math.ceil(len(order) / o.batch_size)):
        idx = order[k * o.batch_size:(k + 1) * o.batch_size]
        pairs = [data.augment([train_a[i], train_b[j]], o.crop_size, o.flip, rng)
                 for i, j in zip(idx, b_order[k * o.batch_size:(k + 1) * o.batch_size])]
        a = data.to_tensor(np.stack([p[0] for p in pairs])).to(device, non_blocking=True)
        b = data.to_tensor(np.stack([p[1] for p in pairs])).to(device, non_blocking=True)
        yield len(idx), a, b


def _generate_fn(model: Pix2Pix | CycleGAN, device: torch.device) -> Any:
    return lambda a: data.to_uint8(model.generate(data.to_tensor(a).to(device)))


def _measure(o: TrainOptions, device: torch.device, train_a: np.ndarray, train_b: np.ndarray, held: HeldOut,
             run_dir: Path) -> tuple[float, float]:
    """(seconds per step, seconds per epoch end) of a throwaway model: a few real steps on the
    training data, then one held-out scoring pass and one save, as an epoch's end does."""
    model = build_model(o, device)
    rng = np.random.default_rng([o.seed, 0])
    n = len(train_a)
    order = rng.integers(0, n, (WARMUP_STEPS + 1) * o.batch_size)
    b_order = rng.integers(0, len(train_b), len(order)) if o.mode == "cyclegan" else order
    times = []
    t = time.perf_counter()
    for _, a, b in _batches(o, train_a, train_b, order, b_order, rng, device):  # batch making counts too
        model.step(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
    scratch = run_dir / ".warmup"
    scratch.mkdir(exist_ok=True)
    t = time.perf_counter()
    _, outs = held.evaluate(_generate_fn(model, device))
    for _ in range(2):  # samples/epoch_NNN.png and samples.png
        held.grid(outs, scratch / "grid.png", "warm-up")
    loss_plot({}, [], scratch / "loss.png")
    _save_nets(model, scratch, "latest")
    _save_state(model, scratch, 0, 0, 0, 0.0, {}, [])
    overhead = time.perf_counter() - t
    shutil.rmtree(scratch, ignore_errors=True)
    return float(np.median(times[1:] or times)), overhead


def _replan(o: TrainOptions, epoch: int, epoch_s: float, left_s: float) -> TrainOptions:
    """Fit the schedule to the time actually left after ``epoch``, at ``epoch_s`` per epoch: while
    the learning rate has not decayed, as many epochs as fit (more or fewer), half of them decaying;
    once it decays, only fewer (a shorter decay, so the rate never rises again)."""
    if epoch_s <= 0:
        return o
    total = epoch + max(0, int(left_s // epoch_s))
    if epoch < o.n_epochs or o.n_epochs_decay == 0:  # the rate has not decayed yet: grow or shrink
        n_epochs = max(epoch, math.ceil(total / 2))
        return replace(o, n_epochs=n_epochs, n_epochs_decay=max(0, total - n_epochs))
    if total < o.total_epochs:
        return replace(o, n_epochs_decay=max(0, total - o.n_epochs))
    return o


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def train(o: TrainOptions, began: float | None = None) -> TrainResult:
    """Run (or resume) the training described by ``o``; returns what was done. The time budget
    counts from ``began`` (a ``time.monotonic()`` value; default now). From here on (data loading
    and warm-up included) SIGINT/SIGTERM stop the run cleanly (:class:`_StopSignals`)."""
    with _StopSignals() as signals:
        return _train(o, signals, time.monotonic() if began is None else began)


def _train(o: TrainOptions, signals: _StopSignals, began: float) -> TrainResult:
    device = pick_device(o.device)
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    pick_epoch(o.pick)  # a bad --pick fails now, not after the training
    hw = detect_hardware(device)
    o = _with_recipe(o, hw)
    settings = read_settings(Path(o.dataroot))
    o, contradictions = merge_settings(o, settings)
    for line in contradictions:
        log.warning("%s", line)
    resuming = o.resume and (o.run_dir / STATE_FILE).is_file()
    if resuming:
        o = _with_previous_run(o)
    o = resolved(o)
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
        test_a, test_b, _ = data.load_pairs(root, "test", load_size)
        test: tuple[np.ndarray, np.ndarray] | None = (test_a, test_b)
    except FileNotFoundError:
        test = None
    held = HeldOut.choose(test, train_a, train_b, o.crop_size)
    n = len(train_a)
    per_epoch = math.ceil(n / o.batch_size)
    budget_s = max(0.0, o.minutes * 60.0)
    plan: Plan | None = None
    step_s, overhead_s = 0.0, 0.0
    if budget_s:
        step_s, overhead_s = _measure(o, device, train_a, train_b, held, run_dir)
        reserve_s = 3 * overhead_s + 3.0  # the final save, scores and export, with a margin for a busy machine
        if not any(is_given(o, f) for f in SCHEDULE_FLAGS):
            plan = plan_schedule(images=n, batch=o.batch_size, step_s=step_s, epoch_overhead_s=overhead_s,
                                 budget_s=budget_s, spent_s=time.monotonic() - began, reserve_s=reserve_s)
            o = replace(o, n_epochs=plan.n_epochs, n_epochs_decay=plan.n_epochs_decay, max_iters=plan.max_iters)
            if not is_given(o, "save_epoch_freq"):  # about ten kept epoch checkpoints, not hundreds
                o = replace(o, save_epoch_freq=max(o.save_epoch_freq, math.ceil(plan.epochs / 10)))
            if not is_given(o, "score_every"):  # at most about a hundred scores and grids (tiny datasets)
                o = replace(o, score_every=max(o.score_every, math.ceil(plan.epochs / 100)))
            eta = plan.eta_s
        else:  # the schedule is given (or, resuming, the run's own): what is left of it
            before = torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True) if resuming else {}
            left_epochs = max(0, o.total_epochs - int(before.get("epochs_done", 0)))
            left_iters = max(1, o.max_iters - int(before.get("steps", 0))) if o.max_iters else 0
            eta = eta_of(images=n, batch=o.batch_size, step_s=step_s, epoch_overhead_s=overhead_s,
                         epochs=left_epochs, max_iters=left_iters)
        deadline: float | None = began + budget_s - reserve_s
        ends = time.strftime("%H:%M", time.localtime(time.time() + eta))
        steps_planned = min(o.total_epochs * per_epoch, o.max_iters or o.total_epochs * per_epoch)
        log.info("plan: %s %s (ngf %d, %s norm), %d px, batch %d, %s = %d steps of %d training images; "
                 "measured %.2f s/step (%.1f images/s) on %s; ETA %s (about %s), budget %s%s",
                 o.mode, o.net_g, o.ngf, o.norm, o.crop_size, o.batch_size,
                 "part of 1 epoch (until the deadline)" if plan is not None and plan.steps < per_epoch
                 else f"{o.total_epochs} epochs ({o.n_epochs} + {o.n_epochs_decay} decaying)" if not o.max_iters
                 else f"{o.max_iters} iterations", plan.steps if plan is not None else steps_planned, n, step_s, o.batch_size / step_s, hw.describe(),
                 _clock(eta), ends, _clock(budget_s),
                 "" if eta + time.monotonic() - began <= budget_s else
                 ": the budget will stop it early (flags fix the schedule)")
        if plan is not None and plan.note:
            log.warning("plan: %s", plan.note)
    else:
        deadline = None
    torch.manual_seed(o.seed)  # the warm-up's throwaway model does not change this run's weights
    model = build_model(o, device)
    epochs_done, steps, images, seconds = 0, 0, 0, 0.0
    history: dict[str, list[float]] = {}
    history_iters: list[int] = []
    if resuming:
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
    planned = o.total_epochs * per_epoch
    if o.max_iters:
        planned = min(planned, o.max_iters)
    log.info("training %s (%s, %s) on %d images, %d steps/epoch, %d epochs, device %s; held-out: %s", o.name, o.mode,
             model.spec.describe(), n, per_epoch, o.total_epochs, device,
             f"{len(held.a)} of {len(test[0])} test frames" if test is not None else "none (no test split)")
    bar = ProgressBar(planned, f"train {o.name}", enabled=o.progress)
    bar.done = min(steps, planned)
    log_every = max(1, min(o.sample_every // 10, 50))
    pending: dict[str, list[float]] = {}
    epoch_losses: dict[str, list[float]] = {}
    last_save = time.monotonic()
    loss_log = (run_dir / "loss_log.txt").open("a")
    loss_log.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")
    started = time.monotonic() - seconds
    session_steps, step_wall = 0, step_s  # step_s: the warm-up's measure (0 without a budget)
    best = best_record(read_scores(run_dir)) if resuming else None
    best_psnr = float(best["psnr"]) if best and (run_dir / f"best_net_{model.generator_names[0]}.pth").is_file() \
        else -math.inf
    pick_n = pick_epoch(o.pick)

    def snapshot(epoch: int) -> None:
        """The latest grid and the loss plot (rewritten; the kept per-epoch grids are in end_epoch)."""
        _, outs = held.evaluate(_generate_fn(model, device))
        held.grid(outs, run_dir / "samples.png", f"{o.name}  epoch {epoch}  step {steps}")
        loss_plot(history, history_iters, run_dir / "loss.png", title=f"{o.name} losses (step {steps})")

    def end_epoch(epoch: int, partial: bool) -> None:
        nonlocal best_psnr
        scores, outs = held.evaluate(_generate_fn(model, device))
        tag = f"epoch_{epoch:03d}" + (f"_step_{steps}" if partial else "")
        caption = (f"{o.name}  epoch {epoch}{' (stopped mid-epoch)' if partial else ''}  step {steps}  "
                   f"{held.set_name} PSNR {scores.psnr:.2f} dB  SSIM {scores.ssim:.3f}")
        held.grid(outs, run_dir / SAMPLES_DIR / f"{tag}.png", caption)
        held.grid(outs, run_dir / "samples.png", caption)
        loss_plot(history, history_iters, run_dir / "loss.png", title=f"{o.name} losses (step {steps})")
        append_scores(run_dir, {"epoch": epoch, "step": steps, "images": images,
                                "seconds": round(time.monotonic() - started, 2), "set": held.set_name,
                                "partial": partial, **scores.as_dict(),
                                "losses": {k: round(float(np.mean(v)), 4) for k, v in epoch_losses.items()}})
        if held.is_test and scores.psnr >= best_psnr:
            best_psnr = scores.psnr
            _save_nets(model, run_dir, "best", model.generator_names)
        log.info("epoch %d%s: %s %s", epoch, " (partial)" if partial else "",
                 "held-out" if held.is_test else "TRAINING frames (no test split):", scores.line())

    stopped = ""
    epoch = epochs_done
    session_epochs, loop_began, logged_total = 0, time.monotonic(), o.total_epochs
    while epoch < o.total_epochs:  # not a range: a re-plan may move the end
        epoch += 1
        factor = lr_factor(epoch, o)
        for opt in model.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = o.lr * factor
        rng = np.random.default_rng([o.seed, epoch])
        order = rng.permutation(n)
        b_order = rng.permutation(len(train_b)) if o.mode == "cyclegan" else order
        epoch_losses = {}
        epoch_steps = 0
        last_step_end = time.monotonic()  # the epoch's end (scores, saves) is not a step
        for count, a, b in _batches(o, train_a, train_b, order, b_order, rng, device):
            if signals.received:
                stopped = "signal"
                break
            losses = model.step(a, b)
            now = time.monotonic()
            # Wall time per step (batch making included), smoothed: what the deadline check needs.
            step_wall = now - last_step_end if step_wall <= 0 else 0.9 * step_wall + 0.1 * (now - last_step_end)
            last_step_end = now
            session_steps += 1
            epoch_steps += 1
            steps += 1
            images += count
            for name, value in losses.items():
                pending.setdefault(name, []).append(value)
                epoch_losses.setdefault(name, []).append(value)
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
            if signals.received:
                stopped = "signal"
            elif o.max_iters and steps >= o.max_iters:
                stopped = "max_iters"
            elif deadline is not None and time.monotonic() + step_wall > deadline:
                stopped = "budget"
            if stopped:
                break
        finished = epoch_steps == per_epoch  # however it stopped, after its last step an epoch is whole
        epochs_done = epoch if finished else epoch - 1
        if not epoch_losses:  # stopped before this epoch's first step: nothing new to save
            epoch -= 1
            break
        _save_nets(model, run_dir, "latest")
        if finished and ((o.save_epoch_freq and epoch % o.save_epoch_freq == 0) or epoch == pick_n):
            _save_nets(model, run_dir, str(epoch))
        _save_state(model, run_dir, epochs_done, steps, images, time.monotonic() - started, history,
                    history_iters)
        last_save = time.monotonic()
        if (not finished or epoch % max(1, o.score_every) == 0 or epoch == o.total_epochs or epoch == pick_n
                or signals.received):
            end_epoch(epoch, partial=not finished)
        if stopped:
            break
        session_epochs += 1
        # A plan may grow while the rate has not decayed (one planned epoch that went faster than measured).
        if plan is not None and deadline is not None and not signals.received and (
                epoch < o.total_epochs or o.n_epochs_decay == 0):
            now = time.monotonic()
            before = o.total_epochs
            o = _replan(o, epoch, (now - loop_began) / session_epochs, deadline - now)
            if o.total_epochs != before:
                # Logged when it moved by a tenth since the last line (it moves a little every epoch).
                big = abs(o.total_epochs - logged_total) >= max(1, logged_total // 10)
                log.log(logging.INFO if big else logging.DEBUG,
                        "re-planned at the measured %.2f s per epoch: %d epochs (%d + %d decaying)",
                        (now - loop_began) / session_epochs, o.total_epochs, o.n_epochs, o.n_epochs_decay)
                logged_total = o.total_epochs if big else logged_total
                bar.total = min(o.total_epochs * per_epoch, o.max_iters or o.total_epochs * per_epoch)
                (run_dir / "options.json").write_text(json.dumps(as_json(o), indent=2) + "\n")
    bar.close()
    loss_log.close()
    seconds = time.monotonic() - started
    if stopped == "budget":
        log.warning("the %s budget is spent: stopped after epoch %d%s, step %d", _clock(budget_s), epochs_done,
                    "" if epochs_done == epoch else f" (in epoch {epoch})", steps)
    g_name = model.generator_names[0]
    if not (run_dir / f"latest_net_{g_name}.pth").is_file():
        if stopped == "signal":  # stopped before the first step of a new run: nothing worth a card
            log.warning("stopped before the first training step: nothing saved")
            return TrainResult(run_dir, steps, images, seconds, epochs_done, history, history_iters,
                               stopped=stopped, plan=plan)
        _save_nets(model, run_dir, "latest")  # nothing was trained (all epochs were done already)
    weights, picked = _chosen_weights(o, run_dir, g_name, pick_n, epochs_done, steps)
    spec = model.spec
    dataset = {"path": str(Path(o.dataroot).resolve()), **(settings.card_table() if settings else {})}
    notes = f"weights: {picked}"
    card_path = write_model_card(o, spec, run_dir, weights, notes=notes, dataset=dataset)
    served = ""
    if o.model_dir is not None:
        card_path = export_model(o, spec, run_dir, weights, Path(o.model_dir), cyclegan=g_name == "G_A", notes=notes,
                                 dataset=dataset)
        served = register_model(Path(o.model_dir))
    log.info("trained %d steps (%d images) in %.0f s: %.2f images/s; card from %s", steps, images, seconds,
             images / seconds if seconds else 0.0, picked)
    return TrainResult(run_dir, steps, images, seconds, epochs_done, history, history_iters, card_path, stopped,
                       picked, served, plan)


def _chosen_weights(o: TrainOptions, run_dir: Path, g_name: str, pick_n: int | None, epochs_done: int,
                    steps: int) -> tuple[Path, str]:
    """The generator file ``--pick`` asks for, and a phrase saying which it is (falling back to the
    latest weights, with a warning, when the asked-for epoch has none)."""
    latest = run_dir / f"latest_net_{g_name}.pth"
    last = f"the last weights (epoch {epochs_done} complete, step {steps})"
    if o.pick == "best":
        best = best_record(read_scores(run_dir))
        path = run_dir / f"best_net_{g_name}.pth"
        if best is not None and path.is_file():
            return path, (f"epoch {best['epoch']}{' (partial)' if best.get('partial') else ''}, the best held-out "
                          f"PSNR {best['psnr']:.2f} dB (SSIM {best['ssim']:.3f})")
        log.warning("--pick best: no held-out scores (the dataset has no test split): using %s", last)
        return latest, last
    if pick_n is not None:
        path = run_dir / f"{pick_n}_net_{g_name}.pth"
        if path.is_file():
            return path, f"epoch {pick_n} (picked)"
        log.warning("--pick %d: the run has no epoch %d checkpoint (it did %d epochs): using %s", pick_n, pick_n,
                    epochs_done, last)
    return latest, last
