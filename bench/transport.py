#!/usr/bin/env python
"""Per-frame round trip of the ``passthrough`` model over each transport, against a real daemon.

    .venv/bin/python bench/transport.py [--sizes 256x256,640x480,1280x720,1920x1080] [--frames N] [--quick]

For every size (BGRA8 frames) it measures, in interleaved rounds:

* ``memcpy``  -- ``np.copyto`` of the frame into a preallocated array: the floor (hot: the same
  destination each time; a cold variant, destinations rotated through > 64 MiB, for reference).
* ``shm``     -- :meth:`BridgeClient.process_shm`: copy into the input ring, send ``/frame/shm``,
  wait for ``/frame/ready``, copy the result out of the output ring.
* ``path``    -- encode the frame (BMP 32-bit by default: no compression, lossless, keeps alpha)
  into the daemon's allow-root on tmpfs (/dev/shm), :meth:`BridgeClient.process_path`, read the
  result file back and decode it.
* ``http``    -- a RunwayML-style baseline: an aiohttp server in its own process answering
  ``POST /query`` with JSON ``{"image": "data:image/jpeg;base64,..."}``; it decodes, passes the
  pixels through and re-encodes base64 JPEG q95. The client (http.client, keep-alive) converts
  BGRA->BGR, encodes JPEG q95 + base64 + JSON, and decodes the reply back to BGRA.

The daemon (``python -m bridge serve``) and the HTTP server are subprocesses started here and
stopped in ``finally``. Results: a markdown table on stdout (median / p95 ms per frame), the
issue's targets at 1280x720, breakdowns of the shm and path round trips (with page faults per
frame), and machine info, including how much CPU other processes used meanwhile (a parallel
test run on a small machine skews everything). Progress goes to stderr. ``--json FILE`` also
writes every number. docs/BENCHMARKS.md explains the method and discusses results.
"""

from __future__ import annotations

import argparse
import base64
import gc
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge.client import BridgeClient  # noqa: E402
from bridge.daemon.proc import DaemonProcess  # noqa: E402

DEFAULT_SIZES = "256x256,640x480,1280x720,1920x1080"
JPEG_QUALITY = 95
TARGET_SIZE = (1280, 720)
TARGET_FACTOR, TARGET_SLACK_MS, TARGET_SPEEDUP = 2.0, 0.3, 20.0


# -- small helpers ------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)\s*", part)
        if not m:
            raise SystemExit(f"bad size {part!r}; use WIDTHxHEIGHT, e.g. 1280x720")
        sizes.append((int(m.group(1)), int(m.group(2))))
    return sizes


def default_frames(width: int, height: int) -> int:
    px = width * height
    if px <= 256 * 256:
        return 600
    if px <= 640 * 480:
        return 400
    if px <= 1280 * 720:
        return 300
    return 150


@dataclass
class Stats:
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.samples_ms)) if self.samples_ms else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples_ms, 95)) if self.samples_ms else float("nan")

    def cell(self) -> str:
        return f"{self.median:.3f} / {self.p95:.3f}"

    def as_dict(self) -> dict[str, float | int]:
        return {"median_ms": round(self.median, 4), "p95_ms": round(self.p95, 4), "n": len(self.samples_ms)}


def timed(fn: Callable[[int], object], frames: int, warmup: int) -> Stats:
    """Call fn(i) warmup + frames times; time each of the last ``frames`` calls (GC off meanwhile)."""
    for i in range(warmup):
        fn(i)
    samples = []
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup, warmup + frames):
            t0 = time.perf_counter_ns()
            fn(i)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        gc.enable()
    return Stats(samples)


def make_frame(width: int, height: int) -> np.ndarray:
    """A deterministic BGRA8 test image: gradients, a few shapes, mild noise (camera-like, so the
    JPEG baseline is neither flattered by a flat image nor punished by pure noise)."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 4), np.uint8)
    img[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = ((xx + yy) // 4 % 256).astype(np.uint8)
    img[..., 3] = 255
    bgr = np.ascontiguousarray(img[..., :3])
    for k in range(6):
        cx, cy = width * (k + 1) // 7, height * ((k * 3) % 5 + 1) // 6
        cv2.circle(bgr, (cx, cy), max(4, min(width, height) // 8), (40 * k % 256, 255 - 30 * k, 90 + 20 * k), -1)
    cv2.putText(bgr, "pose2person", (width // 10, height // 2), cv2.FONT_HERSHEY_SIMPLEX,
                max(0.5, width / 400), (255, 255, 255), max(1, width // 300))
    rng = np.random.default_rng(width * 100003 + height)
    noise = rng.integers(-6, 7, size=bgr.shape, dtype=np.int16)
    img[..., :3] = np.clip(bgr.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    extra: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor" and value != "0":
                break  # the first CPU describes them all
            if key == "model name":
                cpu = value
            elif key in ("cpu family", "model", "cache size") and key not in extra:
                extra[key] = value
    except OSError:
        pass
    if extra:
        cpu += " (" + ", ".join(f"{k} {v}" for k, v in extra.items()) + ")"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    shm_fs = "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[1] == "/dev/shm":
                shm_fs = parts[2]
    except OSError:
        pass
    import aiohttp

    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "aiohttp": aiohttp.__version__,
        "/dev/shm": shm_fs,
    }


class CpuWatch:
    """How busy the machine was with *other* processes during the run (they skew the numbers).

    Reads /proc/stat (all CPUs) and /proc/<pid>/stat of this process, the daemon and the HTTP
    server; the difference is everyone else, as an average number of busy cores.
    """

    def __init__(self) -> None:
        self.pids: list[int] = [os.getpid()]
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: tuple[float, int, int] | None = None
        self._own_seen: dict[int, int] = {}

    @staticmethod
    def _busy_total() -> int:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return 0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]) - idle

    def _own(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                self._own_seen[pid] = int(parts[11]) + int(parts[12])  # utime + stime of all threads
            except (OSError, IndexError, ValueError):
                pass  # exited: keep its last reading
            total += self._own_seen.get(pid, 0)
        return total

    def start(self) -> None:
        self._start = (time.monotonic(), self._busy_total(), self._own())

    def add(self, pid: int) -> None:
        self.pids.append(pid)
        self._own()

    def others_busy_cores(self) -> float:
        """Average cores used by other processes since start()."""
        if self._start is None:
            return float("nan")
        t0, busy0, own0 = self._start
        wall = time.monotonic() - t0
        others = (self._busy_total() - busy0) - (self._own() - own0)
        return max(0.0, others / self.hz / wall) if wall > 0 else float("nan")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# -- the daemon ---------------------------------------------------------------------------
class Daemon(DaemonProcess):
    """``python -m bridge serve`` on a free port, allow-root and shm dir inside ``base``."""

    def __init__(self, base: Path, src: Path = REPO) -> None:
        self.root = base / "root"
        self.shm_dir = base / "shm"
        self.root.mkdir()
        self.shm_dir.mkdir()
        super().__init__(["--allow-root", str(self.root), "--model", "passthrough"], shm_dir=self.shm_dir, start_timeout=30.0, src=src)


# -- the RunwayML-style HTTP baseline -------------------------------------------------------
def serve_http() -> None:
    """Subprocess mode: the baseline server. Prints ``PORT <n>`` and serves until stdin closes."""
    import asyncio

    from aiohttp import web

    async def query(request: web.Request) -> web.Response:
        payload = await request.json()
        uri = payload["image"]
        data = base64.b64decode(uri.split(",", 1)[1])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return web.json_response({"error": "could not decode image"}, status=400)
        result = image  # passthrough
        ok, enc = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return web.json_response({"error": "could not encode image"}, status=500)
        return web.json_response({"image": "data:image/jpeg;base64," + base64.b64encode(enc).decode("ascii")})

    async def main() -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/query", query)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        print(f"PORT {sock.getsockname()[1]}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # parent closes stdin (or dies) -> exit
        await runner.cleanup()

    asyncio.run(main())


class HttpBaseline:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-http"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"PORT (\d+)\s*", line)
        if not m:
            self.stop()
            raise RuntimeError(f"HTTP baseline did not start (got {line!r})")
        self.port = int(m.group(1))
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def query(self, frame: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        body = json.dumps({"image": "data:image/jpeg;base64," + base64.b64encode(enc).decode("ascii")}).encode()
        # bytes body: http.client sends headers and body in one send() (no Nagle/delayed-ACK stall)
        self.conn.request("POST", "/query", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP baseline answered {resp.status}: {data[:200]!r}")
        uri = json.loads(data)["image"]
        out = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(out, cv2.COLOR_BGR2BGRA)

    def stop(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


# -- the cells ----------------------------------------------------------------------------
def minor_faults(pid: int | None = None) -> int:
    """Minor page faults so far of ``pid`` (default: this process)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


class Faults:
    """Accumulates minor page faults of one process over the timed parts of a cell."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.total = 0
        self.frames = 0
        self._start = 0

    def __enter__(self) -> "Faults":
        self._start = minor_faults(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += minor_faults(self.pid) - self._start

    def per_frame(self) -> float:
        return self.total / self.frames if self.frames else float("nan")


@dataclass
class SizeResult:
    width: int
    height: int
    frames: int
    rounds: int
    memcpy: Stats | None = None
    memcpy_cold: Stats | None = None
    shm: Stats | None = None
    shm_zc: Stats | None = None
    path: Stats | None = None
    http: Stats | None = None
    shm_daemon_ms: Stats | None = None
    path_daemon_ms: Stats | None = None
    breakdown: dict[str, Stats] = field(default_factory=dict)
    path_breakdown: dict[str, Stats] = field(default_factory=dict)
    faults: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


class FrameIds:
    def __init__(self) -> None:
        self.next = 1

    def __call__(self) -> int:
        self.next += 1
        return self.next


def merge(into: Stats | None, more: Stats) -> Stats:
    return more if into is None else Stats(into.samples_ms + more.samples_ms)


class MemcpyCell:
    """``np.copyto`` into a preallocated array: hot (the same destination every time, cache-resident
    up to ~L3 size) and, for reference, cold (destinations rotated through > 64 MiB)."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.dst = np.empty_like(frame)
        count = max(2, -(-64 * 1024 * 1024 // frame.nbytes))
        self.cold = [np.zeros_like(frame) for _ in range(count)]  # zeros: pages touched up front

    def run(self, res: SizeResult, frames: int, warmup: int) -> None:
        res.memcpy = merge(res.memcpy, timed(lambda i: np.copyto(self.dst, self.frame), frames, warmup))
        cold = self.cold
        res.memcpy_cold = merge(res.memcpy_cold,
                                timed(lambda i: np.copyto(cold[i % len(cold)], self.frame), frames, warmup))

    def close(self) -> None:
        self.cold = []


class ShmCell:
    """:meth:`BridgeClient.process_shm` round trips on one channel of the frame's size."""

    def __init__(self, client: BridgeClient, daemon: Daemon, res: SizeResult, frame: np.ndarray,
                 ids: FrameIds) -> None:
        self.client, self.res, self.frame, self.ids = client, res, frame, ids
        self.session = client.open_shm(f"bench{res.width}x{res.height}", res.width, res.height, "BGRA8")
        self.daemon_faults = Faults(daemon.proc.pid)
        self.client_faults = Faults()
        out, _ = client.process_shm(self.session, frame, ids())
        if not np.array_equal(out, frame):
            res.notes.append("shm: result differs from the input!")

    def run(self, res: SizeResult, frames: int, warmup: int) -> None:
        latencies: list[float] = []

        def one(i: int) -> None:
            _, latency = self.client.process_shm(self.session, self.frame, self.ids())
            latencies.append(latency)

        for i in range(warmup):
            one(i)
        latencies.clear()
        with self.daemon_faults, self.client_faults:
            res.shm = merge(res.shm, timed(one, frames, 0))
        self.daemon_faults.frames += frames
        self.client_faults.frames += frames
        res.shm_daemon_ms = merge(res.shm_daemon_ms, Stats(latencies))

    def run_zero_copy(self, res: SizeResult, frames: int, warmup: int) -> None:
        """The zero-copy client API: the frame is written straight into the input slot
        (``writing_shm``, the one copy a camera grab into the slot would also make) and the result
        is used in place (``result_view``; a checksum of one row stands for "draw it")."""
        client, session, frame = self.client, self.session, self.frame

        def one(i: int) -> None:
            fid = self.ids()
            with client.writing_shm(session, fid) as buf:
                np.copyto(buf, frame)
            client.wait_for(lambda m: m.address == "/pose2person/frame/ready" and m.args[1] == fid)
            with client.result_view(session, fid) as view:
                int(view[0, 0, 0])

        for i in range(warmup):
            one(i)
        res.shm_zc = merge(res.shm_zc, timed(one, frames, 0))

    def breakdown(self, res: SizeResult, frames: int, warmup: int) -> None:
        """The same steps as process_shm, timed one by one; then UDP pings."""
        client, session, frame = self.client, self.session, self.frame
        copy_in, wait, copy_out, daemon, copy_out_pre = [], [], [], [], []
        pre = np.empty_like(frame)
        gc.collect()
        gc.disable()
        try:
            for i in range(frames + warmup):
                fid = self.ids()
                t0 = time.perf_counter_ns()
                session.input.write(frame, fid)
                t1 = time.perf_counter_ns()
                client.send("/pose2person/frame/shm", session.name, fid)
                m = client.wait_for(lambda m, fid=fid: m.address == "/pose2person/frame/ready" and m.args[1] == fid)
                t2 = time.perf_counter_ns()
                client.read_result(session, fid)
                t3 = time.perf_counter_ns()
                k, seq = session.output.find_slot(fid)  # the same copy-out, into a preallocated array
                np.copyto(pre, session.output.view(k))
                session.output.still_intact(k, seq)
                t4 = time.perf_counter_ns()
                if i >= warmup:
                    copy_in.append((t1 - t0) / 1e6)
                    wait.append((t2 - t1) / 1e6)
                    copy_out.append((t3 - t2) / 1e6)
                    copy_out_pre.append((t4 - t3) / 1e6)
                    daemon.append(float(m.args[2]))  # type: ignore[arg-type]
        finally:
            gc.enable()
        pings = [client.ping(i) for i in range(max(frames, 50))]
        res.breakdown = {"udp_ping": Stats(pings), "copy_in": Stats(copy_in), "send_to_ready": Stats(wait),
                         "daemon_latency": Stats(daemon), "copy_out": Stats(copy_out),
                         "copy_out_prealloc": Stats(copy_out_pre)}
        res.faults["shm_daemon"] = self.daemon_faults.per_frame()
        res.faults["shm_client"] = self.client_faults.per_frame()

    def close(self) -> None:
        try:
            self.client.close_shm(self.session)
        except Exception as exc:  # keep going; the daemon removes its files at shutdown
            self.res.notes.append(f"shm close failed: {exc}")
            self.session.close()


class PathCell:
    """Encode to a file in the allow-root (tmpfs), :meth:`BridgeClient.process_path`, read + decode."""

    def __init__(self, client: BridgeClient, daemon: Daemon, res: SizeResult, frame: np.ndarray, ids: FrameIds,
                 ext: str) -> None:
        self.client, self.frame, self.ids, self.ext = client, frame, ids, ext
        work = daemon.root / "bench"
        work.mkdir(exist_ok=True)
        self.src = work / f"in_{res.label}{ext}"
        self.dst = work / f"out_{res.label}{ext}"
        self.params = [cv2.IMWRITE_PNG_COMPRESSION, 0] if ext == ".png" else []
        self.faults = Faults(daemon.proc.pid)
        self.latencies: list[float] = []
        self.parts: dict[str, list[float]] = {"encode_write": [], "send_to_done": [], "read_decode": []}
        out = self.one(0)
        if out is None or not np.array_equal(out, frame):
            res.notes.append(f"path: result differs from the input ({None if out is None else out.shape})!")

    def one(self, i: int) -> np.ndarray:
        t0 = time.perf_counter_ns()
        ok, enc = cv2.imencode(self.ext, self.frame, self.params)
        assert ok
        with open(self.src, "wb") as fh:
            fh.write(enc.data)
        t1 = time.perf_counter_ns()
        done = self.client.process_path(str(self.src), str(self.dst), self.ids())
        t2 = time.perf_counter_ns()
        out = cv2.imdecode(np.frombuffer(self.dst.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        t3 = time.perf_counter_ns()
        self.latencies.append(done.latency_ms)
        self.parts["encode_write"].append((t1 - t0) / 1e6)
        self.parts["send_to_done"].append((t2 - t1) / 1e6)
        self.parts["read_decode"].append((t3 - t2) / 1e6)
        return out

    def run(self, res: SizeResult, frames: int, warmup: int) -> None:
        for i in range(warmup):
            self.one(i)
        self.latencies.clear()
        for v in self.parts.values():
            v.clear()
        with self.faults:
            res.path = merge(res.path, timed(self.one, frames, 0))
        self.faults.frames += frames
        res.path_daemon_ms = merge(res.path_daemon_ms, Stats(list(self.latencies)))
        for k, v in self.parts.items():
            res.path_breakdown[k] = merge(res.path_breakdown.get(k), Stats(list(v)))
        res.path_breakdown["daemon_latency"] = res.path_daemon_ms
        res.faults["path_daemon"] = self.faults.per_frame()

    def close(self) -> None:
        for p in (self.src, self.dst):
            p.unlink(missing_ok=True)


class HttpCell:
    def __init__(self, baseline: HttpBaseline, res: SizeResult, frame: np.ndarray) -> None:
        self.baseline, self.frame = baseline, frame
        self.faults = Faults(baseline.proc.pid)
        out = baseline.query(frame)
        err = float(np.abs(out.astype(np.int16) - frame.astype(np.int16))[..., :3].mean())
        res.notes.append(f"http: JPEG q{JPEG_QUALITY} round trip mean abs error {err:.2f} (lossy, alpha dropped)")

    def run(self, res: SizeResult, frames: int, warmup: int) -> None:
        with self.faults:
            res.http = merge(res.http, timed(lambda i: self.baseline.query(self.frame), frames, warmup))
        self.faults.frames += frames + warmup
        res.faults["http_server"] = self.faults.per_frame()

    def close(self) -> None:
        pass


# -- report -------------------------------------------------------------------------------
def targets_for(r: SizeResult) -> dict[str, float | bool] | None:
    if not (r.memcpy and r.shm and r.http):
        return None
    limit = TARGET_FACTOR * r.memcpy.median + TARGET_SLACK_MS
    speedup = r.http.median / r.shm.median
    out: dict[str, float | bool] = {"shm_limit_ms": limit, "shm_within": r.shm.median <= limit,
                                    "speedup": speedup, "speedup_ok": speedup >= TARGET_SPEEDUP}
    if r.shm_zc:
        out["zc_within"] = r.shm_zc.median <= limit
        out["zc_speedup"] = r.http.median / r.shm_zc.median
    return out


def report(results: list[SizeResult], info: dict[str, str], args: argparse.Namespace, path_ext: str) -> str:
    out: list[str] = []
    w = out.append
    w("## Round trip per frame, passthrough model, BGRA8 (median / p95 ms)")
    w("")
    w(f"path (tmpfs) files: {path_ext[1:].upper()}"
      + (" (32-bit, uncompressed)" if path_ext == ".bmp" else " (compression 0)")
      + f"; HTTP baseline: base64 JPEG q{JPEG_QUALITY} in JSON over keep-alive HTTP/1.1.")
    w("")
    w("| size | memcpy | shm | shm zero-copy | path (tmpfs) | base64 JPEG HTTP | shm/memcpy | "
      "base64/shm speed-up | zero-copy: base64/shm | targets (shm; zero-copy) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t = targets_for(r)
        ratio = f"{r.shm.median / r.memcpy.median:.1f}x" if r.shm and r.memcpy else "-"
        speed = f"{t['speedup']:.1f}x" if t else "-"
        if t:
            star = " **(issue target)**" if (r.width, r.height) == TARGET_SIZE else ""
            tgt = (f"shm <= {t['shm_limit_ms']:.2f}: {'yes' if t['shm_within'] else 'NO'}; "
                   f">= 20x: {'yes' if t['speedup_ok'] else 'NO'}")
            if "zc_within" in t:
                tgt += (f"; zero-copy: {'yes' if t['zc_within'] else 'NO'}, "
                        f"{'yes' if t['zc_speedup'] >= TARGET_SPEEDUP else 'NO'}")
            tgt += star
        else:
            tgt = "-"
        zc = f"{t['zc_speedup']:.1f}x" if t and "zc_speedup" in t else "-"
        w(f"| {r.label} | {r.memcpy.cell() if r.memcpy else '-'} | {r.shm.cell() if r.shm else '-'} | "
          f"{r.shm_zc.cell() if r.shm_zc else '-'} | {r.path.cell() if r.path else '-'} | {r.http.cell() if r.http else '-'} | {ratio} | {speed} | {zc} | {tgt} |")
    w("")
    w("### shm breakdown (medians, ms)")
    w("")
    w("Steps of process_shm timed one by one (a separate loop after the timed one). memcpy cold = np.copyto "
      "into destinations rotated through > 64 MiB (not cache-resident), for reference.")
    w("")
    w("| size | memcpy hot / cold | UDP ping RTT | client copy-in | send -> /frame/ready | daemon latency_ms | "
      "send->ready minus daemon | client copy-out (alloc + copy) | copy-out into prealloc | "
      "page faults/frame daemon, client |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        b = r.breakdown
        if not b:
            continue
        hot = f"{r.memcpy.median:.3f} / {r.memcpy_cold.median:.3f}" if r.memcpy and r.memcpy_cold else "-"
        w(f"| {r.label} | {hot} | {b['udp_ping'].median:.3f} | {b['copy_in'].median:.3f} | "
          f"{b['send_to_ready'].median:.3f} | {b['daemon_latency'].median:.3f} | "
          f"{b['send_to_ready'].median - b['daemon_latency'].median:.3f} | {b['copy_out'].median:.3f} | "
          f"{b['copy_out_prealloc'].median:.3f} | "
          f"{r.faults.get('shm_daemon', float('nan')):.1f}, {r.faults.get('shm_client', float('nan')):.1f} |")
    w("")
    w("### path breakdown (medians, ms)")
    w("")
    w("| size | client encode + write | send -> /frame/done | daemon latency_ms | client read + decode | "
      "daemon page faults/frame | HTTP server page faults/frame |")
    w("|---|---|---|---|---|---|---|")
    for r in results:
        b = r.path_breakdown
        if b:
            w(f"| {r.label} | {b['encode_write'].median:.3f} | {b['send_to_done'].median:.3f} | "
              f"{b['daemon_latency'].median:.3f} | {b['read_decode'].median:.3f} | "
              f"{r.faults.get('path_daemon', float('nan')):.0f} | {r.faults.get('http_server', float('nan')):.0f} |")
    w("")
    tgt = next((r for r in results if (r.width, r.height) == TARGET_SIZE), None)
    w("### Targets (issue), at 1280x720")
    w("")
    if tgt is None or targets_for(tgt) is None:
        w("not evaluated: 1280x720 was not among --sizes")
    else:
        t = targets_for(tgt)
        assert t is not None and tgt.shm and tgt.memcpy and tgt.http
        w(f"- shm within 2x memcpy + 0.3 ms: shm median {tgt.shm.median:.3f} ms vs limit "
          f"2 x {tgt.memcpy.median:.3f} + 0.3 = {t['shm_limit_ms']:.3f} ms -> "
          f"{'MET' if t['shm_within'] else 'NOT MET'}")
        w(f"- shm >= 20x faster than base64 JPEG HTTP: {tgt.http.median:.3f} / {tgt.shm.median:.3f} = "
          f"{t['speedup']:.1f}x -> {'MET' if t['speedup_ok'] else 'NOT MET'}")
        if tgt.shm_zc:
            w(f"- zero-copy client API (writing_shm + result_view): {tgt.shm_zc.median:.3f} ms -> "
              f"{'MET' if t['zc_within'] else 'NOT MET'} (limit), {t['zc_speedup']:.1f}x vs base64 -> "
              f"{'MET' if t['zc_speedup'] >= TARGET_SPEEDUP else 'NOT MET'}")
    w("")
    w("### Machine")
    w("")
    w("Shared/virtualised and noisy: absolute times move by +-20 % between runs; compare the ratios "
      "(shm/memcpy, base64/shm) and transports within one run, not milliseconds across machines or runs.")
    w("")
    for k, v in info.items():
        w(f"- {k}: {v}")
    w(f"- timed frames per cell: {', '.join(f'{r.label}: {r.frames}' for r in results)}, in "
      f"{results[0].rounds if results else 0} interleaved round(s) of memcpy, shm, path, http; "
      f"warm-up {args.warmup_desc}; GC off while timing")
    notes = [f"{r.label}: {n}" for r in results for n in r.notes]
    if notes:
        w("")
        w("### Notes")
        w("")
        for n in notes:
            w(f"- {n}")
    return "\n".join(out)


def to_json(results: list[SizeResult], info: dict[str, str]) -> dict:
    rows = []
    for r in results:
        row: dict = {"size": r.label, "frames": r.frames, "notes": r.notes}
        row["page_faults_per_frame"] = r.faults
        for name in ("memcpy", "memcpy_cold", "shm", "shm_zc", "path", "http", "shm_daemon_ms", "path_daemon_ms"):
            s = getattr(r, name)
            if s is not None:
                row[name] = s.as_dict()
        row["shm_breakdown"] = {k: v.as_dict() for k, v in r.breakdown.items()}
        row["path_breakdown"] = {k: v.as_dict() for k, v in r.path_breakdown.items()}
        t = targets_for(r)
        if t:
            row["targets"] = t
        rows.append(row)
    return {"machine": info, "results": rows}


# -- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated WxH (default {DEFAULT_SIZES})")
    parser.add_argument("--frames", type=int, default=None,
                        help="timed frames per cell (default: 600 up to 256x256, 400 up to 640x480, "
                             "300 up to 1280x720, 150 above)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="split each cell's frames into this many interleaved rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="20 frames per cell (smoke test, noisy numbers)")
    parser.add_argument("--path-format", choices=["bmp", "png"], default="bmp",
                        help="file format for the path transport (default bmp; png uses compression 0)")
    parser.add_argument("--only", default="memcpy,shm,path,http", help="subset of transports to run")
    parser.add_argument("--bridge-src", metavar="DIR", default=str(REPO),
                        help="run the daemon from this checkout (default: this one), e.g. to compare commits")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write all numbers as JSON")
    parser.add_argument("--serve-http", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_http:
        serve_http()
        return 0
    sizes = parse_sizes(args.sizes)
    only = {s.strip() for s in args.only.split(",")}
    unknown = only - {"memcpy", "shm", "path", "http"}
    if unknown:
        raise SystemExit(f"--only: unknown transport(s) {', '.join(sorted(unknown))}")
    rounds = max(1, args.rounds or (1 if args.quick else 3))
    path_ext = "." + args.path_format
    args.warmup_desc = ("3 frames" if args.quick else
                        "10% of a round's frames (5..20) before each round")
    info = machine_info()

    def on_term(signum: int, _frame: object) -> None:  # SIGTERM/SIGHUP: unwind so `finally` stops the children
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)
    base_parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    base = Path(tempfile.mkdtemp(prefix="p2p-bench-", dir=base_parent))
    daemon: Daemon | None = None
    baseline: HttpBaseline | None = None
    client: BridgeClient | None = None
    results: list[SizeResult] = []
    started = time.monotonic()
    watch = CpuWatch()
    info["load average at start"] = loadavg()
    try:
        daemon = Daemon(base, Path(args.bridge_src).resolve())
        watch.add(daemon.proc.pid)
        log(f"bridge from {args.bridge_src} on osc.udp://127.0.0.1:{daemon.port} (model {daemon.model}), "
            f"files under {base}")
        if daemon.model != "passthrough":
            raise RuntimeError(f"expected the passthrough model, the bridge runs {daemon.model}")
        client = BridgeClient("127.0.0.1", daemon.port, timeout=30.0)
        client.ping()
        if "http" in only:
            baseline = HttpBaseline()
            watch.add(baseline.proc.pid)
            log(f"HTTP baseline on http://127.0.0.1:{baseline.port}/query")
        ids = FrameIds()
        watch.start()
        for width, height in sizes:
            frames = args.frames or (20 if args.quick else default_frames(width, height))
            per_round = max(1, -(-frames // rounds))
            warmup = 3 if args.quick else min(20, max(5, per_round // 10))
            frame = make_frame(width, height)
            res = SizeResult(width, height, per_round * rounds, rounds)
            results.append(res)
            cells: list[tuple[str, object]] = []
            try:
                if "memcpy" in only:
                    cells.append(("memcpy", MemcpyCell(frame)))
                if "shm" in only:
                    cells.append(("shm", ShmCell(client, daemon, res, frame, ids)))
                if "path" in only:
                    cells.append(("path", PathCell(client, daemon, res, frame, ids, path_ext)))
                if baseline is not None:
                    cells.append(("http", HttpCell(baseline, res, frame)))
                for rnd in range(rounds):
                    for name, cell in cells:
                        cell.run(res, per_round, warmup)  # type: ignore[attr-defined]
                        if isinstance(cell, ShmCell):
                            cell.run_zero_copy(res, per_round, warmup)
                for name, cell in cells:
                    if isinstance(cell, ShmCell):
                        cell.breakdown(res, max(per_round, 20), warmup)
                for name in ("memcpy", "shm", "shm_zc", "path", "http"):
                    stats = getattr(res, name)
                    if stats is not None:
                        log(f"{res.label:>9} {name:6} {stats.cell()}")
            finally:
                for name, cell in cells:
                    cell.close()  # type: ignore[attr-defined]
        info["other processes' CPU during the run"] = (
            f"{watch.others_busy_cores():.2f} cores on average (0 = quiet machine; more skews the numbers)")
    finally:
        if client is not None:
            client.close()
        if baseline is not None:
            baseline.stop()
        if daemon is not None:
            daemon.stop()
            leftovers = list(daemon.shm_dir.glob("*"))
            if leftovers:
                log(f"note: the bridge left {len(leftovers)} file(s) in its shm dir: {[p.name for p in leftovers]}")
        shutil.rmtree(base, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    print(report(results, info, args, path_ext))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results, info), indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); the daemon and the HTTP server were stopped")
        sys.exit(130)
