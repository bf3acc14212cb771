"""Per-stream tracking: regions carried from frame to frame, detection only when someone is missing.

MediaPipe's pose graph (``pose_landmark_cpu.pbtxt``) runs the detector only while it has no region;
afterwards the previous frame's auxiliary landmarks give the next region, which is why video is
1.5-2x faster than photos. This tracker does the same for up to ``max_people`` people:

1. every tracked person's landmarks are computed in the region carried from the last frame; a
   person whose pose flag falls below 0.5 is lost (MediaPipe's rule);
2. when fewer than ``max_people`` are tracked, the detector runs on the same frame (so a lost
   person is found again without a frame's delay); while at least one person is tracked, it runs
   at most every ``redetect_every`` frames, which bounds the cost of looking for newcomers; for
   3 or more people, a search that finds too few at the whole frame's scale also runs on 3
   overlapping tiles (small people side by side: :meth:`PoseDetector.detect_tiled`);
3. a detection whose box overlaps a tracked person (IoU > 0.3 against the landmarks' bounds) is
   that person, not a newcomer;
4. identities through crossings (``reacquire_s`` > 0): each track keeps its body's centre and a
   smoothed velocity. When two tracks converge on one body (people crossing, one in front), the
   track whose own predicted position (centre + velocity x dt) is nearer the body keeps it; the
   other is *lost*, not forgotten. A newcomer found within ``reacquire_s`` of a loss whose centre
   lies within ``REACQUIRE_DISTANCE`` body sizes (more the longer it is lost) of a lost track's
   predicted position is that
   person again and gets the old identity back (the nearest such track); after ``reacquire_s`` a
   lost track is forgotten and a returning person is a new identity. ``reacquire_s`` 0 (the
   default here; the camera poser uses the card's hold) never links.

``static=True`` forgets every region after each frame (a photo collection: MediaPipe's
``static_image_mode``). Identities are small integers, never reused within a stream.

Thread contract: one :class:`BodyTracker` per stream, used from one thread at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .detector import TILES, PoseDetector, detection_roi, iou
from .landmarks import LandmarkModel, Landmarks
from .roi import Roi

SAME_PERSON_IOU = 0.3
CONVERGED_IOU = 0.5
DEFAULT_REDETECT_EVERY = 10
TILED_FROM = 3  # max_people from which a search that finds too few people also runs on tiles
BOUNDS_MIN_VISIBILITY = 0.5
# How near (body sizes) a newcomer must be to a lost track's predicted centre to be that person:
# the reach grows with the time lost, as the prediction grows less certain.
REACQUIRE_DISTANCE = 0.3
REACQUIRE_GROWTH = 0.5  # body sizes per second lost
JUMP = 0.2  # body sizes off its predicted centre: a carried track jumped to another body
VELOCITY_STEPS = 5  # a track's velocity: the median of its last frame-to-frame velocities
ASSUMED_FPS = 30.0  # frames without timestamps are taken as 1/30 s apart


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


SHOULDERS = (11, 12)  # a body's centre that arms and legs do not move, in view from a seat or standing


def _centre_and_size(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """A body's centre (between the shoulders) and size (mean side of the visible landmarks'
    bounds), in frame pixels."""
    scale = np.array([width, height], dtype=np.float64)
    b = landmark_bounds(points)
    centre = points[list(SHOULDERS), :2].astype(np.float64).mean(axis=0) * scale
    return centre, float(((b[2] - b[0]) * width + (b[3] - b[1]) * height) / 2)


@dataclass
class _Track:
    track_id: int
    roi: Roi
    first_frame: int
    landmarks: Landmarks | None = None
    centre: np.ndarray | None = None  # the torso's centre, pixels
    size: float = 0.0  # mean side of the visible landmarks' bounds, pixels
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # pixels per second
    seen: float = 0.0  # time of the last landmarks
    steps: list[np.ndarray] = field(default_factory=list)  # the last frame-to-frame velocities

    def predicted(self, now: float) -> np.ndarray:
        assert self.centre is not None
        return self.centre + self.velocity * max(0.0, now - self.seen)

    def deviation(self, landmarks: Landmarks, now: float, width: int, height: int) -> float:
        """How far (in body sizes) these landmarks lie from where this track expected its body."""
        if self.centre is None:
            return 0.0
        centre, size = _centre_and_size(landmarks.points, width, height)
        return float(np.linalg.norm(self.predicted(now) - centre)) / max(self.size, size, 1.0)

    def observe(self, landmarks: Landmarks, now: float, width: int, height: int) -> None:
        centre, size = _centre_and_size(landmarks.points, width, height)
        if self.centre is not None and now > self.seen:
            self.steps = (self.steps + [(centre - self.centre) / (now - self.seen)])[-VELOCITY_STEPS:]
            self.velocity = np.median(np.stack(self.steps), axis=0)  # one odd frame does not throw it
        self.landmarks, self.centre, self.size, self.seen = landmarks, centre, size, now


class BodyTracker:
    """Frames of one stream -> the people in them, identities kept across frames."""

    def __init__(self, detector: PoseDetector, landmark_model: LandmarkModel, max_people: int = 1,
                 static: bool = False, redetect_every: int = DEFAULT_REDETECT_EVERY,
                 reacquire_s: float = 0.0) -> None:
        if max_people < 1:
            raise ValueError("max_people must be >= 1")
        self.detector = detector
        self.landmark_model = landmark_model
        self.max_people = max_people
        self.static = static
        self.redetect_every = max(1, redetect_every)
        self.reacquire_s = max(0.0, reacquire_s)
        self._tracks: list[_Track] = []
        self._lost: list[_Track] = []  # recently lost tracks that a newcomer may turn out to be
        self._next_id = 0
        self._frame = 0
        self._last_detection = -(10**9)
        #: what the last :meth:`update` ran, for timings and tests: detector runs, landmark runs
        self.last_runs: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        """Forget everyone (a cut in the video, a new camera)."""
        self._tracks = []
        self._lost = []

    @property
    def tracked(self) -> int:
        return len(self._tracks)

    def set_max_people(self, count: int) -> None:
        """Change how many people are tracked; extra tracks (the newest) are dropped."""
        if count < 1:
            raise ValueError("max_people must be >= 1")
        self.max_people = count
        self._tracks = self._tracks[:count]

    @property
    def lost_ids(self) -> list[int]:
        """Identities lost within ``reacquire_s`` (a newcomer near one of them gets it back)."""
        return [t.track_id for t in self._lost]

    def update(self, rgb: np.ndarray, now: float | None = None) -> list[TrackedPerson]:
        """The people in this RGB uint8 frame, oldest track first. ``now``: the frame's time in
        seconds (its arrival; None = frames 1/30 s apart), for velocities and ``reacquire_s``."""
        h, w = rgb.shape[:2]
        if now is None:
            now = self._frame / ASSUMED_FPS
        detector_runs = landmark_runs = 0
        if self.static:
            self._tracks, self._lost = [], []
        self._lost = [t for t in self._lost if now - t.seen <= self.reacquire_s]
        found: list[tuple[_Track, Landmarks]] = []
        for track in self._tracks:
            landmarks = self.landmark_model.run(rgb, track.roi)
            landmark_runs += 1
            if landmarks is None:
                self._lose(track)
                continue
            if self.reacquire_s > 0 and track.deviation(landmarks, now, w, h) > JUMP:
                self._lose(track)  # jumped to another body (someone passing close): found again below
                continue
            clash = next((i for i, (_, other) in enumerate(found) if iou(
                landmark_bounds(landmarks.points), landmark_bounds(other.points)[None])[0] > CONVERGED_IOU), None)
            if clash is None:
                found.append((track, landmarks))
                continue
            # Two tracks on one body (people crossing): it stays with the track that expected it there.
            rival, rival_landmarks = found[clash]
            if track.deviation(landmarks, now, w, h) < rival.deviation(rival_landmarks, now, w, h):
                found[clash] = (track, landmarks)
                self._lose(rival)
            else:
                self._lose(track)
        kept: list[_Track] = []
        for track, landmarks in found:
            track.roi = landmarks.next_roi(w, h)
            track.observe(landmarks, now, w, h)
            kept.append(track)
        self._tracks = kept
        if len(kept) < self.max_people and (not kept or self._lost
                                            or self._frame - self._last_detection >= self.redetect_every):
            self._last_detection = self._frame
            detector_runs += 1
            detections = self.detector.detect(rgb)
            if self.max_people >= TILED_FROM and len(kept) + len(detections) < self.max_people:
                # Looking for several people and not all in view at the whole frame's scale: tiles.
                detections = self.detector.detect_tiled(rgb, TILES, detections)
                detector_runs += TILES
            for det in detections:
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
                if any(iou(landmark_bounds(landmarks.points), landmark_bounds(t.landmarks.points)[None])[0]
                       > SAME_PERSON_IOU for t in self._tracks if t.landmarks is not None):
                    continue  # the detection's landmarks landed on someone already tracked
                track = self._reacquire(landmarks, now, w, h)
                if track is None:
                    track = _Track(self._next_id, roi, self._frame)
                    self._next_id += 1
                track.roi = landmarks.next_roi(w, h)
                track.observe(landmarks, now, w, h)
                self._tracks.append(track)
            self._tracks.sort(key=lambda t: t.track_id)
        self._frame += 1
        self.last_runs = (detector_runs, landmark_runs)
        return [TrackedPerson(t.track_id, t.landmarks, self._frame - 1 - t.first_frame)
                for t in self._tracks if t.landmarks is not None]

    def _lose(self, track: _Track) -> None:
        if self.reacquire_s > 0 and track.centre is not None:
            self._lost = [t for t in self._lost if t.track_id != track.track_id] + [track]

    def _reacquire(self, landmarks: Landmarks, now: float, width: int, height: int) -> _Track | None:
        """The lost track this newcomer is (nearest predicted position within reach), or None."""
        best, best_d = None, np.inf
        for lost in self._lost:
            d = lost.deviation(landmarks, now, width, height)
            if d <= REACQUIRE_DISTANCE + REACQUIRE_GROWTH * max(0.0, now - lost.seen) and d < best_d:
                best, best_d = lost, d
        if best is not None:
            self._lost.remove(best)
        return best
