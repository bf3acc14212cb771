#!/usr/bin/env python
"""The camera tracker alone: frames/s and CPU ms per frame at 640x480, video mode against static mode.

    .venv/bin/python bench/tracker.py [--frames 300] [--threads 1,2] [--json FILE]

Footage: a 640x480 "camera" over scikit-image's astronaut photo (tests/photos.py fetches it from
the pinned wheel): drifting, zooming, turning, with sensor noise, the person always in view. Each
configuration runs the same frames:

* ``video``  -- the tracker as the daemon runs it: regions carried from frame to frame, the
  detector only when nobody is tracked (MediaPipe's video mode);
* ``static`` -- the detector on every frame (MediaPipe's ``static_image_mode``): the baseline the
  ratio is taken against, in the same run.

Per configuration: wall ms per frame (median, p95), frames/s, CPU ms per frame (process time, all
threads), detector and landmark runs. Markdown on stdout; how busy other processes kept the CPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def camera_frames(count: int) -> list[np.ndarray]:
    import cv2

    from photos import photo_bgr

    bgr = photo_bgr("astronaut")
    rng = np.random.default_rng(1)
    frames = []
    for i in range(count):
        m = cv2.getRotationMatrix2D((256, 256), 8 * math.sin(i / 17), 0.8 + 0.1 * math.sin(i / 23))
        m[0, 2] += 64 + 50 * math.sin(i / 19)
        m[1, 2] += -20 + 10 * math.cos(i / 13)
        frame = cv2.warpAffine(bgr, m, (640, 480), borderValue=(90, 90, 90))
        frame = np.clip(frame.astype(np.int16) + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def others_cpu(start: tuple[float, float], end: tuple[float, float], own: float) -> float:
    """Cores other processes used between two (/proc/stat busy seconds, wall) samples."""
    return max(0.0, ((end[0] - start[0]) - own) / max(end[1] - start[1], 1e-9))


def busy_seconds() -> tuple[float, float]:
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        return (sum(fields) - fields[3] - fields[4]) / tick, time.monotonic()
    except OSError:
        return 0.0, time.monotonic()


def run(models, frames: list[np.ndarray], static: bool) -> dict[str, float]:  # noqa: ANN001
    tracker = models.new_tracker(static=static)
    for rgb in frames[:10]:  # warm-up (XNNPACK packs weights on the first runs)
        tracker.update(rgb)
    tracker = models.new_tracker(static=static)
    walls, det, lm, found = [], 0, 0, 0
    cpu0, b0 = time.process_time(), busy_seconds()
    for rgb in frames:
        t = time.perf_counter()
        people = tracker.update(rgb)
        walls.append((time.perf_counter() - t) * 1000)
        det += tracker.last_runs[0]
        lm += tracker.last_runs[1]
        found += bool(people)
    cpu = time.process_time() - cpu0
    b1 = busy_seconds()
    walls.sort()
    return {"median_ms": statistics.median(walls), "p95_ms": walls[int(0.95 * (len(walls) - 1))],
            "fps": 1000 * len(walls) / sum(walls), "cpu_ms": 1000 * cpu / len(frames),
            "detector_runs": det, "landmark_runs": lm, "frames_with_person": found,
            "others_cores": others_cpu(b0, b1, cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", default="1,2", help="TFLite threads per model, comma-separated")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from tracker_fixtures import CARD_DIR, ensure_tracker_files, tracker_pins

    from bridge.pose.tracker.loader import load_tracker_models

    ensure_tracker_files()
    frames = camera_frames(args.frames)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        models = load_tracker_models(CARD_DIR, tracker_pins(), threads=threads)
        static = run(models, frames, static=True)
        video = run(models, frames, static=False)
        rows.append((threads, video, static))
        print(f"threads {threads}: video {video['fps']:.1f} fps, static {static['fps']:.1f} fps", file=sys.stderr)
    print(f"Tracker alone, {len(frames)} frames of 640x480, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print("| threads | mode | median ms | p95 ms | fps | CPU ms/frame | detector runs | landmark runs | "
          "frames with a person | others' cores | video/static fps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for threads, video, static in rows:
        for mode, r in (("video", video), ("static", static)):
            ratio = f"{video['fps'] / static['fps']:.2f}x" if mode == "video" else "1.00x"
            print(f"| {threads} | {mode} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} | "
                  f"{r['cpu_ms']:.1f} | {r['detector_runs']} | {r['landmark_runs']} | {r['frames_with_person']} | "
                  f"{r['others_cores']:.2f} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [{"threads": t, "video": v, "static": s} for t, v, s in rows]},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
