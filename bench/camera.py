#!/usr/bin/env python
"""Camera frame to puppet through a running daemon: 640x480 BGRA8 over shared memory, one client.

    .venv/bin/python bench/camera.py [--seconds 30] [--warmup 8] [--rate 30] [--json FILE]

A real daemon (``bridge.daemon.proc``) serves the demo model ``puppet`` as ``make run`` does. One
client streams a camera-like sequence (scikit-image's astronaut, drifting, zooming, turning, with
sensor noise: bench/tracker.py's footage) at ``--rate`` fps without waiting for answers, as a
webcam sketch does (latest frame wins). Rows, each on a fresh daemon:

* ``keypoints`` -- the baseline in the same run: the same footage's landmarks (tracked once
  beforehand) sent as ``/pose2person/keypoints`` messages to a shm target; the path camera frames
  take minus the tracker;
* ``camera, depth 1`` -- frames posed by the body tracker and generated, one after the other;
* ``camera, depth 2`` -- ``--pipeline-depth 2``: the tracker works on the next frame while the
  generator draws this one; also with ``--threads 1`` (one torch thread, so tracker and generator
  each have a core).

Figures per row: answered fps and its ratio to the baseline, the bridge's latency (arrival to
result readable: the reply's ``latency_ms``) p50/p95, the client's round trip (sent to reply
received) p95, frames overtaken (latest frame wins), the ``pose`` and ``generator`` stage p50s,
and how busy other processes kept the CPUs. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests", REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bridge.client import BridgeClient  # noqa: E402
from bridge.daemon.proc import DaemonProcess  # noqa: E402
from tracker import busy_seconds, camera_frames  # noqa: E402  (bench/tracker.py)

P = "/pose2person"


def landmarks_of(frames: list[np.ndarray]) -> list[list[float]]:
    """The footage's keypoints (mediapipe33, pixels), tracked once in-process, as message values."""
    from tracker_fixtures import ensure_tracker_files, tracker_models

    from bridge.pose.camera import CameraPoser

    ensure_tracker_files()
    poser = CameraPoser(tracker_models())
    out = []
    for rgb in frames:
        kf = poser.keypoints(rgb, "bench")
        out.append([float(v) for v in kf.people.reshape(-1)])
    return out


def run_row(opts: argparse.Namespace, work: Path, mode: str, depth: int, threads: int,
            frames: list[np.ndarray], keypoints: list[list[float]], extra: tuple[str, ...] = ()) -> dict[str, float]:
    args = ["--allow-root", str(work), "--pipeline-depth", str(depth), "--stall-timeout", "60", *extra]
    if threads:
        args += ["--threads", str(threads)]
    with DaemonProcess(args, shm_dir=work / "shm", start_timeout=300) as daemon, \
            BridgeClient("127.0.0.1", daemon.port, timeout=60) as client:
        session = client.open_shm("cam", 640, 480, "BGRA8")
        if mode == "keypoints":
            client.request(f"{P}/keypoints/target", ("cam",), f"{P}/keypoints/target")
        interval = 1.0 / opts.rate
        start = time.perf_counter()
        measure_from, end = start + opts.warmup, start + opts.warmup + opts.seconds
        fid = sent = dropped = safe = 0
        latencies: list[float] = []
        round_trips: list[float] = []
        ready_at: list[float] = []
        sent_at: dict[int, float] = {}
        next_send = start
        busy0 = None
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if busy0 is None and now >= measure_from:
                busy0, cpu0 = busy_seconds(), time.process_time()
            if now >= next_send:
                fid += 1
                i = fid % len(frames)
                if mode == "keypoints":
                    client.send(f"{P}/keypoints", "mediapipe33px", fid, 640, 480, *keypoints[i])
                else:
                    client.submit_shm(session, frames[i], fid)
                sent_at[fid] = time.perf_counter()
                next_send += interval
                if now >= measure_from:
                    sent += 1
            msg = client.receive(max(0.0, min(next_send, end) - time.perf_counter()))
            if msg is None or time.perf_counter() < measure_from:
                continue
            if msg.address == f"{P}/frame/ready":
                latencies.append(float(msg.args[2]))  # type: ignore[arg-type]
                ready_at.append(time.perf_counter())
                t0 = sent_at.pop(int(msg.args[1]), None)  # type: ignore[arg-type]
                if t0 is not None:
                    round_trips.append((ready_at[-1] - t0) * 1000)
            elif msg.address == f"{P}/frame/dropped":
                dropped += 1
            elif msg.address == f"{P}/frame/safe":
                safe += 1
        busy1, cpu1 = busy_seconds(), time.process_time()
        stages = client.request(f"{P}/status/stages", (), f"{P}/status/stages/reply").args
        daemon_cpu = 0.0
        try:
            with open(f"/proc/{daemon.proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            daemon_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    figures = {str(stages[i]): float(stages[i + 1]) for i in range(0, len(stages), 5)}  # type: ignore[arg-type]
    fps = (len(ready_at) - 1) / (ready_at[-1] - ready_at[0]) if len(ready_at) > 1 else 0.0
    lat, rt = sorted(latencies) or [0.0], sorted(round_trips) or [0.0]
    wall = busy1[1] - busy0[1] if busy0 else 1.0
    return {"fps": fps, "p50": statistics.median(lat), "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "rt_p95": rt[min(len(rt) - 1, int(0.95 * len(rt)))], "drop": dropped / max(1, sent),
            "safe": safe, "pose": figures.get("pose", 0.0), "generator": figures.get("generator", 0.0),
            "busy_cores": (busy1[0] - busy0[0]) / wall if busy0 else 0.0, "daemon_cpu_s_total": daemon_cpu,
            "client_cpu": (cpu1 - cpu0) / wall if busy0 else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=30.0, help="frames per second the client sends (a webcam: 30)")
    ap.add_argument("--frames", type=int, default=90, help="distinct footage frames, looped")
    ap.add_argument("--rows", default="keypoints:1:0,camera:1:0,camera:2:0,camera:2:1",
                    help="mode:depth:threads, comma-separated (threads 0 = torch's default)")
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args()

    import cv2

    rgb = camera_frames(opts.frames)
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGRA) for f in rgb]
    keypoints = landmarks_of(rgb)
    rows = []
    for spec in opts.rows.split(","):
        mode, depth, threads = spec.split(":")
        with tempfile.TemporaryDirectory(prefix="p2p-camera-bench-") as tmp:
            work = Path(tmp)
            (work / "shm").mkdir()
            r = run_row(opts, work, mode, int(depth), int(threads), frames, keypoints)
        rows.append((mode, int(depth), int(threads), r))
        print(f"{spec}: {r['fps']:.1f} fps, p95 {r['p95']:.1f} ms", file=sys.stderr)
    base = rows[0][3]["fps"] or 1.0
    print(f"Camera frame to puppet, 640x480 BGRA8 over shm, one client at {opts.rate:g} fps, "
          f"{opts.seconds:g} s per row after {opts.warmup:g} s; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}\n")
    print("| input | depth | torch threads | fps | vs keypoints | latency p50 ms | latency p95 ms | round trip p95 ms | "
          "overtaken | safe frames | pose p50 ms | generator p50 ms | busy cores (all) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, depth, threads, r in rows:
        print(f"| {mode} | {depth} | {threads or 'default'} | {r['fps']:.1f} | {r['fps'] / base:.2f}x | {r['p50']:.1f} | "
              f"{r['p95']:.1f} | {r['rt_p95']:.1f} | {r['drop']:.0%} | {r['safe']} | {r['pose']:.1f} | "
              f"{r['generator']:.1f} | {r['busy_cores']:.2f} |")
    if opts.json:
        opts.json.write_text(json.dumps([{"mode": m, "depth": d, "threads": t, **r} for m, d, t, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
