#!/usr/bin/env python
"""The camera tracker steady and for several people (issue 15): jitter, lag, and 1/2/4 people.

    .venv/bin/python bench/tracker_steady.py [--seconds 15] [--warmup 5] [--people 1,2,4] [--json FILE]

Footage: registry photos of people (tests/photos.py) composited into 640x480 frames (tests/crowd.py).

* **Jitter**: the astronaut standing still, camera sensor noise (sigma 6 grey levels) differing per
  frame, 60 frames at 30 fps: how far the 33 landmarks move from frame to frame (px, p50/p95; the joints in view),
  raw (smoothing off) against smoothed (the card's One Euro settings, MediaPipe's).
* **Lag**: the astronaut walking across the frame at 2, 8 and 16 px/frame, up to 60 frames at 30 fps with
  every 7th frame dropped (dt varies): how many frames the smoothed landmarks trail the raw ones
  (mean over the second half, visible joints), against the bound the settings give
  (``lag_bound_frames``). The raw landmarks have no delay of their own (each frame is posed alone).
* **People**: a running daemon (``--max-people N``, the demo model ``puppet``), one client sending
  N people side by side (swaying) at 30 fps over shm as bench/camera.py does: answered fps, the
  bridge's latency p50/p95 and the pose stage's p50 (one landmark run per person).

Markdown on stdout; the machine and its load on stderr too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests", REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from camera import run_row  # noqa: E402  (bench/camera.py)

FPS = 30.0


def jitter(models) -> dict[str, tuple[float, float]]:  # noqa: ANN001
    from crowd import compose

    from bridge.pose.camera import CameraPoser
    from bridge.pose.tracker.smoothing import SmoothingSettings

    frames = [compose([("astronaut", 320, 480, 360)], noise=6.0, seed=i) for i in range(60)]
    out = {}
    for name, settings in (("raw", SmoothingSettings(enabled=False)), ("smoothed", None)):
        poser = CameraPoser(models)
        pts = [poser.people(rgb, "still", now=i / FPS, smoothing=settings)[0].points for i, rgb in enumerate(frames)]
        visible = pts[0][:, 2] >= 0.5  # joints in view (legs below the picture are guesses)
        moves = np.concatenate([np.linalg.norm(b[visible, :2] - a[visible, :2], axis=1)
                                for a, b in zip(pts[2:], pts[3:])])
        out[name] = (float(np.percentile(moves, 50)), float(np.percentile(moves, 95)))
    return out


def lag(models, speed: float) -> tuple[float, float]:  # noqa: ANN001
    from crowd import compose

    from bridge.pose.camera import CameraPoser
    from bridge.pose.tracker.smoothing import SmoothingSettings, lag_bound_frames

    frames = min(60, int(400 / speed))  # the walk stays inside the picture
    idx = [i for i in range(frames) if i % 7 != 6]
    start = 320 - speed * frames / 2
    raw_p, smooth_p = CameraPoser(models), CameraPoser(models)
    raw, smooth, scales = [], [], []
    for i in idx:
        rgb = compose([("astronaut", start + speed * i, 480, 300)], noise=3.0, seed=i)
        r = raw_p.people(rgb, "walk", now=i / FPS, smoothing=SmoothingSettings(enabled=False))[0].points
        s = smooth_p.people(rgb, "walk", now=i / FPS)[0].points
        raw.append(r)
        smooth.append(s)
        roi = raw_p._streams["walk"].tracker._tracks[0].roi  # noqa: SLF001 - the bench reads the region's size
        scales.append((roi.width * 640 + roi.height * 480) / 2)
    half = len(idx) // 2
    r, s = np.stack(raw[half:]), np.stack(smooth[half:])
    visible = r[..., 2].mean(axis=0) >= 0.5
    delay = float(np.mean(r[:, visible, 0] - s[:, visible, 0]) / speed)
    return delay, lag_bound_frames(speed * FPS, float(np.median(scales)), FPS, SmoothingSettings())


def people_rows(opts: argparse.Namespace, counts: list[int], models) -> list[tuple[int, dict[str, float]]]:  # noqa: ANN001
    import cv2
    from crowd import group

    from bridge.pose.camera import CameraPoser

    rows = []
    for n in counts:
        rgb = group(n, frames=30)
        poser = CameraPoser(models, max_people=n)  # how many the tracker follows in this footage
        tracked = [len([p for p in poser.people(f, "count", now=i / FPS) if not p.held]) for i, f in enumerate(rgb * 2)]
        frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGRA) for f in rgb]
        with tempfile.TemporaryDirectory(prefix="p2p-people-bench-") as tmp:
            work = Path(tmp)
            (work / "shm").mkdir()
            r = run_row(opts, work, "camera", 0, 0, frames, [], extra=("--max-people", str(n)))  # as make run: depth auto
        r["tracked"] = float(np.mean(tracked[30:]))
        print(f"{n} people: {r['fps']:.1f} fps, p95 {r['p95']:.1f} ms, pose p50 {r['pose']:.1f} ms", file=sys.stderr)
        rows.append((n, r))
    return rows


def machine() -> str:
    name = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"] * 3
    return f"{name}, {os.cpu_count()} CPUs, load average {' '.join(load)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--people", default="1,2,4")
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args()

    from tracker_fixtures import ensure_tracker_files, tracker_models

    ensure_tracker_files()
    models = tracker_models()
    before = machine()
    j = jitter(models)
    lags = {speed: lag(models, speed) for speed in (2.0, 8.0, 16.0)}
    counts = [int(c) for c in opts.people.split(",") if c]
    rows = people_rows(opts, counts, models) if counts else []
    after = machine()
    print(f"Machine: {before} (before) / load {after.rsplit('load average', 1)[1].strip()} (after)\n")
    print("| jitter, still person + sensor noise | p50 px | p95 px |\n|---|---|---|")
    for name, (p50, p95) in j.items():
        print(f"| {name} | {p50:.2f} | {p95:.2f} |")
    print("\n| lag, walking person (every 7th frame dropped) | raw, frames | smoothed, frames | bound, frames |\n"
          "|---|---|---|---|")
    for speed, (delay, bound) in lags.items():
        print(f"| {speed:g} px/frame | 0 | {delay:.2f} | {bound:.2f} |")
    if rows:
        print(f"\n| people (--max-people N), 640x480 BGRA8 over shm at {opts.rate:g} fps | fps | latency p50 ms | "
              "latency p95 ms | pose p50 ms | generator p50 ms | safe frames | people tracked (mean) |\n"
              "|---|---|---|---|---|---|---|---|")
        for n, r in rows:
            print(f"| {n} | {r['fps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['pose']:.1f} | {r['generator']:.1f} | "
                  f"{r['safe']} | {r['tracked']:.1f} |")
    if opts.json:
        opts.json.write_text(json.dumps({"jitter": j, "lag": {str(k): v for k, v in lags.items()},
                                         "people": [{"people": n, **r} for n, r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
