"""``pose2person run INPUT... -o OUT --model NAME``: offline, in-process, through the same stage
code as ``serve`` (``Catalog.load`` and ``run_stage``), with a progress bar.

Inputs: images, videos, folders of them, and, for keypoint models, keypoint files (OpenPose
JSON, CSV, JSONL; see :mod:`bridge.pose.keypoints`). Images become ``OUT/<stem>.png``, videos
``OUT/<stem>.mp4`` (or OUT itself when it ends in ``.mp4`` and there is one video).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ..config import resolve_pipeline
from ..errors import BridgeError, ClientError
from ..stages import Catalog
from ..util.frame_context import FrameContext, frame_context
from ..util.progress import ProgressBar
from .options import add_log_level, add_model_options
from .send import IMAGE_EXTENSIONS, frame_count, iter_frames

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
KEYPOINT_EXTENSIONS = {".json", ".jsonl", ".csv"}
#: A frame that gets no picture, counted and logged, while the run goes on: nobody in it (camera
#: tracker), or not a pose image for a model that takes pose images.
FRAME_PROBLEMS = frozenset({"no_person", "not_a_pose_image"})


def add_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="process images, folders and videos offline through a model")
    run.add_argument("inputs", nargs="+", metavar="INPUT")
    run.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="folder for results (images as PNG, videos as MP4), or a .mp4 file for one video")
    run.add_argument("--model", required=True)
    run.add_argument("--no-progress", action="store_true")
    add_log_level(run, "warning")
    add_model_options(run)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders expanded to their images, videos and keypoint files, sorted."""
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | KEYPOINT_EXTENSIONS
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in wanted)
        elif p.is_file():
            out.append(p)
        else:
            raise BridgeError(f"{raw}: no such file or folder")
    if not out:
        raise BridgeError("no images, videos or keypoint files among the inputs")
    return out


class VideoOut:
    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None

    def write(self, bgr: np.ndarray) -> None:
        if self.writer is None:
            h, w = bgr.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise BridgeError(f"cannot write video {self.path}")
        self.writer.write(np.ascontiguousarray(bgr))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _keypoint_frames(stage: object, path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from ..pose.keypoints import keypoints_to_pose, read_keypoint_file

    generate = getattr(stage, "generate_from_pose", None)
    if generate is None:
        raise BridgeError(f"{path.name}: keypoint files need a generator model")
    for key, frame in read_keypoint_file(path).items():
        rgb = generate(keypoints_to_pose(frame))
        yield key, np.ascontiguousarray(rgb[..., ::-1])


def run(args: argparse.Namespace) -> int:
    from ..daemon.jobs import run_stage

    cfg = resolve_pipeline(model=args.model, model_dirs=args.model_dirs, device=args.device, precision=args.precision,
                           norm_mode=args.norm_mode, accel=args.accel, pose=args.pose,
                           max_people=getattr(args, "max_people", 1))
    files = expand_inputs(args.inputs)
    out = Path(args.output).expanduser()
    single_video = out.suffix.lower() == ".mp4"
    if single_video and (len(files) != 1 or files[0].suffix.lower() not in VIDEO_EXTENSIONS):
        raise BridgeError("-o FILE.mp4 takes exactly one video input; give a folder otherwise")
    (out.parent if single_video else out).mkdir(parents=True, exist_ok=True)
    stage = Catalog(cfg).load(args.model)
    total = sum(frame_count(f) if f.suffix.lower() not in KEYPOINT_EXTENSIONS else 1 for f in files)
    bar = ProgressBar(total, f"run {args.model}", enabled=not args.no_progress)
    written = failed = 0
    try:
        for path in files:
            suffix = path.suffix.lower()
            if suffix in KEYPOINT_EXTENSIONS:
                for key, bgr in _keypoint_frames(stage, path):
                    cv2.imwrite(str(out / f"{Path(key).stem or path.stem}.png"), bgr)
                    written += 1
                bar.update(1, path.name)
                continue
            video = suffix in VIDEO_EXTENSIONS
            sink: VideoOut | None = None
            fps = 25.0
            if video:
                cap = cv2.VideoCapture(str(path))
                fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
                cap.release()
                sink = VideoOut(out if single_video else out / f"{path.stem}.mp4", fps)
            try:
                for i, bgr in enumerate(iter_frames(path)):
                    # A video is one stream: the camera tracker follows its person from frame to
                    # frame; each photo is looked at afresh.
                    try:
                        # A video's frames are timed by its frame rate (the tracker's smoothing).
                        with frame_context(FrameContext(stream=str(path) if video else None, frame_id=i,
                                                        time_s=i / fps if video else None)):
                            result = run_stage(stage, bgr, "BGR8", 0, i)
                    except ClientError as exc:
                        if exc.code not in FRAME_PROBLEMS:
                            raise
                        failed += 1
                        log.warning("%s frame %d: %s: %s", path.name, i, exc.code, exc.message)
                        bar.update(1, exc.code)
                        if sink is not None:  # keep the video's timing: a black frame stands in
                            sink.write(np.zeros_like(bgr))
                        continue
                    if sink is not None:
                        sink.write(result)
                    else:
                        cv2.imwrite(str(out / f"{path.stem}.png"), result)
                    written += 1
                    bar.update(1, path.name)
            finally:
                if sink is not None:
                    sink.close()
    finally:
        bar.close()
    log.info("wrote %d frame(s) to %s", written, out)
    print(f"{written} frame(s) -> {out}" + (f"; {failed} frame(s) without a picture (see the log)" if failed else ""))
    return 1 if failed else 0
