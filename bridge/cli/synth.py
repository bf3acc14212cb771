"""``pose2person synth``: synthetic puppet (pose image, person image) pairs for training
(:mod:`bridge.puppet.synth`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import add_log_level


def add_parser(sub: Any) -> None:
    synth = sub.add_parser("synth", help="write synthetic puppet (pose image, person image) pairs for training")
    synth.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    synth.add_argument("--count", type=int, default=1000, help="number of pairs (default 1000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same pictures")
    synth.add_argument("--style", default="dp_segm", help="pose image style (bridge.pose.render.STYLES)")
    synth.add_argument("--size", type=int, default=256, help="square image size in pixels (default 256)")
    synth.add_argument("--sequence", action="store_true", help="one smooth dance instead of independent poses")
    synth.add_argument("--characters", default="ada",
                       help="comma-separated characters (ada, bo, cy, dee) or 'all' (default ada; a model "
                            "trained on several averages them, the pose image does not say who it is)")
    synth.add_argument("--layout", default="coco17", help="keypoint layout the pose is drawn from (default coco17)")
    synth.add_argument("--people", type=int, default=1, help="up to this many puppets per picture (default 1)")
    synth.add_argument("--test-fraction", type=float, default=0.1, help="share of pairs in test/ (default 0.1)")
    synth.add_argument("--no-progress", action="store_true")
    add_log_level(synth, "info")


def run(args: argparse.Namespace) -> int:
    from ..puppet.synth import SynthOptions, run_synth

    opts = SynthOptions(count=args.count, seed=args.seed, style=args.style, size=args.size, sequence=args.sequence,
                        characters=tuple(c.strip() for c in args.characters.split(",") if c.strip()),
                        layout=args.layout, max_people=args.people, test_fraction=args.test_fraction)
    counts = run_synth(Path(args.out), opts, progress=not args.no_progress)
    print(f"wrote {counts['train']} train and {counts['test']} test pairs to {args.out}")
    return 0
