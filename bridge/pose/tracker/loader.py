"""Loading the tracker's models once per process and making per-stream trackers from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .detector import PoseDetector
from .landmarks import LandmarkModel
from .runtime import TfliteModel
from .segmentation import PersonSegmenter
from .tracker import DEFAULT_REDETECT_EVERY, BodyTracker
from .weights import TrackerPins, verified_path


@dataclass(frozen=True)
class TrackerModels:
    """The detector and landmark model, shared by every stream of a process (each model serialises
    its own calls; tracking state lives in the per-stream :class:`BodyTracker`)."""

    detector: PoseDetector
    landmarks: LandmarkModel

    def new_tracker(self, max_people: int = 1, static: bool = False,
                    redetect_every: int = DEFAULT_REDETECT_EVERY, reacquire_s: float = 0.0) -> BodyTracker:
        return BodyTracker(self.detector, self.landmarks, max_people=max_people, static=static,
                           redetect_every=redetect_every, reacquire_s=reacquire_s)


def load_tracker_models(folder: Path, pins: TrackerPins, threads: int = 1) -> TrackerModels:
    """Verify (size + sha256) and load the detector and landmark files from ``folder``.

    Raises :class:`~bridge.pose.tracker.runtime.TrackerUnavailable` when the runtime is missing
    and :class:`~bridge.errors.ModelLoadError` when a file is missing or does not match its pin.
    """
    detector = PoseDetector(TfliteModel(verified_path(pins, folder, "detector"), threads))
    landmarks = LandmarkModel(TfliteModel(verified_path(pins, folder, "landmarks"), threads))
    return TrackerModels(detector, landmarks)


def load_segmenter(folder: Path, pins: TrackerPins, threads: int = 1) -> PersonSegmenter:
    """Verify and load the person-mask model (``segmentation`` role) from ``folder``; errors as
    :func:`load_tracker_models`."""
    return PersonSegmenter(TfliteModel(verified_path(pins, folder, "segmentation"), threads))
