"""Generator stage throughput: ResNet-9 and U-Net-256 at 256 and 512, per precision and
acceleration, at batch 1 and at larger batches, against plain eager fp32 PyTorch of the same
network measured in the same run (interleaved rounds, so machine noise hits all alike).

    .venv/bin/python bench/generator.py                       # CPU, the default table (~3-6 min on 2 cores)
    .venv/bin/python bench/generator.py --quick               # 2 frames per cell, a smoke test
    .venv/bin/python bench/generator.py --device cuda --precisions fp32,fp16,bf16 --accels eager,cuda-graph,compile

Random weights in the reference layout (speed does not depend on the values). "stage" cells time
``GeneratorStage.generate`` on an RGB image at the model's size (PIL squash, normalisation,
network, truncation), i.e. what a frame costs in the daemon minus transport; "baseline" is
``net(x)`` on a ready tensor in eager fp32 under ``torch.inference_mode``. Deviation: max |diff| of
the stage's uint8 output against the eager-fp32 test path's, in 1/255 steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.cards import ModelCard  # noqa: E402
from bridge.generator.engine import GeneratorEngine  # noqa: E402
from bridge.generator.nets import GeneratorSpec, build_generator  # noqa: E402
from bridge.generator.processing import InputContract  # noqa: E402
from bridge.generator.stage import GeneratorStage, ImagePose  # noqa: E402

NETS = {"resnet9": GeneratorSpec("resnet_9blocks"), "unet256": GeneratorSpec("unet_256", norm="batch", use_dropout=True)}


@dataclass
class Cell:
    label: str
    batch: int
    run: object  # callable() -> np.ndarray of uint8 outputs (batch, h, w, 3)
    times: list[float] = field(default_factory=list)
    deviation: float = float("nan")

    def fps(self) -> float:
        return self.batch / statistics.median(self.times) if self.times else float("nan")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_cells(net_name: str, size: int, device: str, precisions: list[str], accels: list[str],
               batches: list[int]) -> tuple[Cell, list[Cell], np.ndarray]:
    spec = NETS[net_name]
    torch.manual_seed(0)
    sd = build_generator(spec).state_dict()
    dev = torch.device(device)
    base_net = build_generator(spec).to(dev)
    base_net.load_state_dict(sd)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    x1 = torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1)[None].to(dev)

    def baseline() -> np.ndarray:
        with torch.inference_mode():
            y = base_net(x1)
        return ((y.float().cpu().numpy().transpose(0, 2, 3, 1) + 1) / 2 * 255).astype(np.uint8)

    contract = InputContract(load_size=size, crop_size=size)
    card = ModelCard(name=f"{net_name}@{size}")
    cells: list[Cell] = []
    for precision in precisions:
        for accel in accels:
            if precision == "fp16" and device == "cpu":
                continue
            if accel == "cuda-graph" and device != "cuda":
                continue
            if accel == "onednn" and device != "cpu":
                continue
            try:
                eng = GeneratorEngine(spec, sd, device=device, precision=precision, norm_mode="stable", accel=accel)
            except Exception as exc:  # an unavailable combination is reported, not fatal
                log(f"skip {precision}/{accel}: {exc}")
                continue
            stage = GeneratorStage(card, eng, contract, ImagePose(), "dp_segm")
            for batch in batches:
                if batch == 1:
                    cells.append(Cell(f"stage {precision} {accel}", 1,
                                      lambda stage=stage: stage.generate(rgb)[None]))
                else:
                    from bridge.generator.processing import normalize, reference_resize, to_uint8

                    def batched(eng: GeneratorEngine = eng, b: int = batch) -> np.ndarray:
                        x = np.stack([normalize(reference_resize(rgb, contract))] * b)
                        return np.stack([to_uint8(y) for y in eng.run(x)])

                    cells.append(Cell(f"stage {precision} {accel}", batch, batched))
    return Cell("baseline eager fp32", 1, baseline), cells, baseline()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nets", default="resnet9,unet256")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--accels", default="eager,onednn")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--frames", type=int, default=None, help="timed calls per cell per round (default 4 at 256, 2 at 512)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.frames = 1, 2
    out = ["| network | size | cell | batch | frames/s | x baseline | max dev (1/255) |", "|---|---|---|---|---|---|---|"]
    started = time.monotonic()
    for net_name in args.nets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            batches = [int(b) for b in args.batches.split(",")]
            base, cells, base_out = make_cells(net_name, size, args.device, args.precisions.split(","),
                                               args.accels.split(","), batches)
            frames = args.frames or (4 if size <= 256 else 2)
            everything = [base] + cells
            for c in everything:  # warm-up: tracing (TorchScript optimises after 2 runs), allocator, cuDNN
                for _ in range(3):
                    out_c = c.run()  # type: ignore[operator]
                c.deviation = float(np.abs(out_c[0].astype(int) - base_out[0].astype(int)).max())
            for _ in range(args.rounds):
                for c in everything:
                    for _ in range(frames if c.batch == 1 else max(1, frames // c.batch)):
                        t = time.perf_counter()
                        c.run()  # type: ignore[operator]
                        if args.device == "cuda":
                            torch.cuda.synchronize()
                        c.times.append(time.perf_counter() - t)
            for c in everything:
                out.append(f"| {net_name} | {size} | {c.label} | {c.batch} | {c.fps():.2f} | "
                           f"{c.fps() / base.fps():.2f}x | {c.deviation:g} |")
                log(out[-1])
    print("\n".join(out))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu}, {os.cpu_count()} logical cores"
    print(f"\ndevice: {dev}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
