"""Camera frames as a pose source for keypoint models: tracker -> keypoints -> the keypoint drawing.

A camera frame sent to a card whose pose source is ``keypoints`` goes through the same drawing as
a ``/pose2person/keypoints`` message (:func:`bridge.pose.keypoints.keypoints_to_pose`, then the card's
render style), so a model trained on keypoint renders sees the same kind of picture either way.

* One :class:`~bridge.pose.tracker.tracker.BodyTracker` per stream (a client, or a client's shm
  channel), kept in a bounded least-recently-used table; a new frame size starts it afresh.
* Mirrored cameras are handled one level up (:class:`bridge.generator.stage.GeneratorStage`): the
  frame is flipped back before it is posed and the answer flipped again, so the tracker, the
  drawing and the generator all see an ordinary camera picture.
* Steady output: each tracked person's landmarks go through a One Euro filter
  (:mod:`bridge.pose.tracker.smoothing`), per stream, per identity and per joint, timed by the
  frames' arrival times; the card's ``[smoothing]`` table gives the defaults, a client may
  change them live (``/pose2person/smoothing``, carried in the frame context).
* Several people: up to ``max_people`` per stream (``serve --max-people``, or the client's
  ``/pose2person/people``); identities survive crossings (the tracker's ``reacquire_s``, the
  card's ``[tracking] reacquire_ms``).
* A lost person is held: their last smoothed pose is drawn for up to ``hold_s`` (the card's
  ``[tracking] hold_ms``) before they are dropped; only then does an empty frame give
  :class:`NoPerson`.
* Nobody found: :class:`NoPerson` (code ``no_person``), which the daemon answers with the client's
  safe picture and a ``/frame/safe`` notice, never with a generated picture of an empty pose.

Thread contract: one stream's frames are posed one at a time (the pipeline never has two frames
of one client in the pose step); different streams may be posed from different threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Mapping

import numpy as np

from ..errors import ClientError
from ..protocol import MAX_TRACKED_PEOPLE
from .keypoints import KeypointFrame
from .tracker.loader import TrackerModels, load_segmenter, load_tracker_models
from .tracker.segmentation import PersonSegmenter
from .tracker.smoothing import LandmarkSmoother, SmoothingSettings, settings_from_table
from .tracker.tracker import BodyTracker
from .tracker.weights import parse_pins

MAX_STREAMS = 64
LAYOUT = "mediapipe33"
NO_PERSON = "no_person"
MAX_PEOPLE = MAX_TRACKED_PEOPLE  # the most people one stream may track (each costs a landmark run per frame)
DEFAULT_HOLD_MS = 300.0
DEFAULT_REACQUIRE_MS = 1000.0


@dataclass(frozen=True)
class TrackingSettings:
    """The card's ``[tracking]`` table: how long a lost person's last pose is still drawn, and how
    long a person who comes back near where they were expected keeps their identity."""

    hold_ms: float = DEFAULT_HOLD_MS
    reacquire_ms: float = DEFAULT_REACQUIRE_MS

    def __post_init__(self) -> None:
        for name in ("hold_ms", "reacquire_ms"):
            value = getattr(self, name)
            if not 0 <= value <= 10000:
                raise ValueError(f"[tracking] {name} must be 0..10000, not {value!r}")


def tracking_from_table(table: Mapping[str, Any] | None) -> TrackingSettings:
    table = dict(table or {})
    unknown = set(table) - {"hold_ms", "reacquire_ms"}
    if unknown:
        raise ValueError(f"[tracking]: unknown keys {', '.join(sorted(unknown))}")
    try:
        return TrackingSettings(float(table.get("hold_ms", DEFAULT_HOLD_MS)),
                                float(table.get("reacquire_ms", DEFAULT_REACQUIRE_MS)))
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def card_settings(extra: Mapping[str, Any]) -> tuple[SmoothingSettings, TrackingSettings]:
    """The tracker card's ``[smoothing]`` and ``[tracking]`` tables (raises ValueError when wrong)."""
    smoothing, tracking = extra.get("smoothing"), extra.get("tracking")
    return (settings_from_table(smoothing if isinstance(smoothing, dict) else None),
            tracking_from_table(tracking if isinstance(tracking, dict) else None))


@dataclass(frozen=True)
class PosedPerson:
    """One person of a camera frame: ``points`` ``(33, 3)`` x, y (pixels, smoothed) and visibility;
    ``held``: lost this frame or lately, drawn at their last pose."""

    track_id: int
    points: np.ndarray
    held: bool = False


@dataclass
class _Stream:
    size: tuple[int, int]
    tracker: BodyTracker
    smoothers: dict[int, LandmarkSmoother] = field(default_factory=dict)
    last: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # id -> (smoothed points, seen)


_shared: dict[tuple[str, int], TrackerModels] = {}
_shared_lock = threading.Lock()


def _shared_model(cache: dict[tuple[str, int], Any], load: Any, folder: Path, tracker_table: Mapping[str, Any],
                  threads: int) -> Any:
    """``load(folder, pins, threads)`` once per process, folder and thread count."""
    key = (str(Path(folder).resolve()), threads)
    with _shared_lock:
        model = cache.get(key)
        if model is None:
            pins = parse_pins(tracker_table, f"{folder}/card.toml [tracker]")
            model = cache[key] = load(Path(folder), pins, threads)
        return model


def shared_tracker_models(folder: Path, tracker_table: Mapping[str, Any], threads: int = 1) -> TrackerModels:
    """The tracker's models from its card's ``folder`` and ``[tracker]`` table, loaded once per
    process and shared by every model that poses camera frames (hot swaps do not reload them).

    Raises :class:`~bridge.errors.ModelLoadError` (runtime or files missing, a pin mismatch)."""
    return _shared_model(_shared, load_tracker_models, folder, tracker_table, threads)


_segmenters: dict[tuple[str, int], PersonSegmenter] = {}


def shared_segmenter(folder: Path, tracker_table: Mapping[str, Any], threads: int = 1) -> PersonSegmenter:
    """The person-mask model from the tracker's card, loaded once per process (as
    :func:`shared_tracker_models`; raises :class:`~bridge.errors.ModelLoadError`)."""
    return _shared_model(_segmenters, load_segmenter, folder, tracker_table, threads)


class NoPerson(ClientError):
    """Nobody was found in a camera frame (a safe picture with this reason stands in)."""

    def __init__(self, frame_id: int = -1) -> None:
        super().__init__(NO_PERSON, "nobody in the picture: the body tracker found no person "
                                    "(stand in front of the camera, whole upper body in view, enough light)", frame_id)


class CameraPoser:
    """RGB camera frames -> :class:`KeypointFrame` (``mediapipe33``, pixels), per stream."""

    def __init__(self, models: TrackerModels, max_people: int = 1, max_streams: int = MAX_STREAMS,
                 smoothing: SmoothingSettings | None = None, tracking: TrackingSettings | None = None) -> None:
        if not 1 <= max_people <= MAX_PEOPLE:
            raise ValueError(f"max_people must be 1..{MAX_PEOPLE}, not {max_people}")
        self.models = models
        self.max_people = max_people
        self.max_streams = max_streams
        self.smoothing = smoothing or SmoothingSettings()
        self.tracking = tracking or TrackingSettings()
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        self._lock = threading.Lock()
        self.last_people: list[PosedPerson] = []  # the last frame's people, for tests and benches

    def _stream(self, stream: Hashable, size: tuple[int, int]) -> _Stream:
        with self._lock:
            entry = self._streams.pop(stream, None)
            if entry is None or entry.size != size:
                entry = _Stream(size, self.models.new_tracker(
                    max_people=self.max_people, reacquire_s=self.tracking.reacquire_ms / 1000.0))
            self._streams[stream] = entry
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
            return entry

    def forget(self, stream: Hashable) -> None:
        """Drop a stream's tracking state (its client left)."""
        with self._lock:
            self._streams.pop(stream, None)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def people(self, rgb: np.ndarray, stream: Hashable = None, now: float | None = None,
               max_people: int | None = None, smoothing: SmoothingSettings | None = None) -> list[PosedPerson]:
        """The people in an RGB uint8 frame (possibly none), smoothed and held, oldest identity first.

        ``now``: the frame's time in seconds (its arrival; None = now); ``max_people`` and
        ``smoothing``: the client's own settings (None = the daemon's and the card's)."""
        h, w = rgb.shape[:2]
        count = max_people or self.max_people
        if stream is None:
            # No stream (offline photos, a Ray replica): no identity to follow, so look at every frame
            # afresh rather than carry one client's region into another's frame; nothing to smooth.
            tracker = self.models.new_tracker(max_people=count, static=True)
            out = [PosedPerson(p.track_id, p.pixels(w, h)) for p in tracker.update(rgb)]
            self.last_people = out
            return out
        now = time.monotonic() if now is None else float(now)
        settings = smoothing or self.smoothing
        state = self._stream(stream, (w, h))
        if state.tracker.max_people != count:
            state.tracker.set_max_people(count)
        out = []
        for person in state.tracker.update(rgb, now):
            pts = person.pixels(w, h)
            roi = person.landmarks.roi
            smoother = state.smoothers.setdefault(person.track_id, LandmarkSmoother())
            pts[:, :2] = smoother.apply(now, pts[:, :2], (roi.width * w + roi.height * h) / 2, settings)
            state.last[person.track_id] = (pts, now)
            out.append(PosedPerson(person.track_id, pts))
        seen = {p.track_id for p in out}
        hold_s = self.tracking.hold_ms / 1000.0
        for track_id, (pts, when) in list(state.last.items()):
            if track_id in seen:
                continue
            if now - when <= hold_s and len(out) < count:
                out.append(PosedPerson(track_id, pts, held=True))
            else:  # gone: the next time this identity is seen, smoothing starts afresh
                del state.last[track_id]
                state.smoothers.pop(track_id, None)
        out.sort(key=lambda p: p.track_id)
        self.last_people = out
        return out

    def keypoints(self, rgb: np.ndarray, stream: Hashable = None, frame_id: int = 0, now: float | None = None,
                  max_people: int | None = None, smoothing: SmoothingSettings | None = None) -> KeypointFrame:
        """The people in an RGB uint8 frame (possibly none), in the frame's pixels."""
        h, w = rgb.shape[:2]
        people = self.people(rgb, stream, now, max_people, smoothing)
        pts = np.stack([p.points for p in people]) if people else np.zeros((0, 33, 3), np.float32)
        return KeypointFrame(LAYOUT, int(frame_id), int(w), int(h), pts.astype(np.float32), False)


_posers: dict[tuple[int, int, SmoothingSettings, TrackingSettings], CameraPoser] = {}


def shared_camera_poser(models: TrackerModels, max_people: int = 1, smoothing: SmoothingSettings | None = None,
                        tracking: TrackingSettings | None = None) -> CameraPoser:
    """One :class:`CameraPoser` per process and settings, shared by every model that poses camera
    frames with them: a hot swap between two such models keeps each client's tracking, smoothing
    and held people, so the first frames after a switch are tracked, not detected afresh (where
    the detector could miss a person the tracker was following)."""
    smoothing, tracking = smoothing or SmoothingSettings(), tracking or TrackingSettings()
    key = (id(models), max_people, smoothing, tracking)
    with _shared_lock:
        poser = _posers.get(key)
        if poser is None or poser.models is not models:
            poser = _posers[key] = CameraPoser(models, max_people=max_people, smoothing=smoothing, tracking=tracking)
        return poser

