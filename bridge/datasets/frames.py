"""The frames of ``dataset build``'s inputs: videos, images, and folders of both.

* **Inputs** (:func:`expand_inputs`): a video file; an image file; a folder, whose videos are one
  input each (each its own timeline and tracking) and whose images, in name order, are one more
  input (a sequence). Only files directly in the folder count; other files are ignored.
* **Videos** are read with OpenCV (what its FFmpeg decodes: H.264, HEVC, MPEG-4 in ``.mp4``,
  ``.mov``, ``.mkv``, ...). **Rotation metadata** (phones film portrait as landscape plus a
  display rotation) is applied: OpenCV's ``CAP_PROP_ORIENTATION_AUTO`` is switched on, and where a
  backend does not honour it the frame is turned by ``CAP_PROP_ORIENTATION_META`` here, so frames
  come out as the phone showed them.
* **Sampling**: ``every`` keeps every Nth decoded frame; ``fps`` > 0 samples by **timestamps**
  (``CAP_PROP_POS_MSEC``), one frame per ``1 / fps`` seconds of the video's own clock, so a
  variable-frame-rate phone video is sampled evenly in time, not in frame counts.
* **Times**: every frame carries its time in seconds (the timestamp; images in a sequence count as
  :data:`IMAGE_SEQUENCE_FPS` frames a second): the tracker's smoothing and the held-out split use it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import BridgeError
from ..pose import keypoints as kp

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
IMAGE_SEQUENCE_FPS = 25.0  # images in a folder are taken as frames this far apart (extracted video frames)
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Sampling:
    every: int = 1
    fps: float = 0.0
    max_frames: int = 0


@dataclass(frozen=True)
class InputItem:
    """One timeline: a video, an image, or a folder's images (``images``, in name order).
    ``arg``: the command-line input it came from (keypoint files are given per argument)."""

    path: Path
    kind: str  # "video" | "image" | "images"
    arg: int
    images: tuple[Path, ...] = field(default=())

    @property
    def label(self) -> str:
        return str(self.path) + ("/ (images)" if self.kind == "images" else "")


@dataclass(frozen=True)
class Frame:
    key: str  # keypoint lookup key: video frame index, or the image's name key
    name: str  # output file stem
    bgr: np.ndarray | None  # None: unreadable
    time_s: float


def expand_inputs(paths: list[Path]) -> list[InputItem]:
    """The timelines of the command line's inputs (see the module docstring), in order."""
    items: list[InputItem] = []
    for arg, path in enumerate(paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
            images = tuple(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
            items.extend(InputItem(v, "video", arg) for v in videos)
            if images:
                items.append(InputItem(path, "images", arg, images))
            if not videos and not images:
                log.warning("%s: no videos (%s) or images in it", path, " ".join(sorted(VIDEO_SUFFIXES)))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            items.append(InputItem(path, "image", arg))
        else:
            items.append(InputItem(path, "video", arg))
    return items


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (rotation applied)
    height: int
    fps: float
    frames: int
    rotation: int  # degrees of display rotation in the file's metadata

    def as_dict(self) -> dict[str, object]:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 3), "frames": self.frames,
                "rotation": self.rotation}


def _open(path: Path) -> tuple[cv2.VideoCapture, int, bool]:
    """(capture, rotation in degrees, whether this code must turn the frames itself)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise BridgeError(f"{path}: not a video OpenCV can read (nor an image: {' '.join(sorted(IMAGE_SUFFIXES))})")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    rotation = int(round(capture.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
    by_hand = rotation in _ROTATE and capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) != 1
    return capture, rotation, by_hand


def video_info(path: Path) -> VideoInfo:
    capture, rotation, by_hand = _open(path)
    try:
        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if by_hand and rotation in (90, 270):
            w, h = h, w
        return VideoInfo(w, h, float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
                         max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), rotation)
    finally:
        capture.release()


def _video_frames(path: Path, sampling: Sampling) -> Iterator[Frame]:
    capture, rotation, by_hand = _open(path)
    try:
        native = capture.get(cv2.CAP_PROP_FPS) or 25.0
        period = 1.0 / sampling.fps if sampling.fps > 0 else 0.0
        next_t = 0.0
        index = kept = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not np.isfinite(t) or (t <= 0 and index > 0):
                t = index / native  # a backend without timestamps: the nominal rate
            if period:
                take = t + 1e-6 >= next_t
                if take:  # the next slot on the video's clock, never behind this frame
                    next_t = max(next_t + period, t + period / 2)
            else:
                take = index % max(sampling.every, 1) == 0
            if take:
                if by_hand:
                    frame = cv2.rotate(frame, _ROTATE[rotation])
                yield Frame(str(index), f"{path.stem}_{index:06d}", frame, t)
                kept += 1
                if sampling.max_frames and kept >= sampling.max_frames:
                    return
            index += 1
    finally:
        capture.release()


def frames_of(item: InputItem, sampling: Sampling) -> Iterator[Frame]:
    """The sampled frames of one input (see the module docstring)."""
    if item.kind == "video":
        yield from _video_frames(item.path, sampling)
        return
    if item.kind == "image":
        yield Frame(kp.frame_key(item.path.name), item.path.stem, cv2.imread(str(item.path), cv2.IMREAD_COLOR), 0.0)
        return
    step = max(sampling.every, 1)
    for n, p in enumerate(item.images[::step]):
        if sampling.max_frames and n >= sampling.max_frames:
            return
        yield Frame(kp.frame_key(p.name), f"{item.path.name}_{p.stem}", cv2.imread(str(p), cv2.IMREAD_COLOR),
                    n * step / IMAGE_SEQUENCE_FPS)


def count_frames(item: InputItem, sampling: Sampling) -> int:
    """About how many frames :func:`frames_of` yields (for the progress bar)."""
    if item.kind == "images":
        n = -(-len(item.images) // max(sampling.every, 1))
    elif item.kind == "image":
        n = 1
    else:
        try:
            info = video_info(item.path)
        except BridgeError:
            return 0
        fps = info.fps or 25.0
        if sampling.fps > 0:
            n = int(info.frames / fps * sampling.fps) + 1
        else:
            n = -(-info.frames // max(sampling.every, 1))
    return min(n, sampling.max_frames) if sampling.max_frames else n
