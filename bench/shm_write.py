"""What the daemon pays for never mapping channel files (issue 18): publishing a frame into a
channel's ``.out`` ring by ``pwrite`` from a private buffer (now) against a copy into the mapped slot
(before; a client truncating the file then killed the daemon with SIGBUS).

Both run in this process on real channel files in the shm folder, interleaved round by round, so the
machine's load hits both alike; the figure to read is the ratio. A publish is the pixel copy plus the
slot's seqlock stamps (begin_write + end_write)::

    .venv/bin/python bench/shm_write.py [--rounds 200] [--sizes 1920x1080,3840x2160]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.shm import ChannelFile, Layout, create_channel_file, default_shm_dir  # noqa: E402


def publish(out: ChannelFile, frame: np.ndarray, frame_id: int) -> None:
    """What a ShmJob does with a model's result: take a slot, write the result into it, publish it
    (mapped: a copy into the slot; unmapped: a pwrite from the result)."""
    k, _ = out.begin_write()
    out.end_write(k, frame_id, pixels=frame)


def measure(width: int, height: int, rounds: int, folder: Path) -> tuple[float, float]:
    """Median ms of one publish: (mapped slot, pwrite from a private buffer)."""
    path = folder / f"bench-{width}x{height}.out"
    create_channel_file(path, Layout(width, height, "BGRA8"), "bench")
    mapped = ChannelFile(path, writable=True, mapped=True)
    unmapped = ChannelFile(path, writable=True, mapped=False)
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
    times: dict[str, list[float]] = {"mapped": [], "pwrite": []}
    for i in range(rounds + 5):
        for name, f in (("mapped", mapped), ("pwrite", unmapped)):
            t0 = time.perf_counter()
            publish(f, frame, i + 1)
            if i >= 5:  # warm-up: page faults of the first laps of the ring
                times[name].append((time.perf_counter() - t0) * 1000)
    _, check = unmapped.read()
    assert np.array_equal(check, frame)
    mapped.close()
    unmapped.close()
    path.unlink()
    return statistics.median(times["mapped"]), statistics.median(times["pwrite"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--sizes", default="1920x1080,3840x2160")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2p-shmbench-", dir=default_shm_dir()) as tmp:
        print("| frame (BGRA8) | mapped slot (before) ms | pwrite (now) ms | pwrite / mapped |")
        print("|---|---|---|---|")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            before, now = measure(w, h, args.rounds, Path(tmp))
            print(f"| {w}x{h} | {before:.2f} | {now:.2f} | {now / before:.2f} |")


if __name__ == "__main__":
    main()
