"""``pose2person train``: flags -> :class:`~bridge.train.options.TrainOptions` -> :func:`bridge.train.loop.train`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..config import FRAMINGS, POSE_CHOICES
from ..train.options import TrainOptions
from .options import add_log_level


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="train a pix2pix or CycleGAN generator on a dataset folder")
    train.add_argument("dataset", metavar="DATASET", help="folder with train/ (pix2pix) or trainA/ + trainB/")
    train.add_argument("--name", required=True, help="experiment name (checkpoints/<name>/)")
    train.add_argument("--mode", choices=["pix2pix", "cyclegan"], default="pix2pix",
                       help="pix2pix (paired, the default: pose and photo are aligned) or cyclegan")
    train.add_argument("--checkpoints-dir", default="checkpoints")
    train.add_argument("--net-g", default=None, help="generator: unet_256, unet_128, resnet_9blocks, resnet_6blocks")
    train.add_argument("--ngf", type=int, default=64)
    train.add_argument("--ndf", type=int, default=64)
    train.add_argument("--n-layers-d", type=int, default=3)
    train.add_argument("--norm", default=None, help="batch (pix2pix default), instance (cyclegan default), none")
    train.add_argument("--dropout", choices=["on", "off"], default=None,
                       help="generator dropout (pix2pix default on, cyclegan off)")
    train.add_argument("--load-size", type=int, default=None, help="resize to this first (default crop size)")
    train.add_argument("--crop-size", type=int, default=256)
    train.add_argument("--flip", action="store_true",
                       help="random horizontal flips (off: a flip swaps left/right body parts)")
    train.add_argument("--batch-size", type=int, default=1)
    train.add_argument("--lr", type=float, default=0.0002)
    train.add_argument("--beta1", type=float, default=0.5)
    train.add_argument("--n-epochs", type=int, default=100, help="epochs at the initial learning rate")
    train.add_argument("--n-epochs-decay", type=int, default=100, help="epochs of linear decay to zero")
    train.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations (0 = no limit)")
    train.add_argument("--lambda-l1", type=float, default=100.0)
    train.add_argument("--lambda-a", type=float, default=10.0)
    train.add_argument("--lambda-b", type=float, default=10.0)
    train.add_argument("--lambda-identity", type=float, default=0.5)
    train.add_argument("--gan-mode", default=None, choices=["vanilla", "lsgan"],
                       help="GAN loss (pix2pix default vanilla, cyclegan lsgan)")
    train.add_argument("--pool-size", type=int, default=None, help="image pool (pix2pix 0, cyclegan 50)")
    train.add_argument("--save-epoch-freq", type=int, default=5)
    train.add_argument("--sample-every", type=int, default=200, help="write the sample grid and loss plot every N "
                       "iterations")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    train.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--continue", dest="resume", action="store_true", help="resume from the latest checkpoint")
    train.add_argument("--model-dir", default=None, metavar="DIR",
                       help="also write the servable model (weights + card.toml) here")
    train.add_argument("--pose-source", default="keypoints", choices=POSE_CHOICES,
                       help="what the model card says the input is (default keypoints)")
    train.add_argument("--pose-style", default="dp_segm")
    train.add_argument("--framing", default="letterbox", choices=FRAMINGS)
    train.add_argument("--no-progress", action="store_true")
    add_log_level(train, "info")


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        dataroot=Path(args.dataset), name=args.name, mode=args.mode, checkpoints_dir=Path(args.checkpoints_dir),
        net_g=args.net_g, ngf=args.ngf, ndf=args.ndf, n_layers_d=args.n_layers_d, norm=args.norm,
        dropout=None if args.dropout is None else args.dropout == "on", load_size=args.load_size,
        crop_size=args.crop_size, flip=args.flip, batch_size=args.batch_size, lr=args.lr, beta1=args.beta1,
        n_epochs=args.n_epochs, n_epochs_decay=args.n_epochs_decay, max_iters=args.max_iters,
        lambda_l1=args.lambda_l1, lambda_a=args.lambda_a, lambda_b=args.lambda_b,
        lambda_identity=args.lambda_identity, gan_mode=args.gan_mode, pool_size=args.pool_size,
        save_epoch_freq=args.save_epoch_freq, sample_every=args.sample_every, device=args.device,
        threads=args.threads, seed=args.seed, resume=args.resume,
        model_dir=Path(args.model_dir) if args.model_dir else None, pose_source=args.pose_source,
        pose_style=args.pose_style, framing=args.framing, progress=not args.no_progress,
        command="pose2person " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train  # torch: loaded only when this command runs

    result = train(options_from_args(args))
    print(f"{result.steps} steps, {result.images} images in {result.seconds:.0f} s "
          f"({result.images_per_s:.2f} images/s); checkpoints in {result.run_dir}"
          + (f"; card {result.card_path}" if result.card_path else ""))
    return 0
