"""Pipeline statistics: counters, a bounded latency window and per-stage timings, safe across threads."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ..util import metrics

LATENCY_WINDOW = 1000  # frames kept for mean / p95
FPS_WINDOW_S = 5.0  # processed-frame rate is measured over this many seconds
MAX_FPS_SAMPLES = 20_000  # completion times kept: fps up to 4,000 is measurable over the window


@dataclass(frozen=True)
class StatsSnapshot:
    fps: float
    mean_latency_ms: float
    p95_latency_ms: float
    received: int
    processed: int
    dropped: int
    errors: int
    safe: int = 0  # frames answered with a safe picture instead of the model's


class PipelineStats:
    """Counts frames received, processed, dropped (overtaken) and failed, and keeps latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._done_times: deque[float] = deque(maxlen=MAX_FPS_SAMPLES)
        self._started = time.monotonic()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.safe = 0
        self.timings = metrics.StageTimings()  # per-stage latency (bridge/util/metrics.py)

    def frame_started(self, received_ns: int) -> None:
        """Worker thread, as it takes a frame: start collecting its stage timings, the mailbox
        wait (the frame's age) first. :meth:`count_processed` files them."""
        metrics.begin_frame((time.perf_counter_ns() - received_ns) / 1e6)

    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def count_safe(self) -> None:
        with self._lock:
            self.safe += 1

    def count_processed(self, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._latencies.append(latency_ms)
            self._done_times.append(time.monotonic())
        frame = metrics.end_frame()  # this worker thread's stage timings, if the frame was started
        if frame is not None:
            frame["total"] = latency_ms
            self.timings.add_frame(frame)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            lat = sorted(self._latencies)
            now = time.monotonic()
            recent = sum(1 for t in self._done_times if now - t <= FPS_WINDOW_S)
            # Until the bridge has run a whole window, divide by the time it has run.
            fps = recent / max(min(FPS_WINDOW_S, now - self._started), 1e-3)
            mean = sum(lat) / len(lat) if lat else 0.0
            p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else 0.0
            return StatsSnapshot(fps, mean, p95, self.received, self.processed, self.dropped, self.errors, self.safe)
