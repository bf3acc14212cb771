"""``pose2person send``: push images and videos through a running bridge and report latency.

Frames go one at a time (send, wait for the result, next), so nothing is dropped and
the figures are per-frame round trips. Standard library, numpy and OpenCV.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ..client import BridgeClient, RemoteError, ReplyTimeout
from ..config import default_allow_root
from ..util.progress import ProgressBar
from .options import DEFAULT_TO, add_log_level, add_to

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
CHANNEL_PREFIX = "send"


def add_parser(sub: Any) -> None:
    send = sub.add_parser("send", help="process images and videos through a running bridge")
    send.add_argument("inputs", nargs="+", metavar="FILE", help="images and/or videos")
    add_to(send, help=f"the bridge's OSC address (default {DEFAULT_TO})")
    send.add_argument("--transport", choices=["shm", "path"], default="shm",
                      help="shm (same machine, fastest) or path (files in the bridge's allowed root)")
    send.add_argument("-o", "--output", metavar="DIR", default=None,
                      help="write results here (images as <name>.png, videos as <name>.mp4)")
    send.add_argument("--model", default=None, help="switch the bridge to this model first")
    send.add_argument("--stage-dir", default=None,
                      help=f"for --transport path: a directory inside the bridge's --allow-root "
                           f"(default {default_allow_root()})")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    send.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_log_level(send, "warning")


@dataclass
class Figures:
    """Per-frame round-trip and bridge-reported latencies, in milliseconds."""

    round_trip_ms: list[float] = field(default_factory=list)
    bridge_ms: list[float] = field(default_factory=list)
    failed: int = 0

    def summary(self) -> str:
        if not self.round_trip_ms:
            return f"no frames processed ({self.failed} failed)"
        rt = sorted(self.round_trip_ms)
        p95 = rt[min(len(rt) - 1, int(round(0.95 * (len(rt) - 1))))]
        return (f"{len(rt)} frames, {self.failed} failed; round trip mean {statistics.fmean(rt):.2f} ms, "
                f"median {statistics.median(rt):.2f} ms, p95 {p95:.2f} ms; bridge latency mean "
                f"{statistics.fmean(self.bridge_ms):.2f} ms; {1000.0 / statistics.fmean(rt):.1f} frames/s")


def parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--to must be HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """BGR frames of an image (one) or a video (all), decoded with OpenCV."""
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        yield image
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: not a readable image or video")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def frame_count(path: Path) -> int:
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return 1
    capture = cv2.VideoCapture(str(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


class Sink:
    """Where results go: ``<out>/<stem>.png`` for images, ``<out>/<stem>.mp4`` for videos."""

    def __init__(self, out_dir: Path | None, source: Path, is_video: bool, fps: float = 25.0) -> None:
        self.out_dir, self.source, self.is_video, self.fps = out_dir, source, is_video, fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.out_dir is None:
            return
        if not self.is_video:
            cv2.imwrite(str(self.out_dir / f"{self.source.stem}.png"), frame)
            return
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.out_dir / f"{self.source.stem}.mp4"),
                                           cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self._writer.write(np.ascontiguousarray(frame[..., :3]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _safe_picture(client: BridgeClient, frame_id: int, figures: Figures, progress: ProgressBar) -> bool:
    """Whether the bridge answered ``frame_id`` with a safe picture (nobody in it, a failed model):
    then the frame counts as failed, with the reason in the log; the picture is still written, so
    a video keeps its timing."""
    reason = client.safe_notice(frame_id)
    if reason is None:
        return False
    figures.failed += 1
    log.warning("frame %d: no picture from the model, a safe picture instead: %s", frame_id, reason)
    progress.update(1, reason.split(":", 1)[0])
    return True


def _send_shm(client: BridgeClient, frames: Iterator[np.ndarray], sink: Sink, figures: Figures,
              progress: ProgressBar, timeout: float) -> None:
    session = None
    channel = f"{CHANNEL_PREFIX}-{os.getpid()}"
    try:
        for frame_id, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if session is None or (session.width, session.height) != (w, h):
                if session is not None:
                    session.close()
                session = client.open_shm(channel, w, h, "BGR8")
            t0 = time.perf_counter()
            try:
                result, bridge_ms = client.process_shm(session, frame, frame_id, timeout)
            except RemoteError as exc:
                figures.failed += 1
                log.warning("frame %d: %s", frame_id, exc)
                progress.update(1, "failed")
                continue
            figures.round_trip_ms.append((time.perf_counter() - t0) * 1000.0)
            figures.bridge_ms.append(bridge_ms)
            sink.write(result)
            if _safe_picture(client, frame_id, figures, progress):
                continue
            progress.update(1, f"{figures.round_trip_ms[-1]:.1f} ms")
    finally:
        if session is not None:
            try:
                client.close_shm(session)
            except (RemoteError, ReplyTimeout):
                session.close()


def _send_path(client: BridgeClient, frames: Iterator[np.ndarray], sink: Sink, figures: Figures,
               progress: ProgressBar, timeout: float, stage_dir: Path) -> None:
    token = secrets.token_hex(4)
    stage_in = stage_dir / f"send-{token}.png"
    stage_out = stage_dir / f"send-{token}.out.png"
    try:
        for frame_id, frame in enumerate(frames):
            t0 = time.perf_counter()
            cv2.imwrite(str(stage_in), frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            try:
                done = client.process_path(str(stage_in), str(stage_out), frame_id, timeout)
            except RemoteError as exc:
                figures.failed += 1
                log.warning("frame %d: %s", frame_id, exc)
                progress.update(1, "failed")
                continue
            result = cv2.imread(done.output_path, cv2.IMREAD_COLOR)
            figures.round_trip_ms.append((time.perf_counter() - t0) * 1000.0)
            figures.bridge_ms.append(done.latency_ms)
            sink.write(result)
            if _safe_picture(client, frame_id, figures, progress):
                continue
            progress.update(1, f"{figures.round_trip_ms[-1]:.1f} ms")
    finally:
        stage_in.unlink(missing_ok=True)
        stage_out.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``pose2person send``; returns the exit code (1 if any frame failed)."""
    host, port = parse_target(args.to)
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    stage_dir = Path(args.stage_dir) if args.stage_dir else default_allow_root()
    if args.transport == "path":
        stage_dir.mkdir(parents=True, exist_ok=True)
    figures = Figures()
    with BridgeClient(host, port, timeout=args.timeout) as client:
        try:
            client.ping()
        except ReplyTimeout:
            log.error("no bridge answers at %s:%d (is `pose2person serve` running? right port?)", host, port)
            return 1
        if args.model:
            try:
                log.info("model: %s", client.set_model(args.model))
            except RemoteError as exc:
                log.error("cannot switch model: %s", exc)
                return 1
        for raw in args.inputs:
            source = Path(raw)
            if not source.is_file():
                log.error("%s: no such file", source)
                figures.failed += 1
                continue
            is_video = source.suffix.lower() not in IMAGE_EXTENSIONS
            sink = Sink(out_dir, source, is_video)
            progress = ProgressBar(frame_count(source), source.name, enabled=not args.no_progress and sys.stderr.isatty())
            try:
                frames = iter_frames(source)
                if args.transport == "shm":
                    _send_shm(client, frames, sink, figures, progress, args.timeout)
                else:
                    _send_path(client, frames, sink, figures, progress, args.timeout, stage_dir)
            except ValueError as exc:
                log.error("%s", exc)
                figures.failed += 1
            except ReplyTimeout as exc:
                log.error("%s: %s", source, exc)
                figures.failed += 1
            finally:
                sink.close()
                progress.close()
    sys.stdout.write(f"{args.transport} via {host}:{port}: {figures.summary()}\n")
    return 1 if figures.failed or not figures.round_trip_ms else 0
