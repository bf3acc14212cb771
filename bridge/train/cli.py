"""``pose2person train`` flags -> :class:`TrainOptions` -> :func:`bridge.train.loop.train`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .loop import train
from .options import TrainOptions


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


def run_train(args: argparse.Namespace) -> int:
    result = train(options_from_args(args))
    print(f"{result.steps} steps, {result.images} images in {result.seconds:.0f} s "
          f"({result.images_per_s:.2f} images/s); checkpoints in {result.run_dir}"
          + (f"; card {result.card_path}" if result.card_path else ""))
    return 0
