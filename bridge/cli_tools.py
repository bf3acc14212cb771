"""Flags of the model-making and rehearsal commands (``synth``, ``dataset build``, ``train``, ``demo``,
``record``, ``replay``); no logic here.

:func:`add_parsers` is called by :mod:`bridge.cli`; :data:`COMMANDS` maps a command to its entry
point, each importing its own module (and torch, where needed) only when run.
"""

from __future__ import annotations

import argparse
from typing import Callable

from .config import DEFAULT_OSC_PORT

LOG_LEVELS = ["debug", "info", "warning", "error"]


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
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
    synth.add_argument("--log-level", default="info", choices=LOG_LEVELS)

    dataset = sub.add_parser("dataset", help="build a training set from videos and image folders")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    build = dsub.add_parser("build", help="frames -> pose images + person images in the pix2pix/CycleGAN layout")
    build.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, images or folders of images")
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument("--size", type=int, default=256, help="square output size (default 256)")
    build.add_argument("--framing", choices=["letterbox", "center-crop"], default="letterbox",
                       help="how frames become square (default letterbox, as the artist did)")
    build.add_argument("--pad-color", default="255,255,255", help="letterbox colour R,G,B (default white)")
    build.add_argument("--every", type=int, default=1, help="keep every Nth video frame (default 1)")
    build.add_argument("--fps", type=float, default=0.0, help="sample videos at this rate instead of --every")
    build.add_argument("--max-frames", type=int, default=0, help="at most this many frames per input (0 = all)")
    build.add_argument("--pose", choices=["auto", "densepose", "keypoints"], default="auto",
                       help="pose source (auto: DensePose if --densepose-weights, else keypoints)")
    build.add_argument("--keypoints", metavar="FILE", action="append", default=[],
                       help="keypoint file or folder (OpenPose JSON, .csv, .jsonl); one per input, in order, "
                            "or one for all")
    build.add_argument("--keypoint-layout", default=None, help="layout of CSV keypoints (e.g. coco17, coco17n)")
    build.add_argument("--densepose-weights", default=None, metavar="FILE")
    build.add_argument("--densepose-config", default="R_50_FPN_s1x")
    build.add_argument("--device", default="cpu")
    build.add_argument("--style", default="dp_segm", help="pose image style (default dp_segm)")
    build.add_argument("--min-score", type=float, default=0.3, help="keypoint score threshold (default 0.3)")
    build.add_argument("--max-people", type=int, default=1, help="drop frames with more people (default 1)")
    build.add_argument("--test-fraction", type=float, default=0.1)
    build.add_argument("--no-progress", action="store_true")
    build.add_argument("--log-level", default="info", choices=LOG_LEVELS)

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
    train.add_argument("--pose-source", default="keypoints", choices=["keypoints", "densepose", "image"],
                       help="what the model card says the input is (default keypoints)")
    train.add_argument("--pose-style", default="dp_segm")
    train.add_argument("--framing", default="letterbox", choices=["squash", "center-crop", "letterbox"])
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--log-level", default="info", choices=LOG_LEVELS)

    demo = sub.add_parser("demo", help="play a synthetic puppet dance as keypoints through a running bridge")
    demo.add_argument("-o", "--output", default="demo.mp4", help="video to write (default demo.mp4)")
    demo.add_argument("--to", default=f"127.0.0.1:{DEFAULT_OSC_PORT}", metavar="HOST:PORT")
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--fps", type=float, default=15.0, help="frames sent per second (default 15)")
    demo.add_argument("--size", type=int, default=256)
    demo.add_argument("--layout", default="coco17")
    demo.add_argument("--people", type=int, default=1, help="dancers (default 1)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--log-level", default="warning", choices=LOG_LEVELS)

    replay = sub.add_parser("replay", help="play a recording (pose2person record) into a running bridge at real speed")
    replay.add_argument("folder", metavar="FOLDER", help="the recording folder (index.jsonl, frames/)")
    replay.add_argument("--to", default=f"127.0.0.1:{DEFAULT_OSC_PORT}", metavar="HOST:PORT")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1.0 = as recorded)")
    replay.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C or --max-seconds)")
    replay.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    replay.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the bridge's answers")
    replay.add_argument("--log-level", default="warning", choices=LOG_LEVELS)

    record = sub.add_parser("record", help="make a running bridge record its clients' input (keypoints, shm frames)")
    record.add_argument("action", choices=["start", "stop"])
    record.add_argument("folder", metavar="FOLDER", help="a new folder inside the bridge's --allow-root")
    record.add_argument("--to", default=f"127.0.0.1:{DEFAULT_OSC_PORT}", metavar="HOST:PORT")
    record.add_argument("--source", default="all", help="whose input: all (default), HOST or HOST:PORT")
    record.add_argument("--timeout", type=float, default=5.0)
    record.add_argument("--log-level", default="warning", choices=LOG_LEVELS)


def _synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .puppet.synth import SynthOptions, run_synth

    opts = SynthOptions(count=args.count, seed=args.seed, style=args.style, size=args.size, sequence=args.sequence,
                        characters=tuple(c.strip() for c in args.characters.split(",") if c.strip()),
                        layout=args.layout, max_people=args.people, test_fraction=args.test_fraction)
    counts = run_synth(Path(args.out), opts, progress=not args.no_progress)
    print(f"wrote {counts['train']} train and {counts['test']} test pairs to {args.out}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from .datasets.build import run_build

    return run_build(args)


def _train(args: argparse.Namespace) -> int:
    from .train.cli import run_train

    return run_train(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo_cmd import run_demo

    return run_demo(args)


def _replay(args: argparse.Namespace) -> int:
    from .replay_cmd import run_replay

    return run_replay(args)


def _record(args: argparse.Namespace) -> int:
    from .replay_cmd import run_record

    return run_record(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "synth": _synth, "dataset": _dataset, "train": _train, "demo": _demo, "replay": _replay, "record": _record,
}
