"""The camera tracker steady and for several people (issue 15): One Euro smoothing per person and
joint, the hold before "no person", identities kept when two people cross, and the live settings
(/pose2person/people, /pose2person/smoothing, --max-people).

Footage: registry photos of people (tests/photos.py) composited into 640x480 frames
(tests/crowd.py); times are given explicitly (30 fps, some frames dropped), so nothing here
depends on how fast the machine is.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pytest

from bridge import protocol
from bridge.config import resolve_pipeline
from bridge.errors import ConfigError
from bridge.pose.camera import CameraPoser, NoPerson, TrackingSettings
from bridge.pose.keypoints import LAYOUT_JOINTS
from bridge.pose.tracker.smoothing import (LandmarkSmoother, OneEuroFilter, SmoothingSettings, alpha,
                                           lag_bound_frames, settings_from_table)
from crowd import compose, crossing
from tracker_fixtures import ensure_tracker_files, tracker_models

P = protocol.PREFIX
NOSE = list(LAYOUT_JOINTS["mediapipe33"]).index("nose")
OFF = SmoothingSettings(enabled=False)


# -- the filter on its own -----------------------------------------------------------------------
def test_one_euro_by_hand() -> None:
    """MediaPipe's semantics, worked by hand: the first value passes; then the speed (scaled by the
    object size, per second) is low-passed at derivate_cutoff and sets the value's cutoff."""
    s = SmoothingSettings(min_cutoff=1.0, beta=2.0, derivate_cutoff=1.0)
    f = OneEuroFilter()
    assert f.apply(0.0, np.array([10.0]), 0.1, s)[0] == 10.0
    # t = 0.1 s: frequency 10 Hz, speed (12 - 10) * 0.1 * 10 = 2 /s
    a_d = 1 / (1 + 10 / (2 * math.pi * 1.0))
    dx = a_d * 2.0
    a = 1 / (1 + 10 / (2 * math.pi * (1.0 + 2.0 * dx)))
    assert f.apply(0.1, np.array([12.0]), 0.1, s)[0] == pytest.approx(10 + a * 2.0)
    assert alpha(1.0, 10.0) == pytest.approx(a_d)
    # time that does not advance: the value unfiltered
    assert f.apply(0.1, np.array([50.0]), 0.1, s)[0] == 50.0


def test_card_table_and_bad_values() -> None:
    assert settings_from_table(None) == SmoothingSettings(True, 0.05, 80.0, 1.0)  # MediaPipe's pose graph
    assert settings_from_table({"beta": 10, "enabled": False}) == SmoothingSettings(False, 0.05, 10.0, 1.0)
    for bad in ({"min_cutoff": 0}, {"beta": -1}, {"derivate_cutoff": float("nan")}, {"speed": 1}):
        with pytest.raises(ValueError):
            settings_from_table(bad)


def _ramp(frames: int, speed_px_frame: float, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Times (30 fps, every 7th frame dropped) and a joint moving at constant speed, with noise."""
    rng = np.random.default_rng(seed)
    idx = np.array([i for i in range(frames) if i % 7 != 6], dtype=np.float64)
    x = 100 + speed_px_frame * idx + rng.normal(0, noise, len(idx))
    return idx / 30.0, np.stack([x, np.full_like(x, 200.0)], axis=1)


def _lag_frames(t: np.ndarray, raw_x: np.ndarray, out_x: np.ndarray, speed_px_frame: float) -> float:
    """How many frames the output trails the input, in the second half (after the filter settled)."""
    half = len(t) // 2
    return float(np.mean(raw_x[half:] - out_x[half:]) / speed_px_frame)


@pytest.mark.parametrize("speed", [2.0, 6.0, 15.0])
@pytest.mark.parametrize("settings", [SmoothingSettings(), SmoothingSettings(min_cutoff=0.5, beta=5.0),
                                      SmoothingSettings(min_cutoff=1.0, beta=0.0)])
def test_smoothing_never_lags_more_than_its_setting(speed: float, settings: SmoothingSettings) -> None:
    """On a moving joint (frames dropped, so dt varies) the delay stays within the bound the settings
    give (lag_bound_frames), and more beta means less lag."""
    scale = 300.0
    t, raw = _ramp(120, speed, noise=0.5)
    smoother = LandmarkSmoother()
    out = np.stack([smoother.apply(ti, p[None], scale, settings)[0] for ti, p in zip(t, raw)])
    lag = _lag_frames(t, raw[:, 0], out[:, 0], speed)
    bound = lag_bound_frames(speed * 30, scale, 30, settings)
    assert lag <= bound * 1.15 + 0.05, (lag, bound)
    assert lag >= 0  # it trails, never leads
    if settings.beta > 0:
        more_beta = settings.with_values(beta=settings.beta * 4)
        smoother = LandmarkSmoother()
        out4 = np.stack([smoother.apply(ti, p[None], scale, more_beta)[0] for ti, p in zip(t, raw)])
        assert _lag_frames(t, raw[:, 0], out4[:, 0], speed) < lag


def test_smoothing_off_is_the_raw_signal() -> None:
    t, raw = _ramp(30, 3.0, noise=2.0)
    smoother = LandmarkSmoother()
    out = np.stack([smoother.apply(ti, p[None], 300.0, OFF)[0] for ti, p in zip(t, raw)])
    assert np.array_equal(out, raw)
    assert lag_bound_frames(90, 300, 30, OFF) == 0.0


# -- the tracker on composited photos -----------------------------------------------------------
def _still_frames(count: int) -> list[np.ndarray]:
    """The astronaut standing still, camera sensor noise differing per frame."""
    return [compose([("astronaut", 320, 480, 360)], noise=6.0, seed=i) for i in range(count)]


def _movement(points: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.linalg.norm(b[:, :2] - a[:, :2], axis=1) for a, b in zip(points, points[1:])])


@pytest.fixture(scope="module")
def models():  # noqa: ANN201
    return tracker_models()


def test_smoothing_reduces_jitter_on_a_still_person(models) -> None:  # noqa: ANN001
    frames = _still_frames(16)
    runs = {}
    for name, settings in (("raw", OFF), ("smoothed", None)):
        poser = CameraPoser(models)
        pts = []
        for i, rgb in enumerate(frames):
            people = poser.people(rgb, "still", now=i / 30, smoothing=settings)
            assert len(people) == 1 and people[0].track_id == 0
            pts.append(people[0].points)
        runs[name] = _movement(pts[2:])  # from the third frame: the region has settled
    raw, smooth = runs["raw"], runs["smoothed"]
    assert np.median(raw) > 0.2  # the noise does move the raw landmarks
    assert np.median(smooth) < 0.6 * np.median(raw), (np.median(smooth), np.median(raw))
    assert np.percentile(smooth, 95) < np.percentile(raw, 95)


def test_smoothing_follows_a_moving_person_within_its_bound(models) -> None:  # noqa: ANN001
    """A person walking across the picture: the smoothed nose trails the raw one by less than the
    bound for that speed (plus half a frame for the landmark noise)."""
    speed = 8.0  # px per frame
    frames = [compose([("astronaut", 160 + speed * i, 480, 300)], noise=3.0, seed=i) for i in range(30)]
    raw_poser, poser = CameraPoser(models), CameraPoser(models)
    raw_x, out_x, scales = [], [], []
    for i, rgb in enumerate(frames):
        raw_x.append(raw_poser.people(rgb, "walk", now=i / 30, smoothing=OFF)[0].points[NOSE, 0])
        out_x.append(poser.people(rgb, "walk", now=i / 30)[0].points[NOSE, 0])
    lag = _lag_frames(np.arange(30) / 30, np.array(raw_x), np.array(out_x), speed)
    bound = lag_bound_frames(speed * 30, 250.0, 30, SmoothingSettings())  # 250 px: smaller than the body
    assert lag <= bound + 0.5, (lag, bound)


def test_a_lost_person_is_held_then_no_person(models) -> None:  # noqa: ANN001
    from bridge.generator.stage import KeypointPose
    from bridge.util.frame_context import FrameContext, frame_context

    poser = CameraPoser(models, tracking=TrackingSettings(hold_ms=200))
    pose = KeypointPose("dp_segm", poser)
    person = _still_frames(3)
    blank = np.full((480, 640, 3), 90, np.uint8)
    times = [0.0, 1 / 30, 2 / 30]
    for i, rgb in enumerate(person):
        with frame_context(FrameContext(stream="hold", frame_id=i, time_s=times[i])):
            pose.pose_image(rgb)
    last = poser.last_people[0].points.copy()
    for t in (0.1, 0.2, 2 / 30 + 0.2):  # within 200 ms of the last sight: the last pose, held
        with frame_context(FrameContext(stream="hold", frame_id=9, time_s=t)):
            assert pose.pose_image(blank) is not None
        assert [p.held for p in poser.last_people] == [True]
        assert np.array_equal(poser.last_people[0].points, last)
    with frame_context(FrameContext(stream="hold", frame_id=10, time_s=0.3)), pytest.raises(NoPerson):
        pose.pose_image(blank)
    assert poser.last_people == []


def test_a_swap_between_keypoint_models_keeps_each_clients_tracking(models) -> None:  # noqa: ANN001
    """Two keypoint models with the same tracker settings share one CameraPoser: after a hot swap
    the client's person is still tracked (same identity, smoothing state) rather than detected
    afresh; other settings get their own poser."""
    from bridge.pose.camera import shared_camera_poser

    first, second = shared_camera_poser(models), shared_camera_poser(models)
    assert first is second
    assert shared_camera_poser(models, tracking=TrackingSettings(hold_ms=50)) is not first
    frames = _still_frames(4)
    before = first.people(frames[0], "swap-client", now=0.0)
    after = second.people(frames[1], "swap-client", now=1 / 30)
    assert len(before) == len(after) == 1 and after[0].track_id == before[0].track_id
    assert first.streams >= 1 and not after[0].held


@pytest.mark.parametrize("front", ["grace_hopper", "astronaut"])
def test_identity_stays_with_each_person_when_two_cross(models, front: str) -> None:  # noqa: ANN001
    """The astronaut walks right, Grace Hopper left, one passing in front of the other: whoever is
    seen carries the identity they started with (the hidden one is held, then found again)."""
    poser = CameraPoser(models, max_people=2)
    frames = crossing(30, front=front)
    tracks: dict[int, list[float]] = {}
    for i, rgb in enumerate(frames):
        for p in poser.people(rgb, "cross", now=i / 30):
            if not p.held:
                tracks.setdefault(p.track_id, []).append(float(p.points[NOSE, 0]))
    assert set(tracks) == {0, 1}, {k: len(v) for k, v in tracks.items()}
    first = {k: v[0] for k, v in tracks.items()}
    right_walker = min(first, key=first.get)  # starts on the left: the astronaut
    left_walker = max(first, key=first.get)
    assert np.all(np.diff(tracks[right_walker]) > -5), tracks[right_walker]  # only ever moves right
    assert np.all(np.diff(tracks[left_walker]) < 5), tracks[left_walker]
    assert tracks[right_walker][-1] > 450 and tracks[left_walker][-1] < 200  # both seen to the end
    assert len(tracks[right_walker]) + len(tracks[left_walker]) >= 45  # hidden for a few frames at most


def test_several_people_cost_a_landmark_run_each(models) -> None:  # noqa: ANN001
    from crowd import group

    for count in (1, 2):
        poser = CameraPoser(models, max_people=count)
        frames = group(2, frames=4)
        for i, rgb in enumerate(frames):
            people = poser.people(rgb, "group", now=i / 30)
        assert len(people) == count
        tracker = poser._streams["group"].tracker
        assert tracker.last_runs == (0, count)  # no detector once everyone is tracked
    # a client's own count, live: one fewer person, then back
    assert len(poser.people(frames[0], "group", now=1.0, max_people=1)) == 1


def test_four_small_people_side_by_side_are_found_on_tiles(models) -> None:  # noqa: ANN001
    """Four people 190 px high in 640x480: the whole frame at the detector's 224 px finds one; the
    tiled search finds every one, each a distinct person (their shoulders in four places), and
    once all are tracked no detector runs."""
    from crowd import group

    frames = group(4, frames=6)
    assert len(models.detector.detect(frames[0])) < 4  # why tiles are needed
    tiled = models.detector.detect_tiled(frames[0])
    assert len(tiled) == 4, [d.box for d in tiled]
    centres = sorted(float((d.box[0] + d.box[2]) / 2) for d in tiled)
    assert np.allclose(centres, [0.125, 0.375, 0.625, 0.875], atol=0.06), centres
    poser = CameraPoser(models, max_people=4)
    for i, rgb in enumerate(frames):
        people = poser.people(rgb, "four", now=i / 30)
        assert len(people) == 4 and not any(p.held for p in people), i
    assert poser._streams["four"].tracker.last_runs == (0, 4)
    xs = sorted(float(np.median(p.points[[11, 12], 0])) for p in people)
    assert np.allclose(xs, [80, 240, 400, 560], atol=40), xs


# -- settings: flag and OSC ----------------------------------------------------------------------
def test_max_people_flag_validation() -> None:
    assert resolve_pipeline().max_people == 1
    assert resolve_pipeline(max_people=4).max_people == 4
    for bad in (0, -1, protocol.MAX_TRACKED_PEOPLE + 1):
        with pytest.raises(ConfigError, match="--max-people"):
            resolve_pipeline(max_people=bad)
    from bridge.cli.main import build_parser

    args = build_parser().parse_args(["serve", "--max-people", "3"])
    assert args.max_people == 3
    with pytest.raises(ValueError):
        CameraPoser(None, max_people=0)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # noqa: ANN201
    from bridge.client import BridgeClient
    from bridge.daemon.proc import DaemonProcess

    ensure_tracker_files()
    with DaemonProcess(["--max-people", "2"], shm_dir=tmp_path_factory.mktemp("shm")) as running:
        with BridgeClient("127.0.0.1", running.port, timeout=60) as c:
            yield c


def test_people_round_trip_and_bad_values(client) -> None:  # noqa: ANN001
    from bridge.client import RemoteError

    assert client.request(f"{P}/people", (), f"{P}/people").args == (2,)  # the daemon's --max-people
    assert client.request(f"{P}/people", (3,), f"{P}/people").args == (3,)
    assert client.request(f"{P}/people", (1.0,), f"{P}/people").args == (1,)  # Pd sends floats
    for bad in ((0,), (protocol.MAX_TRACKED_PEOPLE + 1,), ("two",)):
        with pytest.raises(RemoteError) as err:
            client.request(f"{P}/people", bad, f"{P}/people")
        assert err.value.code == "bad_arguments"
    assert client.request(f"{P}/people", (), f"{P}/people").args == (1,)  # unchanged by the refusals


def test_smoothing_round_trip_and_bad_values(client) -> None:  # noqa: ANN001
    from bridge.client import RemoteError

    def ask(*args: object) -> tuple:
        reply = client.request(f"{P}/smoothing", args, f"{P}/smoothing").args
        return reply[0], *(round(v, 4) for v in reply[1:])

    assert ask() == (1, 0.05, 80.0, 1.0)  # the card's: MediaPipe's pose graph values
    assert ask(0) == (0, 0.05, 80.0, 1.0)
    assert ask(0.5, 20.0) == (1, 0.5, 20.0, 1.0)
    assert ask(0.5, 20.0, 2.0) == (1, 0.5, 20.0, 2.0)
    assert ask(0) == (0, 0.5, 20.0, 2.0)
    assert ask(1) == (1, 0.5, 20.0, 2.0)
    for bad in ((2,), (0.0, 10.0), (1.0, -1.0), (1.0, 1.0, 0.0), ("on",), (1.0, 2.0, 3.0, 4.0)):
        with pytest.raises(RemoteError) as err:
            client.request(f"{P}/smoothing", bad, f"{P}/smoothing")
        assert err.value.code == "bad_arguments", bad
    assert ask() == (1, 0.5, 20.0, 2.0)
