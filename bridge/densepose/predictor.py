"""The DensePose predictor the serving pipeline calls: one BGR frame in, one PoseResult out.

``predict`` runs, in this order (each stage timed into :attr:`DensePosePredictor.timings`, ms):

``preprocess``     resize (PIL bilinear), normalise, pad (:mod:`.preprocess`)
``backbone``       ResNet + FPN -> p2..p6
``rpn``            anchors, objectness, deltas, top-k per level, clip, per-level NMS, top 1000
``box_head``       ROIAlign 7x7 on p2..p5, fc1, fc2, scores + deltas, decode, clip, threshold, NMS
``decoder``        Panoptic-FPN decoder (skipped when nobody is detected: the output would be unused;
                   with ``settings.fast`` only over the kept people's boxes)
``densepose_head`` ROIAlign 28x28 (legacy 14x14 on p2..p5), 8 convs, chart predictor, for the kept people
``postprocess``    boxes to frame pixels, chart -> labels / U / V per person (:mod:`.postprocess`)

plus ``total`` and ``densepose_head_per_person``. With the default settings the output is the
one detectron2's ``DefaultPredictor`` + ``DensePoseResultExtractor`` give for
``apply_net.py show --min_score 0.8`` (see docs/DENSEPOSE.md for what is and is not bit-exact).

Thread-compatibility: one predictor is used from one thread at a time (the pipeline's worker);
it holds no global state, so several predictors may run in parallel threads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..errors import ModelLoadError
from ..pose.types import PoseResult
from .checkpoint import load_into, read_checkpoint
from .configs import DensePoseConfig, get_config
from .model import DensePoseRCNN, build_model
from .postprocess import chart_to_instance, rescale_boxes, select_people
from .preprocess import output_size, resize_bgr, to_batch
from .settings import DensePoseSettings

log = logging.getLogger(__name__)


class RawOutput(NamedTuple):
    """Everything ``predict`` computed, before conversion to PoseResult (for tests and tools)."""

    resized_hw: tuple[int, int]  # unpadded resized image (h, w)
    padded_hw: tuple[int, int]
    proposals: torch.Tensor  # (R, 4) resized-image XYXY
    boxes_resized: torch.Tensor  # (D, 4) detections, resized-image XYXY, best first
    scores: torch.Tensor  # (D,)
    boxes_frame: torch.Tensor  # (K, 4) frame-pixel XYXY of the kept people
    kept: torch.Tensor  # (K,) indices into the D detections
    chart: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None  # coarse, fine, u, v
    frame_hw: tuple[int, int]


class DensePosePredictor:
    """DensePose R-CNN inference on one device. Build with :func:`load_predictor`."""

    def __init__(self, model: DensePoseRCNN, config: DensePoseConfig, device: str = "cpu",
                 settings: DensePoseSettings | None = None) -> None:
        self.config = config
        self.settings = settings or DensePoseSettings()
        self.device = torch.device(device)
        self.half = self.settings.fp16 and self.device.type == "cuda"
        if self.settings.fp16 and not self.half:
            log.info("fp16 asked for on %s: ignored (fp16 is for CUDA only)", self.device)
        self.fast = self.settings.fast
        if self.fast:
            from .fast import fc1_as_conv, fuse_frozen_bn

            fuse_frozen_bn(model)  # in fp32, before any cast
            fc1_as_conv(model.roi_heads.box_head, config.fpn_out_channels, config.box_pooler_resolution)
        self.model = model.to(self.device)
        if self.half:
            self.model.half()
        if self.fast:
            self.model.to(memory_format=torch.channels_last)
        self.short_side = self.settings.short_side or config.min_size_test
        self.max_side = self.settings.max_side or config.max_size_test
        deviations = [d for d in (
            f"short side {self.short_side} (reference {config.min_size_test})" if self.short_side != config.min_size_test else "",
            f"long side cap {self.max_side} (reference {config.max_size_test})" if self.max_side != config.max_size_test else "",
            f"at most {self.settings.max_people} people by {self.settings.people_order}" if self.settings.max_people else "",
            "fp16" if self.half else "",
            f"{self.settings.max_proposals} proposals (reference {config.rpn_post_nms_topk_test})"
            if self.settings.max_proposals is not None else "",
        ) if d]
        if deviations:
            log.info("DensePose %s runs with deviations from the published model: %s", config.name, "; ".join(deviations))
        self.timings: dict[str, float] = {}
        self._sync: Callable[[], None] = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)

    @property
    def nms_thresh(self) -> float:
        return self.settings.nms_thresh if self.settings.nms_thresh is not None else self.config.nms_thresh_test

    @torch.inference_mode()
    def predict_raw(self, frame_bgr: np.ndarray) -> RawOutput:
        """Run the network on a uint8 (H, W, 3) BGR frame; fills :attr:`timings`."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 (H, W, 3) BGR, got {frame_bgr.dtype} {frame_bgr.shape}")
        cfg = self.config
        times: dict[str, float] = {}
        t = t0 = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            self._sync()
            now = time.perf_counter()
            times[name] = (now - t) * 1000.0
            t = now

        height, width = frame_bgr.shape[:2]
        new_h, new_w = output_size(height, width, self.short_side, self.max_side)
        resized = resize_bgr(frame_bgr, new_h, new_w)
        batch = to_batch(resized, cfg.pixel_mean, cfg.pixel_std, cfg.size_divisibility, self.device,
                         torch.float16 if self.half else torch.float32)
        if self.fast:
            batch = batch.contiguous(memory_format=torch.channels_last)
        lap("preprocess")
        features = self.model.features(batch)
        lap("backbone")
        proposals = self.model.proposals(features, (new_h, new_w), self.settings.max_proposals)
        lap("rpn")
        boxes, scores = self.model.detections(features, proposals, (new_h, new_w), self.settings.min_score,
                                              self.nms_thresh)
        boxes_frame, nonempty = rescale_boxes(boxes, (new_h, new_w), (height, width))
        valid = torch.nonzero(nonempty, as_tuple=True)[0]
        chosen = valid[select_people(boxes_frame[valid], self.settings.max_people, self.settings.people_order)]
        lap("box_head")
        chart = None
        if chosen.numel():
            dp_features = self.model.densepose_features(features, boxes[chosen] if self.fast else None)
            lap("decoder")
            chart = tuple(o.float() for o in self.model.densepose(dp_features, boxes[chosen]))  # type: ignore[assignment]
            lap("densepose_head")
        else:
            times["decoder"] = times["densepose_head"] = 0.0
        times["densepose_head_per_person"] = times["densepose_head"] / max(1, int(chosen.numel()))
        times["total"] = (t - t0) * 1000.0
        self.timings = times
        return RawOutput((new_h, new_w), tuple(batch.shape[-2:]), proposals, boxes, scores,  # type: ignore[arg-type]
                         boxes_frame[chosen], chosen, chart, (height, width))

    def to_result(self, raw: RawOutput) -> PoseResult:
        """The chart conversion of :meth:`predict_raw`'s output (adds ``postprocess`` to timings)."""
        t = time.perf_counter()
        instances = []
        if raw.chart is not None:
            coarse, fine, u, v = raw.chart
            scores = raw.scores[raw.kept].tolist()
            for i in range(raw.boxes_frame.shape[0]):
                s = slice(i, i + 1)
                instances.append(chart_to_instance(coarse[s], fine[s], u[s], v[s], raw.boxes_frame[i], scores[i]))
        result = PoseResult(raw.frame_hw[1], raw.frame_hw[0], tuple(instances))
        ms = (time.perf_counter() - t) * 1000.0
        self.timings["postprocess"] = ms
        self.timings["total"] = self.timings.get("total", 0.0) + ms
        return result

    def predict(self, frame_bgr: np.ndarray) -> PoseResult:
        """Everyone in a uint8 (H, W, 3) **BGR** frame, in detectron2's order (best score first)."""
        return self.to_result(self.predict_raw(frame_bgr))


def load_predictor(weights: Path | str, config_name: str, device: str = "cpu",
                   settings: DensePoseSettings | None = None) -> DensePosePredictor:
    """Build ``config_name``'s network, load ``weights`` (.pkl model-zoo file or .pth) strictly
    and safely, and return a predictor on ``device``. Raises ModelLoadError with the reason."""
    config = get_config(config_name)
    weights = Path(weights).expanduser()
    state = read_checkpoint(weights)
    with torch.device("meta"):  # no random init: the strict load assigns every tensor
        model = build_model(config)
    load_into(model, state, config.name, str(weights), assign=True)
    try:
        return DensePosePredictor(model, config, device, settings)
    except (RuntimeError, AssertionError) as exc:  # e.g. CUDA missing
        raise ModelLoadError(f"cannot run DensePose on {device!r}: {exc}") from exc
