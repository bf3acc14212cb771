"""``pose2person synth``: aligned (pose image, puppet picture) pairs for training, seeded and deterministic.

Sample ``i`` depends only on ``(seed, i)`` (and the options), never on ``--count``, so a larger
set extends a smaller one. ``--sequence`` makes one continuous dance instead of independent poses
(the last frames become the test split). Besides the images (:mod:`bridge.datasets.layout`) the
folder gets ``keypoints.jsonl`` (every sample's keypoints, :func:`bridge.pose.keypoints.read_keypoint_file`
reads it) and ``synth.json`` (the options).

The pose image is ``render_pose(keypoints_to_pose(frame), style)`` of the keypoints exactly as a
client would send them (``--layout``, pixel coordinates, float32), so a model trained here serves
keypoint input.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..datasets.layout import DatasetWriter
from ..errors import BridgeError
from ..pose import keypoints as kp
from ..pose.render import STYLES, render_pose
from ..util.progress import ProgressBar
from . import skeleton as pp
from .render import render_person

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthOptions:
    count: int = 1000
    seed: int = 0
    style: str = "dp_segm"
    size: int = 256
    sequence: bool = False
    characters: tuple[str, ...] = (pp.DEFAULT_CHARACTER,)
    layout: str = "coco17"
    max_people: int = 1
    test_fraction: float = 0.1
    away_chance: float = 0.1


@dataclass(frozen=True)
class Sample:
    index: int
    frame: kp.KeypointFrame
    characters: tuple[pp.Character, ...]
    pose_rgb: np.ndarray
    person_rgb: np.ndarray


def resolve_characters(names: Sequence[str]) -> tuple[pp.Character, ...]:
    if list(names) == ["all"]:
        return tuple(pp.CHARACTERS.values())
    unknown = [n for n in names if n not in pp.CHARACTERS]
    if unknown:
        raise BridgeError(f"unknown character(s) {', '.join(unknown)}; known: {', '.join(pp.CHARACTERS)}, all")
    return tuple(pp.CHARACTERS[n] for n in names)


def render_sample(index: int, frame: kp.KeypointFrame, chars: Sequence[pp.Character], style: str) -> Sample:
    pose_rgb = render_pose(kp.keypoints_to_pose(frame), style)
    return Sample(index, frame, tuple(chars), pose_rgb, render_person(frame, chars))


def random_sample(opts: SynthOptions, index: int) -> Sample:
    """Sample ``index`` of the random-pose set: 1..max_people puppets, each a random character."""
    rng = np.random.default_rng([opts.seed, index])
    chars = resolve_characters(opts.characters)
    people = int(rng.integers(1, opts.max_people + 1))
    shrink = 1.0 / np.sqrt(people)
    picked = [chars[int(rng.integers(len(chars)))] for _ in range(people)]
    poses = [pp.random_pose(rng, opts.size, c, scale=(0.2 * shrink, 0.27 * shrink), away_chance=opts.away_chance)
             for c in picked]
    frame = pp.keypoint_frame(poses, picked, opts.size, opts.layout, frame_id=index)
    return render_sample(index, frame, picked, opts.style)


def dance_samples(opts: SynthOptions, frames: int, start: int = 0) -> Iterator[Sample]:
    """A continuous dance of one puppet (the first character), ``frames`` long."""
    rng = np.random.default_rng([opts.seed, 1_000_003])
    char = resolve_characters(opts.characters)[0]
    for i, pose in enumerate(pp.dance(rng, opts.size, char, frames)):
        if i >= start:
            frame = pp.keypoint_frame([pose], [char], opts.size, opts.layout, frame_id=i)
            yield render_sample(i, frame, [char], opts.style)


def is_test(opts: SynthOptions, index: int) -> bool:
    if opts.test_fraction <= 0:
        return False
    if opts.sequence:
        return index >= opts.count - int(round(opts.count * opts.test_fraction))
    return index % max(int(round(1 / opts.test_fraction)), 2) == 0


def run_synth(out: Path, opts: SynthOptions, progress: bool = True) -> dict[str, int]:
    """Write the dataset; returns the counts per split."""
    if opts.style not in STYLES:
        raise BridgeError(f"unknown pose style {opts.style!r}; styles: {', '.join(STYLES)}")
    if opts.layout not in kp.LAYOUTS:
        raise BridgeError(f"unknown layout {opts.layout!r}; layouts: {', '.join(kp.LAYOUTS)}")
    if not 16 <= opts.size <= 2048 or opts.count < 1 or opts.max_people < 1:
        raise BridgeError("--size must be 16..2048, --count and --people at least 1")
    resolve_characters(opts.characters)
    out = Path(out)
    writer = DatasetWriter(out)
    bar = ProgressBar(opts.count, "synth", enabled=progress)
    samples = dance_samples(opts, opts.count) if opts.sequence else (random_sample(opts, i) for i in range(opts.count))
    records = []
    for sample in samples:
        name = f"{sample.index:06d}"
        split = "test" if is_test(opts, sample.index) else "train"
        writer.write(name, sample.pose_rgb, sample.person_rgb, split)
        records.append((name, sample.frame, split, [c.name for c in sample.characters]))
        bar.update()
    bar.close()
    lines = []
    for (name, frame, split, chars), line in zip(records, kp.frames_to_jsonl((r[0], r[1]) for r in records).splitlines()):
        rec = json.loads(line)
        rec.update(split=split, characters=chars)
        lines.append(json.dumps(rec, separators=(",", ":")))
    (out / "keypoints.jsonl").write_text("\n".join(lines) + "\n")
    meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.__dict__.items()}
    (out / "synth.json").write_text(json.dumps({"generator": "pose2person synth", **meta}, indent=2) + "\n")
    log.info("synth: %d train + %d test pairs in %s", writer.counts["train"], writer.counts["test"], out)
    return dict(writer.counts)
