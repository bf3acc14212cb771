"""``pose2person dataset build`` (a training set from videos and image folders,
:mod:`bridge.datasets.build`) and ``pose2person dataset coverage`` (how well a dataset's poses
cover the poses an audience will make, :mod:`bridge.datasets.coverage`)."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_log_level


def add_parser(sub: Any) -> None:
    dataset = sub.add_parser("dataset", help="build a training set from videos and image folders")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    build = dsub.add_parser(
        "build", help="frames -> pose images + person images in the pix2pix/CycleGAN layout",
        description="Pose every sampled frame (by default with the camera tracker, as the daemon serves camera "
                    "frames to a keypoint model), draw the pose image, frame both square and write the pairs. "
                    "Prints what was kept and dropped, and the pose coverage (what to film next).")
    build.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="videos (.mp4 .mov .mkv ...; rotation metadata applied), images, or folders of them "
                            "(each video in a folder is its own input; the folder's images, in name order, one more)")
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument("--size", type=int, default=256, help="square output size (default 256)")
    build.add_argument("--framing", choices=["letterbox", "center-crop"], default="letterbox",
                       help="how frames become square (default letterbox, as the artist did)")
    build.add_argument("--pad-color", default="255,255,255", help="letterbox colour R,G,B (default white)")
    build.add_argument("--every", type=int, default=1, help="keep every Nth video frame (default 1: all)")
    build.add_argument("--fps", type=float, default=0.0,
                       help="sample videos at this rate by their timestamps instead of --every (variable frame "
                            "rate safe; 10 is plenty for phone video)")
    build.add_argument("--max-frames", type=int, default=0, help="at most this many frames per input (0 = all)")
    build.add_argument("--pose", choices=["auto", "tracker", "keypoints", "tracker-densepose", "densepose"],
                       default="auto",
                       help="pose source. tracker: the camera tracker (no download; the model then serves live "
                            "camera frames on a CPU; card pose source 'keypoints'). keypoints: --keypoints files. "
                            "tracker-densepose: the tracker shaped like DensePose by the person mask. densepose: "
                            "DensePose (its weights: --densepose-weights or `pose2person models fetch`). auto "
                            "(default): keypoints when --keypoints is given, densepose when --densepose-weights is, "
                            "else tracker")
    build.add_argument("--keypoints", metavar="FILE", action="append", default=[],
                       help="keypoint file or folder (OpenPose JSON folder, .csv, .jsonl), exactly one per INPUT in "
                            "the same order (repeat the flag); frames are matched by video frame index or the number "
                            "an image's name ends in. Keypoints made for another frame size are scaled to the "
                            "frames, with a warning")
    build.add_argument("--keypoint-layout", default=None,
                       help="layout of the keypoint files (needed for CSV: e.g. coco17, mediapipe33n, body25px)")
    build.add_argument("--densepose-weights", default=None, metavar="FILE")
    build.add_argument("--densepose-config", default="R_50_FPN_s1x")
    build.add_argument("--device", default="cpu", help="DensePose's device (default cpu)")
    build.add_argument("--style", default="dp_segm", help="pose image style (default dp_segm)")
    build.add_argument("--min-score", type=float, default=0.3,
                       help="keypoint score below which a joint is missing (default 0.3, as the daemon draws)")
    build.add_argument("--max-people", type=int, default=1,
                       help="drop frames with more people than this (default 1)")
    build.add_argument("--test-fraction", type=float, default=0.1,
                       help="held-out share: the last part of each input's timeline (default 0.1)")
    build.add_argument("--test-gap", type=float, default=0.5, metavar="SECONDS",
                       help="frames this close before the held-out part are dropped, so no test frame has a "
                            "near-identical neighbour in training (default 0.5; images in a folder count as 25 a "
                            "second)")
    build.add_argument("--no-progress", action="store_true")
    add_log_level(build, "info")
    coverage = dsub.add_parser("coverage", help="how well a dataset's poses cover the probe poses; what to film next")
    coverage.add_argument("folder", metavar="DIR", help="a dataset folder with keypoints.jsonl (dataset build, synth)")
    coverage.add_argument("--no-picture", action="store_true", help="do not write DIR/coverage.png")
    coverage.add_argument("--json", action="store_true", help="also print the report as JSON")
    add_log_level(coverage, "info")


def run(args: argparse.Namespace) -> int:
    from ..datasets.build import run_build, run_coverage

    if args.dataset_command == "coverage":
        return run_coverage(args)
    return run_build(args)
