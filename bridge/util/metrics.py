"""Health and metrics: per-stage latency, process figures and the Prometheus text format.

Three parts, all bounded and stdlib-only (no torch import; GPU figures are read only when torch
is already loaded and CUDA is initialised):

* **Stage timings.** The worker thread opens a frame with :func:`begin_frame` (the pipeline
  stats do it, with the frame's mailbox wait as ``queue``); code on that thread adds the time it
  spends with ``with timed("generator"): ...`` or :func:`record`. Timings go to a thread-local
  dict (a few dict operations per frame: no lock, no allocation beyond the dict), and
  :meth:`StageTimings.add_frame` files them under one lock when the frame is processed. Outside
  a frame (a Ray replica, a test, the loader thread's warm-up) the hooks do nothing.
* **Process figures** (:func:`process_figures`): resident memory, open descriptors, threads,
  and CUDA memory when CUDA is in use, read from ``/proc`` on request.
* **Prometheus** (:func:`prometheus_text`): text exposition format 0.0.4; counters end in
  ``_total``, latency is a cumulative histogram per stage (``le`` in seconds), the rest are gauges.

Stage names (:data:`STAGES`; a frame records those that apply to it):

* ``queue``: arrival of the request to the worker taking it from the mailbox (frame age at
  processing);
* ``input``: reading the frame (shm slot copy and seqlock check, image file decode);
* ``pose``: keypoints to body parts and the pose image; DensePose on camera frames;
* ``generator``: the generator network with its framing and mapping back
  (:meth:`bridge.generator.stage.GeneratorStage.generate`);
* ``stage``: the whole model call for a pixel frame (``stage.process``, pose and generator included);
* ``publish``: putting the result where the client reads it (output slot, atomic file write);
* ``total``: arrival to publication, the ``latency_ms`` of the reply.
"""

from __future__ import annotations

import bisect
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

STAGES: tuple[str, ...] = ("queue", "input", "pose", "generator", "stage", "publish", "total")
WINDOW = 1024  # recent samples kept per stage for the percentiles
MAX_STAGES = 16  # stage names beyond this are ignored (bounded memory whatever the hooks say)
#: Histogram bucket upper bounds, seconds (Prometheus ``le``); +Inf is implicit.
BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15,
                                0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKETS_MS = tuple(b * 1000.0 for b in BUCKETS_S)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_local = threading.local()


# -- hooks (worker thread) ----------------------------------------------------------------------
def begin_frame(queue_ms: float | None = None) -> dict[str, float]:
    """Start collecting this thread's stage timings for one frame (replacing any unfinished one)."""
    frame: dict[str, float] = {} if queue_ms is None else {"queue": queue_ms}
    _local.frame = frame
    return frame


def end_frame() -> dict[str, float] | None:
    """The timings collected since :func:`begin_frame` (None if none was begun); stops collecting."""
    frame: dict[str, float] | None = getattr(_local, "frame", None)
    _local.frame = None
    return frame


def record(stage: str, ms: float) -> None:
    """Add ``ms`` to ``stage`` of the current frame on this thread; a no-op outside a frame."""
    frame: dict[str, float] | None = getattr(_local, "frame", None)
    if frame is not None:
        frame[stage] = frame.get(stage, 0.0) + ms


class timed:  # noqa: N801 - used like a function: ``with timed("pose"):``
    """Context manager that records the time spent inside it under ``stage`` (see :func:`record`).

    A plain class rather than ``@contextmanager``: about a microsecond per use."""

    __slots__ = ("stage", "_t0")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._t0 = 0

    def __enter__(self) -> "timed":
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        record(self.stage, (time.perf_counter_ns() - self._t0) / 1e6)


# -- aggregation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageFigures:
    """Percentiles over the last :data:`WINDOW` frames of one stage, ms; ``count`` is all frames ever."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    window: int
    count: int


@dataclass(frozen=True)
class Histogram:
    """Cumulative since start: ``buckets[i]`` frames took at most ``BUCKETS_S[i]``; then the sum, count."""

    buckets: tuple[int, ...]
    sum_s: float
    count: int


class _Stage:
    __slots__ = ("recent", "bins", "sum_ms", "count")

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.bins = [0] * (len(_BUCKETS_MS) + 1)  # non-cumulative; the last one is +Inf
        self.sum_ms = 0.0
        self.count = 0

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.bins[bisect.bisect_left(_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms
        self.count += 1


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank style percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


class StageTimings:
    """Thread-safe per-stage latency: a bounded window for percentiles and a histogram for Prometheus."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, _Stage] = {name: _Stage() for name in STAGES}

    def add(self, stage: str, ms: float) -> None:
        self.add_frame({stage: ms})

    def add_frame(self, timings: Mapping[str, float]) -> None:
        """File one frame's stage timings (ms) under one lock acquisition."""
        with self._lock:
            for name, ms in timings.items():
                stat = self._stages.get(name)
                if stat is None:
                    if len(self._stages) >= MAX_STAGES:
                        continue
                    stat = self._stages[name] = _Stage()
                stat.add(float(ms))

    def figures(self) -> dict[str, StageFigures]:
        """Stages with at least one frame, in :data:`STAGES` order (then any others)."""
        with self._lock:
            copies = [(name, list(s.recent), s.count) for name, s in self._stages.items() if s.count]
        out: dict[str, StageFigures] = {}
        for name, recent, count in copies:
            recent.sort()
            out[name] = StageFigures(percentile(recent, 0.50), percentile(recent, 0.95), percentile(recent, 0.99),
                                     sum(recent) / len(recent), len(recent), count)
        return out

    def histograms(self) -> dict[str, Histogram]:
        with self._lock:
            copies = [(name, list(s.bins), s.sum_ms, s.count) for name, s in self._stages.items() if s.count]
        out: dict[str, Histogram] = {}
        for name, bins, sum_ms, count in copies:
            cumulative, running = [], 0
            for n in bins[:-1]:
                running += n
                cumulative.append(running)
            out[name] = Histogram(tuple(cumulative), sum_ms / 1000.0, count)
        return out


# -- process figures --------------------------------------------------------------------------------
def _proc_status() -> dict[str, str]:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _open_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - (1 if folder == "/dev/fd" else 0)  # /dev/fd lists its own fd
        except OSError:
            continue
    return -1


def gpu_figures() -> list[dict[str, Any]]:
    """CUDA memory per device, only when torch is already imported and CUDA initialised (never
    imports torch or initialises CUDA itself: a CPU-only daemon pays nothing)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        cuda = torch.cuda
        if not cuda.is_available() or not cuda.is_initialized():
            return []
        return [{"device": i, "name": cuda.get_device_name(i), "allocated_bytes": int(cuda.memory_allocated(i)),
                 "reserved_bytes": int(cuda.memory_reserved(i)),
                 "max_allocated_bytes": int(cuda.max_memory_allocated(i))} for i in range(cuda.device_count())]
    except Exception:  # a broken driver must not break /health
        return []


def process_figures() -> dict[str, Any]:
    """RSS (bytes), open file descriptors, threads (OS threads, and Python's), CUDA memory.

    Linux reads ``/proc/self``; elsewhere RSS falls back to the peak (``ru_maxrss``) and threads to
    Python's count. -1 means "not available"."""
    status = _proc_status()
    rss = -1
    if "VmRSS" in status:
        rss = int(status["VmRSS"].split()[0]) * 1024
    else:
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rss = int(peak if sys.platform == "darwin" else peak * 1024)
        except (ImportError, OSError):
            pass
    threads = int(status["Threads"]) if status.get("Threads", "").isdigit() else threading.active_count()
    return {"rss_bytes": rss, "open_fds": _open_fds(), "threads": threads,
            "python_threads": threading.active_count(), "gpu": gpu_figures()}


# -- Prometheus text format 0.0.4 ---------------------------------------------------------------------
def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class PromWriter:
    """Builds one exposition: every family gets ``# HELP`` and ``# TYPE`` once, before its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, str], float]] | float) -> None:
        """``samples``: a plain number (one sample without labels) or (labels, value) pairs.
        Counter families are named with ``_total``, as the OpenMetrics convention wants."""
        assert name not in self._families, name
        assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), kind
        self._families.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")
        if isinstance(samples, (int, float)):
            samples = [({}, float(samples))]
        for labels, value in samples:
            self._lines.append(f"{name}{self._labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, series: Mapping[str, Histogram], label: str) -> None:
        """One histogram family with a ``label`` per series: ``_bucket{le=...}``, ``_sum``, ``_count``."""
        assert name not in self._families, name
        self._families.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} histogram")
        for key, h in series.items():
            for bound, n in zip(BUCKETS_S, h.buckets):
                self._lines.append(f"{name}_bucket{self._labels({label: key, 'le': repr(bound)})} {n}")
            self._lines.append(f"{name}_bucket{self._labels({label: key, 'le': '+Inf'})} {h.count}")
            self._lines.append(f"{name}_sum{self._labels({label: key})} {_number(h.sum_s)}")
            self._lines.append(f"{name}_count{self._labels({label: key})} {h.count}")

    @staticmethod
    def _labels(labels: Mapping[str, str]) -> str:
        if not labels:
            return ""
        return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items()) + "}"

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def prometheus_text(health: Mapping[str, Any], histograms: Mapping[str, Histogram]) -> str:
    """The ``/metrics`` page from the ``/health`` dict (:meth:`bridge.server.Bridge.health`) and the
    stage histograms. Names carry units (``_seconds``, ``_bytes``); counters end in ``_total``."""
    w = PromWriter()
    w.family("pose2person_up", "gauge", "1 while the bridge serves, 0 while it stops.",
             1.0 if health.get("status") == "ok" else 0.0)
    w.family("pose2person_info", "gauge", "Version and active model (always 1).",
             [({"version": str(health.get("version", "")), "model": str(health.get("model", "")),
                "engine": str((health.get("engine") or {}).get("kind", ""))}, 1.0)])
    w.family("pose2person_uptime_seconds", "gauge", "Seconds since the bridge started.",
             float(health.get("uptime_s", 0.0)))
    for key, help_text in (("received", "Frames received (every transport)."),
                           ("processed", "Frames processed and published."),
                           ("dropped", "Frames overtaken in their mailbox by a newer frame (latest frame wins)."),
                           ("errors", "Frames answered with an error."),
                           ("malformed_packets", "OSC packets that could not be decoded.")):
        name = f"pose2person_{key}_total" if key == "malformed_packets" else f"pose2person_frames_{key}_total"
        w.family(name, "counter", help_text, float(health.get(key, 0)))
    for key, help_text in (("safe_frames", "Frames answered with a safe picture instead of the model's."),
                           ("model_restarts", "Stalled models restarted by the watchdog."),
                           ("rate_limited_packets", "OSC packets dropped by --rate-limit.")):
        w.family(f"pose2person_{key}_total", "counter", help_text, float(health.get(key, 0)))
    w.family("pose2person_fps", "gauge", "Frames processed per second over the last 5 s.", float(health.get("fps", 0.0)))
    stages = health.get("stages") or {}
    for q in ("p50", "p95", "p99"):
        w.family(f"pose2person_stage_latency_{q}_seconds", "gauge",
                 f"{q} of each stage's time over the last {WINDOW} frames.",
                 [({"stage": name}, float(fig[f"{q}_ms"]) / 1000.0) for name, fig in stages.items()])
    w.histogram("pose2person_stage_latency_seconds", "Time per frame spent in each stage since start "
                "(queue = mailbox wait, total = arrival to publication).", histograms, "stage")
    queue = health.get("queue") or {}
    w.family("pose2person_queue_frames", "gauge", "Frames waiting in mailboxes now (at most one per client).",
             float(queue.get("pending", 0)))
    w.family("pose2person_queue_oldest_age_seconds", "gauge", "Age of the oldest waiting frame now.",
             float(queue.get("oldest_ms", 0.0)) / 1000.0)
    w.family("pose2person_shm_channels", "gauge", "Open shared-memory channels.",
             float(len(health.get("shm_channels") or [])))
    recorder = health.get("recorder") or {}
    if recorder:
        w.family("pose2person_recordings", "gauge", "Recordings in progress.", float(recorder.get("active", 0)))
        w.family("pose2person_recorded_entries_total", "counter", "Frames and keypoint messages recorded.",
                 float(recorder.get("entries", 0)))
        w.family("pose2person_record_dropped_total", "counter",
                 "Entries the recorder could not keep up with (not written).", float(recorder.get("dropped", 0)))
    process = health.get("process") or {}
    w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
             float(process.get("rss_bytes", -1)))
    w.family("process_open_fds", "gauge", "Number of open file descriptors.", float(process.get("open_fds", -1)))
    w.family("process_threads", "gauge", "OS threads of the process.", float(process.get("threads", -1)))
    gpus = process.get("gpu") or []
    if gpus:
        w.family("pose2person_gpu_memory_allocated_bytes", "gauge", "CUDA memory held by tensors.",
                 [({"device": str(g["device"])}, float(g["allocated_bytes"])) for g in gpus])
        w.family("pose2person_gpu_memory_reserved_bytes", "gauge", "CUDA memory reserved by the caching allocator.",
                 [({"device": str(g["device"])}, float(g["reserved_bytes"])) for g in gpus])
    return w.text()


MAX_QUEUE_AGES = 32  # waiting frames listed by age in /health (the count covers all of them)


def health_figures(pipeline: Any, recorder: Any = None) -> dict[str, Any]:
    """The metrics part of ``/health``: ``uptime_s``, ``stages`` (per-stage p50/p95/p99 ms over the
    last frames), ``queue`` (waiting frames and their ages), ``process`` (:func:`process_figures`)
    and, with a recorder, ``recorder``. ``pipeline`` is a :class:`bridge.daemon.pipeline.Pipeline`."""
    ages = sorted(pipeline.queued_ages_ms(), reverse=True)
    out: dict[str, Any] = {
        "uptime_s": round(pipeline.stats.uptime_s, 3),
        "stages": stage_dict(pipeline.stats.timings.figures()),
        "queue": {"pending": len(ages), "oldest_ms": round(ages[0], 3) if ages else 0.0,
                  "ages_ms": [round(a, 3) for a in ages[:MAX_QUEUE_AGES]]},
        "process": process_figures(),
    }
    if recorder is not None:
        out["recorder"] = recorder.figures()
    return out


def stage_dict(figures: Mapping[str, StageFigures]) -> dict[str, dict[str, float | int]]:
    """JSON-ready stage figures (ms rounded to µs)."""
    return {name: {"p50_ms": round(f.p50_ms, 3), "p95_ms": round(f.p95_ms, 3), "p99_ms": round(f.p99_ms, 3),
                   "mean_ms": round(f.mean_ms, 3), "window": f.window, "count": f.count}
            for name, f in figures.items()}
