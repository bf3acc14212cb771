"""The soak harness (bench/soak.py) for 30 s: keypoint clients against the puppet model and a shm frame
client, all sending above capacity, then 100 hot swaps (puppet, a second card, passthrough) under that
load. Counts and bounds only, no timings: every frame answered exactly once, no descriptor or thread
growth, bounded memory, zero frames lost or failed by a switch, zero black results."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from soak import SoakOptions, print_soak, run_soak  # noqa: E402


def test_soak_with_hot_swaps(capsys) -> None:  # type: ignore[no-untyped-def]
    report = run_soak(SoakOptions(seconds=30.0, warmup=8.0, sample=2.0, kp_clients=3, shm_clients=1, rate=30.0,
                                  size=128, frame_size=(128, 96), swaps=100))
    with capsys.disabled():
        print()
        print_soak(report)
    assert report.client_failures == [] and report.daemon_alive
    steady, swap = report.phases[1], report.phases[2]
    assert steady.sent > 0 and swap.sent > 0 and steady.processed > 0 and swap.processed > 0
    assert steady.dropped > 0, "the load should be above capacity (latest frame wins must drop)"
    for phase in report.phases:
        assert phase.unanswered == 0 and phase.errors == {} and phase.safe == 0, phase
        assert phase.sent == phase.processed + phase.dropped, phase
    assert report.swaps_done == 100
    assert report.dropped_by_swap == 0 and report.black_frames == 0
    assert report.fds_max <= report.fds_warm and report.threads_max <= report.threads_warm
    assert report.rss_growth_pct < 5.0
    # the daemon timed every stage of these frames (keypoints: pose + generator; shm frames: input + stage)
    assert {"queue", "input", "pose", "generator", "stage", "publish", "total"} <= set(report.stages)
