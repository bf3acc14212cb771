"""``pose2person dataset build``: a training set from videos and image folders
(:mod:`bridge.datasets.build`)."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_log_level


def add_parser(sub: Any) -> None:
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
    add_log_level(build, "info")


def run(args: argparse.Namespace) -> int:
    from ..datasets.build import run_build

    return run_build(args)
