"""Pose backends: this package's own network (``torch``, the default) or detectron2 itself.

``--pose-backend detectron2`` runs facebookresearch's ``detectron2`` + ``densepose`` (DensePose
project) when both import, and returns the same :class:`~bridge.pose.types.PoseResult`, so the
renderers and the generator see no difference. Useful to cross-check this reimplementation or
to run a config this package does not cover (the DensePose-project ``.yaml`` can be given).
detectron2 is not on PyPI: it is built from source against the installed torch (see
docs/DENSEPOSE.md), so it is never a dependency.

Both backends have ``predict(frame_bgr) -> PoseResult`` and a ``timings`` dict.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ModelLoadError
from ..pose.types import PoseInstance, PoseResult
from .configs import DensePoseConfig, get_config
from .settings import DensePoseSettings

log = logging.getLogger(__name__)

BACKENDS = ("torch", "detectron2")


class PosePredictor(Protocol):
    timings: dict[str, float]

    def predict(self, frame_bgr: np.ndarray) -> PoseResult: ...


def detectron2_missing() -> str | None:
    """None when detectron2 and densepose import, else why not (one line)."""
    try:
        import densepose  # noqa: F401
        import detectron2  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build ("undefined symbol ... _C")
        return (f"detectron2 + densepose are not importable ({type(exc).__name__}: {exc}); they are not on "
                f"PyPI: pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
                f"and the projects/DensePose package")
    return None


def load_backend(backend: str, weights: Path | str, config_name: str, device: str = "cpu",
                 settings: DensePoseSettings | None = None, yaml: Path | None = None) -> PosePredictor:
    """A predictor of ``backend`` ("torch" or "detectron2"); ModelLoadError when unavailable."""
    if backend == "torch":
        from .predictor import load_predictor

        return load_predictor(weights, config_name, device, settings)
    if backend == "detectron2":
        return Detectron2Predictor(Path(weights), get_config(config_name), device, settings or DensePoseSettings(),
                                   yaml)
    raise ModelLoadError(f"unknown pose backend {backend!r}; backends: {', '.join(BACKENDS)}")


def detectron2_cfg(config: DensePoseConfig, settings: DensePoseSettings, weights: Path, device: str,
                   yaml: Path | None = None) -> Any:
    """detectron2's CfgNode for ``config``: from the project's ``yaml`` when given, else built
    from this package's config table (the values of every key the chart path reads)."""
    from densepose import add_densepose_config
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_densepose_config(cfg)
    if yaml is not None:
        cfg.merge_from_file(str(yaml))
    else:
        m = cfg.MODEL
        m.META_ARCHITECTURE = "GeneralizedRCNN"
        m.BACKBONE.NAME = "build_resnet_fpn_backbone"
        m.RESNETS.DEPTH = config.depth
        m.RESNETS.OUT_FEATURES = list(config.out_features)
        m.FPN.IN_FEATURES = list(config.fpn_in_features)
        m.ANCHOR_GENERATOR.SIZES = [list(s) for s in config.anchor_sizes]
        m.ANCHOR_GENERATOR.ASPECT_RATIOS = [list(config.anchor_aspect_ratios)]
        m.RPN.IN_FEATURES = list(config.rpn_in_features)
        m.RPN.PRE_NMS_TOPK_TEST = config.rpn_pre_nms_topk_test
        m.RPN.POST_NMS_TOPK_TEST = config.rpn_post_nms_topk_test
        m.DENSEPOSE_ON = True
        m.ROI_HEADS.NAME = "DensePoseROIHeads"
        m.ROI_HEADS.IN_FEATURES = list(config.roi_in_features)
        m.ROI_HEADS.NUM_CLASSES = config.num_classes
        m.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
        m.ROI_BOX_HEAD.NUM_FC = config.box_num_fc
        m.ROI_BOX_HEAD.POOLER_RESOLUTION = config.box_pooler_resolution
        m.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = config.box_pooler_sampling_ratio
        m.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlign"
        d = m.ROI_DENSEPOSE_HEAD
        d.NAME = config.head_name
        d.POOLER_TYPE = "ROIAlign"
        d.NUM_COARSE_SEGM_CHANNELS = config.num_coarse_segm_channels
        d.POOLER_RESOLUTION = config.dp_pooler_resolution
        d.HEATMAP_SIZE = config.heatmap_size
        d.DECODER_ON = config.decoder_on
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = settings.min_score
    if settings.nms_thresh is not None:
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = settings.nms_thresh
    if settings.max_proposals is not None:
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = settings.max_proposals
    cfg.INPUT.MIN_SIZE_TEST = settings.short_side or config.min_size_test
    cfg.INPUT.MAX_SIZE_TEST = settings.max_side or config.max_size_test
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.DEVICE = device
    cfg.freeze()
    return cfg


class Detectron2Predictor:
    """detectron2's ``DefaultPredictor`` + ``DensePoseResultExtractor``, as ``apply_net show`` runs
    them, converted to PoseResult (box = ``int()`` of each XYWH value, as detectron2's visualizer)."""

    def __init__(self, weights: Path, config: DensePoseConfig, device: str, settings: DensePoseSettings,
                 yaml: Path | None = None) -> None:
        reason = detectron2_missing()
        if reason:
            raise ModelLoadError(reason)
        from detectron2.engine import DefaultPredictor

        if not Path(weights).is_file():
            raise ModelLoadError(f"{weights}: no such file")
        self.settings = settings
        self.config = config
        self._predictor = DefaultPredictor(detectron2_cfg(config, settings, weights, device, yaml))
        self.timings: dict[str, float] = {}

    def predict(self, frame_bgr: np.ndarray) -> PoseResult:
        import torch
        from densepose.vis.extractor import DensePoseResultExtractor

        t0 = time.perf_counter()
        with torch.no_grad():
            instances = self._predictor(frame_bgr)["instances"]
        t1 = time.perf_counter()
        results, boxes_xywh = DensePoseResultExtractor()(instances)
        scores = instances.scores.tolist() if instances.has("scores") else []
        people: list[PoseInstance] = []
        if results is not None and boxes_xywh is not None:
            order = list(range(len(results)))
            if self.settings.max_people and len(order) > self.settings.max_people:
                if self.settings.people_order == "area":
                    areas = (boxes_xywh[:, 2] * boxes_xywh[:, 3]).tolist()
                    order = sorted(sorted(order, key=lambda i: -areas[i])[: self.settings.max_people])
                else:
                    order = order[: self.settings.max_people]
            for i in order:
                x, y, w, h = (int(v) for v in boxes_xywh[i].tolist())
                labels = results[i].labels.cpu().numpy().astype(np.uint8)
                uv = results[i].uv.cpu().numpy().astype(np.float32)
                if w <= 0 or h <= 0:  # detectron2 draws nothing for it
                    w, h = max(w, 0), max(h, 0)
                    labels, uv = np.zeros((h, w), np.uint8), np.zeros((2, h, w), np.float32)
                people.append(PoseInstance((x, y, w, h), labels, uv, float(scores[i]) if i < len(scores) else 1.0))
        t2 = time.perf_counter()
        self.timings = {"network": (t1 - t0) * 1000.0, "postprocess": (t2 - t1) * 1000.0, "total": (t2 - t0) * 1000.0}
        return PoseResult(int(frame_bgr.shape[1]), int(frame_bgr.shape[0]), tuple(people))
