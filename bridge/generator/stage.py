"""The generator stage: a client frame (or a pose) in, a picture of the trained person out.

Per frame, on the pipeline worker thread:

1. **pose image** from the card's (or ``--pose``) pose source: ``image`` (the frame is the
   pose image, e.g. rendered by the client; checked cheaply to look like one of the card's
   style, else ``not_a_pose_image``), ``densepose`` (the DensePose stage renders the person in
   the card's ``pose_style``), or ``keypoints`` (a keypoint message, rendered by
   :mod:`bridge.pose.keypoints`, see :meth:`GeneratorStage.generate_from_pose`; a camera frame
   is posed by the body tracker first, :mod:`bridge.pose.camera`, then drawn the same way), or
   ``tracker-densepose`` (opt-in, for DensePose-trained models on a CPU: the tracker's keypoints
   drawn as DensePose parts shaped by the person mask, :class:`ShapedDensePose`);
2. **framing** to the training aspect (``squash`` / ``center-crop`` / ``letterbox``);
3. **the reference path**: PIL bicubic squash, [-1, 1], the network, truncating uint8, RGB;
4. **mapping back** to the client's frame size (``inverse`` or ``stretch``).

A client whose view is ``pose`` (``/pose2person/view``, read from
:func:`bridge.util.frame_context.current_frame`) gets step 1's pose image back instead.

The stage declares ``input_format = "RGB8"``, so the pipeline converts the client's pixels
(BGRA from Processing, bottom-up float RGBA from TouchDesigner, ...) in one place
(:mod:`bridge.formats.pixels`) before and after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..cards import ModelCard
from ..errors import BridgeError, ClientError, ModelLoadError
from ..pose.types import PoseResult
from ..util.frame_context import FrameContext, current_frame
from ..util.metrics import timed
from .checkpoint import load_generator
from .engine import GeneratorEngine
from .nets import GeneratorSpec
from .processing import InputContract, frame_input, map_output, model_input_size, normalize, reference_resize, to_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorOptions:
    """Run-time choices that override the card (None = what the card says)."""

    device: str = "auto"
    precision: str | None = None
    norm_mode: str | None = None
    accel: str = "auto"
    pose: str | None = None
    seed: int = 0
    warm_up: bool = True
    tracker_threads: int = 1  # TFLite threads of the camera tracker (1 measured best on 2 cores)
    max_people: int = 1  # people the camera tracker follows per client (a client may ask for another count)
    check_pose_images: bool = True  # image pose source: refuse frames that are not pose images


class PoseSource(Protocol):
    """Turns an RGB client frame into the RGB pose image the generator was trained on."""

    name: str

    def pose_image(self, rgb: np.ndarray) -> np.ndarray: ...


class ImagePose:
    """The frame is the pose image already (a client rendered it); a frame that does not look like
    one of ``style`` (a camera picture, a pose of nobody) is refused with ``not_a_pose_image``
    rather than turned into confident nonsense (:mod:`bridge.pose.check`)."""

    name = "image"

    def __init__(self, style: str = "dp_segm", check: bool = True) -> None:
        self.style, self.check = style, check

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        self.check_frame(rgb)
        return rgb

    def check_frame(self, rgb: np.ndarray) -> None:
        """Raise ``not_a_pose_image`` unless ``rgb`` looks like a pose image of the card's style.
        The two-thread stage calls this on the caller's thread (the pose thread is serial)."""
        if self.check:
            from ..pose.check import NOT_A_POSE_IMAGE, pose_image_problem

            problem = pose_image_problem(rgb, self.style)
            if problem is not None:
                raise ClientError(NOT_A_POSE_IMAGE, problem, current_frame().frame_id)

    @staticmethod
    def pose_image_unchecked(rgb: np.ndarray) -> np.ndarray:
        return rgb


class DensePosePose:
    """DensePose finds the people in the frame; the card's style renders them."""

    name = "densepose"

    def __init__(self, predictor: object, style: str) -> None:
        from ..pose.render import STYLES

        if style not in STYLES:
            raise ModelLoadError(f"pose style {style!r} is not one of {', '.join(STYLES)}")
        self.predictor, self.style = predictor, style
        self.last_result: PoseResult | None = None

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        from ..pose.render import render_pose

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # detectron2 semantics: the network reads BGR
        result = self.predictor.predict(bgr)  # type: ignore[attr-defined]
        self.last_result = result
        return render_pose(result, self.style, bgr)


class KeypointPose:
    """Keypoint models: poses arrive as keypoint messages, and camera frames are posed by the body
    tracker (per client, :class:`bridge.pose.camera.CameraPoser`) and drawn the same way.

    ``poser`` None means the tracker cannot run here; ``unavailable`` says why, and camera frames
    are answered with ``tracker_unavailable`` (never taken as pose images)."""

    name = "keypoints"

    def __init__(self, style: str, poser: object | None, unavailable: str = "") -> None:
        self.style, self.poser, self.unavailable = style, poser, unavailable
        self.last_keypoints: object | None = None  # the last camera frame's KeypointFrame, for tests

    def camera_keypoints(self, rgb: np.ndarray, ctx: FrameContext) -> object:
        """The tracker's people in a camera frame, with the client's stream, arrival time, people
        count and smoothing settings (:mod:`bridge.util.frame_context`)."""
        return self.poser.keypoints(rgb, ctx.stream, ctx.frame_id, now=ctx.time_s,  # type: ignore[attr-defined]
                                    max_people=ctx.max_people, smoothing=ctx.smoothing)

    def tracked_pose(self, rgb: np.ndarray) -> PoseResult:
        """The tracker's people in this camera frame as drawn parts; raises ``tracker_unavailable``
        or :class:`~bridge.pose.camera.NoPerson` (nobody found, nobody held)."""
        from ..pose.camera import NoPerson
        from ..pose.keypoints import keypoints_to_pose

        ctx = current_frame()
        if self.poser is None:
            raise ClientError("tracker_unavailable", self.unavailable or "the body tracker is not loaded", ctx.frame_id)
        frame = self.camera_keypoints(rgb, ctx)
        self.last_keypoints = frame
        result = keypoints_to_pose(frame)
        if result.empty:
            raise NoPerson(ctx.frame_id)
        return result

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        from ..pose.render import render_pose

        return render_pose(self.tracked_pose(rgb), self.style, None)


class ShapedDensePose(KeypointPose):
    """``tracker-densepose``: an approximation of DensePose that runs live on a CPU, for models
    trained on DensePose renders. The body tracker's keypoints are drawn as DensePose's parts (the
    keypoint drawing), clipped to and grown into the person mask of MediaPipe's selfie segmentation
    (:func:`bridge.pose.shaped.shape_to_mask`), and rendered in the card's style on the frame, as
    :class:`DensePosePose` renders. No true U/V surface coordinates; part borders approximate
    (docs/TRACKER.md). Keypoint messages are drawn as for ``keypoints`` (there is no mask)."""

    name = "tracker-densepose"

    def __init__(self, style: str, poser: object | None, segmenter: object | None, unavailable: str = "") -> None:
        from ..pose.render import STYLES

        if style not in STYLES:
            raise ModelLoadError(f"pose style {style!r} is not one of {', '.join(STYLES)}")
        super().__init__(style, poser if segmenter is not None else None, unavailable)
        self.segmenter = segmenter
        self.last_result: PoseResult | None = None  # the last shaped part map, for tests

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        from ..pose.camera import NoPerson
        from ..pose.render import render_pose
        from ..pose.shaped import shape_to_mask

        drawn = self.tracked_pose(rgb)
        result = shape_to_mask(drawn, self.segmenter.mask(rgb))  # type: ignore[attr-defined]
        if result.empty:
            raise NoPerson(current_frame().frame_id)
        self.last_result = result
        return render_pose(result, self.style, np.ascontiguousarray(rgb[..., ::-1]))


def unmirror(image: np.ndarray, mirrored: bool) -> np.ndarray:
    """A mirrored client's picture flipped back to an ordinary camera view (and an answer made in
    that view flipped to line up with the client's mirrored picture): the pose sources, their
    drawing and the generator were all made for ordinary camera pictures, in which the person's
    left is on the image's right. Without the flip a mirrored person looks like one seen from
    behind. ``image`` itself when not mirrored."""
    return np.ascontiguousarray(image[:, ::-1]) if mirrored else image


class GeneratorStage:
    """A model card's generator, ready for frames (the :class:`bridge.stages.Stage` contract)."""

    input_format = "RGB8"

    def __init__(self, card: ModelCard, engine: GeneratorEngine, contract: InputContract, pose: PoseSource,
                 pose_style: str) -> None:
        self.card, self.engine, self.contract, self.pose = card, engine, contract, pose
        self.name = card.name
        self.pose_style = pose_style
        self.nbytes = engine.nbytes
        self.last_pose: np.ndarray | None = None  # the latest pose image (RGB), for the monitor page

    @property
    def pose_source(self) -> str:
        return self.pose.name

    def describe(self) -> str:
        return f"{self.name}: {self.engine.describe()}, pose {self.pose.name} ({self.pose_style})"

    def generate(self, pose_rgb: np.ndarray) -> np.ndarray:
        """The generated RGB picture for an RGB pose image, at the pose image's size.

        Its time is the ``generator`` stage of the frame's timings (bridge/util/metrics.py)."""
        with timed("generator"):
            self.last_pose = pose_rgb
            framed, fmap = frame_input(pose_rgb, self.contract)
            x = normalize(reference_resize(framed, self.contract))
            y = self.engine.run(x[None])[0]
            return map_output(to_uint8(y), fmap, self.contract)

    def generate_batch(self, poses: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`generate` for several pose images (any sizes) in one network call. Each frame is
        normalised on its own (``FrameBatchNorm2d``), so the results equal one-by-one runs up to
        float rounding of the batched kernels."""
        if len(poses) == 1 or self.engine.norm_mode == "reference":  # seeded dropout is per frame
            return [self.generate(p) for p in poses]
        with timed("generator"):
            self.last_pose = poses[-1]
            prepared = [frame_input(p, self.contract) for p in poses]
            x = np.stack([normalize(reference_resize(framed, self.contract)) for framed, _ in prepared])
            y = self.engine.run(x)
            return [map_output(to_uint8(yi), fmap, self.contract) for yi, (_, fmap) in zip(y, prepared)]

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        mirror = current_frame().mirror
        with timed("pose"):
            pose = self.pose.pose_image(unmirror(image, mirror))
        return unmirror(self.finish(pose), mirror)

    def generate_from_pose(self, result: PoseResult) -> np.ndarray:
        """Render ``result`` in the card's style (on the style's own background), then generate."""
        from ..pose.render import render_pose

        with timed("pose"):
            pose = render_pose(result, self.pose_style, None)
        return self.finish(pose)

    def finish(self, pose_rgb: np.ndarray) -> np.ndarray:
        """The frame's answer from its pose image: the generated picture, or the pose image itself
        for a client whose view is ``pose``."""
        if current_frame().view == "pose":
            self.last_pose = pose_rgb
            return pose_rgb
        return self.generate(pose_rgb)

    def warm_up(self) -> None:
        w, h = model_input_size(self.contract.load_size, self.contract.load_size, self.contract)
        self.engine.warm_up(w, h)


def contract_from_card(card: ModelCard, opts: dict[str, str] | None = None) -> InputContract:
    """The card's input contract; ``load_size``/``crop_size``/``preprocess`` from train_opt.txt
    when the card leaves them at their defaults and the options file says otherwise."""
    inp = card.input
    load, crop, pre = inp.load_size, inp.crop_size, inp.preprocess
    if opts:
        load = int(opts.get("load_size", load)) if inp.load_size == 256 else load
        crop = int(opts.get("crop_size", crop)) if inp.crop_size == 256 else crop
        pre = opts.get("preprocess", pre) if inp.preprocess == "resize_and_crop" else pre
        # test.py sets load_size = crop_size (TestOptions); serving follows the test path.
        load = crop if pre == "resize_and_crop" else load
    try:
        return InputContract(load_size=load, crop_size=crop, preprocess=pre, framing=inp.framing,
                             pad_color=inp.pad_color, aspect=inp.aspect, output_mapping=inp.output_mapping)
    except ValueError as exc:
        raise ModelLoadError(f"model card {card.name!r} [input]: {exc}") from None


def spec_from_card(card: ModelCard) -> GeneratorSpec | None:
    arch = dict(card.architecture)
    if not arch:
        return None
    try:
        return GeneratorSpec(**arch)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model card {card.name!r} [architecture]: {exc}") from None


def make_generator_stage(card: ModelCard, options: GeneratorOptions, densepose_card: ModelCard | None = None,
                         tracker_card: ModelCard | None = None) -> GeneratorStage:
    """Load ``card``'s weights safely and build its stage (warmed up unless told otherwise)."""
    from .checkpoint import parse_train_opt

    weights = card.verify_weights()
    train_opt = weights.with_name("train_opt.txt")
    opts = parse_train_opt(train_opt) if train_opt.is_file() else None
    spec, sd = load_generator(weights, spec_from_card(card), train_opt if opts else None)
    precision = options.precision or card.runtime.precision
    norm_mode = options.norm_mode or card.runtime.norm_mode
    engine = GeneratorEngine(spec, sd, device=options.device, precision=precision, norm_mode=norm_mode,
                             accel=options.accel, seed=options.seed)
    pose_name = options.pose or card.input.pose_source
    pose: PoseSource
    if pose_name == "image":
        pose = ImagePose(card.input.pose_style, check=options.check_pose_images)
    elif pose_name == "keypoints":
        poser, why = _camera_poser(tracker_card, options.tracker_threads, options.max_people)
        pose = KeypointPose(card.input.pose_style, poser, why)
    elif pose_name == "densepose":
        pose = DensePosePose(_densepose_predictor(densepose_card, options.device), card.input.pose_style)
    elif pose_name == "tracker-densepose":
        poser, why = _camera_poser(tracker_card, options.tracker_threads, options.max_people)
        segmenter, why_mask = _segmenter(tracker_card, options.tracker_threads) if poser is not None else (None, "")
        pose = ShapedDensePose(card.input.pose_style, poser, segmenter, why or why_mask)
    else:
        raise ModelLoadError(f"pose source {pose_name!r} is not one of image, densepose, keypoints, tracker-densepose")
    stage = GeneratorStage(card, engine, contract_from_card(card, opts), pose, card.input.pose_style)
    if options.warm_up:
        stage.warm_up()
    log.info("model %s", stage.describe())
    return stage


def _camera_poser(card: ModelCard | None, threads: int, max_people: int = 1) -> tuple[object | None, str]:
    """The body tracker for camera frames, or (None, why it cannot run). Never raises: a keypoint
    model still serves keypoint messages without it. Smoothing and hold: the card's ``[smoothing]``
    and ``[tracking]`` tables."""
    if card is None:
        return None, "the camera tracker's card models/blazepose is missing"
    try:
        from ..pose.camera import card_settings, shared_camera_poser, shared_tracker_models

        try:
            smoothing, tracking = card_settings(card.extra)
        except ValueError as exc:
            raise ModelLoadError(f"{card.folder}/card.toml: {exc}") from None
        table = card.extra.get("tracker")
        models = shared_tracker_models(card.folder, table if isinstance(table, dict) else {}, threads)
        return shared_camera_poser(models, max_people, smoothing, tracking), ""
    except BridgeError as exc:
        log.warning("camera frames for keypoint models cannot be posed: %s", exc)
        return None, str(exc)


def _segmenter(card: ModelCard | None, threads: int) -> tuple[object | None, str]:
    """The person-mask model from the tracker's card, or (None, why it cannot run)."""
    if card is None:
        return None, "the camera tracker's card models/blazepose is missing"
    try:
        from ..pose.camera import shared_segmenter

        table = card.extra.get("tracker")
        return shared_segmenter(card.folder, table if isinstance(table, dict) else {}, threads), ""
    except BridgeError as exc:
        log.warning("camera frames cannot be shaped like DensePose: %s", exc)
        return None, str(exc)


def _densepose_predictor(card: ModelCard | None, device: str) -> object:
    if card is None:
        raise ModelLoadError("--pose densepose needs a DensePose model card (models/densepose_rcnn_R_50_FPN_s1x); "
                             "none was found")
    try:
        from ..densepose import load_predictor
        from ..densepose.settings import settings_from_card
    except ImportError as exc:
        raise ModelLoadError(f"the DensePose stage is not available: {exc}") from None
    path = card.weights_path()
    if not path.is_file():
        raise ModelLoadError(f"DensePose weights {path} are missing: run `pose2person models fetch {card.name}` "
                             f"(or download {card.weights.url} to that path)")
    cfg = card.extra.get("densepose", {}) if isinstance(card.extra.get("densepose"), dict) else {}
    config_name = str(cfg.get("config", card.name))
    try:
        settings = settings_from_card(cfg)
    except BridgeError as exc:
        raise ModelLoadError(f"model card {card.name!r}: {exc}") from None
    from .engine import pick_device

    return load_predictor(Path(path), config_name, device=str(pick_device(device)), settings=settings)
