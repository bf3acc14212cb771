"""The monitor tap: a small, bounded, in-memory picture of what the pipeline is doing.

The worker thread calls :meth:`FrameTap.offer` once per processed frame (and
:meth:`FrameTap.error` per failed one); the loop thread calls :meth:`FrameTap.dropped` for
frames overtaken in their mailbox and :meth:`FrameTap.state` when the monitor page polls.
Nothing here blocks for long or grows without bound:

* thumbnails are taken at most ``THUMB_HZ`` times per second per client, by strided
  subsampling (a view plus one small copy: microseconds, no resampling filter), and are
  stored as small RGB8 arrays; JPEG encoding happens only when the page asks, on the loop
  thread, once per new thumbnail;
* per-second buckets keep ``HISTORY_S`` seconds of frames, latency, drops and errors;
* at most ``MAX_CLIENTS`` clients (least recently seen forgotten) and ``MAX_ERRORS`` errors;
* camera pictures are kept briefly (docs/SECURITY.md, privacy): a client's thumbnails (and
  their JPEGs) are dropped ``THUMB_TTL_S`` after they were taken, at the next offer, read or
  :meth:`FrameTap.prune` (the daemon calls it every few seconds), so a person who left the
  camera is not shown, or held in memory, after that.

A job exposes what it processed as ``job.tap`` (a :class:`TapFrames`, set by ``run()``
on the worker thread and read right after it). The pose image is optional: a stage that
makes one (the generator stage, later) puts it in ``TapFrames.pose`` as (H, W, 3) uint8 RGB.
numpy only (cv2 lazily, for JPEG); no torch.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np

from ..formats.pixels import convert

log = logging.getLogger(__name__)

THUMB_HZ = 2.0  # thumbnails per second per client, at most
THUMB_MAX_SIDE = 160  # pixels: the longer side of a thumbnail is at most this
HISTORY_S = 300  # seconds of per-second history kept (the plots show the last 5 minutes)
MAX_CLIENTS = 32
MAX_ERRORS = 50
KINDS = ("input", "pose", "output")
THUMB_TTL_S = 10.0  # a thumbnail older than this is dropped (privacy: pictures of the audience)


@dataclass(frozen=True)
class TapFrames:
    """The frames one job just processed. Arrays may be views of shared memory: the tap copies
    what it keeps before returning. ``format``/``origin`` describe ``input`` and ``output``."""

    input: np.ndarray | None
    output: np.ndarray | None
    format: str
    origin: int = 0
    pose: np.ndarray | None = None  # (H, W, 3) uint8 RGB, top-left origin


def thumbnail(image: np.ndarray, fmt: str, origin: int = 0, max_side: int = THUMB_MAX_SIDE) -> np.ndarray:
    """A small top-down RGB8 copy of ``image`` by strided subsampling (cheap: no filtering)."""
    h, w = image.shape[:2]
    step = max(1, -(-max(h, w) // max_side))  # ceil division
    small = image[::step, ::step]
    return convert(np.ascontiguousarray(small), fmt, "RGB8", flip_rows=origin == 1)


@dataclass
class _Bucket:
    second: int
    frames: int = 0
    latency_sum: float = 0.0
    drops: int = 0
    errors: int = 0


class _Client:
    __slots__ = ("label", "frames", "drops", "errors", "latency_ms", "times", "thumb_at", "thumbs", "version",
                 "last_error", "size", "format")

    def __init__(self, label: str) -> None:
        self.label = label
        self.frames = 0
        self.drops = 0
        self.errors = 0
        self.latency_ms = 0.0
        self.times: deque[float] = deque(maxlen=256)  # completion times, for fps
        self.thumb_at = 0.0
        self.thumbs: dict[str, np.ndarray] = {}
        self.version = 0
        self.last_error = ""
        self.size = (0, 0)
        self.format = ""


def client_label(key: Hashable) -> str:
    """A readable name for a mailbox key: ``udp 127.0.0.1:5000``, ``ws 127.0.0.1:4242 #3``,
    ``udp 127.0.0.1:5000 shm cam1``."""
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str) and isinstance(key[0], tuple):
        return f"{client_label(key[0])} shm {key[1]}"
    if isinstance(key, tuple) and len(key) >= 3:
        text = f"{key[0]} {key[1]}:{key[2]}"
        return text + "".join(f" #{k}" for k in key[3:])
    return str(key)


class FrameTap:
    """Thread-safe; every method is cheap and swallows its own failures (the tap must never
    cost a frame)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: OrderedDict[Hashable, _Client] = OrderedDict()
        self._history: deque[_Bucket] = deque(maxlen=HISTORY_S)
        self._errors: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self._jpeg_cache: dict[tuple[Hashable, str], tuple[int, str]] = {}
        self._started = time.time()

    # -- feeding (worker and loop threads) -------------------------------------------------
    def offer(self, job: Any, stage: Any = None) -> None:
        """One processed frame: ``job.client``, ``job.latency_ms`` and optional ``job.tap``.

        Without a pose image in the tap, a stage's ``last_pose`` (the generator stage keeps the
        pose image of its latest frame there) is used."""
        try:
            tap = getattr(job, "tap", None)
            pose = getattr(stage, "last_pose", None)
            if tap is not None and tap.pose is None and isinstance(pose, np.ndarray) and pose.ndim == 3 \
                    and pose.shape[2] == 3 and pose.dtype == np.uint8:
                tap = TapFrames(tap.input, tap.output, tap.format, tap.origin, pose)
            self._offer(job.client, float(job.latency_ms), tap)
        except Exception:  # never let the monitor cost a frame
            log.debug("monitor tap failed", exc_info=True)

    def _offer(self, key: Hashable, latency_ms: float, tap: TapFrames | None) -> None:
        now = time.monotonic()
        with self._lock:
            client = self._client(key)
            client.frames += 1
            client.latency_ms = latency_ms
            client.times.append(now)
            bucket = self._bucket()
            bucket.frames += 1
            bucket.latency_sum += latency_ms
            due = tap is not None and now - client.thumb_at >= 1.0 / THUMB_HZ
            if due:
                client.thumb_at = now
        if not due:
            return
        self.prune(now)
        assert tap is not None
        thumbs: dict[str, np.ndarray] = {}
        for kind, image in (("input", tap.input), ("output", tap.output)):
            if image is not None:
                thumbs[kind] = thumbnail(image, tap.format, tap.origin)
        if tap.pose is not None:
            thumbs["pose"] = thumbnail(tap.pose, "RGB8", 0)
        size = (int(tap.output.shape[1]), int(tap.output.shape[0])) if tap.output is not None else (0, 0)
        with self._lock:
            client = self._client(key)
            client.thumbs = thumbs
            client.version += 1
            client.size = size
            client.format = tap.format

    def error(self, key: Hashable, code: str, message: str, frame_id: int = -1) -> None:
        """A frame failed with the wire error ``code``."""
        try:
            with self._lock:
                client = self._client(key)
                client.errors += 1
                client.last_error = code
                self._bucket().errors += 1
                self._errors.append({"time": time.time(), "client": client.label, "code": code,
                                     "frame_id": frame_id, "message": message[:200]})
        except Exception:
            log.debug("monitor tap failed", exc_info=True)

    def dropped(self, key: Hashable) -> None:
        """A frame of ``key`` was overtaken in its mailbox (latest frame wins)."""
        try:
            with self._lock:
                self._client(key).drops += 1
                self._bucket().drops += 1
        except Exception:
            log.debug("monitor tap failed", exc_info=True)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._clients.pop(key, None)

    def prune(self, now: float | None = None) -> int:
        """Drop thumbnails (and their JPEGs) taken more than ``THUMB_TTL_S`` ago; returns how
        many clients lost theirs. Cheap: at most ``MAX_CLIENTS`` checks."""
        now = time.monotonic() if now is None else now
        dropped = 0
        with self._lock:
            for key, client in self._clients.items():
                if client.thumbs and now - client.thumb_at > THUMB_TTL_S:
                    client.thumbs = {}
                    client.version += 1
                    dropped += 1
                    for kind in KINDS:
                        self._jpeg_cache.pop((key, kind), None)
        return dropped

    def _client(self, key: Hashable) -> _Client:
        client = self._clients.pop(key, None)
        if client is None:
            client = _Client(client_label(key))
        self._clients[key] = client
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return client

    def _bucket(self) -> _Bucket:
        second = int(time.time())
        if not self._history or self._history[-1].second != second:
            self._history.append(_Bucket(second))
        return self._history[-1]

    # -- reading (loop thread) -------------------------------------------------------------
    def state(self, *, history_s: int = HISTORY_S) -> dict[str, Any]:
        """JSON-ready snapshot: clients (with thumbnail data URLs), per-second history, errors."""
        now_mono = time.monotonic()
        now = int(time.time())
        self.prune(now_mono)
        with self._lock:
            clients = [(key, c.label, c.frames, c.drops, c.errors, c.latency_ms,
                        sum(1 for t in c.times if now_mono - t <= 2.0) / 2.0, dict(c.thumbs), c.version,
                        c.last_error, c.size, c.format)
                       for key, c in reversed(self._clients.items())]
            buckets = {b.second: b for b in self._history}
            errors = list(self._errors)
        history = []
        for second in range(now - history_s, now):  # complete seconds only: the current one is partial
            b = buckets.get(second)
            history.append({
                "t": second,
                "fps": b.frames if b else 0,
                "latency_ms": round(b.latency_sum / b.frames, 3) if b and b.frames else None,
                "drops": b.drops if b else 0,
                "errors": b.errors if b else 0,
            })
        out_clients = []
        live_keys = set()
        for key, label, frames, drops, errs, latency, fps, thumbs, version, last_error, size, fmt in clients:
            images: dict[str, str | None] = {}
            for kind in KINDS:
                image = thumbs.get(kind)
                images[kind] = None if image is None else self._jpeg(key, kind, version, image)
                live_keys.add((key, kind))
            out_clients.append({
                "client": label, "frames": frames, "dropped": drops, "errors": errs,
                "latency_ms": round(latency, 3), "fps": fps, "thumbs": images, "version": version,
                "last_error": last_error, "width": size[0], "height": size[1], "format": fmt,
            })
        for stale in set(self._jpeg_cache) - live_keys:
            del self._jpeg_cache[stale]
        return {"clients": out_clients, "history": history, "errors": errors[::-1]}

    def _jpeg(self, key: Hashable, kind: str, version: int, image: np.ndarray) -> str | None:
        cached = self._jpeg_cache.get((key, kind))
        if cached is not None and cached[0] == version:
            return cached[1]
        import cv2  # lazily: the tap itself is numpy only

        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        url = "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")
        self._jpeg_cache[(key, kind)] = (version, url)
        return url
