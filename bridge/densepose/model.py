"""The DensePose R-CNN module tree, named as detectron2's ``GeneralizedRCNN`` so that the
official state dicts load 1:1: ``backbone.*`` (ResNet ``bottom_up`` + FPN), ``proposal_generator.*``
(RPN), ``roi_heads.*`` (box head, decoder, DensePose head and predictor).

The forward pass is split into the stages the predictor times (see
:class:`bridge.densepose.predictor.DensePosePredictor`); every stage works on one image.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import FPN
from .configs import DensePoseConfig
from .roi_heads import DensePoseROIHeads, detections_from_box_outputs
from .rpn import RPN


class DensePoseRCNN(nn.Module):
    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = FPN(cfg)
        self.proposal_generator = RPN(cfg)
        self.roi_heads = DensePoseROIHeads(cfg)

    # Stages; inputs and outputs are tensors on the model's device.

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(1, 3, H32, W32) normalised, padded BGR -> FPN features p2..p6."""
        return self.backbone(images)

    def proposals(self, features: dict[str, torch.Tensor], image_size: tuple[int, int],
                  post_nms_topk: int | None = None) -> torch.Tensor:
        """RPN proposals (R, 4) XYXY in resized-image pixels (``image_size`` = unpadded (h, w))."""
        return self.proposal_generator(features, image_size, post_nms_topk)

    def detections(self, features: dict[str, torch.Tensor], proposals: torch.Tensor, image_size: tuple[int, int],
                   score_thresh: float, nms_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Box head -> (boxes (D, 4) XYXY resized-image pixels, scores (D,)), best first."""
        heads = self.roi_heads
        cfg = self.cfg
        feats = [features[f] for f in cfg.roi_in_features]
        pooled = heads.box_pooler(feats, proposals).to(feats[0].dtype)
        logits, deltas = heads.box_predictor(heads.box_head(pooled))
        return detections_from_box_outputs(logits, deltas, proposals, cfg, image_size, score_thresh, nms_thresh,
                                           cfg.detections_per_image)

    def densepose_features(self, features: dict[str, torch.Tensor], boxes: torch.Tensor | None = None
                           ) -> list[torch.Tensor]:
        """What the DensePose pooler reads: the decoder's stride-4 map, or p2..p5 (legacy).
        With ``boxes`` (XYXY, image pixels) the decoder runs only where ROIAlign will read for
        them (:func:`bridge.densepose.fast.decoder_in_windows`; exact there, zero elsewhere)."""
        feats = [features[f] for f in self.cfg.roi_in_features]
        decoder = self.roi_heads.decoder
        if decoder is None:
            return feats
        if boxes is None:
            return [decoder(feats)]
        from .fast import decoder_in_windows, decoder_windows

        return [decoder_in_windows(decoder, feats, decoder_windows(boxes, *feats[0].shape[-2:]))]

    def densepose(self, dp_features: list[torch.Tensor], boxes: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chart outputs (coarse, fine, u, v), each (D, C, heatmap, heatmap), for XYXY ``boxes``."""
        heads = self.roi_heads
        pooled = heads.densepose_pooler(dp_features, boxes).to(dp_features[0].dtype)
        if dp_features[0].is_contiguous(memory_format=torch.channels_last) and not dp_features[0].is_contiguous():
            pooled = pooled.contiguous(memory_format=torch.channels_last)  # the fast path's layout
        return heads.densepose_predictor(heads.densepose_head(pooled))


def build_model(cfg: DensePoseConfig) -> DensePoseRCNN:
    """The module tree of ``cfg`` in eval mode, with no gradients (random initial weights)."""
    model = DensePoseRCNN(cfg)
    model.eval()
    model.requires_grad_(False)
    return model
