"""``serve --engine ray`` against ``--engine local`` on one machine, measured in the same run.

    .venv/bin/python bench/ray_engine.py            # the default table (~4 min on 2 cores)
    .venv/bin/python bench/ray_engine.py --quick    # a smoke test (~1.5 min)

Three daemons in turn, each a real ``python -m bridge serve`` on free ports: ``local``, ``ray``
with 1 replica and ``ray`` with 2 replicas (each ray daemon starts its private local cluster on
loopback, as ``serve --engine ray`` does without ``--ray-address``). Per daemon and model
(``passthrough``; ``gen``, a small generator card made here: ResNet-6 blocks, ngf 8, 128x128,
random weights):

* **latency**: one client, closed loop over shared memory (BGRA8 frames at 256x256 and
  640x480), median / p95 client round trip in ms; the ray daemons' excess over the local one is
  the engine's per-frame overhead (object store in and out, the Serve handle, the replica hop);
* **throughput**: ``--clients`` clients streaming closed loop at 256x256 for ``--seconds``,
  frames answered per second in total.

Replicas reserve 1 CPU each (``--cpus-per-replica 1``), so Ray gives each replica's torch one
thread; the local engine's torch uses both cores. Prints a markdown table (stdout) and machine
facts; numbers are medians of one run, so compare ratios on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.client import BridgeClient  # noqa: E402

SIZES = ((256, 256), (640, 480))
ENGINES = (("local", ()), ("ray, 1 replica", ("--engine", "ray", "--replicas", "1")),
           ("ray, 2 replicas", ("--engine", "ray", "--replicas", "2")))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_card(root: Path) -> Path:
    """A models/ dir with the card ``gen`` (pytorch-CycleGAN-and-pix2pix layout, random weights)."""
    import torch

    from bridge.generator.checkpoint import write_train_opt
    from bridge.generator.nets import GeneratorSpec, build_generator

    torch.manual_seed(0)
    folder = root / "checkpoints" / "gen"
    folder.mkdir(parents=True)
    net = build_generator(GeneratorSpec("resnet_6blocks", ngf=8, norm="instance"))
    torch.save(net.state_dict(), folder / "latest_net_G.pth")
    write_train_opt(folder / "train_opt.txt", {
        "netG": "resnet_6blocks", "ngf": 8, "norm": "instance", "no_dropout": True, "input_nc": 3, "output_nc": 3,
        "load_size": 128, "crop_size": 128, "preprocess": "resize_and_crop", "direction": "AtoB",
        "model": "pix2pix", "name": "gen"})
    dest = root / "models"
    done = subprocess.run([sys.executable, "-m", "bridge", "models", "import", str(folder), "--dest", str(dest),
                           "--pose-source", "image"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"models import failed:\n{done.stderr}")
    return dest


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    started_s: float = 0.0

    def stop(self) -> float:
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.perf_counter() - t0


def start_daemon(tmp: Path, models: Path, extra: tuple[str, ...]) -> Daemon:
    root, shm = tmp / "root", tmp / "shm"
    root.mkdir(parents=True, exist_ok=True)
    shm.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bridge", "serve", "--osc-port", "0", "--no-http", "--no-zeroconf",
           "--allow-root", str(root), "--shm-dir", str(shm), "--models-dir", str(models), "--model", "passthrough",
           *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    daemon = Daemon(proc, 0)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            daemon.lines.append(line.rstrip("\n"))
            if "ready (model" in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(300) or proc.poll() is not None:
        proc.kill()
        raise SystemExit("daemon did not start:\n" + "\n".join(daemon.lines[-30:]))
    daemon.started_s = time.perf_counter() - t0
    daemon.port = int(re.search(r"osc\.udp://127\.0\.0\.1:(\d+)", "\n".join(daemon.lines)).group(1))  # type: ignore[union-attr]
    return daemon


def frame(w: int, h: int, seed: int) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def latency(port: int, w: int, h: int, frames: int) -> tuple[float, float]:
    client = BridgeClient("127.0.0.1", port, timeout=60)
    session = client.open_shm(f"lat{w}x{h}", w, h, "BGRA8")
    imgs = [frame(w, h, i) for i in range(4)]
    try:
        for i in range(5):  # warm-up: caches, traced shapes, the object store's first buffers
            client.process_shm(session, imgs[i % 4], i, timeout=60)
        samples = []
        for i in range(5, 5 + frames):
            t0 = time.perf_counter_ns()
            client.process_shm(session, imgs[i % 4], i, timeout=60)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        client.close_shm(session)
        client.close()
    return float(np.median(samples)), float(np.percentile(samples, 95))


def throughput(port: int, clients: int, seconds: float, w: int = 256, h: int = 256) -> float:
    counts = [0] * clients
    stop = threading.Event()
    errors: list[str] = []

    def run(c: int) -> None:
        client = BridgeClient("127.0.0.1", port, timeout=60)
        session = client.open_shm(f"tp{c}", w, h, "BGRA8")
        img = frame(w, h, c)
        i = 0
        try:
            client.process_shm(session, img, i, timeout=60)
            while not stop.is_set():
                i += 1
                client.process_shm(session, img, i, timeout=60)
                counts[c] += 1
        except Exception as exc:  # report, do not hang the bench
            errors.append(f"client {c}: {exc}")
        finally:
            client.close_shm(session)
            client.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # every client past its first frame
    start = list(counts)
    t0 = time.perf_counter()
    time.sleep(seconds)
    done = sum(counts) - sum(start)
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(120)
    if errors:
        log("errors: " + "; ".join(errors))
    return done / elapsed


def switch(port: int, model: str) -> None:
    client = BridgeClient("127.0.0.1", port, timeout=60)
    try:
        client.set_model(model, timeout=300)
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames and shorter throughput runs")
    ap.add_argument("--frames", type=int, default=None, help="latency frames per cell (default 100; quick 20)")
    ap.add_argument("--seconds", type=float, default=None, help="throughput seconds per cell (default 8; quick 3)")
    ap.add_argument("--clients", type=int, default=4, help="throughput clients (default 4)")
    args = ap.parse_args()
    frames = args.frames or (20 if args.quick else 100)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    tmp = Path(tempfile.mkdtemp(prefix="p2pbench", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    results: dict[str, dict[str, object]] = {}
    try:
        models = make_card(tmp)
        for label, extra in ENGINES:
            log(f"== {label}")
            daemon = start_daemon(tmp / label.replace(" ", "").replace(",", "_"), models, extra)
            row: dict[str, object] = {"start_s": daemon.started_s}
            timing = re.search(r"Ray start ([\d.]+) s, deployment ([\d.]+) s", "\n".join(daemon.lines))
            if timing:
                row["ray_start_s"], row["deploy_s"] = float(timing.group(1)), float(timing.group(2))
            try:
                for model in ("passthrough", "gen"):
                    t0 = time.perf_counter()
                    switch(daemon.port, model)
                    row[f"switch_{model}_s"] = time.perf_counter() - t0
                    for w, h in SIZES:
                        row[f"{model} {w}x{h}"] = latency(daemon.port, w, h, frames if model == "passthrough"
                                                          else max(10, frames // 3))
                        log(f"   {model} {w}x{h}: {row[f'{model} {w}x{h}']}")
                    row[f"{model} fps"] = throughput(daemon.port, args.clients, seconds)
                    log(f"   {model} throughput: {row[f'{model} fps']:.1f} fps")
            finally:
                row["stop_s"] = daemon.stop()
            results[label] = row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, frames, seconds, args.clients)
    return 0


def print_table(results: dict[str, dict[str, object]], frames: int, seconds: float, clients: int) -> None:
    local = results["local"]
    print(f"\nPer-frame client round trip over shm, BGRA8, median / p95 ms ({frames} frames; generator "
          f"{max(10, frames // 3)}); overhead = median minus local's median\n")
    print("| engine | " + " | ".join(f"{m} {w}x{h}" for m in ("passthrough", "gen") for w, h in SIZES) + " |")
    print("|---|" + "---|" * (2 * len(SIZES)))
    for label, row in results.items():
        cells = []
        for m in ("passthrough", "gen"):
            for w, h in SIZES:
                med, p95 = row[f"{m} {w}x{h}"]  # type: ignore[misc]
                base = local[f"{m} {w}x{h}"][0]  # type: ignore[index]
                extra = "" if label == "local" else f" (+{med - base:.2f})"
                cells.append(f"{med:.2f} / {p95:.2f}{extra}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nThroughput at 256x256, {clients} clients streaming closed loop for {seconds:g} s, frames/s\n")
    print("| engine | passthrough | gen | daemon ready (s) | Ray start + deployment (s) | switch to gen (s) | stop (s) |")
    print("|---|---|---|---|---|---|---|")
    for label, row in results.items():
        ray_s = f"{row['ray_start_s']:.1f} + {row['deploy_s']:.1f}" if "ray_start_s" in row else "-"
        print(f"| {label} | {row['passthrough fps']:.1f} | {row['gen fps']:.1f} | {row['start_s']:.1f} | {ray_s} | "
              f"{row['switch_gen_s']:.2f} | {row['stop_s']:.1f} |")
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    import torch

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}, ray {ray_version}; load average after the run {os.getloadavg()[0]:.2f}; "
          "no GPU (CPU replicas only)")


if __name__ == "__main__":
    sys.exit(main())
