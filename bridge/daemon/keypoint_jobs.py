"""Keypoint frames: ``/pose2person/keypoints`` messages turned into generated pictures.

A keypoint message carries no pixels, so each client first names where its pictures go:
``/pose2person/keypoints/target s channel`` (the output ring of a shared-memory channel it
opened, answered ``/frame/ready``) or ``/pose2person/keypoints/target/path s output_path`` (an
image file in an allowed root, written atomically, answered ``/frame/done``).

On the worker thread a :class:`KeypointJob` draws the people as DensePose body parts
(:func:`bridge.pose.keypoints.keypoints_to_pose`) and hands the pose to the active model:
generator stages render it in their card's pose style and generate; built-in stages get the
``dp_segm`` pose image (so ``passthrough`` shows the pose and ``invert`` inverts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import protocol
from ..errors import ClientError
from ..formats.imageio import write_image_atomic
from ..formats.pixels import convert
from ..osc import encode_message
from ..pose.keypoints import KeypointFrame, keypoints_to_pose
from ..shm import ORIGIN_BOTTOM_LEFT, ShmError
from ..stages import Stage
from ..util.metrics import timed
from .jobs import FrameJob, _retired, elapsed_ms, run_stage
from .monitor import TapFrames
from .safe_output import COVERED
from .shm_channels import Channel

BUILTIN_POSE_STYLE = "dp_segm"


@dataclass(frozen=True)
class KeypointTarget:
    """Where one client's keypoint pictures go: a shm channel or an output file (one of them)."""

    channel: Channel | None = None  # resolved from channel_name for each message
    path: Path | None = None
    channel_name: str | None = None  # the channel's handle (what the controller keeps between messages)
    label: str = ""  # the name the client gave, echoed in /frame/ready
    # The allowed roots the path was checked against: every picture is written by walking from its
    # root again (bridge/formats/safefs.py), so a folder swapped for a link later is refused.
    roots: tuple[Path, ...] = ()


def pose_picture(stage: Stage, frame: KeypointFrame) -> tuple[np.ndarray, np.ndarray]:
    """(pose image, result), both RGB8 at the keypoint frame's size."""
    from ..pose.render import render_pose

    with timed("pose"):  # stage timings (bridge/util/metrics.py); a generator adds its pose image render
        pose = keypoints_to_pose(frame)
    generate = getattr(stage, "generate_from_pose", None)
    if generate is not None:
        result = generate(pose)
        return getattr(stage, "last_pose", None) if getattr(stage, "last_pose", None) is not None else result, result
    with timed("pose"):
        image = render_pose(pose, BUILTIN_POSE_STYLE, None)
    return image, run_stage(stage, image, "RGB8", 0, frame.frame_id)


@dataclass
class KeypointJob(FrameJob):
    frame: KeypointFrame | None = None
    target: KeypointTarget = field(default_factory=KeypointTarget)

    def run(self, stage: Stage) -> bytes:
        assert self.frame is not None
        try:
            try:
                pose, result = pose_picture(stage, self.frame)
            except ClientError:
                raise
            except Exception as exc:
                raise ClientError("model_failed", f"{stage.name}: {type(exc).__name__}: {exc}",
                                  self.frame_id) from exc
        except ClientError as exc:
            if self.safe is None or not self.safe.enabled or exc.code not in COVERED:
                raise
            from ..pose.render import render_pose

            # The keypoints' own pose image stands for "the input".
            pose = render_pose(keypoints_to_pose(self.frame), BUILTIN_POSE_STYLE, None)
            result = self.safe.substitute(pose, "RGB8", exc)
        else:
            if self.safe is not None:
                self.safe.remember(result, "RGB8")
        if self.target.channel is not None:
            return self._to_channel(self.target.channel, pose, result)
        assert self.target.path is not None
        with timed("publish"):
            bgr = np.ascontiguousarray(result[..., ::-1])
            write_image_atomic(self.target.path, bgr, "BGR8", self.frame_id, self.target.roots)
        self.tap = TapFrames(None, bgr, "BGR8", 0, pose)
        self.latency_ms = elapsed_ms(self.received_ns)
        h, w = bgr.shape[:2]
        return encode_message(protocol.FRAME_DONE, self.frame_id, str(self.target.path), w, h, self.latency_ms)

    def _to_channel(self, ch: Channel, pose: np.ndarray, result: np.ndarray) -> bytes:
        if _retired(ch):
            raise ClientError("shm_frame_missing", f"channel {ch.name!r} was closed or re-opened", self.frame_id)
        with timed("publish"):
            size = (ch.layout.width, ch.layout.height)
            if (result.shape[1], result.shape[0]) != size:  # the message's frame size differs from the channel's
                result = cv2.resize(result, size, interpolation=cv2.INTER_LINEAR)
            pixels = convert(result, "RGB8", ch.layout.format, flip_rows=ch.layout.origin == ORIGIN_BOTTOM_LEFT)
            pixels = np.ascontiguousarray(pixels)
            try:
                out_k, _ = ch.output.begin_write()
                # Written with pwrite from the picture itself (the daemon never maps channel files:
                # a client truncating its file is this frame's shm_bad_header, not a SIGBUS).
                ch.output.end_write(out_k, self.frame_id, pixels=pixels)
            except ShmError as exc:  # e.g. the client truncated its output file: this frame's error
                raise ClientError(exc.code, exc.message, self.frame_id) from None
        self.tap = TapFrames(None, pixels, ch.layout.format, ch.layout.origin, pose)
        self.latency_ms = elapsed_ms(self.received_ns)
        return encode_message(protocol.FRAME_READY, self.target.label or ch.name, self.frame_id, self.latency_ms)
