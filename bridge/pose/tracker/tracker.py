"""Per-stream tracking: regions carried from frame to frame, detection only when someone is missing.

MediaPipe's pose graph (``pose_landmark_cpu.pbtxt``) runs the detector only while it has no region;
afterwards the previous frame's auxiliary landmarks give the next region, which is why video is
1.5-2x faster than photos. This tracker does the same for up to ``max_people`` people:

1. every tracked person's landmarks are computed in the region carried from the last frame; a
   person whose pose flag falls below 0.5 is lost (MediaPipe's rule);
2. when fewer than ``max_people`` are tracked, the detector runs on the same frame (so a lost
   person is found again without a frame's delay); while at least one person is tracked, it runs
   at most every ``redetect_every`` frames, which bounds the cost of looking for newcomers;
3. a detection whose box overlaps a tracked person (IoU > 0.3 against the landmarks' bounds) is
   that person, not a newcomer; two tracks that converge on one body keep the older identity.

``static=True`` forgets every region after each frame (a photo collection: MediaPipe's
``static_image_mode``). Identities are small integers, never reused within a stream.

Thread contract: one :class:`BodyTracker` per stream, used from one thread at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detector import PoseDetector, detection_roi, iou
from .landmarks import LandmarkModel, Landmarks
from .roi import Roi

SAME_PERSON_IOU = 0.3
DEFAULT_REDETECT_EVERY = 10
BOUNDS_MIN_VISIBILITY = 0.5


@dataclass(frozen=True)
class TrackedPerson:
    """One person in one frame: a stable ``track_id`` within the stream and the landmarks."""

    track_id: int
    landmarks: Landmarks
    age: int  # frames since the person was first found (0 on the first)

    def pixels(self, frame_width: int, frame_height: int) -> np.ndarray:
        """``(33, 3)`` float32: x, y in frame pixels and the visibility as the score."""
        out = np.empty((len(self.landmarks.points), 3), dtype=np.float32)
        out[:, 0] = self.landmarks.points[:, 0] * frame_width
        out[:, 1] = self.landmarks.points[:, 1] * frame_height
        out[:, 2] = self.landmarks.points[:, 3]
        return out


def landmark_bounds(points: np.ndarray) -> np.ndarray:
    """Bounds ``xmin ymin xmax ymax`` (normalised) of the visible landmarks (all if none is)."""
    visible = points[:, 3] >= BOUNDS_MIN_VISIBILITY
    sel = points[visible] if visible.sum() >= 2 else points
    return np.array([sel[:, 0].min(), sel[:, 1].min(), sel[:, 0].max(), sel[:, 1].max()], dtype=np.float64)


@dataclass
class _Track:
    track_id: int
    roi: Roi
    first_frame: int
    landmarks: Landmarks | None = None


class BodyTracker:
    """Frames of one stream -> the people in them, identities kept across frames."""

    def __init__(self, detector: PoseDetector, landmark_model: LandmarkModel, max_people: int = 1,
                 static: bool = False, redetect_every: int = DEFAULT_REDETECT_EVERY) -> None:
        if max_people < 1:
            raise ValueError("max_people must be >= 1")
        self.detector = detector
        self.landmark_model = landmark_model
        self.max_people = max_people
        self.static = static
        self.redetect_every = max(1, redetect_every)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = 0
        self._last_detection = -(10**9)
        #: what the last :meth:`update` ran, for timings and tests: detector runs, landmark runs
        self.last_runs: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        """Forget everyone (a cut in the video, a new camera)."""
        self._tracks = []

    @property
    def tracked(self) -> int:
        return len(self._tracks)

    def set_max_people(self, count: int) -> None:
        """Change how many people are tracked; extra tracks (the newest) are dropped."""
        if count < 1:
            raise ValueError("max_people must be >= 1")
        self.max_people = count
        self._tracks = self._tracks[:count]

    def update(self, rgb: np.ndarray) -> list[TrackedPerson]:
        """The people in this RGB uint8 frame, oldest track first."""
        h, w = rgb.shape[:2]
        detector_runs = landmark_runs = 0
        if self.static:
            self._tracks = []
        kept: list[_Track] = []
        for track in self._tracks:
            landmarks = self.landmark_model.run(rgb, track.roi)
            landmark_runs += 1
            if landmarks is None:
                continue
            track.landmarks = landmarks
            track.roi = landmarks.next_roi(w, h)
            if any(iou(landmark_bounds(landmarks.points), landmark_bounds(k.landmarks.points)[None])[0]
                   > 0.5 for k in kept if k.landmarks is not None):
                continue  # converged on a body an older track already has
            kept.append(track)
        self._tracks = kept
        if len(kept) < self.max_people and (not kept or self._frame - self._last_detection >= self.redetect_every):
            self._last_detection = self._frame
            detector_runs += 1
            for det in self.detector.detect(rgb):
                if len(self._tracks) >= self.max_people:
                    break
                if any(iou(det.box.astype(np.float64), landmark_bounds(t.landmarks.points)[None])[0] > SAME_PERSON_IOU
                       for t in self._tracks if t.landmarks is not None):
                    continue
                roi = detection_roi(det, w, h)
                landmarks = self.landmark_model.run(rgb, roi)
                landmark_runs += 1
                if landmarks is None:
                    continue
                track = _Track(self._next_id, landmarks.next_roi(w, h), self._frame, landmarks)
                self._next_id += 1
                self._tracks.append(track)
        self._frame += 1
        self.last_runs = (detector_runs, landmark_runs)
        return [TrackedPerson(t.track_id, t.landmarks, self._frame - 1 - t.first_frame)
                for t in self._tracks if t.landmarks is not None]
