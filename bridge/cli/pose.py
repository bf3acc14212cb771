"""``pose2person pose IMAGE|VIDEO ... -o OUT``: DensePose pose images offline, for building
datasets and for checking a setup (no daemon involved).

Outputs (RGB pose images of :func:`bridge.pose.render.render_pose`, lossless PNG unless a video
file is asked for):

* one input and ``OUT`` ending in ``.png``/``.jpg``/``.bmp`` (image) or ``.mp4``/``.avi``
  (video): written there;
* otherwise ``OUT`` is a folder: an image ``a.jpg`` gives ``OUT/a.png``; a video ``b.mp4``
  gives ``OUT/b/b_00001.png``, ... (one PNG per frame; no lossy video codec in a dataset).

Images are read with their EXIF orientation applied (detectron2's ``read_image`` does the same).
Flags are defined in :func:`add_parser` (called by :mod:`bridge.cli.main`); torch is imported only
when the command runs (:func:`run`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..config import DEFAULT_DENSEPOSE_MODEL
from ..errors import ConfigError, ModelLoadError
from .options import add_log_level

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from ..pose.render import STYLES

    p = sub.add_parser("pose", help="render DensePose pose images of images or videos (offline)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE|VIDEO", help="images and/or videos")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (one input) or folder (images -> OUT/<name>.png, videos -> OUT/<name>/<name>_NNNNN.png)")
    p.add_argument("--style", default="dp_segm", choices=STYLES, help="render style (default dp_segm)")
    p.add_argument("--config", default=DEFAULT_DENSEPOSE_MODEL, help="DensePose config name")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="checkpoint (.pkl/.pth; default: where `pose2person models fetch CONFIG` puts it)")
    p.add_argument("--min-score", type=float, default=0.8, help="detection score threshold (default 0.8)")
    p.add_argument("--max-people", type=int, default=0, help="at most this many people per frame (0 = all)")
    p.add_argument("--short-side", type=int, default=None, help="input short side (default: the config's 800)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--pose-backend", choices=["torch", "detectron2"], default="torch",
                   help="torch (this package, default) or detectron2 (when installed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_log_level(p, "warning")


def _read_image_bgr(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable image ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as detectron2 reads it


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)  # PIL takes RGB as is


def run(args: argparse.Namespace) -> int:
    from ..densepose import DensePoseSettings
    from ..densepose.backends import load_backend
    from ..densepose.weights import zoo_destination
    from ..pose.render import render_pose
    from ..util.progress import ProgressBar

    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            raise ConfigError(f"{path}: not an image or video file name ({path.suffix})")
    out = Path(args.output)
    single_file = len(inputs) == 1 and out.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
    if single_file and (out.suffix.lower() in VIDEO_SUFFIXES) != (inputs[0].suffix.lower() in VIDEO_SUFFIXES):
        raise ConfigError(f"-o {out}: an image needs an image file name, a video a video file name (or give a folder)")
    weights = Path(args.weights).expanduser() if args.weights else zoo_destination(args.config)
    if not weights.is_file():
        raise ModelLoadError(f"DensePose weights {weights} not found: run `pose2person models fetch {args.config}` "
                             f"or pass --weights PATH")
    settings = DensePoseSettings(min_score=args.min_score, max_people=args.max_people, short_side=args.short_side,
                                 fp16=args.fp16)
    predictor = load_backend(args.pose_backend, weights, args.config, args.device, settings)

    def render(frame_bgr: np.ndarray) -> np.ndarray:
        return render_pose(predictor.predict(frame_bgr), args.style, frame_bgr)

    images = [p for p in inputs if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in inputs if p.suffix.lower() in VIDEO_SUFFIXES]
    total = len(images) + sum(_frame_count(v) for v in videos)
    bar = ProgressBar(total, "pose", enabled=not args.no_progress)
    written = 0
    try:
        for path in images:
            _write_png(out if single_file else out / f"{path.stem}.png", render(_read_image_bgr(path)))
            written += 1
            bar.update(1, path.name)
        for path in videos:
            written += _video(path, out if single_file else out / path.stem, single_file, render, bar)
    finally:
        bar.close()
    log.info("wrote %d pose images", written)
    print(f"{written} pose image(s) -> {out}")
    return 0


def _frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def _video(path: Path, out: Path, to_file: bool, render: object, bar: object) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"{path}: cannot open the video")
    writer = None
    n = 0
    try:
        while True:
            ok, frame = cap.read()  # BGR
            if not ok:
                break
            rgb = render(frame)  # type: ignore[operator]
            n += 1
            if to_file:
                if writer is None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() != ".avi" else "MJPG"))
                    writer = cv2.VideoWriter(str(out), fourcc, fps, (rgb.shape[1], rgb.shape[0]))
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # OpenCV writes BGR
            else:
                _write_png(out / f"{path.stem}_{n:05d}.png", rgb)
            bar.update(1, path.name)  # type: ignore[attr-defined]
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if n == 0:
        raise ConfigError(f"{path}: no frames could be read")
    return n
