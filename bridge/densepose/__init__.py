"""DensePose (chart / IUV) inference in pure PyTorch + torchvision, loading detectron2's official
model-zoo checkpoints 1:1 and reproducing detectron2's output (no detectron2 needed).

API for the serving pipeline::

    from bridge.densepose import load_predictor, DensePoseSettings

    load_predictor(weights: Path, config_name: str, device: str = "cpu",
                   settings: DensePoseSettings | None = None) -> DensePosePredictor
    predictor.predict(frame_bgr: np.ndarray) -> bridge.pose.types.PoseResult
        # frame_bgr: uint8 (H, W, 3) BGR; instances in detectron2's order (descending score).
        # Thread-compatible: call it from one worker thread (no internal locking).
    predictor.timings: dict[str, float]
        # last call's per-stage milliseconds: preprocess, backbone, rpn, box_head, decoder,
        # densepose_head, densepose_head_per_person, postprocess, total

    DensePoseSettings(min_score=0.8, max_people=0, people_order="score", short_side=None,
                      max_side=None, fp16=False, nms_thresh=None, max_proposals=None, fast=True)

``bridge.densepose.settings.settings_from_card(card.extra["densepose"], **flag_overrides)`` turns
a DensePose model card's ``[densepose]`` table into settings (torch-free).

Config names (:data:`CONFIGS`): ``densepose_rcnn_R_50_FPN_s1x`` (default), ``..._R_101_FPN_s1x``,
``..._R_50_FPN_s1x_legacy``, ``..._R_101_FPN_s1x_legacy``, ``..._R_50_FPN_DL_s1x``,
``..._R_101_FPN_DL_s1x`` (the ``densepose_rcnn_`` prefix may be left off).
Weights: :func:`bridge.densepose.weights.fetch_zoo_weights` (no torch). Rendering:
:func:`bridge.pose.render.render_pose`. Semantics and what is tested: docs/DENSEPOSE.md.

Importing this package, :mod:`.configs`, :mod:`.settings` or :mod:`.weights` does not import
torch; the names below that need it load on first use.

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`; torch and torchvision. Never the generator, the daemon or anything above.
"""

from __future__ import annotations

import importlib
from typing import Any

from .configs import CONFIGS, DEFAULT_CONFIG, DensePoseConfig, get_config
from .settings import DensePoseSettings

__all__ = ["CONFIGS", "DEFAULT_CONFIG", "DensePoseConfig", "DensePosePredictor", "DensePoseSettings",
           "get_config", "load_predictor"]

_LAZY = {"load_predictor": "predictor", "DensePosePredictor": "predictor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
