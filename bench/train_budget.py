#!/usr/bin/env python
"""From footage to a servable card under the default training recipe and a time budget, end to end.

    .venv/bin/python bench/train_budget.py [--minutes 5] [--count 1800] [--threads 2] [--work DIR]

Steps, each timed (wall clock) and run as a user runs them, with the real commands in subprocesses:

1. **dataset**: ``pose2person synth`` of ``--count`` puppet frames at 256 px (1,800 = a 60-s clip at
   30 frames/s; random varied poses, 10 % test split). No real video of a person exists here; the
   puppet renders stand in for the footage.
2. **train**: ``pose2person train DATA --name bench --minutes M`` with no other recipe flag, so the
   recipe comes from the hardware (a CPU: 128 px unet_128, ngf 16, batch 4) and the epochs from the
   budget. ``--minutes 5`` instead of the default 30 keeps the bench short (say which in the table).
3. **export**: ``pose2person models import RUN --epoch best`` (the best held-out epoch's card).

Then quality on *unseen* poses: :func:`bridge.puppet.eval.evaluate` (puppet poses of a seed no
training set used) for the exported model, against the mean-image and white-frame baselines in
the same run; and the run's own held-out (test split) scores from its ``scores.jsonl``.
Machine load (``os.getloadavg``) is printed before and after: a shared 2-core machine skews times.
Output: a markdown table on stdout (docs/BENCHMARKS.md keeps a copy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.monotonic() - t, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=1800)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-count", type=int, default=64)
    parser.add_argument("--work", type=Path, default=None, help="keep the files here (default: a temp dir)")
    parser.add_argument("--data", type=Path, default=None, help="train on this existing synth dataset instead of "
                        "making one (the dataset row then says so)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="train_budget_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "POSE2PERSON_MODELS": str(work / "user_models")}
    py = [sys.executable, "-m", "bridge"]
    load_before = os.getloadavg()
    rows: list[tuple[str, str, str]] = []

    data = args.data or work / "data"
    t_data = 0.0
    if args.data is None:
        t_data, _ = _run(py + ["synth", "--out", str(data), "--count", str(args.count), "--seed", "11", "--size",
                               "256", "--test-fraction", "0.1", "--no-progress"], env)
    kept = {split: len(list((data / split).iterdir())) for split in ("train", "test")}
    rows.append(("dataset", f"{t_data:.0f} s" if args.data is None else "(reused)",
                 f"synth: {kept['train']} train + {kept['test']} test pairs, 256 px"))

    t_train, done = _run(py + ["train", str(data), "--name", "bench", "--checkpoints-dir", str(work / "ck"),
                               "--minutes", f"{args.minutes:g}", "--threads", str(args.threads),
                               "--model-dir", str(work / "models" / "bench"), "--no-progress"], env)
    (work / "train.log").write_text(done.stderr + done.stdout)
    plan = re.search(r"plan: (.*)", done.stderr)
    final = re.search(r"trained (\d+) steps \((\d+) images\) in (\d+) s: ([\d.]+) images/s", done.stderr)
    replans = len(re.findall(r"re-planned", done.stderr))
    rows.append(("train", f"{t_train:.0f} s", f"budget {args.minutes:g} min; {final.group(1) if final else '?'} steps, "
                                              f"{final.group(4) if final else '?'} images/s; re-planned {replans}x"))

    run = work / "ck" / "bench"
    t_export, _ = _run(py + ["models", "import", str(run), "--epoch", "best", "--name", "bench_best", "--dest",
                             str(work / "models")], env)
    rows.append(("export", f"{t_export:.1f} s", "models import --epoch best"))
    load_after = os.getloadavg()

    sys.path.insert(0, str(REPO))
    from bridge.puppet.eval import evaluate

    scores = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines() if line.strip()]
    best = max(reversed([s for s in scores if s["set"] == "test"]), key=lambda s: s["psnr"])
    last = scores[-1]
    print(f"# train_budget: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load {load_before[0]:.2f} before / {load_after[0]:.2f} after; files in {work}\n")
    print(f"plan: {plan.group(1) if plan else '?'}\n")
    print("| step | wall | what |\n|---|---|---|")
    for step, wall, what in rows:
        print(f"| {step} | {wall} | {what} |")
    print(f"| total | {t_data + t_train + t_export:.0f} s | |\n")
    print("| model | PSNR | SSIM | on |\n|---|---|---|---|")
    for label, folder in (("last epoch (train --model-dir)", work / "models" / "bench"),
                          (f"best epoch {best['epoch']} (models import --epoch best)", work / "models" / "bench_best")):
        q, *_ = evaluate(folder, count=args.eval_count)
        print(f"| {label} | {q.psnr:.2f} dB | {q.ssim:.3f} | {q.count} unseen poses (seed 1000) |")
    print(f"| baseline: mean training image | {q.mean_image_psnr:.2f} dB | {q.mean_image_ssim:.3f} | same poses |")
    print(f"| baseline: white frame | {q.white_psnr:.2f} dB | | same poses |")
    print(f"| run's test split, epoch {last['epoch']}{' (partial)' if last['partial'] else ''} | {last['psnr']:.2f} dB "
          f"| {last['ssim']:.3f} | {last['count']} test frames (mean image {last['mean_image_psnr']:.2f} dB) |")
    print(f"| run's test split, best (epoch {best['epoch']}) | {best['psnr']:.2f} dB | {best['ssim']:.3f} | "
          f"{best['count']} test frames |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
