"""A DensePose model card served on its own: the frame in, its pose image out.

Useful to check a camera and lighting set-up, and for clients that want the pose image
itself (the style is the card's ``[input].pose_style``, default ``dp_segm``).
"""

from __future__ import annotations

import numpy as np

from ..cards import ModelCard
from ..config import PipelineConfig
from ..errors import ModelLoadError


class DensePoseStage:
    input_format = "RGB8"

    def __init__(self, name: str, predictor: object, style: str) -> None:
        from ..generator.stage import DensePosePose

        self.name = name
        self.pose = DensePosePose(predictor, style)
        self.last_pose: np.ndarray | None = None
        self.nbytes = 0

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        self.last_pose = self.pose.pose_image(image)
        return self.last_pose


def make_densepose_stage(card: ModelCard, cfg: PipelineConfig) -> DensePoseStage:
    from ..generator.stage import _densepose_predictor

    predictor = _densepose_predictor(card, cfg.device)
    if predictor is None:  # pragma: no cover - _densepose_predictor raises instead
        raise ModelLoadError(f"{card.name}: no predictor")
    return DensePoseStage(card.name, predictor, card.input.pose_style)
