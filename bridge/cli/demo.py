"""``pose2person demo``: a synthetic puppet dance sent as keypoints through a running bridge, filmed.

The client side of the keypoint contract (docs/PROTOCOL.md), over real OSC and shared memory:

1. ``/pose2person/shm/open s channel i width i height s RGB8`` opens a channel whose output ring
   receives the generated pictures;
2. ``/pose2person/keypoints/target s channel`` names it as this client's keypoint target (the
   bridge confirms with the same message);
3. per frame ``/pose2person/keypoints s layout i frame_id i width i height f x f y f score ...``;
   the bridge answers ``/pose2person/frame/ready s channel i frame_id f latency_ms`` when the
   picture is in the ring (or ``/pose2person/frame/dropped`` / ``/pose2person/error``).

Frames are sent at ``--fps`` at most, one in flight (a round trip each), so every frame of the
video has its own output. The video shows, side by side: the keypoints as sent (a skeleton), the
pose image they make (:func:`bridge.pose.keypoints.keypoints_to_pose`, as the bridge draws it) and the
bridge's picture, with the achieved fps and the latency (the bridge's own and the round trip)
burnt in.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import protocol
from ..client import BridgeClient, RemoteError, ReplyTimeout
from ..errors import BridgeError
from ..pose import keypoints as kp
from ..pose.render import render_pose
from ..puppet import skeleton as pp
from ..util.progress import ProgressBar
from .options import add_log_level, add_to

log = logging.getLogger(__name__)
KEYPOINTS = f"{protocol.PREFIX}/keypoints"
KEYPOINTS_TARGET = f"{protocol.PREFIX}/keypoints/target"
CHANNEL = "demo"
BONES = (("nose", "neck"), ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
         ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("neck", "mid_hip"),
         ("mid_hip", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("mid_hip", "left_hip"),
         ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_eye", "left_eye"), ("right_wrist", "right_hand"),
         ("left_wrist", "left_hand"), ("right_ankle", "right_toe"), ("left_ankle", "left_toe"))


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="play a synthetic puppet dance as keypoints through a running bridge")
    demo.add_argument("-o", "--output", default="demo.mp4", help="video to write (default demo.mp4)")
    add_to(demo)
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--fps", type=float, default=15.0, help="frames sent per second (default 15)")
    demo.add_argument("--size", type=int, default=256)
    demo.add_argument("--layout", default="coco17")
    demo.add_argument("--people", type=int, default=1, help="dancers (default 1)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    demo.add_argument("--no-progress", action="store_true")
    add_log_level(demo, "warning")


def dance_frames(seconds: float, fps: float, size: int, layout: str, people: int, seed: int) -> list[kp.KeypointFrame]:
    """The dance as keypoint messages: ``people`` puppets (the built-in characters in turn) side by side."""
    frames = max(int(round(seconds * fps)), 1)
    chars = [list(pp.CHARACTERS.values())[k % len(pp.CHARACTERS)] for k in range(people)]
    shrink = 1.0 / people ** 0.5
    dances = []
    for k, char in enumerate(chars):
        poses = pp.dance(np.random.default_rng([seed, k]), size, char, frames, beat=max(int(fps), 4),
                         scale=(0.2 * shrink, 0.27 * shrink))
        # Centre each dancer's whole dance in its slot of the frame's width.
        xs = np.concatenate([pp.pose_keypoints(p, char)[:, 0] for p in poses])
        dx = (k + 0.5) * size / people - (float(xs.min()) + float(xs.max())) / 2
        dances.append([replace(p, x=p.x + dx) for p in poses])
    return [pp.keypoint_frame([d[f] for d in dances], chars, size, layout, frame_id=f + 1) for f in range(frames)]


def skeleton(frame: kp.KeypointFrame, min_score: float = kp.DEFAULT_MIN_SCORE) -> np.ndarray:
    """The keypoints as a client sees them: bones and joints on white, RGB."""
    img = np.full((frame.height, frame.width, 3), 255, np.uint8)
    scale = max(frame.width, frame.height) / 256
    for person in frame.common():
        ok = person[:, 2] >= min_score
        for a, b in BONES:
            ia, ib = kp.C[a], kp.C[b]
            if ok[ia] and ok[ib]:
                cv2.line(img, tuple(int(v) for v in person[ia, :2]), tuple(int(v) for v in person[ib, :2]),
                         (90, 90, 90), max(int(2 * scale), 1), cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(img, tuple(int(v) for v in person[j, :2]), max(int(3 * scale), 2), (220, 40, 40), -1,
                       cv2.LINE_AA)
    return img


def burn_in(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    out = tile.copy()
    scale = tile.shape[0] / 512
    for i, text in enumerate(lines):
        y = int((22 + 22 * i) * max(scale, 0.5))
        for colour, width in (((255, 255, 255), 3), ((0, 0, 0), 1)):
            cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, max(0.5 * scale, 0.35), colour, width, cv2.LINE_AA)
    return out


@dataclass
class DemoFigures:
    sent: int = 0
    received: int = 0
    dropped: int = 0
    latency_ms: list[float] | None = None
    round_trip_ms: list[float] | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        lat = np.asarray(self.latency_ms or [0.0])
        rt = np.asarray(self.round_trip_ms or [0.0])
        fps = self.received / self.seconds if self.seconds else 0.0
        return (f"{self.received}/{self.sent} frames, {fps:.1f} fps, bridge latency mean {lat.mean():.1f} ms "
                f"p95 {np.percentile(lat, 95):.1f} ms, round trip mean {rt.mean():.1f} ms "
                f"p95 {np.percentile(rt, 95):.1f} ms" + (f", {self.dropped} dropped" if self.dropped else ""))


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise BridgeError(f"--to must be HOST:PORT, not {text!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    host, port = _host_port(args.to)
    if args.layout not in kp.LAYOUTS:
        raise BridgeError(f"unknown layout {args.layout!r}; layouts: {', '.join(kp.LAYOUTS)}")
    frames = dance_frames(args.seconds, args.fps, args.size, args.layout, args.people, args.seed)
    figures = play(host, port, frames, Path(args.output), args.fps, args.timeout, not args.no_progress)
    print(f"{args.output}: {figures.summary()}")
    return 0


def play(host: str, port: int, frames: list[kp.KeypointFrame], output: Path, fps: float, timeout: float,
         progress: bool = True) -> DemoFigures:
    """Send ``frames`` through the bridge at ``host:port`` and write the side-by-side video to ``output``."""
    size_w, size_h = frames[0].width, frames[0].height
    figures = DemoFigures(latency_ms=[], round_trip_ms=[])
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (3 * size_w, size_h))
    if not writer.isOpened():
        raise BridgeError(f"cannot write {output}")
    recent: deque[float] = deque(maxlen=max(int(fps), 2))
    bar = ProgressBar(len(frames), "demo", enabled=progress)
    with BridgeClient(host, port, timeout=timeout) as client:
        try:
            client.ping()
        except ReplyTimeout:
            raise BridgeError(f"no bridge answers at {host}:{port} (start one with `pose2person serve`)") from None
        session = client.open_shm(CHANNEL, size_w, size_h, "RGB8")
        try:
            try:
                client.request(KEYPOINTS_TARGET, (session.name,), KEYPOINTS_TARGET)
            except RemoteError as exc:
                raise _not_supported(host, port, exc) from None
            start = time.perf_counter()
            for frame in frames:
                due = start + (frame.frame_id - 1) / fps
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.perf_counter()
                client.send(KEYPOINTS, *frame.to_osc_args())
                figures.sent += 1
                try:
                    msg = client.wait_for(lambda m: (m.address == protocol.FRAME_READY and m.args[1] == frame.frame_id)
                                          or (m.address == protocol.FRAME_DROPPED and m.args[0] == frame.frame_id),
                                          timeout, error_for=lambda e: e.frame_id in (frame.frame_id,
                                                                                      protocol.NO_FRAME_ID))
                except RemoteError as exc:
                    if exc.code in ("unknown_address", "bad_arguments"):
                        raise _not_supported(host, port, exc) from None
                    raise
                rt = (time.perf_counter() - t0) * 1000
                if msg.address == protocol.FRAME_DROPPED:
                    figures.dropped += 1
                    continue
                latency = float(msg.args[2])  # type: ignore[arg-type]
                output_rgb = client.read_result(session, frame.frame_id)[..., :3]
                figures.received += 1
                figures.latency_ms.append(latency)  # type: ignore[union-attr]
                figures.round_trip_ms.append(rt)  # type: ignore[union-attr]
                now = time.perf_counter()
                recent.append(now)
                live_fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
                row = np.concatenate([
                    burn_in(skeleton(frame), [f"keypoints ({frame.layout})", f"frame {frame.frame_id}"]),
                    burn_in(render_pose(kp.keypoints_to_pose(frame), "dp_segm"), ["pose image"]),
                    burn_in(np.ascontiguousarray(output_rgb), ["output", f"{live_fps:.1f} fps",
                                                               f"latency {latency:.0f} ms (rt {rt:.0f} ms)"]),
                ], axis=1)
                writer.write(row[..., ::-1])
                bar.update(1, f"{latency:.0f} ms")
            figures.seconds = time.perf_counter() - start
        finally:
            bar.close()
            writer.release()
            try:
                client.close_shm(session)
            except (ReplyTimeout, RemoteError):
                session.close()
    return figures


def _not_supported(host: str, port: int, exc: RemoteError) -> BridgeError:
    return BridgeError(f"the bridge at {host}:{port} does not answer keypoint messages ({exc.code}: {exc.message}); "
                       "it needs a version with /pose2person/keypoints and a keypoint model "
                       "(pose2person serve --model puppet)")
