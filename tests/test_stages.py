"""bridge.stages (registry and built-in numpy stages) and bridge.daemon.stats.PipelineStats."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bridge import stages
from bridge.config import PipelineConfig
from bridge.errors import ModelLoadError
from bridge.daemon.stats import LATENCY_WINDOW, PipelineStats

# ---------------------------------------------------------------------------------------------
# registry


TESTING = stages.Catalog(PipelineConfig(test_models=True))  # --test-models: throttle and fault exist


def test_available_models() -> None:
    assert stages.available()[:2] == ["passthrough", "invert"]
    assert TESTING.available()[:4] == ["passthrough", "invert", "throttle", "fault"]
    assert stages.split_name("throttle:50") == ("throttle", "50")
    assert stages.split_name("invert") == ("invert", None)
    assert stages.split_name("throttle:") == ("throttle", "")


@pytest.mark.parametrize("spec", ["nope", "", "Invert", "passthrough2", ":invert", "generator:x"])
def test_unknown_names(spec: str) -> None:
    with pytest.raises(ModelLoadError):
        stages.validate_name(spec)
    with pytest.raises(ModelLoadError) as info:
        stages.load(spec)
    assert "passthrough" in str(info.value)  # lists what is available


def test_load_builtins() -> None:
    assert stages.load("passthrough").name == "passthrough"
    assert stages.load("invert").name == "invert"
    assert TESTING.load("throttle").name == "throttle:50"  # default delay
    assert TESTING.load("throttle:20").name == "throttle:20"
    assert TESTING.load("throttle:0").name == "throttle:0"
    assert TESTING.load("throttle:10000").name == "throttle:10000"


@pytest.mark.parametrize("spec", ["throttle:20", "fault:raise", "fault:hang-after:0", "throttle"])
def test_test_stages_exist_only_with_test_models(spec: str) -> None:
    """Issue 17 (6): without --test-models a slow or failing stage is neither listed nor loadable."""
    plain = stages.Catalog(cached=True)
    assert not {"throttle", "fault"} & set(plain.available()) and not {"throttle", "fault"} & set(plain.states())
    for catalog in (plain, stages.Catalog()):
        with pytest.raises(ModelLoadError, match="--test-models"):
            catalog.validate(spec)
        with pytest.raises(ModelLoadError):
            catalog.load(spec)


@pytest.mark.parametrize("spec", ["throttle:abc", "throttle:", "throttle:-1", "throttle:10001", "throttle:nan",
                                  "throttle:inf", "throttle:1e9"])
def test_throttle_bad_args(spec: str) -> None:
    with pytest.raises(ModelLoadError):
        TESTING.load(spec)


# ---------------------------------------------------------------------------------------------
# stages


def test_passthrough_returns_input() -> None:
    stage = stages.load("passthrough")
    image = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    image.flags.writeable = False
    assert stage.process(image, "BGRA8") is image
    assert TESTING.load("throttle:0").process(image, "BGRA8") is image


def test_invert_bgra8_keeps_alpha() -> None:
    image = np.array([[[0, 1, 254, 7], [255, 128, 100, 200]]], np.uint8)
    image.flags.writeable = False  # stages get read-only inputs
    out = stages.load("invert").process(image, "BGRA8")
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out.tolist() == [[[255, 254, 1, 7], [0, 127, 155, 200]]]
    assert image.tolist() == [[[0, 1, 254, 7], [255, 128, 100, 200]]]


def test_invert_rgb8_inverts_every_channel() -> None:
    image = np.array([[[0, 10, 255]], [[100, 200, 50]]], np.uint8)
    out = stages.load("invert").process(image, "RGB8")
    assert out.tolist() == [[[255, 245, 0]], [[155, 55, 205]]]
    # same for every byte value
    every = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert (stages.load("invert").process(every, "BGR8").astype(int) + every.astype(int) == 255).all()


def test_invert_rgbaf32() -> None:
    image = np.array([[[0.0, 0.25, 1.0, 0.5], [0.75, 0.125, 0.5, 1.0]]], np.float32)
    out = stages.load("invert").process(image, "RGBAF32")
    assert out.dtype == np.float32
    assert out.tolist() == [[[1.0, 0.75, 0.0, 0.5], [0.25, 0.875, 0.5, 1.0]]]


def test_invert_twice_is_identity() -> None:
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    stage = stages.load("invert")
    assert np.array_equal(stage.process(stage.process(image, "RGBA8"), "RGBA8"), image)


# ---------------------------------------------------------------------------------------------
# stats


def test_stats_start_at_zero() -> None:
    snap = PipelineStats().snapshot()
    assert (snap.received, snap.processed, snap.dropped, snap.errors) == (0, 0, 0, 0)
    assert snap.mean_latency_ms == 0.0 and snap.p95_latency_ms == 0.0 and snap.fps == 0.0


def test_stats_counts_and_latency() -> None:
    stats = PipelineStats()
    for _ in range(7):
        stats.count_received()
    stats.count_dropped()
    stats.count_dropped(3)
    stats.count_error()
    for ms in range(100, 0, -1):  # 100 .. 1, out of order on purpose
        stats.count_processed(float(ms))
    snap = stats.snapshot()
    assert (snap.received, snap.processed, snap.dropped, snap.errors) == (7, 100, 4, 1)
    assert snap.mean_latency_ms == pytest.approx(50.5)
    assert 95.0 <= snap.p95_latency_ms <= 96.0  # nearest rank of 1..100
    assert snap.fps > 0


def test_stats_single_and_equal_latencies() -> None:
    stats = PipelineStats()
    stats.count_processed(12.5)
    snap = stats.snapshot()
    assert snap.mean_latency_ms == 12.5 and snap.p95_latency_ms == 12.5
    for _ in range(19):
        stats.count_processed(12.5)
    assert stats.snapshot().p95_latency_ms == 12.5


def test_stats_p95_of_skewed_window() -> None:
    stats = PipelineStats()
    for _ in range(95):
        stats.count_processed(1.0)
    for _ in range(5):
        stats.count_processed(1000.0)
    snap = stats.snapshot()
    assert snap.mean_latency_ms == pytest.approx((95 + 5000) / 100)
    assert snap.p95_latency_ms in (1.0, 1000.0)
    stats.count_processed(1000.0)  # 6 of 101 slow: p95 is slow
    assert stats.snapshot().p95_latency_ms == 1000.0


def test_stats_latency_window_is_bounded() -> None:
    stats = PipelineStats()
    for _ in range(LATENCY_WINDOW):
        stats.count_processed(1000.0)
    for _ in range(LATENCY_WINDOW):
        stats.count_processed(2.0)  # pushes every old value out
    snap = stats.snapshot()
    assert snap.processed == 2 * LATENCY_WINDOW
    assert snap.mean_latency_ms == 2.0 and snap.p95_latency_ms == 2.0


def test_stats_are_thread_safe() -> None:
    stats = PipelineStats()

    def work() -> None:
        for _ in range(2000):
            stats.count_received()
            stats.count_processed(1.0)
            stats.count_dropped()
            stats.count_error()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert (snap.received, snap.processed, snap.dropped, snap.errors) == (8000, 8000, 8000, 8000)
