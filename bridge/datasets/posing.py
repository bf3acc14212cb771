"""Where ``dataset build`` gets each frame's pose, drawn exactly as the daemon will serve it.

A model serves live only what it was trained on, so every source here draws the pose image the
way the daemon's matching pose source does (``bridge.generator.stage``):

==================  ==========================  ================================================
``--pose``          card ``pose_source``        what happens to a frame
==================  ==========================  ================================================
``tracker``         ``keypoints``               the camera tracker (``bridge.pose.camera``), one
  (default)                                     tracking stream per input, timed by the frames'
                                                timestamps, smoothed and held as served; the
                                                keypoint drawing over white
``keypoints``       ``keypoints``               a keypoint file per input (OpenPose JSON, ``.csv``,
                                                ``.jsonl``); the keypoint drawing over white
``tracker-densepose`` ``tracker-densepose``     the tracker's keypoints drawn as DensePose parts,
                                                shaped by the person mask, over the frame
``densepose``       ``densepose``               DensePose (its weights), over the frame
==================  ==========================  ================================================

Every source answers :class:`Posed`: the pose, or the reason the frame is dropped: ``unreadable``,
``no_keypoints`` (a keypoint file has no entry), ``no_person``, ``lost_track`` (the tracker lost
the person this frame and the daemon would still draw their last pose: that pose does not match
the photo), ``too_many_people``. The tracker looks for one person more than ``max_people`` so a
bystander walking in is seen and the frame dropped rather than half-drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import cards
from ..errors import ConfigError, ModelLoadError
from ..pose import keypoints as kp
from ..pose.types import PoseResult
from .frames import Frame

log = logging.getLogger(__name__)
TRACKER_LAYOUT = "mediapipe33"


@dataclass(frozen=True)
class Posed:
    """One frame's pose: ``result`` to draw (None when dropped, with ``reason``), and the
    keypoints it came from (for pose coverage; None for DensePose without the tracker)."""

    result: PoseResult | None
    reason: str = ""
    keypoints: kp.KeypointFrame | None = None


class DatasetPoser(Protocol):
    """A pose source for ``dataset build``."""

    method: str  # --pose value
    pose_source: str  # the card's pose_source a model of this data serves with
    over_frame: bool  # pose image drawn over the camera frame (DensePose styles), else over white
    keypoint_layout: str | None

    def start(self, label: str, arg: int) -> None:
        """A new input begins (its own tracking stream; ``arg``: its command-line position)."""

    def pose(self, frame: Frame, bgr: np.ndarray) -> Posed:
        """The pose of one readable frame."""


def _count_reason(frame: kp.KeypointFrame, min_score: float, max_people: int) -> tuple[PoseResult | None, str]:
    result = kp.keypoints_to_pose(frame, min_score)
    if result.empty:
        return None, "no_person"
    if len(result.instances) > max_people:
        return None, "too_many_people"
    return result, ""


@dataclass
class KeypointFilePoser:
    """Keypoints from files, one per command-line input (``files[arg]``), drawn over white.

    Keypoints made for another frame size (the file's own width/height differ from the frame's)
    are scaled to the frame, axis by axis, with one warning per input saying so."""

    files: list[dict[str, kp.KeypointFrame]]
    min_score: float = kp.DEFAULT_MIN_SCORE
    max_people: int = 1
    method: str = "keypoints"
    pose_source: str = "keypoints"
    over_frame: bool = False
    warnings: list[str] = field(default_factory=list)
    _arg: int = 0
    _label: str = ""
    _warned: bool = False

    @property
    def keypoint_layout(self) -> str | None:
        for table in self.files:
            for frame in table.values():
                return frame.layout
        return None

    def start(self, label: str, arg: int) -> None:
        self._arg, self._label, self._warned = arg, label, False

    def pose(self, frame: Frame, bgr: np.ndarray) -> Posed:
        found = self.files[self._arg].get(frame.key)
        if found is None:
            return Posed(None, "no_keypoints")
        h, w = bgr.shape[:2]
        placeholder = found.width == kp.MAX_FRAME_SIDE and found.height == kp.MAX_FRAME_SIDE
        if not placeholder and (found.width, found.height) != (w, h):
            sx, sy = w / found.width, h / found.height
            if not self._warned:
                self._warned = True
                message = (f"{self._label}: keypoints are for {found.width}x{found.height} frames, the frames are "
                           f"{w}x{h}: scaled x by {sx:.3g} and y by {sy:.3g}"
                           + ("" if abs(sx - sy) < 0.01 * max(sx, sy) else
                              " (the aspect ratios differ: keypoints of a cropped or padded copy will not line "
                              "up; make them from these frames)"))
                self.warnings.append(message)
                log.warning("%s", message)
            pts = found.people.copy()
            pts[..., 0] *= np.float32(sx)
            pts[..., 1] *= np.float32(sy)
            found = kp.KeypointFrame(found.layout, found.frame_id, w, h, pts, found.normalised)
        else:
            found = kp.with_size(found, w, h)
        result, reason = _count_reason(found, self.min_score, self.max_people)
        return Posed(result, reason, found)


def tracker_card() -> cards.ModelCard:
    """The camera tracker's card (``models/blazepose``), or ConfigError saying how to get it."""
    from ..pose.tracker.weights import TRACKER_CARD

    card = cards.find_card(TRACKER_CARD, cards.default_model_dirs())
    if card is None or card.kind != "tracker":
        raise ConfigError(f"the camera tracker's card models/{TRACKER_CARD} is missing; it ships with the project")
    return card


class TrackerPoser:
    """The camera tracker as the daemon runs it for a keypoint model (one stream per input; the
    card's smoothing and hold), optionally shaped like DensePose (``segmenter``)."""

    def __init__(self, min_score: float = kp.DEFAULT_MIN_SCORE, max_people: int = 1, shaped: bool = False,
                 threads: int = 1) -> None:
        from ..pose.camera import MAX_PEOPLE, CameraPoser, card_settings, shared_segmenter, shared_tracker_models

        card = tracker_card()
        table = card.extra.get("tracker")
        table = table if isinstance(table, dict) else {}
        try:
            smoothing, tracking = card_settings(card.extra)
            models = shared_tracker_models(card.folder, table, threads)
            self.segmenter = shared_segmenter(card.folder, table, threads) if shaped else None
        except ValueError as exc:
            raise ConfigError(f"{card.folder}/card.toml: {exc}") from None
        except ModelLoadError as exc:
            raise ConfigError(f"the camera tracker cannot run: {exc} (`pose2person models fetch blazepose`, which "
                              "`make run` does; or give --keypoints files)") from None
        self.poser = CameraPoser(models, max_people=min(max_people + 1, MAX_PEOPLE), smoothing=smoothing,
                                 tracking=tracking)
        self.min_score, self.max_people, self.shaped = min_score, max_people, shaped
        self.method = "tracker-densepose" if shaped else "tracker"
        self.pose_source = "tracker-densepose" if shaped else "keypoints"
        self.over_frame = shaped
        self.keypoint_layout: str | None = TRACKER_LAYOUT
        self._stream = 0

    def start(self, label: str, arg: int) -> None:
        self.poser.forget(self._stream)
        self._stream += 1

    def pose(self, frame: Frame, bgr: np.ndarray) -> Posed:
        from ..pose.shaped import shape_to_mask

        rgb = np.ascontiguousarray(bgr[..., ::-1])
        h, w = rgb.shape[:2]
        people = self.poser.people(rgb, self._stream, now=frame.time_s)
        seen = [p for p in people if not p.held]
        if not people:
            return Posed(None, "no_person")
        if len(seen) < len(people) and len(seen) <= self.max_people:
            return Posed(None, "lost_track")
        pts = np.stack([p.points for p in seen]).astype(np.float32)
        keypoints = kp.KeypointFrame(TRACKER_LAYOUT, 0, w, h, pts)
        result, reason = _count_reason(keypoints, self.min_score, self.max_people)
        if result is not None and self.segmenter is not None:
            result = shape_to_mask(result, self.segmenter.mask(rgb))
            if result.empty:
                result, reason = None, "no_person"
        return Posed(result, reason, keypoints)


class DensePosePoser:
    """DensePose (``bridge.densepose``) on each frame, drawn over it as the DensePose stage serves
    it. Keypoints for pose coverage come from the tracker when it can run (else none)."""

    method = "densepose"
    pose_source = "densepose"
    over_frame = True
    keypoint_layout: str | None = None

    def __init__(self, weights: str | None, config: str, device: str, max_people: int = 1) -> None:
        try:
            from ..densepose import load_predictor
        except ImportError as exc:
            raise ConfigError(f"DensePose is not available in this build ({exc})") from None
        path = Path(weights) if weights else self._card_weights(config)
        self.predictor = load_predictor(path, config, device)
        self.max_people = max_people
        try:
            self.tracker: TrackerPoser | None = TrackerPoser(max_people=max_people)
        except ConfigError as exc:
            log.warning("pose coverage needs keypoints and the tracker cannot run (%s): no coverage", exc)
            self.tracker = None

    @staticmethod
    def _card_weights(config: str) -> Path:
        name = f"densepose_rcnn_{config}"
        card = cards.find_card(name, cards.default_model_dirs())
        if card is None:
            raise ConfigError(f"--pose densepose: no model card {name!r}; give --densepose-weights FILE")
        path = card.weights_path()
        if not path.is_file():
            raise ConfigError(f"--pose densepose: the weights {path} are missing: `pose2person models fetch {name}` "
                              "(a download), or use the default pose source, the camera tracker")
        return path

    def start(self, label: str, arg: int) -> None:
        if self.tracker is not None:
            self.tracker.start(label, arg)

    def pose(self, frame: Frame, bgr: np.ndarray) -> Posed:
        result = self.predictor.predict(bgr)
        keypoints = self.tracker.pose(frame, bgr).keypoints if self.tracker is not None else None
        if result.empty:
            return Posed(None, "no_person", keypoints)
        if len(result.instances) > self.max_people:
            return Posed(None, "too_many_people", keypoints)
        return Posed(result, "", keypoints)
