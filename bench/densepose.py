#!/usr/bin/env python
"""Per-stage cost of the DensePose stage on CPU (and CUDA when present), top-1 person.

    .venv/bin/python bench/densepose.py [--sizes 800,512] [--repeats 5] [--threads 2]
                                        [--config densepose_rcnn_R_50_FPN_s1x] [--weights FILE] [--image FILE]

For each short side it builds two predictors on the same weights and times them in interleaved
rounds on one 640x480 frame (``--image`` for a real photo; default a seeded noise frame):

* ``reference`` -- ``DensePoseSettings(fast=False)``: the plain detectron2-order path;
* ``fast``      -- the default path (FrozenBN folded, channels-last, decoder over the kept box);

both with ``max_people=1`` (top-1 person) and ``min_score=0.8``. Without ``--weights`` the
weights are random in the official layout, with the class bias set so that every proposal is a
person: the RPN then keeps the full 1000 proposals and the box head sees its worst case, as
with real weights on a busy frame. A third baseline is torchvision's plain ``resnet50``
forward on the same padded input (what the ResNet alone costs).

Per stage (ms): preprocess, backbone (ResNet + FPN), rpn, box_head (incl. filtering), decoder,
densepose_head (per person, = total here), postprocess (chart -> labels/UV), render
(``render_pose(..., "dp_segm")``), total. Median and minimum over the rounds are printed (the
minimum is the better estimate on a shared machine); also how busy *other* processes kept the
CPUs meanwhile. Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
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

STAGES = ("preprocess", "backbone", "rpn", "box_head", "decoder", "densepose_head", "postprocess", "render", "total",
          "cpu_per_thread")


def _busy_jiffies() -> tuple[int, int]:
    """(all CPUs' busy jiffies, this process's jiffies) from /proc."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy = sum(f[:8]) - f[3] - f[4]
        own = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        return busy, int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


def _predictors(args: argparse.Namespace, short_side: int, device: str) -> dict[str, object]:
    import torch

    from bridge.densepose import DensePoseSettings, get_config, load_predictor
    from bridge.densepose.checkpoint import load_into
    from bridge.densepose.model import build_model
    from bridge.densepose.predictor import DensePosePredictor

    out = {}
    variants = {"reference": dict(fast=False), "fast": dict(fast=True)}
    if device == "cuda":
        variants["fast_fp16"] = dict(fast=True, fp16=True)
    for name, kw in variants.items():
        settings = DensePoseSettings(short_side=short_side, max_people=1, **kw)  # type: ignore[arg-type]
        if args.weights:
            out[name] = load_predictor(Path(args.weights), args.config, device, settings)
            continue
        from densepose_ckpt import official_arrays

        cfg = get_config(args.config)
        with torch.device("meta"):
            model = build_model(cfg)
        load_into(model, {k: torch.from_numpy(v) for k, v in official_arrays(cfg.name).items()}, cfg.name,
                  "random", assign=True)
        out[name] = DensePosePredictor(model, cfg, device, settings)
    return out


def _frame(args: argparse.Namespace) -> np.ndarray:
    if args.image:
        import cv2

        img = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"cannot read {args.image}")
        return img
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3)).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", default="800,512", help="short sides, comma separated (default 800,512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size (default 5, after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--config", default="densepose_rcnn_R_50_FPN_s1x")
    parser.add_argument("--weights", default=None, help="a real checkpoint (default: random, official layout)")
    parser.add_argument("--image", default=None, help="a BGR image file (default: 640x480 noise)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    import torch
    import torchvision

    from bridge.densepose.preprocess import output_size, padded_size
    from bridge.pose.render import render_pose

    torch.set_num_threads(args.threads)
    frame = _frame(args)
    busy0, own0 = _busy_jiffies()
    t_start = time.monotonic()
    resnet = torchvision.models.resnet50().eval()
    lines = [f"# DensePose stage, {args.config}, {args.device}, {args.threads} threads, frame "
             f"{frame.shape[1]}x{frame.shape[0]}, top-1 person, {args.repeats} rounds "
             f"({'weights ' + args.weights if args.weights else 'random weights, official layout'})", ""]
    for short in [int(s) for s in args.sizes.split(",")]:
        predictors = _predictors(args, short, args.device)
        h, w = output_size(frame.shape[0], frame.shape[1], short, 1333)
        ph, pw = padded_size(h, w)
        x = torch.randn(1, 3, ph, pw, device=args.device)
        resnet_dev = resnet.to(args.device)
        samples: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STAGES} for n in predictors}
        samples["resnet50"] = {"total": [], "cpu_per_thread": []}
        for rnd in range(args.repeats + 1):
            for name, pred in predictors.items():
                cpu0 = time.process_time()
                result = pred.predict(frame)  # type: ignore[attr-defined]
                t = time.perf_counter()
                render_pose(result, "dp_segm", frame)
                render_ms = (time.perf_counter() - t) * 1000.0
                times = dict(pred.timings)  # type: ignore[attr-defined]
                times["render"] = render_ms
                times["total"] += render_ms
                # CPU time of this process / threads: what the frame costs on an idle machine,
                # roughly (robust to other processes; OpenMP spinning can inflate it a little)
                times["cpu_per_thread"] = (time.process_time() - cpu0) * 1000.0 / args.threads
                if rnd:
                    for s in STAGES:
                        samples[name][s].append(times.get(s, 0.0))
                people = len(result.instances)
            with torch.inference_mode():
                t = time.perf_counter()
                cpu0 = time.process_time()
                resnet_dev(x)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if rnd:
                    samples["resnet50"]["total"].append((time.perf_counter() - t) * 1000.0)
                    samples["resnet50"]["cpu_per_thread"].append((time.process_time() - cpu0) * 1000.0 / args.threads)
            print(f"short side {short}: round {rnd}/{args.repeats} done ({people} person)", file=sys.stderr)
        names = list(predictors)
        lines.append(f"## short side {short}: resized {w}x{h}, padded {pw}x{ph}")
        lines.append("")
        lines.append("| stage | " + " | ".join(f"{n} median | {n} min" for n in names) + " |")
        lines.append("|---|" + "---:|---:|" * len(names))
        for s in STAGES:
            cells = []
            for n in names:
                v = samples[n][s]
                cells += [f"{statistics.median(v):.0f}", f"{min(v):.0f}"]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        r = samples["resnet50"]["total"]
        ref, fast = statistics.median(samples["reference"]["total"]), statistics.median(samples["fast"]["total"])
        lines.append("")
        rc = samples["resnet50"]["cpu_per_thread"]
        fast_cpu = statistics.median(samples["fast"]["cpu_per_thread"])
        lines.append(f"Baselines: torchvision resnet50 forward at {pw}x{ph}: median {statistics.median(r):.0f} ms, "
                     f"min {min(r):.0f} ms, CPU time per thread {statistics.median(rc):.0f} ms. fast / reference "
                     f"total: {fast / ref:.2f} (median), "
                     f"{min(samples['fast']['total']) / min(samples['reference']['total']):.2f} (min); fast / resnet50: "
                     f"{fast / statistics.median(r):.2f} (median wall), {fast_cpu / statistics.median(rc):.2f} (CPU time).")
        if short == 512 and args.device == "cpu":
            best = min(samples["fast"]["total"])
            verdict = "met" if fast < 1500 else "met at best" if best < 1500 else "NOT met in wall time"
            lines.append(f"Target (2 CPU cores, short side 512, one person, < 1500 ms): fast median "
                         f"{fast:.0f} ms, min {best:.0f} ms -> {verdict}; CPU time per thread {fast_cpu:.0f} ms "
                         f"({'under' if fast_cpu < 1500 else 'over'} 1500: the idle-machine estimate).")
        lines.append("")
    busy1, own1 = _busy_jiffies()
    wall = time.monotonic() - t_start
    hz = os.sysconf("SC_CLK_TCK")
    others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / hz / wall)
    lines.append(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                 f"{torch.__version__}, torchvision {torchvision.__version__}; other processes kept "
                 f"{others:.2f} cores busy on average during the run ({wall:.0f} s); load average at the end "
                 f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
