"""``pose2person dataset build``: videos and image folders -> (pose image, person image) training pairs.

For every sampled frame (:mod:`bridge.datasets.frames`: videos with their rotation applied,
sampled by timestamps with ``--fps``; images; folders of both):

1. the pose comes from the chosen source (:mod:`bridge.datasets.posing`; by default the camera
   tracker as the daemon serves it, so the model serves live on a CPU), in the frame's pixels;
2. frames without a confident person are dropped and counted by reason;
3. the pose image is drawn at the frame's size in ``--style``, as the daemon serves that source,
   then pose image and photo get the same square framing (:func:`square`) and size;
4. the pair is written in the pytorch-CycleGAN-and-pix2pix layouts (:mod:`bridge.datasets.layout`).

**Held-out split** (:func:`held_out`): the last ``--test-fraction`` of each input's kept frames
(in time) is the test set, at least one frame for any input with two or more; the kept frames
within ``--test-gap`` seconds before that slice are dropped (reason ``test_gap``), so no test frame
has a near-identical neighbour in training. Fewer than :data:`MIN_USEFUL_TEST` test frames in all
gives a warning (scores on so few are noise).

``summary.json`` records what was kept and dropped and why, per input, the held-out rule, the
pose coverage (:mod:`bridge.datasets.coverage`) and the dataset's **settings**, the contract
``pose2person train`` copies into the model card::

    "settings": {"framing": str, "pad_color": [r, g, b], "pose_source": "keypoints"|"densepose"|
                 "tracker-densepose", "pose_style": str, "keypoint_layout": str|null, "size": int}

``pose_source`` is what the card's ``pose_source`` must be to serve the model live (the tracker and
keypoint files both give ``keypoints``). ``keypoints.jsonl`` keeps every kept frame's keypoints
(and split) for ``pose2person dataset coverage``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import BridgeError, ConfigError
from ..pose import keypoints as kp
from ..pose.render import STYLES, render_pose
from ..pose.types import PoseResult
from ..util.progress import ProgressBar
from . import coverage as cov
from .frames import InputItem, Sampling, count_frames, expand_inputs, frames_of, video_info
from .layout import DatasetWriter
from .posing import DatasetPoser, DensePosePoser, KeypointFilePoser, TrackerPoser

log = logging.getLogger(__name__)
MIN_USEFUL_TEST = 20  # held-out frames below which PSNR/SSIM on them is too noisy to pick an epoch by
POSE_METHODS = ("tracker", "keypoints", "tracker-densepose", "densepose")


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    size: int = 256
    framing: str = "letterbox"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    sampling: Sampling = field(default_factory=Sampling)
    style: str = "dp_segm"
    min_score: float = kp.DEFAULT_MIN_SCORE
    max_people: int = 1
    test_fraction: float = 0.1
    test_gap_s: float = 0.5
    progress: bool = True
    coverage: bool = True


@dataclass
class Summary:
    kept: Counter = field(default_factory=Counter)  # split -> count
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    per_input: dict[str, dict[str, object]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    pose: dict[str, object] = field(default_factory=dict)
    held_out: dict[str, object] = field(default_factory=dict)
    coverage: dict[str, object] | None = None
    coverage_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"kept": dict(self.kept), "dropped": dict(self.dropped), "inputs": self.per_input,
                "settings": self.settings, "pose": self.pose, "held_out": self.held_out, "coverage": self.coverage,
                "warnings": self.warnings}


def square(image: np.ndarray, framing: str, pad: tuple[int, int, int], size: int,
           interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``letterbox`` (pad to a centred square with ``pad``, in the image's channel order) or
    ``center-crop``, then resize to ``size`` x ``size``."""
    h, w = image.shape[:2]
    if framing == "letterbox":
        side = max(h, w)
        y, x = (side - h) // 2, (side - w) // 2
        canvas = cv2.copyMakeBorder(np.ascontiguousarray(image), y, side - h - y, x, side - w - x,
                                    cv2.BORDER_CONSTANT, value=tuple(int(v) for v in pad))
    elif framing == "center-crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        canvas = image[y:y + side, x:x + side]
    else:
        raise ConfigError(f"framing must be letterbox or center-crop, not {framing!r}")
    if canvas.shape[0] == size:
        return np.ascontiguousarray(canvas)
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def held_out(times: list[float], fraction: float, gap_s: float) -> tuple[list[int], list[int], bool]:
    """(test indices, gap indices, whether the gap was shortened) of one input's kept frames, in
    time order: the last ``fraction`` (at least one frame when there are two or more, at most half)
    is test; training frames less than ``gap_s`` before the first test frame are the gap. The gap
    never leaves fewer training than test frames (it is shortened instead)."""
    n = len(times)
    if fraction <= 0 or n < 2:
        return [], [], False
    n_test = min(max(1, int(round(n * fraction))), n // 2)
    first = n - n_test
    start = times[first]
    gap = [i for i in range(first) if times[i] > start - gap_s]
    room = max(first - n_test, 0)  # training frames that may go to the gap
    shortened = len(gap) > room
    if shortened:
        gap = gap[len(gap) - room:] if room else []
    return list(range(first, n)), gap, shortened


def settings_of(opts: BuildOptions, poser: DatasetPoser) -> dict[str, object]:
    """The ``settings`` contract of summary.json (see the module docstring)."""
    return {"framing": opts.framing, "pad_color": [int(v) for v in opts.pad_color], "pose_source": poser.pose_source,
            "pose_style": opts.style, "keypoint_layout": poser.keypoint_layout, "size": int(opts.size)}


def _jsonl_line(name: str, frame: kp.KeypointFrame, split: str, time_s: float) -> dict[str, object]:
    rec = json.loads(kp.frames_to_jsonl([(name, frame)]))
    rec.update(split=split, time_s=round(time_s, 4))
    return rec


def build(items: list[InputItem], poser: DatasetPoser, opts: BuildOptions) -> Summary:
    """Write the dataset for ``items`` (see the module docstring); the summary says what happened."""
    if opts.style not in STYLES:
        raise ConfigError(f"unknown pose style {opts.style!r}; styles: {', '.join(STYLES)}")
    writer = DatasetWriter(opts.out)
    summary = Summary(settings=settings_of(opts, poser),
                      pose={"method": poser.method, "min_score": opts.min_score, "max_people": opts.max_people})
    bar = ProgressBar(sum(count_frames(i, opts.sampling) for i in items), "dataset", enabled=opts.progress)
    pose_pad = tuple(int(v) for v in render_pose(PoseResult(1, 1), opts.style)[0, 0])  # the style's background (RGB)
    records: list[dict[str, object]] = []
    train_commons: list[np.ndarray] = []  # the training poses, for pose coverage
    gap_total, shortened_any = 0, False
    names: set[str] = set()  # written so far: two inputs' frames never overwrite each other
    for number, item in enumerate(items):
        counts: Counter = Counter()
        poser.start(item.label, item.arg)
        kept: list[tuple[str, float, kp.KeypointFrame | None]] = []
        for frame in frames_of(item, opts.sampling):
            bar.update()
            posed = poser.pose(frame, frame.bgr) if frame.bgr is not None else None
            reason = "unreadable" if posed is None else posed.reason
            if reason or posed is None or posed.result is None:
                reason = reason or "no_person"
                summary.dropped[reason] += 1
                counts[reason] += 1
                continue
            assert frame.bgr is not None
            drawn = render_pose(posed.result, opts.style, frame.bgr if poser.over_frame else None)
            pad = opts.pad_color if poser.over_frame else pose_pad
            pose_rgb = square(drawn, opts.framing, pad, opts.size)
            # Framed in BGR (contiguous: fast), then turned to RGB at the output size.
            photo_rgb = square(frame.bgr, opts.framing, opts.pad_color[::-1], opts.size, cv2.INTER_AREA)[..., ::-1]
            name = frame.name if frame.name not in names else f"{frame.name}_{number}"
            names.add(name)
            writer.write(name, pose_rgb, photo_rgb, "train")
            kept.append((name, frame.time_s, posed.keypoints))
        test, gap, shortened = held_out([t for _, t, _ in kept], opts.test_fraction, opts.test_gap_s)
        shortened_any |= shortened
        test_set, gap_set = set(test), set(gap)
        for i, (name, t, keypoints) in enumerate(kept):
            if i in gap_set:
                writer.remove(name, "train")
                summary.dropped["test_gap"] += 1
                counts["test_gap"] += 1
                continue
            split = "test" if i in test_set else "train"
            if split == "test":
                writer.move(name, "train", "test")
            summary.kept[split] += 1
            counts[split] += 1
            if keypoints is not None:
                records.append(_jsonl_line(name, keypoints, split, t))
                if split == "train" and keypoints.count:
                    train_commons.append(keypoints.common()[0])
        gap_total += len(gap)
        entry: dict[str, object] = dict(counts)
        if item.kind == "video":
            try:
                entry["video"] = video_info(item.path).as_dict()
            except BridgeError:
                pass
        summary.per_input[item.label] = entry
    bar.close()
    summary.held_out = {"rule": "the last test_fraction of each input's kept frames in time; kept frames less than "
                                "test_gap_s before them dropped", "test_fraction": opts.test_fraction,
                        "test_gap_s": opts.test_gap_s, "frames": summary.kept["test"], "gap_dropped": gap_total}
    if shortened_any:
        summary.warnings.append("held-out gap shortened for short inputs (it would have left fewer training than "
                                "test frames): some test frames have near neighbours in training")
    if opts.test_fraction > 0 and summary.kept["train"] and summary.kept["test"] < MIN_USEFUL_TEST:
        summary.warnings.append(f"held-out set: {summary.kept['test']} frames, under {MIN_USEFUL_TEST}: scores on it "
                                "will be noisy (film longer, or raise --test-fraction)")
    if records:
        (Path(opts.out) / "keypoints.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                                                for r in records))
    if opts.coverage and summary.kept["train"]:
        if not train_commons:
            summary.coverage_lines = ["pose coverage: not measured (no keypoints for these poses)"]
        else:
            poses, probes = np.stack(train_commons), cov.load_probes()
            report = cov.coverage(poses, probes)
            cov.write_picture(report, probes, poses, Path(opts.out) / "coverage.png")
            summary.coverage = report.as_dict()
            summary.coverage_lines = report.lines() + [f"  (worst-covered poses: {Path(opts.out) / 'coverage.png'})"]
    (Path(opts.out) / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def _pad(text: str) -> tuple[int, int, int]:
    try:
        r, g, b = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--pad-color must be R,G,B, not {text!r}") from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise ConfigError(f"--pad-color values must be 0..255, not {text!r}")
    return (r, g, b)


def _method(args: argparse.Namespace) -> str:
    if args.pose != "auto":
        return str(args.pose)
    if args.keypoints:
        return "keypoints"
    if args.densepose_weights:
        return "densepose"
    return "tracker"


def make_poser(args: argparse.Namespace, inputs: list[Path], items: list[InputItem]) -> DatasetPoser:
    """The pose source the flags ask for (``--pose``; ``auto``: keypoint files when given, DensePose
    when its weights are given, else the camera tracker)."""
    method = _method(args)
    if method == "keypoints":
        if not args.keypoints:
            raise ConfigError("--pose keypoints needs --keypoints FILE, one per input (or leave --pose out: the "
                              "camera tracker poses the frames)")
        if len(args.keypoints) != len(inputs):
            raise ConfigError(f"{len(args.keypoints)} --keypoints files for {len(inputs)} inputs; give exactly one "
                              "per input, in the same order")
        for arg, path in enumerate(inputs):
            if sum(1 for i in items if i.arg == arg) > 1:
                raise ConfigError(f"{path}: a folder of several videos has no single frame numbering for one "
                                  "--keypoints file; give each video as its own input with its own file")
        files = [kp.read_keypoint_file(f, args.keypoint_layout) for f in args.keypoints]
        return KeypointFilePoser(files, args.min_score, args.max_people)
    if args.keypoints:
        raise ConfigError(f"--keypoints is for --pose keypoints, not --pose {method}")
    if method in ("tracker", "tracker-densepose"):
        return TrackerPoser(args.min_score, args.max_people, shaped=method == "tracker-densepose")
    return DensePosePoser(args.densepose_weights, args.densepose_config, args.device, args.max_people)


def run_build(args: argparse.Namespace) -> int:
    """The ``dataset build`` command: resolve inputs and pose source, build, print the summary."""
    inputs = [Path(p) for p in args.inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise ConfigError(f"no such input: {', '.join(missing)}")
    if args.test_gap < 0 or not 0 <= args.test_fraction < 1:
        raise ConfigError("--test-fraction must be 0..1 (below 1) and --test-gap at least 0")
    items = expand_inputs(inputs)
    if not items:
        raise BridgeError(f"no videos or images in {', '.join(map(str, inputs))}")
    opts = BuildOptions(out=Path(args.out), size=args.size, framing=args.framing, pad_color=_pad(args.pad_color),
                        sampling=Sampling(args.every, args.fps, args.max_frames), style=args.style,
                        min_score=args.min_score, max_people=args.max_people, test_fraction=args.test_fraction,
                        test_gap_s=args.test_gap, progress=not args.no_progress)
    poser = make_poser(args, inputs, items)
    summary = build(items, poser, opts)
    summary.warnings[:0] = getattr(poser, "warnings", [])
    if summary.warnings:
        (opts.out / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    dropped = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(summary.dropped.items())) or "none"
    print(f"kept {summary.kept['train']} train + {summary.kept['test']} test pairs in {opts.out} "
          f"(pose: {poser.method}; the card's pose source: {poser.pose_source}); dropped: {dropped}")
    for line in summary.coverage_lines:
        print(line)
    for warning in summary.warnings:
        print(f"warning: {warning}")
    if not summary.kept["train"]:
        frames = sum(summary.dropped.values()) + summary.kept["test"]
        raise BridgeError(f"no training pairs: {frames} frames read from {len(items)} input(s), none with a usable "
                          f"pose ({dropped}); see docs/TRAINING.md (filming guide)")
    return 0


def run_coverage(args: argparse.Namespace) -> int:
    """The ``dataset coverage DIR`` command: pose coverage of an existing dataset's training poses."""
    folder = Path(args.folder)
    try:
        report = cov.report_folder(folder, picture=not args.no_picture)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    for line in report.lines():
        print(line)
    if not args.no_picture:
        print(f"  (worst-covered poses: {folder / 'coverage.png'})")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0
