"""``pose2person dataset build``: videos and image folders -> (pose image, person image) training pairs.

For every sampled frame:

1. the pose comes from DensePose (``--densepose-weights``: ``bridge.densepose.load_predictor``) or
   from a keypoint file (``--keypoints``: OpenPose JSON folder, ``.csv`` or ``.jsonl``, see
   :func:`bridge.pose.keypoints.read_keypoint_file`; video frames are looked up by their index,
   images by the number their name ends in, or their name), in the frame's own pixels;
2. frames with nobody in them, more than ``--max-people`` people, or no keypoints are dropped
   (and counted, with the reason);
3. the pose image is drawn at the frame's size in ``--style``, as the daemon serves that source
   (keypoints over white; DensePose over the camera frame, as detectron2's ``apply_net show``),
   then pose image and photo get the same square framing: ``letterbox`` pads to a square (the
   photo with ``--pad-color``, white as the artist did; a keypoint pose image with its style's
   background) or ``center-crop`` keeps the centred square; both are resized to ``--size``;
4. the pair is written in the pytorch-CycleGAN-and-pix2pix layouts (:mod:`bridge.datasets.layout`).

Test split: kept frames go in runs of :data:`TEST_BLOCK`; every ``round(1 / test_fraction)``-th run
is test, so neighbouring (near-identical) video frames do not straddle the split.
A ``summary.json`` records what was kept and dropped and why.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..errors import BridgeError, ConfigError
from ..pose import keypoints as kp
from ..pose.render import STYLES, render_pose
from ..pose.types import PoseResult
from ..util.progress import ProgressBar
from .layout import DatasetWriter

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
TEST_BLOCK = 25  # kept frames per split run


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    size: int = 256
    framing: str = "letterbox"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    every: int = 1
    fps: float = 0.0
    max_frames: int = 0
    style: str = "dp_segm"
    min_score: float = 0.3
    max_people: int = 1
    test_fraction: float = 0.1
    progress: bool = True


@dataclass
class Summary:
    kept: Counter = field(default_factory=Counter)  # split -> count
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    per_input: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"kept": dict(self.kept), "dropped": dict(self.dropped), "inputs": self.per_input}


PoseFn = Callable[[str, np.ndarray], "PoseResult | None"]  # (frame key, BGR frame) -> pose, None = no data


@dataclass(frozen=True)
class PoseSource:
    """Where one input's poses come from. ``over_frame``: draw the pose image over the frame, as the
    DensePose stage serves it (``dp_segm`` over the grayscale camera frame); keypoint input is
    served over white, so keypoint datasets are drawn over white."""

    poses: PoseFn
    over_frame: bool = False


@dataclass(frozen=True)
class Frame:
    key: str  # keypoint lookup key: video frame index, or the image's name key
    name: str  # output file stem
    bgr: np.ndarray | None  # None: unreadable


def frames_of(path: Path, opts: BuildOptions) -> Iterator[Frame]:
    """The sampled frames of a video, an image, or a folder of images (sorted by name)."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for n, p in enumerate(images[:: max(opts.every, 1)]):
            if opts.max_frames and n >= opts.max_frames:
                return
            yield Frame(kp.frame_key(p.name), f"{path.name}_{p.stem}", cv2.imread(str(p), cv2.IMREAD_COLOR))
        return
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield Frame(kp.frame_key(path.name), path.stem, cv2.imread(str(path), cv2.IMREAD_COLOR))
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise BridgeError(f"{path}: not a readable video or image")
    try:
        step = max(opts.every, 1)
        if opts.fps > 0:
            native = capture.get(cv2.CAP_PROP_FPS) or 25.0
            step = max(int(round(native / opts.fps)), 1)
        index = kept = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % step == 0:
                yield Frame(str(index), f"{path.stem}_{index:06d}", frame)
                kept += 1
                if opts.max_frames and kept >= opts.max_frames:
                    return
            index += 1
    finally:
        capture.release()


def count_frames(path: Path, opts: BuildOptions) -> int:
    if path.is_dir():
        n = len([p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]) // max(opts.every, 1)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        n = 1
    else:
        capture = cv2.VideoCapture(str(path))
        total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        capture.release()
        step = max(int(round(fps / opts.fps)), 1) if opts.fps > 0 else max(opts.every, 1)
        n = -(-total // step)
    return min(n, opts.max_frames) if opts.max_frames else n


def square(image: np.ndarray, framing: str, pad: tuple[int, int, int], size: int,
           interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``letterbox`` (pad to a centred square with ``pad``, in the image's channel order) or
    ``center-crop``, then resize to ``size`` x ``size``."""
    h, w = image.shape[:2]
    if framing == "letterbox":
        side = max(h, w)
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = pad
        y, x = (side - h) // 2, (side - w) // 2
        canvas[y:y + h, x:x + w] = image
    elif framing == "center-crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        canvas = image[y:y + side, x:x + side]
    else:
        raise ConfigError(f"framing must be letterbox or center-crop, not {framing!r}")
    if canvas.shape[0] == size:
        return np.ascontiguousarray(canvas)
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def keypoint_source(files: dict[str, kp.KeypointFrame], min_score: float) -> PoseSource:
    def pose(key: str, frame_bgr: np.ndarray) -> PoseResult | None:
        frame = files.get(key)
        if frame is None:
            return None
        h, w = frame_bgr.shape[:2]
        return kp.keypoints_to_pose(kp.with_size(frame, w, h), min_score)
    return PoseSource(pose, over_frame=False)


def densepose_source(weights: str, config: str, device: str) -> PoseSource:
    try:
        from ..densepose import load_predictor  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError(f"DensePose is not available in this build ({exc}); give --keypoints instead") from None
    predictor = load_predictor(weights, config, device)

    def pose(key: str, frame_bgr: np.ndarray) -> PoseResult | None:
        return predictor.predict(frame_bgr)
    return PoseSource(pose, over_frame=True)


def build(inputs: list[Path], sources: list[PoseSource], opts: BuildOptions) -> Summary:
    """Write the dataset for ``inputs`` (``sources[i]`` gives the poses of ``inputs[i]``)."""
    if opts.style not in STYLES:
        raise ConfigError(f"unknown pose style {opts.style!r}; styles: {', '.join(STYLES)}")
    writer = DatasetWriter(opts.out)
    summary = Summary()
    total = sum(count_frames(p, opts) for p in inputs)
    bar = ProgressBar(total, "dataset", enabled=opts.progress)
    pose_pad = tuple(int(v) for v in render_pose(PoseResult(1, 1), opts.style)[0, 0])  # the style's background (RGB)
    period = max(int(round(1 / opts.test_fraction)), 2) if opts.test_fraction > 0 else 0
    kept_total = 0
    for path, source in zip(inputs, sources):
        counts: Counter = Counter()
        for frame in frames_of(path, opts):
            bar.update()
            if frame.bgr is None:
                reason = "unreadable"
            else:
                result = source.poses(frame.key, frame.bgr)
                if result is None:
                    reason = "no_keypoints"
                elif result.empty:
                    reason = "no_person"
                elif len(result.instances) > opts.max_people:
                    reason = "too_many_people"
                else:
                    reason = ""
            if reason:
                summary.dropped[reason] += 1
                counts[reason] += 1
                continue
            assert frame.bgr is not None and result is not None
            drawn = render_pose(result, opts.style, frame.bgr if source.over_frame else None)  # type: ignore[arg-type]
            pad = opts.pad_color if source.over_frame else pose_pad
            pose_rgb = square(drawn, opts.framing, pad, opts.size)
            photo_rgb = square(frame.bgr[..., ::-1], opts.framing, opts.pad_color, opts.size, cv2.INTER_AREA)
            split = "test" if period and (kept_total // TEST_BLOCK) % period == period - 1 else "train"
            writer.write(frame.name, pose_rgb, photo_rgb, split)
            summary.kept[split] += 1
            counts[split] += 1
            kept_total += 1
        summary.per_input[str(path)] = dict(counts)
    bar.close()
    (Path(opts.out) / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def _pad(text: str) -> tuple[int, int, int]:
    try:
        r, g, b = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--pad-color must be R,G,B, not {text!r}") from None
    return (r, g, b)


def run_build(args: argparse.Namespace) -> int:
    """The ``dataset build`` command: resolve inputs and pose sources, build, print the summary."""
    inputs = [Path(p) for p in args.inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise ConfigError(f"no such input: {', '.join(missing)}")
    opts = BuildOptions(out=Path(args.out), size=args.size, framing=args.framing, pad_color=_pad(args.pad_color),
                        every=args.every, fps=args.fps, max_frames=args.max_frames, style=args.style,
                        min_score=args.min_score, max_people=args.max_people, test_fraction=args.test_fraction,
                        progress=not args.no_progress)
    use_densepose = args.pose == "densepose" or (args.pose == "auto" and args.densepose_weights)
    sources: list[PoseSource]
    if use_densepose:
        if not args.densepose_weights:
            raise ConfigError("--pose densepose needs --densepose-weights")
        source = densepose_source(args.densepose_weights, args.densepose_config, args.device)
        sources = [source] * len(inputs)
    else:
        if not args.keypoints:
            raise ConfigError("give --keypoints FILE (OpenPose JSON, .csv, .jsonl) or --densepose-weights")
        if len(args.keypoints) not in (1, len(inputs)):
            raise ConfigError(f"{len(args.keypoints)} --keypoints files for {len(inputs)} inputs; give one per input "
                              "(in order) or one for a single input")
        if len(args.keypoints) == 1 and len(inputs) > 1:
            raise ConfigError("one --keypoints file for several inputs is ambiguous; give one per input")
        sources = [keypoint_source(kp.read_keypoint_file(f, args.keypoint_layout), args.min_score)
                   for f in args.keypoints]
    summary = build(inputs, sources, opts)
    dropped = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(summary.dropped.items())) or "none"
    print(f"kept {summary.kept['train']} train + {summary.kept['test']} test pairs in {opts.out}; dropped: {dropped}")
    return 0
