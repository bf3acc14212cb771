"""Overload: a client that sends frames four times faster than the model runs, without waiting.

Latest frame wins: the bridge must keep answering (results and drops), always work on a recent
frame (the lag stays bounded and does not grow), account for every frame exactly once, and
not grow its memory. Real daemon subprocess with ``--model throttle:40`` (a 40 ms model),
a real shared-memory channel and UDP on 127.0.0.1. No timing assertions: the 10 ms pacing
only creates the overload; every check is about order, counts and bounds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bridge.client import BridgeClient
from bridge.shm import ShmError

from conftest import start_bridge, wait_until

W, H = 64, 48
P = "/pose2person"
RUN_S = 3.0
INTERVAL_S = 0.010
MAX_GAP = 12


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def frame_for(frame_id: int) -> np.ndarray:
    frame = np.empty((H, W, 4), np.uint8)
    frame[..., 0] = frame_id & 0xFF
    frame[..., 1] = (frame_id >> 8) & 0xFF
    frame[..., 2] = np.arange(W, dtype=np.uint8)[None, :]
    frame[..., 3] = 255
    return frame


def test_overload_latest_frame_wins(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--model", "throttle:40")
    try:
        with daemon.client() as client:
            session = client.open_shm("load", W, H, "BGRA8")
            # Warm-up: a few frames one at a time, so allocations settle before measuring RSS.
            for fid in range(1, 21):
                pixels, _ = client.process_shm(session, frame_for(fid), fid)
                assert np.array_equal(pixels, frame_for(fid))
            rss_warm = rss_kib(daemon.proc.pid)
            before = client.status()

            answers: dict[int, str] = {}  # frame id -> reply kind; each id must be answered once
            ready: list[tuple[int, int]] = []  # (replied id, newest id sent when the reply arrived)
            dropped: list[tuple[int, int]] = []
            errors: list[tuple[int, str]] = []
            ready_at_send: list[int] = []  # per frame sent: how many results had arrived by then
            dropped_at_send: list[int] = []
            checked_pixels = 0
            sent_first, newest = 1000, 999

            def collect(timeout: float = 0.0) -> bool:
                nonlocal checked_pixels
                msg = client.receive(timeout)
                if msg is None:
                    return False
                if msg.address == f"{P}/frame/ready":
                    assert msg.args[0] == "load"
                    fid = int(msg.args[1])  # type: ignore[arg-type]
                    assert fid not in answers, f"frame {fid} answered twice"
                    answers[fid] = "ready"
                    ready.append((fid, newest))
                    try:
                        _, out = session.output.read(fid)
                    except ShmError:
                        pass  # already overwritten by newer results: fine under overload
                    else:
                        assert np.array_equal(out, frame_for(fid)), f"frame {fid} pixels"
                        checked_pixels += 1
                elif msg.address == f"{P}/frame/dropped":
                    fid, newer = int(msg.args[0]), int(msg.args[1])  # type: ignore[arg-type]
                    assert newer > fid
                    assert fid not in answers, f"frame {fid} answered twice"
                    answers[fid] = "dropped"
                    dropped.append((fid, newest))
                elif msg.address == f"{P}/error":
                    fid = int(msg.args[0])  # type: ignore[arg-type]
                    assert fid not in answers, f"frame {fid} answered twice"
                    answers[fid] = str(msg.args[1])
                    errors.append((fid, str(msg.args[1])))
                else:
                    raise AssertionError(f"unexpected reply {msg}")
                return True

            start = time.monotonic()
            deadline = start
            fid = sent_first
            while time.monotonic() - start < RUN_S:
                session.input.write(frame_for(fid), fid)
                client.send(f"{P}/frame/shm", "load", fid)
                newest = fid
                fid += 1
                deadline += INTERVAL_S
                while True:  # collect replies without blocking until the next send is due
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if not collect(0.0):
                        time.sleep(min(left, 0.002))
                ready_at_send.append(len(ready))
                dropped_at_send.append(len(dropped))
            sent = list(range(sent_first, newest + 1))
            # Drain: the last frames get their answers too.
            assert wait_until(lambda: (collect(0.05) or True) and len(answers) == len(sent), timeout=5.0), \
                f"{len(sent) - len(answers)} frames never answered"
            while collect(0.2):
                pass

            # Every frame answered exactly once, none unknown.
            assert sorted(answers) == sent
            assert len(sent) >= 100, "the client could not even create the overload"
            assert dropped and ready
            assert errors == [], errors[:5]

            # Replies kept coming throughout: in every window of 50 frames sent, both kinds arrived.
            window = 50
            for w0 in range(0, len(sent) - window + 1, window):
                w1 = w0 + window - 1
                assert ready_at_send[w1] > ready_at_send[w0], f"no result during frames {w0}-{w1}"
                assert dropped_at_send[w1] > dropped_at_send[w0], f"no drop during frames {w0}-{w1}"

            # Processed ids only increase: the worker always takes the newest frame.
            ids = [r for r, _ in ready]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            # Drops are announced in order too (each frame is overtaken by a newer one).
            assert [d for d, _ in dropped] == sorted(d for d, _ in dropped)

            # The bridge works on recent frames: bounded lag that does not grow.
            gaps = [newest_then - rid for rid, newest_then in ready if newest_then < sent[-1]]
            assert gaps and max(gaps) <= MAX_GAP, gaps
            third = max(1, len(gaps) // 3)
            first_mean = sum(gaps[:third]) / third
            last_mean = sum(gaps[-third:]) / third
            assert last_mean <= first_mean + 2.0, (first_mean, last_mean)

            assert checked_pixels > 0

            # Counters: everything received is processed, dropped or failed (+1 in flight).
            def settled() -> bool:
                s = client.status()
                return s.received == s.processed + s.dropped + s.errors

            wait_until(settled, timeout=3.0)
            after = client.status()
            received = after.received - before.received
            processed = after.processed - before.processed
            dropped_n = after.dropped - before.dropped
            errors_n = after.errors - before.errors
            assert received == len(sent)
            assert 0 <= received - (processed + dropped_n + errors_n) <= 1
            assert dropped_n == len(dropped) and processed == len(ready) and errors_n == 0
            assert dropped_n > 0

            # Memory: nothing accumulates per frame.
            rss_after = rss_kib(daemon.proc.pid)
            assert rss_after - rss_warm < 30 * 1024, (rss_warm, rss_after)

            # And the bridge is immediately usable again at normal pace.
            pixels, _ = client.process_shm(session, frame_for(5), 5)
            assert np.array_equal(pixels, frame_for(5))
            session.close()
        with BridgeClient("127.0.0.1", daemon.osc_port) as other:
            other.ping(1)
    finally:
        daemon.stop()
