"""``pose2person train``: flags -> :class:`~bridge.train.options.TrainOptions` -> :func:`bridge.train.loop.train`.

Flags left out take the recipe's value (:mod:`bridge.train.recipe`: from the hardware) or the
dataset's (``summary.json`` settings: :mod:`bridge.train.settings`); the ones given are recorded in
``TrainOptions.given`` and always win.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..config import FRAMINGS, POSE_CHOICES
from ..errors import ConfigError
from ..train.options import TrainOptions, pick_epoch
from ..train.recipe import DEFAULT_MINUTES, RECIPES, SCHEDULE_FLAGS
from .options import add_log_level

#: Flags whose absence lets the recipe or the dataset decide (argparse default None).
OPTIONAL = ("net_g", "ngf", "ndf", "norm", "dropout", "load_size", "crop_size", "batch_size", "n_epochs",
            "n_epochs_decay", "max_iters", "save_epoch_freq", "score_every", "pose_source", "pose_style", "framing", "pad_color")


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train", help="train a pix2pix or CycleGAN generator on a dataset folder, within a time budget",
        description="Train a generator. By default the network and size come from the hardware (a CPU: "
                    "128 px unet_128, ngf 16, batch 4; a GPU: the reference's 256 px settings) and the epochs "
                    f"are planned to fit --minutes ({DEFAULT_MINUTES:g} by default); the plan and its ETA are "
                    "printed after a few measured warm-up steps. Ctrl-C stops after the current step, saves and "
                    "writes the card; --continue resumes. Flags given always win. See docs/TRAINING.md.")
    train.add_argument("dataset", metavar="DATASET", help="folder with train/ (pix2pix) or trainA/ + trainB/, "
                       "and test/ for held-out scores")
    train.add_argument("--name", required=True, help="experiment name (checkpoints/<name>/)")
    train.add_argument("--mode", choices=["pix2pix", "cyclegan"], default="pix2pix",
                       help="pix2pix (paired, the default: pose and photo are aligned) or cyclegan")
    train.add_argument("--minutes", type=float, default=None,
                       help=f"time budget: plan the epochs to fit it and stop at it (default {DEFAULT_MINUTES:g}; "
                            "with --n-epochs/--n-epochs-decay/--max-iters: none unless given, and then it only "
                            "stops the run; 0: no budget)")
    train.add_argument("--recipe", choices=RECIPES, default="auto",
                       help="network settings: auto (small on a CPU, reference on a GPU), small (128 px unet_128, "
                            "ngf/ndf 16, instance norm, no dropout, batch 4), reference (256 px, the reference's "
                            "defaults)")
    train.add_argument("--pick", default="last", metavar="last|best|N",
                       help="which epoch the card is made from: last (default), best (highest held-out PSNR; "
                            "needs a test split) or an epoch number (its checkpoint is kept)")
    train.add_argument("--checkpoints-dir", default="checkpoints")
    train.add_argument("--net-g", default=None, help="generator: unet_256, unet_128, resnet_9blocks, resnet_6blocks "
                       "(default: the recipe's)")
    train.add_argument("--ngf", type=int, default=None, help="generator width (default: the recipe's)")
    train.add_argument("--ndf", type=int, default=None, help="discriminator width (default: the recipe's)")
    train.add_argument("--n-layers-d", type=int, default=3)
    train.add_argument("--norm", default=None, help="batch, instance, none (default: the recipe's)")
    train.add_argument("--dropout", choices=["on", "off"], default=None, help="generator dropout (default: the "
                       "recipe's)")
    train.add_argument("--load-size", type=int, default=None, help="resize to this first (default crop size)")
    train.add_argument("--crop-size", type=int, default=None, help="the model's input size (default: the recipe's, "
                       "128 or 256)")
    train.add_argument("--flip", action="store_true",
                       help="random horizontal flips (off: a flip swaps left/right body parts)")
    train.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    train.add_argument("--lr", type=float, default=0.0002)
    train.add_argument("--beta1", type=float, default=0.5)
    train.add_argument("--n-epochs", type=int, default=None, help="epochs at the initial learning rate "
                       "(default: planned for --minutes)")
    train.add_argument("--n-epochs-decay", type=int, default=None, help="epochs of linear decay to zero "
                       "(default: planned for --minutes)")
    train.add_argument("--max-iters", type=int, default=None, help="stop after this many iterations in all "
                       "(0 = no limit)")
    train.add_argument("--lambda-l1", type=float, default=100.0)
    train.add_argument("--lambda-a", type=float, default=10.0)
    train.add_argument("--lambda-b", type=float, default=10.0)
    train.add_argument("--lambda-identity", type=float, default=0.5)
    train.add_argument("--gan-mode", default=None, choices=["vanilla", "lsgan"],
                       help="GAN loss (pix2pix default vanilla, cyclegan lsgan)")
    train.add_argument("--pool-size", type=int, default=None, help="image pool (pix2pix 0, cyclegan 50)")
    train.add_argument("--save-epoch-freq", type=int, default=None, help="keep <epoch>_net_*.pth every N epochs "
                       "(default 5; with planned epochs, often enough for about ten)")
    train.add_argument("--sample-every", type=int, default=200, help="rewrite samples.png and loss.png every N "
                       "iterations (samples/epoch_NNN.png and scores.jsonl are kept at each scored epoch: --score-every)")
    train.add_argument("--score-every", type=int, default=None, help="held-out scores and a kept sample grid every "
                       "N epochs (default 1; with planned epochs, often enough for about a hundred), and always at "
                       "the last epoch, the --pick epoch and a stop")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    train.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--continue", dest="resume", action="store_true",
                       help="resume a stopped run (its options.json gives what is not given again)")
    train.add_argument("--model-dir", default=None, metavar="DIR",
                       help="also write the servable model (weights + card.toml) here; a folder outside the "
                            "models dirs serve searches is registered in the user models dir, so "
                            "`pose2person serve --model <folder name>` finds it from anywhere")
    train.add_argument("--pose-source", default=None, choices=POSE_CHOICES,
                       help="what the card says the input is (default: the dataset's summary.json, else keypoints)")
    train.add_argument("--pose-style", default=None, help="default: the dataset's, else dp_segm")
    train.add_argument("--framing", default=None, choices=FRAMINGS, help="default: the dataset's, else letterbox")
    train.add_argument("--pad-color", default=None, metavar="R,G,B",
                       help="letterbox colour (default: the dataset's, else white)")
    train.add_argument("--no-progress", action="store_true")
    add_log_level(train, "info")


def _pad(text: str) -> tuple[int, int, int]:
    try:
        pad = tuple(int(v) for v in text.split(","))
        if len(pad) != 3 or not all(0 <= v <= 255 for v in pad):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--pad-color must be R,G,B with values 0..255, not {text!r}") from None
    return pad  # type: ignore[return-value]


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    given = {k for k in OPTIONAL if getattr(args, k) is not None}
    values: dict[str, Any] = {k: getattr(args, k) for k in given}
    if "dropout" in values:
        values["dropout"] = values["dropout"] == "on"
    if "pad_color" in values:
        values["pad_color"] = _pad(values["pad_color"])
    minutes = args.minutes
    if minutes is None:
        minutes = 0.0 if given & set(SCHEDULE_FLAGS) else DEFAULT_MINUTES
    if minutes < 0:
        raise ConfigError(f"--minutes must be 0 (no budget) or more, not {minutes:g}")
    if args.minutes is not None:
        given.add("minutes")
    try:
        pick_epoch(args.pick)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return TrainOptions(
        dataroot=Path(args.dataset), name=args.name, mode=args.mode, checkpoints_dir=Path(args.checkpoints_dir),
        n_layers_d=args.n_layers_d, flip=args.flip, lr=args.lr, beta1=args.beta1,
        lambda_l1=args.lambda_l1, lambda_a=args.lambda_a, lambda_b=args.lambda_b,
        lambda_identity=args.lambda_identity, gan_mode=args.gan_mode, pool_size=args.pool_size,
        sample_every=args.sample_every, device=args.device,
        threads=args.threads, seed=args.seed, resume=args.resume,
        model_dir=Path(args.model_dir) if args.model_dir else None, progress=not args.no_progress,
        command="pose2person " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        minutes=minutes, recipe=args.recipe, pick=args.pick, given=frozenset(given), **values,
    )


def _continue_command(command: str) -> str:
    return command if " --continue" in command else command + " --continue"


def _process_age_s() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere): the budget counts from the
    command's start, so starting Python and importing torch are inside it."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def run(args: argparse.Namespace) -> int:
    began = time.monotonic() - _process_age_s()
    from ..train.loop import train  # torch: loaded only when this command runs

    o = options_from_args(args)
    result = train(o, began=began)
    what = {"signal": "stopped (Ctrl-C)", "budget": "stopped at the time budget",
            "max_iters": "stopped at --max-iters"}.get(result.stopped, "done")
    print(f"{what}: {result.steps} steps, {result.images} images in {result.seconds:.0f} s "
          f"({result.images_per_s:.2f} images/s), {result.epochs_done} epochs complete; checkpoints in {result.run_dir}")
    if result.card_path is None:
        print("nothing saved: training had not begun")
        return 0
    print(f"card {result.card_path} from {result.picked}")
    if result.served:
        print(result.served)
    if result.stopped in ("signal", "budget"):
        print(f"continue with: {_continue_command(o.command)}")
    return 0
