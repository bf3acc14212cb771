"""Frame jobs: one unit of work for the pipeline worker, per transport.

A job reads its frame, runs the stage, publishes the result and returns the encoded
OSC reply. It runs on the worker thread and raises :class:`ClientError` for anything
the client should hear about. Reading happens here, at processing time, so a job that
was overtaken in its mailbox never touches a file or a shared-memory slot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np

from .. import protocol
from ..config import SecurityConfig
from ..errors import ClientError
from ..formats.imageio import read_image, write_image_atomic
from ..formats.pixels import convert
from ..osc import encode_message
from ..shm import ORIGIN_BOTTOM_LEFT, ShmError
from ..stages import Stage
from ..util.frame_context import FrameContext
from ..util.metrics import record, timed
from .monitor import TapFrames
from .safe_output import COVERED, SafeOutput
from .shm_channels import Channel

ReplyFn = Callable[[bytes], None]


def run_stage(stage: Stage, image: np.ndarray, fmt: str, origin: int, frame_id: int,
              safe: SafeOutput | None = None) -> np.ndarray:
    """Run ``stage`` on ``image``, converting to and from the stage's ``input_format`` if it has one.

    Order-agnostic stages (no ``input_format``) get the client's array untouched. The
    result always has the input's shape, dtype and format. With an enabled ``safe`` context,
    a failure of the model (not of the request) gives the safe picture instead of raising.
    """
    try:
        with timed("stage"):  # the model call's share of the frame (bridge/util/metrics.py)
            result = _run_stage(stage, image, fmt, origin, frame_id)
    except ClientError as exc:
        if safe is None or not safe.enabled or exc.code not in COVERED:
            raise
        return safe.substitute(image, fmt, exc)
    if safe is not None:
        safe.remember(result, fmt)
    return result


def _run_stage(stage: Stage, image: np.ndarray, fmt: str, origin: int, frame_id: int) -> np.ndarray:
    wanted: str | None = getattr(stage, "input_format", None)
    flip = origin == ORIGIN_BOTTOM_LEFT and wanted is not None
    try:
        if wanted is None or (wanted == fmt and not flip):
            result = stage.process(image, fmt)
        else:
            result = convert(stage.process(convert(image, fmt, wanted, flip_rows=flip), wanted), wanted, fmt,
                             flip_rows=flip)
    except ClientError:
        raise
    except Exception as exc:
        raise ClientError("model_failed", f"{stage.name}: {type(exc).__name__}: {exc}", frame_id) from exc
    if result.shape != image.shape or result.dtype != image.dtype:
        raise ClientError("model_failed", f"{stage.name} returned {result.shape}/{result.dtype} for "
                          f"{image.shape}/{image.dtype}", frame_id)
    return result


class AbandonedFrame(Exception):
    """Raised in a stuck worker whose frame the watchdog re-assigned; never answered."""


def elapsed_ms(since_ns: int) -> float:
    return (time.perf_counter_ns() - since_ns) / 1e6


@dataclass
class FrameJob:
    """What every job carries: who asked, which frame, when it arrived, where to answer."""

    client: Hashable
    frame_id: int
    received_ns: int  # time.perf_counter_ns() when the request arrived
    reply: ReplyFn = field(repr=False)
    latency_ms: float = 0.0
    # A sender that is safe to call from the worker thread (UDP: a plain sendto on the
    # server's socket); it returns False when it could not send, and the loop sends instead.
    # Saves the hop through the event loop on every frame.
    reply_direct: Callable[[bytes], bool] | None = field(default=None, repr=False)
    # What run() just processed, for the monitor tap (bridge/daemon/monitor.py): read on the worker
    # thread right after run(), never kept by the job's consumer.
    tap: TapFrames | None = field(default=None, repr=False)
    # The client's safe-output policy (bridge/daemon/safe_output.py); None = failures are errors.
    safe: SafeOutput | None = field(default=None, repr=False)
    # The client's per-client settings that stages read through bridge/util/frame_context.py:
    # its camera picture is mirrored; it wants the pose image ("pose") instead of the person.
    mirror: bool = field(default=False, repr=False)
    view: str = field(default="person", repr=False)
    # The camera tracker's per-client settings (/people, /smoothing); None = the daemon's defaults.
    max_people: int | None = field(default=None, repr=False)
    smoothing: Any = field(default=None, repr=False)
    # Set by the stall watchdog when it hands this frame to a new worker: the stuck thread, if
    # it ever returns, must neither publish nor write (its slot or file now belongs to the retry).
    abandoned: bool = field(default=False, repr=False)
    # With several frames of a client in flight (bridge/daemon/reply_order.py): the previous frame's
    # "answered" event, which this frame waits for before it publishes, and its own.
    after: threading.Event | None = field(default=None, repr=False)
    answered: threading.Event | None = field(default=None, repr=False)
    advanced: bool = field(default=False, repr=False)  # left a pipelined stage's pose step (bridge/daemon/latest.py)

    def run(self, stage: Stage) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def context(self) -> FrameContext:
        """What the stage may know about this frame's client (tracking identity, mirror, view, the
        tracker's settings) and when the frame arrived."""
        return FrameContext(stream=self.client, mirror=self.mirror, view=self.view, frame_id=self.frame_id,
                            time_s=self.received_ns / 1e9, max_people=self.max_people, smoothing=self.smoothing)


@dataclass
class PathJob(FrameJob):
    """``/frame/path``: decode a file, run the stage, write the result atomically."""

    input_path: Path = Path()
    output_path: Path = Path()
    security: SecurityConfig = field(default_factory=SecurityConfig, repr=False)

    def run(self, stage: Stage) -> bytes:
        with timed("input"):
            # Opened from its root without following links (bridge/formats/safefs.py): the path was
            # checked when the message came, and may have been swapped for a link since.
            image, fmt = read_image(self.input_path, max_pixels=self.security.max_pixels,
                                    max_bytes=self.security.max_file_bytes, frame_id=self.frame_id,
                                    roots=self.security.allow_roots)
        result = run_stage(stage, image, fmt, 0, self.frame_id, self.safe)
        if self.abandoned:  # the stall watchdog answered this frame meanwhile
            raise AbandonedFrame()
        self.tap = TapFrames(image, result, fmt, 0)
        with timed("publish"):
            write_image_atomic(self.output_path, result, fmt, self.frame_id, self.security.allow_roots)
        self.latency_ms = elapsed_ms(self.received_ns)
        height, width = result.shape[:2]
        return encode_message(protocol.FRAME_DONE, self.frame_id, str(self.output_path), width, height,
                              self.latency_ms)


@dataclass
class ShmJob(FrameJob):
    """``/frame/shm``: process the slot holding ``frame_id``; publish to the output ring.

    The input slot is copied into the output slot being written and validated with the
    seqlock *before* the stage runs, so only the copy, not the whole model call, is exposed
    to the writer: a client that writes
    faster than the model (latest frame wins) laps the 3-slot ring within one model call,
    and processing the slot in place would then tear every frame it sends. A torn copy is
    answered with ``shm_torn`` and nothing is published (the output slot is closed invalid).
    """

    channel: Channel | None = None
    reply_name: str = ""  # the channel as the client named it (plain name or handle), echoed in /frame/ready
    # The output slot this job holds while it runs (the stall watchdog frees it, see release_output).
    _claim: tuple[Any, int] | None = field(default=None, init=False, repr=False)

    def release_output(self) -> None:
        """Free the output slot of a frame the stall watchdog abandoned: the stuck thread will not
        write it again, and without this every stall would keep one slot of the ring until the
        stage returned (after three, the channel answers only ``shm_busy``). Idempotent."""
        claim, self._claim = self._claim, None
        if claim is not None:
            claim[0].abandon_write(claim[1])

    def run(self, stage: Stage) -> bytes:
        assert self.channel is not None
        ch = self.channel
        if _retired(ch):
            raise self._gone()
        try:
            return self._run(stage, ch)
        except ShmError as exc:  # e.g. a client truncated its channel file: that frame's error
            raise ClientError(exc.code, exc.message, self.frame_id) from None
        except (ValueError, IndexError, BufferError):
            # The loop thread closed or re-opened the channel (another size) while this frame
            # waited or ran: its mappings are being torn down. That is the client's doing, not
            # a bridge failure, so it gets a frame error rather than "internal".
            if _retired(ch):
                raise self._gone() from None
            raise

    def _gone(self) -> ClientError:
        assert self.channel is not None
        return ClientError("shm_frame_missing", f"channel {self.channel.name!r} was closed or re-opened with "
                           f"another size while frame {self.frame_id} waited; its files are gone", self.frame_id)

    def _run(self, stage: Stage, ch: Channel) -> bytes:
        try:
            k, seq = ch.input.find_slot(self.frame_id)
        except ShmError as exc:
            raise ClientError(exc.code, exc.message, self.frame_id) from None
        # Stage the frame in the buffer the output slot hands out (the daemon's own memory: channel
        # files are never mapped here, bridge/shm.py): one copy in, and one pwrite out, from the
        # buffer for stages that return their input (passthrough), else from the result. The output
        # slot's seq stays odd meanwhile, so readers skip it.
        out_k, staged = ch.output.begin_write()
        self._claim = (ch.output, out_k)
        published = False
        out: np.ndarray = staged
        try:
            with timed("input"):
                ch.input.read_into(k, staged)  # by pread, not the mapping: a truncated file is no SIGBUS
                intact = ch.input.still_intact(k, seq)
            if not intact:
                raise ClientError("shm_torn", f"frame {self.frame_id} was overwritten while it was read "
                                  "(the client lapped the ring or died mid-write)", self.frame_id)
            readonly = staged.view()  # the stage contract: inputs are read-only (a view of its own,
            readonly.flags.writeable = False  # so the slot's shared view stays writable for others)
            result = run_stage(stage, readonly, ch.layout.format, ch.layout.origin, self.frame_id, self.safe)
            if self.abandoned:  # the stall watchdog answered this frame meanwhile: touch nothing
                raise AbandonedFrame()
            published_from = time.perf_counter_ns()
            if _retired(ch):  # closed or re-opened during the stage: publish nothing
                raise self._gone()
            # The monitor's input picture is the staged copy, never a client's file (for passthrough,
            # input and output are one). A result of the model's is written from where it is.
            out = staged if result is readonly else np.ascontiguousarray(result)
            self.tap = TapFrames(staged, out, ch.layout.format, ch.layout.origin)
            published = True
        finally:
            if not self.abandoned:
                self._claim = None
                ch.output.end_write(out_k, self.frame_id, publish=published,
                                    pixels=out if published and out is not staged else None)
            else:
                self.release_output()
        record("publish", elapsed_ms(published_from))
        self.latency_ms = elapsed_ms(self.received_ns)
        return encode_message(protocol.FRAME_READY, self.reply_name or ch.name, self.frame_id, self.latency_ms)


def _retired(ch: Channel) -> bool:
    """True once the registry retires the channel: it flags both files closed, then unmaps them
    (input first, so this must look at both while the loop thread is half-way through)."""
    try:
        return ch.input.closed_flag or ch.output.closed_flag
    except ValueError:  # a mapping is closed already
        return True


def error_packet(code: str, message: str, frame_id: int = protocol.NO_FRAME_ID) -> bytes:
    """``/pose2person/error i frame_id s code s message``; the message is cut to stay under oscP5's 1536 B."""
    return encode_message(protocol.ERROR, frame_id, code, message[:400])
