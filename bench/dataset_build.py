"""How long ``pose2person dataset build`` takes on a phone-sized video, posed by the camera tracker.

Footage: no real video of a person exists in this project, so the synthetic puppet dances (random
key poses eased between, ``bridge.puppet.skeleton.dance``) in a portrait 720x1280 video at 30 fps,
MPEG-4 (``mp4v``, what OpenCV writes here), ``--seconds`` long (default 60). The tracker finds the
puppet (docs/TRACKER.md); its keypoints are checked against the puppet's own.

Runs, each a fresh ``python -m bridge dataset build`` (so start-up and model loading count):
``--fps 10`` (the filming guide's setting) and, with ``--all-frames``, every frame.

    .venv/bin/python bench/dataset_build.py [--seconds 60] [--all-frames] [--size 256] [--keep DIR]

Prints a markdown table (wall time, frames posed per second, kept/dropped, coverage, joint error)
and the machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.pose import keypoints as kp  # noqa: E402
from bridge.puppet import skeleton as pp  # noqa: E402
from bridge.puppet.render import render_person  # noqa: E402

W, H, FPS = 720, 1280, 30
ADA = pp.CHARACTERS["ada"]
JOINTS = [kp.C[j] for j in ("right_shoulder", "left_shoulder", "right_elbow", "left_elbow", "right_wrist",
                            "left_wrist", "right_hip", "left_hip", "right_knee", "left_knee", "right_ankle",
                            "left_ankle")]


def write_clip(path: Path, seconds: float) -> np.ndarray:
    """The puppet's dance as a portrait video; returns the true common keypoints per frame (pixels)."""
    n = int(seconds * FPS)
    side = 256
    scale = W / side  # the puppet's square frame fills the width, centred vertically
    y0 = (H - W) // 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    truth = []
    for i, pose in enumerate(pp.dance(np.random.default_rng(5), side, ADA, n, beat=15)):
        frame = pp.keypoint_frame([pose], [ADA], side, "coco17", i)
        person = cv2.resize(render_person(frame, [ADA])[..., ::-1], (W, W), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((H, W, 3), 235, np.uint8)  # a plain wall
        canvas[y0:y0 + W] = person
        writer.write(canvas)
        common = frame.common()[0].copy()
        common[:, :2] *= scale
        common[:, 1] += y0
        truth.append(common)
    writer.release()
    return np.stack(truth)


def build(video: Path, out: Path, extra: list[str], size: int) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "bridge", "dataset", "build", str(video), "--out", str(out), "--size", str(size),
           "--no-progress", *extra]
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start, json.loads((out / "summary.json").read_text())


def joint_error(out: Path, truth: np.ndarray) -> float:
    errors = []
    for line in (out / "keypoints.jsonl").read_text().splitlines():
        rec = json.loads(line)
        index = int(rec["key"].rsplit("_", 1)[1])
        frame = kp.make_frame("mediapipe33", 0, rec["width"], rec["height"], rec["people"][0], False)
        errors.append(np.linalg.norm(frame.common()[0][JOINTS, :2] - truth[index][JOINTS, :2], axis=1))
    return float(np.median(np.concatenate(errors))) if errors else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--all-frames", action="store_true", help="also build from every frame")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--keep", type=Path, default=None, help="keep the video and datasets here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dataset_build_"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "dance.mp4"
    start = time.monotonic()
    truth = write_clip(video, args.seconds)
    made = time.monotonic() - start
    runs = [("--fps 10", ["--fps", "10"])] + ([("every frame", [])] if args.all_frames else [])
    rows = []
    for label, extra in runs:
        out = work / ("ds_" + label.replace(" ", "_").replace("-", ""))
        seconds, summary = build(video, out, extra, args.size)
        read = sum(summary["kept"].values()) + sum(summary["dropped"].values())
        rows.append((label, read, seconds, summary, joint_error(out, truth)))
    print(f"\n{args.seconds:.0f}-s portrait {W}x{H} {FPS} fps MPEG-4 video of the puppet dancing "
          f"(written in {made:.0f} s); --size {args.size}\n")
    print("| sampling | frames posed | wall time | frames/s | kept train + test | dropped | coverage | "
          "median joint error |")
    print("|---|---|---|---|---|---|---|---|")
    for label, read, seconds, summary, err in rows:
        dropped = ", ".join(f"{n} {r}" for r, n in sorted(summary["dropped"].items())) or "none"
        cover = summary.get("coverage") or {}
        print(f"| {label} | {read} | {seconds:.1f} s | {read / seconds:.1f} | {summary['kept'].get('train', 0)} + "
              f"{summary['kept'].get('test', 0)} | {dropped} | {cover.get('covered', 0):.0%} | {err:.1f} px |")
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
