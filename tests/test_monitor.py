"""The monitor tap: cheap, rate-limited thumbnails in the right orientation and colour order,
bounded tables, and no way for a bad tap to raise into the worker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bridge.daemon import monitor
from bridge.daemon.monitor import FrameTap, TapFrames, client_label, thumbnail


@dataclass
class Job:
    client: Any
    latency_ms: float = 1.5
    tap: TapFrames | None = None


def test_thumbnail_is_small_top_down_rgb() -> None:
    # A 480x640 BGRA picture stored bottom-up: red on the picture's top row.
    picture = np.zeros((480, 640, 4), np.uint8)
    picture[:8, :, 2] = 255  # top rows red (BGRA: index 2 is R)
    picture[..., 3] = 255
    thumb = thumbnail(picture[::-1].copy(), "BGRA8", origin=1)
    assert thumb.shape == (120, 160, 3) and thumb.dtype == np.uint8
    assert thumb[0, 0].tolist() == [255, 0, 0] and thumb[-1, 0].tolist() == [0, 0, 0]
    floats = thumbnail(np.ones((10, 10, 4), np.float32), "RGBAF32")
    assert floats.shape == (10, 10, 3) and floats.max() == 255


def test_thumbnails_are_rate_limited_and_state_is_bounded() -> None:
    tap = FrameTap()
    frame = np.zeros((48, 64, 4), np.uint8)
    for _ in range(20):
        tap.offer(Job(("udp", "127.0.0.1", 5000), tap=TapFrames(frame, frame, "RGBA8")))
    state = tap.state()
    (client,) = state["clients"]
    assert client["frames"] == 20 and client["version"] == 1  # one thumbnail within 1 / THUMB_HZ s
    assert client["thumbs"]["input"].startswith("data:image/jpeg;base64,") and client["thumbs"]["pose"] is None
    assert (client["width"], client["height"]) == (64, 48)
    assert len(state["history"]) == monitor.HISTORY_S
    for port in range(monitor.MAX_CLIENTS + 10):
        tap.dropped(("udp", "127.0.0.1", port))
    for k in range(monitor.MAX_ERRORS + 10):
        tap.error(("ws", "127.0.0.1", 1, 1), "ws_bad_frame", "x" * 500, k)
    state = tap.state()
    assert len(state["clients"]) == monitor.MAX_CLIENTS and len(state["errors"]) == monitor.MAX_ERRORS
    assert state["errors"][0]["frame_id"] == monitor.MAX_ERRORS + 9 and len(state["errors"][0]["message"]) == 200


def test_stage_pose_image_is_used_and_bad_taps_never_raise() -> None:
    tap = FrameTap()
    frame = np.zeros((20, 20, 3), np.uint8)

    class Stage:
        last_pose = np.full((20, 20, 3), 200, np.uint8)

    tap.offer(Job("a", tap=TapFrames(frame, frame, "RGB8")), Stage())
    assert tap.state()["clients"][0]["thumbs"]["pose"] is not None
    tap.offer(Job("b", tap=TapFrames(np.zeros((2, 2)), None, "NOPE")))  # garbage: swallowed
    tap.offer(object())  # not a job at all
    assert {c["client"] for c in tap.state()["clients"]} >= {"a"}


def test_client_labels() -> None:
    assert client_label(("udp", "127.0.0.1", 5000)) == "udp 127.0.0.1:5000"
    assert client_label(("ws", "127.0.0.1", 4242, 3)) == "ws 127.0.0.1:4242 #3"
    assert client_label((("udp", "127.0.0.1", 5000), "cam1")) == "udp 127.0.0.1:5000 shm cam1"


def test_thumbnails_are_dropped_after_their_time_to_live() -> None:
    """Privacy (docs/SECURITY.md): a camera picture lives in the tap at most THUMB_TTL_S."""
    tap = FrameTap()
    frame = np.full((32, 48, 4), 200, np.uint8)

    class Job:
        client = ("udp", "127.0.0.1", 5000)
        latency_ms = 1.0
        tap = TapFrames(frame, frame, "BGRA8")

    tap.offer(Job())
    assert tap.state()["clients"][0]["thumbs"]["input"] is not None
    assert tap.prune(time.monotonic() + monitor.THUMB_TTL_S / 2) == 0
    assert tap.prune(time.monotonic() + monitor.THUMB_TTL_S + 1) == 1
    state = tap.state()
    assert state["clients"][0]["thumbs"] == {"input": None, "pose": None, "output": None}
    assert state["clients"][0]["frames"] == 1  # the counts stay; only the pictures go
