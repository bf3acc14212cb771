"""Pipelining benchmark: one camera client, DensePose then a generator, frames in flight 1 vs 2.

A real daemon (``bridge.daemon.proc``) serves a generator card whose pose is DensePose: by
default the issue's GPU configuration, DensePose R50-FPN at short side 512 plus ResNet-9 at 256
(random weights in the real layouts: pictures do not matter here, work does), from 640x480 BGRA
frames in shared memory. One client streams frames at ``--rate`` fps (above capacity, as a
camera does: it never waits for answers) for ``--seconds`` after ``--warmup``. Each row is a
fresh daemon; the baseline is ``--pipeline-depth 1`` (one frame of the client in flight, the
stages one after the other) in the same run, and rows with ``--threads 1`` (one torch thread
per model, so on a CPU each network can have a core of its own) are added with ``--threads``.

Figures per row: processed fps and its ratio to the baseline, latency (arrival to result
readable, the reply's ``latency_ms``) p50/p95, the drop rate (frames overtaken: latest frame
wins), the daemon's ``pose`` and ``generator`` stage p50 (``/status/stages``), and **overlap**
= fps x (pose p50 + generator p50): 1.0 means the stages ran one after the other, 2.0 that they
ran side by side all the time.

    .venv/bin/python bench/pipelining.py                 # ~5 min on 2 CPU cores
    .venv/bin/python bench/pipelining.py --device cuda --precision fp16 --rate 120   # a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bridge.client import BridgeClient  # noqa: E402
from bridge.daemon.proc import DaemonProcess  # noqa: E402

log = logging.getLogger("bench.pipelining")
P = "/pose2person"


@dataclass
class Row:
    depth: int
    threads: int
    fps: float
    ratio: float
    latency_p50_ms: float
    latency_p95_ms: float
    drop_rate: float
    pose_p50_ms: float
    generator_p50_ms: float
    overlap: float


def make_models(folder: Path, short_side: int, net_g: str, size: int) -> None:
    """A DensePose card and a generator card with random weights in the real layouts."""
    import torch
    from densepose_ckpt import official_arrays, write_pkl

    from bridge.generator.nets import GeneratorSpec, build_generator

    dp = folder / "bench_densepose"
    dp.mkdir(parents=True)
    write_pkl(dp / "model_final.pkl", official_arrays("densepose_rcnn_R_50_FPN_s1x", seed=1))
    (dp / "card.toml").write_text(
        'name = "bench_densepose"\nkind = "densepose"\n[weights]\nfile = "model_final.pkl"\n'
        f'[densepose]\nconfig = "densepose_rcnn_R_50_FPN_s1x"\nshort_side = {short_side}\nmax_people = 1\n')
    gen = folder / "bench_gen"
    gen.mkdir()
    torch.manual_seed(0)
    torch.save(build_generator(GeneratorSpec(net_g)).state_dict(), gen / "latest_net_G_A.pth")
    (gen / "card.toml").write_text(
        'name = "bench_gen"\nkind = "generator"\n[weights]\nfile = "latest_net_G_A.pth"\n'
        f'[architecture]\nnet_g = "{net_g}"\nnorm = "instance"\n'
        f'[input]\npose_source = "densepose"\npose_style = "dp_segm"\nload_size = {size}\ncrop_size = {size}\n')


def run_row(opts: argparse.Namespace, work: Path, depth: int, threads: int) -> dict[str, float]:
    args = ["--model", "bench_gen", "--models-dir", str(work / "models"), "--densepose-model", "bench_densepose",
            "--allow-root", str(work / "root"), "--pipeline-depth", str(depth), "--threads", str(threads),
            "--device", opts.device, "--stall-timeout", "60"]
    if opts.precision:
        args += ["--precision", opts.precision]
    with DaemonProcess(args, shm_dir=work / "shm", start_timeout=600) as daemon, \
            BridgeClient("127.0.0.1", daemon.port, timeout=60) as client:
        session = client.open_shm("cam", 640, 480, "BGRA8")
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (480, 640, 4), dtype=np.uint8) for _ in range(4)]
        interval = 1.0 / opts.rate
        start = time.perf_counter()
        measure_from = start + opts.warmup
        end = measure_from + opts.seconds
        fid, sent, answered, dropped = 0, 0, 0, 0
        latencies: list[float] = []
        ready_at: list[float] = []
        next_send = start
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if now >= next_send:
                fid += 1
                client.submit_shm(session, frames[fid % len(frames)], fid)
                next_send += interval
                if now >= measure_from:
                    sent += 1
            msg = client.receive(max(0.0, min(next_send, end) - time.perf_counter()))
            if msg is None or time.perf_counter() < measure_from:
                continue
            if msg.address == f"{P}/frame/ready":
                answered += 1
                latencies.append(float(msg.args[2]))  # type: ignore[arg-type]
                ready_at.append(time.perf_counter())
            elif msg.address == f"{P}/frame/dropped":
                answered += 1
                dropped += 1
        stages = client.request(f"{P}/status/stages", (), f"{P}/status/stages/reply").args
    figures = {str(stages[i]): float(stages[i + 1]) for i in range(0, len(stages), 5)}  # type: ignore[arg-type]
    fps = (len(ready_at) - 1) / (ready_at[-1] - ready_at[0]) if len(ready_at) > 1 else 0.0
    lat = sorted(latencies) or [0.0]
    return {"fps": fps, "p50": statistics.median(lat), "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "drop": dropped / max(1, sent), "pose": figures.get("pose", 0.0), "generator": figures.get("generator", 0.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="measured seconds per row (default 45)")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds per row before measuring (default 15)")
    ap.add_argument("--rate", type=float, default=10.0, help="frames per second the client sends (default 10)")
    ap.add_argument("--short-side", type=int, default=512, help="DensePose input short side (default 512)")
    ap.add_argument("--net-g", default="resnet_9blocks")
    ap.add_argument("--size", type=int, default=256, help="generator load size (default 256)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, help="the generator's precision, fp16 or bf16 (default: the card's fp32)")
    ap.add_argument("--threads", action="store_true", help="add rows with --threads 1 (one torch thread per model)")
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configs = [(1, 0), (2, 0)] + ([(1, 1), (2, 1)] if opts.threads else [])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="p2p-pipe-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        work = Path(tmp)
        for sub in ("root", "shm"):
            (work / sub).mkdir()
        make_models(work / "models", opts.short_side, opts.net_g, opts.size)
        base_fps = 0.0
        for depth, threads in configs:
            log.info("row: --pipeline-depth %d --threads %d", depth, threads)
            f = run_row(opts, work, depth, threads)
            base_fps = base_fps or f["fps"]
            rows.append(Row(depth, threads, f["fps"], f["fps"] / base_fps if base_fps else 0.0, f["p50"], f["p95"],
                            f["drop"], f["pose"], f["generator"], f["fps"] * (f["pose"] + f["generator"]) / 1e3))
    load = os.getloadavg()
    print(f"\nDensePose R50-FPN short side {opts.short_side} + {opts.net_g} at {opts.size}, 640x480 BGRA8 shm, "
          f"1 client at {opts.rate:g} fps, {opts.seconds:g} s per row, device {opts.device}; "
          f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")
    print("| depth | threads | fps | vs depth 1 | latency p50 / p95 ms | drop rate | pose p50 ms | generator p50 ms "
          "| overlap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.depth} | {r.threads or 'all'} | {r.fps:.2f} | {r.ratio:.2f}x | {r.latency_p50_ms:.0f} / "
              f"{r.latency_p95_ms:.0f} | {r.drop_rate:.0%} | {r.pose_p50_ms:.0f} | {r.generator_p50_ms:.0f} "
              f"| {r.overlap:.2f} |")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
