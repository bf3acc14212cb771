"""Camera frames as a pose source for keypoint models: tracker -> keypoints -> the keypoint drawing.

A camera frame sent to a card whose pose source is ``keypoints`` goes through the same drawing as
a ``/pose2person/keypoints`` message (:func:`bridge.pose.keypoints.keypoints_to_pose`, then the card's
render style), so a model trained on keypoint renders sees the same kind of picture either way.

* One :class:`~bridge.pose.tracker.tracker.BodyTracker` per stream (a client, or a client's shm
  channel), kept in a bounded least-recently-used table; a new frame size starts it afresh.
* Mirrored cameras are handled one level up (:class:`bridge.generator.stage.GeneratorStage`): the
  frame is flipped back before it is posed and the answer flipped again, so the tracker, the
  drawing and the generator all see an ordinary camera picture.
* Nobody found: :class:`NoPerson` (code ``no_person``), which the daemon answers with the client's
  safe picture and a ``/frame/safe`` notice, never with a generated picture of an empty pose.

Thread contract: one stream's frames are posed one at a time (the pipeline never has two frames
of one client in the pose step); different streams may be posed from different threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Mapping

import numpy as np

from ..errors import ClientError
from .keypoints import KeypointFrame
from .tracker.loader import TrackerModels, load_segmenter, load_tracker_models
from .tracker.segmentation import PersonSegmenter
from .tracker.tracker import BodyTracker
from .tracker.weights import parse_pins

MAX_STREAMS = 64
LAYOUT = "mediapipe33"
NO_PERSON = "no_person"


_shared: dict[tuple[str, int], TrackerModels] = {}
_shared_lock = threading.Lock()


def shared_tracker_models(folder: Path, tracker_table: Mapping[str, Any], threads: int = 1) -> TrackerModels:
    """The tracker's models from its card's ``folder`` and ``[tracker]`` table, loaded once per
    process and shared by every model that poses camera frames (hot swaps do not reload them).

    Raises :class:`~bridge.errors.ModelLoadError` (runtime or files missing, a pin mismatch)."""
    key = (str(Path(folder).resolve()), threads)
    with _shared_lock:
        models = _shared.get(key)
        if models is None:
            pins = parse_pins(tracker_table, f"{folder}/card.toml [tracker]")
            models = load_tracker_models(Path(folder), pins, threads)
            _shared[key] = models
        return models


_segmenters: dict[tuple[str, int], PersonSegmenter] = {}


def shared_segmenter(folder: Path, tracker_table: Mapping[str, Any], threads: int = 1) -> PersonSegmenter:
    """The person-mask model from the tracker's card, loaded once per process (as
    :func:`shared_tracker_models`; raises :class:`~bridge.errors.ModelLoadError`)."""
    key = (str(Path(folder).resolve()), threads)
    with _shared_lock:
        model = _segmenters.get(key)
        if model is None:
            pins = parse_pins(tracker_table, f"{folder}/card.toml [tracker]")
            model = load_segmenter(Path(folder), pins, threads)
            _segmenters[key] = model
        return model


class NoPerson(ClientError):
    """Nobody was found in a camera frame (a safe picture with this reason stands in)."""

    def __init__(self, frame_id: int = -1) -> None:
        super().__init__(NO_PERSON, "nobody in the picture: the body tracker found no person "
                                    "(stand in front of the camera, whole upper body in view, enough light)", frame_id)


class CameraPoser:
    """RGB camera frames -> :class:`KeypointFrame` (``mediapipe33``, pixels), per stream."""

    def __init__(self, models: TrackerModels, max_people: int = 1, max_streams: int = MAX_STREAMS) -> None:
        self.models = models
        self.max_people = max_people
        self.max_streams = max_streams
        self._trackers: OrderedDict[Hashable, tuple[tuple[int, int], BodyTracker]] = OrderedDict()
        self._lock = threading.Lock()

    def _tracker(self, stream: Hashable, size: tuple[int, int]) -> BodyTracker:
        with self._lock:
            entry = self._trackers.pop(stream, None)
            if entry is None or entry[0] != size:
                entry = (size, self.models.new_tracker(max_people=self.max_people))
            self._trackers[stream] = entry
            while len(self._trackers) > self.max_streams:
                self._trackers.popitem(last=False)
            return entry[1]

    def forget(self, stream: Hashable) -> None:
        """Drop a stream's tracking state (its client left)."""
        with self._lock:
            self._trackers.pop(stream, None)

    @property
    def streams(self) -> int:
        return len(self._trackers)

    def keypoints(self, rgb: np.ndarray, stream: Hashable = None, frame_id: int = 0) -> KeypointFrame:
        """The people in an RGB uint8 frame (possibly none), in the frame's pixels."""
        h, w = rgb.shape[:2]
        # No stream (offline runs, a Ray replica): no identity to follow, so look at every frame
        # afresh rather than carry one client's region into another's frame.
        tracker = self.models.new_tracker(max_people=self.max_people, static=True) if stream is None \
            else self._tracker(stream, (w, h))
        people = tracker.update(rgb)
        pts = np.stack([p.pixels(w, h) for p in people]) if people else np.zeros((0, 33, 3), np.float32)
        return KeypointFrame(LAYOUT, int(frame_id), int(w), int(h), pts.astype(np.float32), False)
