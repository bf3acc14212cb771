"""Does pose coverage predict how well a model draws poses it never saw?

Four synthetic training sets of the puppet ("ada"), the same number of frames each, differing only
in pose variety: a short dance looped (8 key poses), a long dance (34 key poses), 100 random poses
seen four times each, 400 random poses. For each: pose coverage (``bridge.datasets.coverage``,
the shipped probes), then the same short training with the existing ``pose2person train`` (the
puppet recipe at 128 px: unet_128, ngf 16, instance norm, no dropout, batch 4, same steps), then
PSNR/SSIM on 128 held-out random poses (``bridge.puppet.eval``: seed 1000, never trained on) and the
mean-image baseline; also PSNR on the body only (the pose image's drawn pixels grown by 4 px: a
vanished arm costs there, not diluted by the white background). Across all held-out poses of all
models: the rank correlation (Spearman) between a pose's distance to the nearest training pose
(the coverage distance) and its PSNR.

    .venv/bin/python bench/coverage_quality.py [--frames 400] [--epochs 4] [--sets 0,1,2,3] [--threads 2]
        [--out DIR] [--json F]

About 10 minutes on 2 cores (training dominates). Prints a markdown table and the machine load.
``--calibration`` only prints the coverage of reference pose sets (a few seconds): the figures
behind the 20-degree threshold in docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.datasets import coverage as cov  # noqa: E402
from bridge.datasets.layout import DatasetWriter  # noqa: E402
from bridge.pose import keypoints as kp  # noqa: E402
from bridge.puppet import eval as pe  # noqa: E402
from bridge.puppet import skeleton as pp  # noqa: E402
from bridge.puppet.synth import SynthOptions, random_sample, render_sample  # noqa: E402

ADA = pp.CHARACTERS["ada"]
SIZE = 256
HELD_OUT = 128


def pose_sets(frames: int) -> dict[str, list[pp.Pose]]:
    """Training poses per set, ``frames`` each."""
    rng = np.random.default_rng(7)
    loop = pp.dance(rng, SIZE, ADA, 96, beat=12)  # 8 key poses
    long = pp.dance(np.random.default_rng(8), SIZE, ADA, frames, beat=12)
    few = [pp.random_pose(np.random.default_rng([9, i]), SIZE, ADA) for i in range(frames // 4)]
    many = [pp.random_pose(np.random.default_rng([10, i]), SIZE, ADA) for i in range(frames)]
    return {
        "short dance, looped": [loop[i % len(loop)] for i in range(frames)],
        "long dance": long,
        f"{frames // 4} random poses x4": [few[i % len(few)] for i in range(frames)],
        f"{frames} random poses": many,
    }


def write_set(folder: Path, poses: list[pp.Pose]) -> np.ndarray:
    """Write the pairs (the last 5 % as test) and keypoints.jsonl; returns the training commons."""
    writer = DatasetWriter(folder)
    n_test = max(1, len(poses) // 20)
    records, commons = [], []
    for i, pose in enumerate(poses):
        frame = pp.keypoint_frame([pose], [ADA], SIZE, "coco17", i)
        sample = render_sample(i, frame, [ADA], "dp_segm")
        split = "test" if i >= len(poses) - n_test else "train"
        writer.write(f"{i:06d}", sample.pose_rgb, sample.person_rgb, split)
        rec = json.loads(kp.frames_to_jsonl([(f"{i:06d}", frame)]))
        rec["split"] = split
        records.append(json.dumps(rec))
        if split == "train":
            commons.append(frame.common()[0])
    (folder / "keypoints.jsonl").write_text("\n".join(records) + "\n")
    return np.stack(commons)


def train(folder: Path, name: str, work: Path, epochs: int, threads: int) -> tuple[Path, float]:
    model_dir = work / "models" / name
    cmd = [sys.executable, "-m", "bridge", "train", str(folder), "--name", name, "--checkpoints-dir",
           str(work / "checkpoints"), "--net-g", "unet_128", "--crop-size", "128", "--ngf", "16", "--ndf", "16",
           "--norm", "instance", "--dropout", "off", "--batch-size", "4", "--n-epochs", str(epochs),
           "--n-epochs-decay", str(epochs), "--sample-every", "100000", "--threads", str(threads), "--seed", "1",
           "--model-dir", str(model_dir), "--no-progress"]
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return model_dir, time.monotonic() - start


def calibration() -> None:
    """Coverage of reference pose sets at several thresholds (the threshold's justification)."""
    def rand(n: int, seed: int) -> np.ndarray:
        return np.stack([pp.pose_keypoints(pp.random_pose(np.random.default_rng([seed, i]), SIZE, ADA), ADA)
                         for i in range(n)])

    def dance(n: int, seed: int) -> np.ndarray:
        return np.stack([pp.pose_keypoints(p, ADA) for p in pp.dance(np.random.default_rng(seed), SIZE, ADA, n)])

    sets = {"3,000 random poses (the puppet's training set size)": rand(3000, 1),
            "300 random poses": rand(300, 1), "100 random poses": rand(100, 1),
            "a 1,000-frame dance (85 key poses; 40 s at 25 fps)": dance(1000, 1),
            "an 8-key-pose dance looped to 960 frames": np.concatenate([dance(96, 2)] * 10),
            "one pose": rand(1, 1)}
    probes = cov.load_probes()
    print("| pose set | covered within 15 deg | 20 deg | 25 deg | median distance |")
    print("|---|---|---|---|---|")
    for label, commons in sets.items():
        r = cov.coverage(commons, probes)
        d = r.distances
        print(f"| {label} | {np.mean(d <= 15):.0%} | {np.mean(d <= 20):.0%} | {np.mean(d <= 25):.0%} | "
              f"{np.median(d):.1f} deg |")


def body_mask(pose: np.ndarray) -> np.ndarray:
    """Where the body is: the pose image's drawn pixels (not its white background), grown by 4 px
    for clothes and hair; a limb the model leaves out costs here, not lost among white pixels."""
    drawn = (pose < 235).any(-1).astype(np.uint8)
    return cv2.dilate(drawn, np.ones((9, 9), np.uint8)).astype(bool)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff ** 2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3, help="epochs at full rate, then as many decaying")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep datasets and models here")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--calibration", action="store_true", help="only the coverage of reference pose sets")
    parser.add_argument("--sets", default="0,1,2,3", help="which training sets, by index (default all four)")
    args = parser.parse_args()
    if args.calibration:
        calibration()
        return 0
    work = args.out or Path(tempfile.mkdtemp(prefix="coverage_quality_"))
    probes = cov.load_probes()
    opts = SynthOptions(seed=pe.HELD_OUT_SEED, size=SIZE, characters=("ada",))
    held = [random_sample(opts, i) for i in range(HELD_OUT)]
    held_commons = np.stack([s.frame.common()[0] for s in held])
    held_feats = cov.pose_features(held_commons)
    poses_in, truths = pe.held_out(HELD_OUT, 128)
    mean = pe.mean_training_image(128)
    base_psnr = float(np.mean([pe.psnr(mean, t) for t in truths]))
    base_ssim = float(np.mean([pe.ssim(mean, t) for t in truths]))
    rows, all_d, all_p, all_b = [], [], [], []
    base_body = float(np.mean([masked_psnr(mean, t, body_mask(q)) for t, q in zip(truths, poses_in)]))
    chosen = {int(v) for v in args.sets.split(",")}
    for i, (label, poses) in enumerate(pose_sets(args.frames).items()):
        if i not in chosen:
            continue
        folder = work / f"set{i}"
        commons = write_set(folder, poses)
        report = cov.coverage(commons, probes)
        cov.write_picture(report, probes, commons, folder / "coverage.png")
        model_dir, seconds = train(folder, f"set{i}", work, args.epochs, args.threads)
        outputs = pe.run_generator(model_dir, poses_in)
        psnrs = np.array([pe.psnr(o, t) for o, t in zip(outputs, truths)])
        body = np.array([masked_psnr(o, t, body_mask(q)) for o, t, q in zip(outputs, truths, poses_in)])
        ssims = np.array([pe.ssim(o, t) for o, t in zip(outputs, truths)])
        near, _ = cov.nearest(held_feats, cov.pose_features(commons))
        all_d.append(near)
        all_p.append(psnrs)
        all_b.append(body)
        covered = near <= cov.THRESHOLD_DEG
        rows.append({"set": label, "frames": len(poses), "coverage": report.covered,
                     "held_out_covered": float(np.mean(near <= cov.THRESHOLD_DEG)),
                     "psnr": float(psnrs.mean()), "ssim": float(ssims.mean()), "body_psnr": float(body.mean()),
                     "body_psnr_covered": float(body[covered].mean()) if covered.any() else None,
                     "body_psnr_uncovered": float(body[~covered].mean()) if (~covered).any() else None,
                     "train_s": seconds, "within_set_spearman": spearman(near, body), "film_next": report.advice[:3]})
        print(f"{label}: coverage {report.covered:.0%}, PSNR {psnrs.mean():.2f} dB, body {body.mean():.2f} dB, "
              f"SSIM {ssims.mean():.3f} ({seconds:.0f} s training)", file=sys.stderr, flush=True)
    d, p, b = np.concatenate(all_d), np.concatenate(all_p), np.concatenate(all_b)
    pooled = spearman(d, p)
    pooled_body = spearman(d, b)
    set_rank = spearman(np.array([r["coverage"] for r in rows]), np.array([r["body_psnr"] for r in rows]))
    print(f"\n{args.frames} training frames per set; {2 * args.epochs} epochs, batch 4, 128 px; "
          f"{HELD_OUT} held-out random poses (seed {pe.HELD_OUT_SEED})\n")
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} dB"

    print("| training set | probe coverage | held-out poses covered | PSNR | SSIM | body PSNR | body PSNR, covered "
          "/ uncovered poses | training s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['coverage']:.0%} | {r['held_out_covered']:.0%} | {r['psnr']:.2f} dB | "
              f"{r['ssim']:.3f} | {r['body_psnr']:.2f} dB | {fmt(r['body_psnr_covered'])} / "
              f"{fmt(r['body_psnr_uncovered'])} | {r['train_s']:.0f} |")
    print(f"| baseline: mean training image | | | {base_psnr:.2f} dB | {base_ssim:.3f} | {base_body:.2f} dB | | |")
    print(f"\nrank correlation, coverage vs body PSNR across the {len(rows)} sets: {set_rank:+.2f}")
    print(f"rank correlation, a held-out pose's distance to the nearest training pose vs its PSNR "
          f"({len(d)} poses x models): {pooled:+.2f}; vs its body PSNR: {pooled_body:+.2f}")
    for r in rows:
        print(f"  within '{r['set']}': {r['within_set_spearman']:+.2f}; film next: "
              + "; ".join(f"{w} ({n})" for w, n in r["film_next"]))
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; work dir {work}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "pooled_spearman": pooled, "pooled_body_spearman": pooled_body,
                                         "set_spearman": set_rank,
                                         "baseline": {"psnr": base_psnr, "ssim": base_ssim}}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
