"""Health and metrics: stage timings, process figures, /health, /metrics (Prometheus 0.0.4) and the
OSC status addresses, against a real daemon on 127.0.0.1. No timing assertions: only structure,
counts and consistency."""

from __future__ import annotations

import json
import math
import re
import threading
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bridge.util import metrics
from bridge.cli.demo import dance_frames

from conftest import RunningBridge, start_bridge

P = "/pose2person"


# -- units -----------------------------------------------------------------------------------------
def test_hooks_do_nothing_outside_a_frame_and_sum_inside() -> None:
    assert metrics.end_frame() is None
    with metrics.timed("pose"):  # no frame begun: nothing recorded, nothing raised
        pass
    frame = metrics.begin_frame(1.5)
    metrics.record("pose", 2.0)
    metrics.record("pose", 0.5)
    with metrics.timed("generator"):
        pass
    got = metrics.end_frame()
    assert got is frame and got["queue"] == 1.5 and got["pose"] == 2.5 and got["generator"] >= 0
    assert metrics.end_frame() is None


def test_hooks_are_per_thread() -> None:
    metrics.begin_frame()
    seen: list[dict[str, float] | None] = []
    t = threading.Thread(target=lambda: (metrics.record("pose", 1.0), seen.append(metrics.end_frame())))
    t.start()
    t.join()
    assert seen == [None]
    assert metrics.end_frame() == {}


def test_stage_timings_are_bounded_and_percentiles_ordered() -> None:
    timings = metrics.StageTimings()
    for i in range(metrics.WINDOW * 3):
        timings.add_frame({"queue": float(i % 100), "total": 10.0 + i % 7})
    for i in range(metrics.MAX_STAGES * 2):
        timings.add(f"extra{i}", 1.0)
    figures = timings.figures()
    assert len(figures) <= metrics.MAX_STAGES
    q = figures["queue"]
    assert q.window == metrics.WINDOW and q.count == metrics.WINDOW * 3
    assert 0 <= q.p50_ms <= q.p95_ms <= q.p99_ms <= 99
    h = timings.histograms()["total"]
    assert list(h.buckets) == sorted(h.buckets) and h.buckets[-1] <= h.count == metrics.WINDOW * 3
    assert math.isclose(h.sum_s * 1000, sum(10.0 + i % 7 for i in range(metrics.WINDOW * 3)))


def test_process_figures() -> None:
    proc = metrics.process_figures()
    assert proc["rss_bytes"] > 0 and proc["open_fds"] > 2 and proc["threads"] >= 1
    # CUDA figures only where torch is loaded and CUDA initialised (never on a CPU-only machine)
    assert all({"device", "allocated_bytes", "reserved_bytes"} <= set(g) for g in proc["gpu"])


# -- a strict reader of the text format (independent of prometheus_client) ---------------------------
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                       r'(-?[0-9.e+-]+|NaN|\+Inf|-Inf)$')


def parse_exposition(text: str) -> dict[str, dict[str, object]]:
    """{family: {"type": ..., "help": ..., "samples": [(name, labels text, value)]}}; asserts the rules."""
    assert text.endswith("\n")
    families: dict[str, dict[str, object]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"{name} twice"
            families[name] = {"help": help_text, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and kind in ("counter", "gauge", "histogram", "summary", "untyped")
            families[name]["type"] = kind
        else:
            m = SAMPLE_RE.match(line)
            assert m, line
            name = m.group(1)
            kind = families[current]["type"]
            allowed = {current} if kind in ("counter", "gauge") else {
                current + s for s in ("_bucket", "_sum", "_count")}
            assert name in allowed, (line, current)
            families[current]["samples"].append((name, m.group(2) or "", float(m.group(3))))  # type: ignore[union-attr]
    for name, fam in families.items():
        if fam["type"] == "counter":
            assert name.endswith("_total"), name
    return families


def test_prometheus_writer_escapes_and_types() -> None:
    w = metrics.PromWriter()
    w.family("x_total", "counter", "a help\nwith a newline and \\", 3)
    w.family("y", "gauge", "labels", [({"model": 'we"ird\\name\n'}, 1.5)])
    w.histogram("z_seconds", "h", {"a": metrics.Histogram(tuple(range(len(metrics.BUCKETS_S))), 0.25, 99)}, "stage")
    fams = parse_exposition(w.text())
    assert fams["x_total"]["help"] == "a help\\nwith a newline and \\\\"
    assert fams["y"]["samples"] == [("y", '{model="we\\"ird\\\\name\\n"}', 1.5)]
    buckets = [s for s in fams["z_seconds"]["samples"] if s[0] == "z_seconds_bucket"]  # type: ignore[union-attr]
    assert buckets[-1][1] == '{stage="a",le="+Inf"}' and buckets[-1][2] == 99
    with pytest.raises(AssertionError):
        w.family("y", "gauge", "twice", 1)


# -- a real daemon ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path_factory.mktemp("metrics"), http=True)
    yield running
    running.stop()


def _get(daemon: RunningBridge, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(daemon.url(path), timeout=5) as r:  # with the monitor key: private figures
        return r.headers["Content-Type"], r.read()


def _drive(daemon: RunningBridge) -> None:
    """Keypoint frames and shm frames, one at a time (every one processed)."""
    with daemon.client() as client:
        kp = client.open_shm("mkp", 96, 96, "RGB8")
        client.request(f"{P}/keypoints/target", ("mkp",), f"{P}/keypoints/target")
        for frame in dance_frames(1.0, 10, 96, "coco17", 1, 0):
            client.send(f"{P}/keypoints", *frame.to_osc_args())
            client.wait_for(lambda m, f=frame: m.address == f"{P}/frame/ready" and m.args[1] == f.frame_id)
        cam = client.open_shm("mcam", 32, 24, "BGRA8")
        for fid in range(1, 11):
            client.process_shm(cam, np.full((24, 32, 4), fid, np.uint8), fid)
        kp.close()
        cam.close()


def test_health_metrics_and_osc_status_agree(daemon: RunningBridge) -> None:
    _drive(daemon)
    ctype, body = _get(daemon, "/health")
    health = json.loads(body)
    stages = health["stages"]
    # keypoint frames: pose + stage (passthrough) + publish; shm frames: input + stage + publish
    for name in ("queue", "input", "pose", "stage", "publish", "total"):
        assert stages[name]["count"] > 0, name
        assert 0 <= stages[name]["p50_ms"] <= stages[name]["p95_ms"] <= stages[name]["p99_ms"]
    assert stages["total"]["count"] == health["processed"] == 20
    assert stages["queue"]["count"] == 20 and stages["pose"]["count"] == 10 and stages["input"]["count"] == 10
    assert health["queue"] == {"pending": 0, "oldest_ms": 0.0, "ages_ms": []}
    proc = health["process"]
    assert proc["rss_bytes"] > 10 * 2**20 and proc["open_fds"] > 3 and proc["threads"] >= 3 and proc["gpu"] == []
    assert health["uptime_s"] > 0 and health["recorder"]["active"] == 0

    ctype, body = _get(daemon, "/metrics")
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    fams = parse_exposition(body.decode())
    assert fams["pose2person_frames_processed_total"]["samples"][0][2] == 20  # type: ignore[index]
    assert fams["pose2person_frames_processed_total"]["type"] == "counter"
    assert fams["process_resident_memory_bytes"]["type"] == "gauge"
    hist = fams["pose2person_stage_latency_seconds"]
    assert hist["type"] == "histogram"
    total_count = [s for s in hist["samples"] if s[0].endswith("_count") and 'stage="total"' in s[1]]  # type: ignore[union-attr]
    assert total_count[0][2] == 20

    prometheus_client = pytest.importorskip("prometheus_client.parser")  # an independent parser, if installed
    names = {f.name: f.type for f in prometheus_client.text_string_to_metric_families(body.decode())}
    assert names["pose2person_stage_latency_seconds"] == "histogram"
    assert names["pose2person_frames_received"] == "counter"  # the parser strips _total

    with daemon.client() as client:
        reply = client.request(f"{P}/status/stages", (), f"{P}/status/stages/reply").args
        assert len(reply) % 5 == 0
        groups = {str(reply[i]): reply[i + 1:i + 5] for i in range(0, len(reply), 5)}
        assert set(groups) == set(stages)
        assert groups["total"][3] == 20
        proc_reply = client.request(f"{P}/status/process", (), f"{P}/status/process/reply").args
        rss_mb, fds, threads, gpu_alloc, gpu_res, queued, oldest, uptime = proc_reply
        assert rss_mb > 10 and fds > 3 and threads >= 3 and gpu_alloc == gpu_res == -1.0 and queued == 0
        # the old reply keeps its leading fields
        status = client.request(f"{P}/status", (), f"{P}/status/reply").args
        assert status[4] == 20 and status[7] == "passthrough"
