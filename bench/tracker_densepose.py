#!/usr/bin/env python
"""The DensePose-shaped pose source (``tracker-densepose``) against DensePose itself, on the same frames:
how alike the part maps are, and frames/s of each, in one run.

    .venv/bin/python bench/tracker_densepose.py [--frames 24] [--threads 2] [--short-side 512]
                                                [--weights model_final_162be9.pkl] [--json FILE]

Footage: 640x480 camera-like frames over the registry photos of tests/photos.py (astronaut, Grace
Hopper), drifting, zooming and turning, with sensor noise; the person always in view.

* ``tracker-densepose``: the pose source as the daemon runs it on one stream (the tracker in video
  mode, the selfie-segmentation mask, the keypoint drawing shaped by the mask, the dp_segm render);
* ``densepose (fast)``: DensePose R-CNN R_50_FPN_s1x, the fast path (``DensePoseSettings(fast=True)``,
  top-1 person, min score 0.8), at ``--short-side`` (512: the CPU setting of docs/DENSEPOSE.md),
  plus the same dp_segm render.

Both run on ``--threads`` CPU threads (torch; TFLite uses 1 thread, as the daemon does).

Comparison, per frame (part maps = the 24 DensePose parts per pixel, people painted in order):
foreground IoU (person pixels of one against the other's), part agreement (of the pixels both call
person, the share with the same part) and mean per-part IoU (over the parts either shows).

Without ``--weights`` DensePose has **random weights** in the official layout (tests/densepose_ckpt.py),
which find a "person" somewhere and label it with noise: the comparison then only checks the harness,
it says nothing about the approximation. The real checkpoint (``pose2person models fetch
densepose_rcnn_R_50_FPN_s1x``, dl.fbaipublicfiles.com) cannot be downloaded on the machine these
figures were first taken on; run it with ``--weights`` where it can.
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

CONFIG = "densepose_rcnn_R_50_FPN_s1x"


def camera_frames(count: int) -> list[np.ndarray]:
    """RGB 640x480 frames, half of each photo."""
    import cv2

    from photos import photo_bgr

    rng = np.random.default_rng(3)
    frames = []
    for name in ("astronaut", "grace_hopper"):
        bgr = photo_bgr(name)
        h, w = bgr.shape[:2]
        for i in range(count // 2):
            s = 440 / h * (0.9 + 0.1 * math.sin(i / 5))
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 6 * math.sin(i / 7), s)
            m[0, 2] += 320 - w / 2 + 60 * math.sin(i / 6)
            m[1, 2] += 240 - h / 2 + 20
            frame = cv2.warpAffine(bgr, m, (640, 480), borderValue=(90, 90, 90))
            frame = np.clip(frame.astype(np.int16) + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
            frames.append(np.ascontiguousarray(frame[..., ::-1]))
    return frames


def densepose_predictor(weights: str | None, short_side: int):  # noqa: ANN201
    import torch

    from bridge.densepose import DensePoseSettings, get_config, load_predictor
    from bridge.densepose.checkpoint import load_into
    from bridge.densepose.model import build_model
    from bridge.densepose.predictor import DensePosePredictor

    settings = DensePoseSettings(short_side=short_side, max_people=1, fast=True)
    if weights:
        return load_predictor(Path(weights), CONFIG, "cpu", settings)
    from densepose_ckpt import official_arrays

    cfg = get_config(CONFIG)
    with torch.device("meta"):
        model = build_model(cfg)
    load_into(model, {k: torch.from_numpy(v) for k, v in official_arrays(cfg.name).items()}, cfg.name, "random",
              assign=True)
    return DensePosePredictor(model, cfg, "cpu", settings)


def busy() -> tuple[float, float, float]:
    """(all CPUs' busy seconds, this process's CPU seconds, wall seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / tick, time.process_time(), time.monotonic()


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    fa, fb = a > 0, b > 0
    union = (fa | fb).sum()
    both = fa & fb
    ious = []
    for part in set(np.unique(a)) | set(np.unique(b)) - {0}:
        if part == 0:
            continue
        pa, pb = a == part, b == part
        ious.append((pa & pb).sum() / max((pa | pb).sum(), 1))
    return {"fg_iou": float(both.sum() / union) if union else math.nan,
            "part_agreement": float((a[both] == b[both]).mean()) if both.any() else math.nan,
            "part_iou": float(np.mean(ious)) if ious else math.nan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--short-side", type=int, default=512)
    ap.add_argument("--weights", default=None, help="the real DensePose checkpoint (default: random weights)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from bridge.pose.camera import CameraPoser
    from bridge.pose.keypoints import keypoints_to_pose
    from bridge.pose.render import render_pose
    from bridge.pose.shaped import part_map, shape_to_mask
    from bridge.pose.tracker.loader import load_segmenter
    from tracker_fixtures import CARD_DIR, tracker_models, tracker_pins

    frames = camera_frames(args.frames)
    poser = CameraPoser(tracker_models())
    segmenter = load_segmenter(CARD_DIR, tracker_pins())
    predictor = densepose_predictor(args.weights, args.short_side)

    def approx(rgb: np.ndarray, stream: str):  # noqa: ANN202
        drawn = keypoints_to_pose(poser.keypoints(rgb, stream))
        result = shape_to_mask(drawn, segmenter.mask(rgb)) if not drawn.empty else drawn
        render_pose(result, "dp_segm", np.ascontiguousarray(rgb[..., ::-1]))
        return result

    def real(rgb: np.ndarray):  # noqa: ANN202
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        result = predictor.predict(bgr)
        render_pose(result, "dp_segm", bgr)
        return result

    warm = part_map(approx(frames[0], "warm"))
    real(frames[0])  # warm-up
    assert compare(warm, warm) == {"fg_iou": 1.0, "part_agreement": 1.0, "part_iou": 1.0}  # the harness itself
    start = busy()
    times: dict[str, list[float]] = {"tracker-densepose": [], "densepose (fast)": []}
    rows = []
    for i, rgb in enumerate(frames):  # interleaved: both see the same machine load
        t = time.perf_counter()
        a = approx(rgb, "cam")
        times["tracker-densepose"].append(time.perf_counter() - t)
        t = time.perf_counter()
        d = real(rgb)
        times["densepose (fast)"].append(time.perf_counter() - t)
        rows.append(compare(part_map(a), part_map(d)))
        print(f"frame {i}: {rows[-1]}", file=sys.stderr)

    end = busy()
    others = max(0.0, (end[0] - start[0]) - (end[1] - start[1])) / max(end[2] - start[2], 1e-9)
    weights = args.weights or "random weights (harness check only)"
    print(f"# tracker-densepose vs DensePose ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads, {len(frames)} frames 640x480, "
          f"DensePose {weights}, short side {args.short_side}; other processes kept {others:.1f} "
          f"CPUs busy meanwhile)\n")
    print("| source | median ms | p95 ms | frames/s |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        ms = sorted(1000 * t for t in ts)
        med = statistics.median(ms)
        print(f"| {name} | {med:.1f} | {ms[min(len(ms) - 1, int(0.95 * len(ms)))]:.1f} | {1000 / med:.1f} |")
    print("\n| part maps | median | min | max |")
    print("|---|---|---|---|")
    for key in ("fg_iou", "part_agreement", "part_iou"):
        vals = [r[key] for r in rows if not math.isnan(r[key])]
        if vals:
            print(f"| {key} | {statistics.median(vals):.3f} | {min(vals):.3f} | {max(vals):.3f} |")
        else:
            print(f"| {key} | - | - | - |")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "rows": rows}))


if __name__ == "__main__":
    main()
