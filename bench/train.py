#!/usr/bin/env python
"""Training throughput of ``pose2person train`` (images per second), against baselines in the same run.

    .venv/bin/python bench/train.py [--seconds 8] [--device cpu|cuda] [--threads 2] [--json FILE]

For each configuration it builds the real training model (:mod:`bridge.train.models`: generator
from ``bridge.generator.nets``, PatchGAN, reference losses, Adam) and times full optimisation steps
(D step + G step) on random [-1, 1] batches, after two warm-up steps, in ``--rounds`` interleaved
rounds (``--seconds`` per row in all), reporting the best round (the least disturbed by other
processes: on a shared machine the best is the most repeatable figure), the median and the worst.
Baselines in the same run:

* ``G forward`` -- the generator's inference alone (no grad), batch 1: the floor a training step
  can never beat (one step costs about 3 G forwards + 3 D forwards);
* batch 1 (the reference's pix2pix default) against bigger batches, to pick the best batch.

Configurations: the shipped demo model (``unet_128``, ngf 16, ndf 16, instance norm, 128 px) and
the reference pix2pix default (``unet_256``, ngf 64, batch norm, 256 px). Other processes' CPU
use during the run is reported, since a loaded 2-core machine skews everything. Results: a
markdown table on stdout; docs/BENCHMARKS.md ("Training") keeps a copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bridge.generator.nets import set_norm_mode  # noqa: E402
from bridge.train.models import build_model  # noqa: E402
from bridge.train.options import TrainOptions, resolved  # noqa: E402

CONFIGS = {
    "demo unet_128/16 @128": dict(net_g="unet_128", ngf=16, ndf=16, norm="instance", dropout=False, crop_size=128),
    "pix2pix default unet_256/64 @256": dict(net_g="unet_256", ngf=64, ndf=64, norm="batch", dropout=True,
                                             crop_size=256),
}


def _cpu_seconds_of_others() -> float:
    """CPU seconds used by all processes minus this one (from /proc/stat), to report machine load."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0
    own = sum(os.times()[:2])
    return busy - own


class Row:
    """One measured configuration: a ready model and inputs; :meth:`run` times it for ``seconds``."""

    def __init__(self, label: str, what: str, config: dict, batch: int, forward_only: bool,
                 device: torch.device) -> None:
        self.label, self.what, self.device = label, what, device
        o = resolved(TrainOptions(dataroot=Path("."), name="bench", batch_size=batch, **config))
        self.model = build_model(o, device)
        self.forward_only = forward_only
        self.batch = batch
        size = o.crop_size
        self.a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        self.b = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        if forward_only:
            set_norm_mode(self.model.G, "stable")
            self.model.G.eval()
        self.rates: list[float] = []
        self.run(0.0)  # warm-up (two calls)
        self.rates.clear()

    def _once(self) -> None:
        if self.forward_only:
            with torch.inference_mode():
                self.model.G(self.a)
        else:
            self.model.step(self.a, self.b)

    def run(self, seconds: float) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            self._once()
            n += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.rates.append(n * self.batch / (time.perf_counter() - t0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum timed seconds per row")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configuration labels")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    others0, wall0 = _cpu_seconds_of_others(), time.perf_counter()
    rows = []
    for label in args.configs.split(","):
        config = CONFIGS[label]
        rows.append(Row(label, "G forward only (inference), batch 1", config, 1, True, device))
        for batch in (int(b) for b in args.batches.split(",")):
            if "unet_256/64" in label and device.type == "cpu" and batch > 4:
                continue  # minutes per row on 2 cores; batch 1 and 4 make the point
            rows.append(Row(label, f"train step, batch {batch}", config, batch, False, device))
    # Interleaved rounds, so a burst of load elsewhere hits every row alike; the median is reported.
    for r in range(args.rounds):
        for row in rows:
            row.run(args.seconds / args.rounds)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall0
    others = (_cpu_seconds_of_others() - others0) / wall if wall else 0.0
    print("| configuration | what | images/s, best round | median | worst |\n|---|---|---|---|---|")
    for row in rows:
        rates = sorted(row.rates)
        print(f"| {row.label} | {row.what} | {rates[-1]:.2f} | {statistics.median(rates):.2f} | {rates[0]:.2f} |")
    print(f"\ndevice {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
          f"other processes used {others:.2f} CPUs on average during the run")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "other_cpus": others,
                                               "rows": [(r.label, r.what, r.rates) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
