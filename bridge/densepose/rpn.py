"""Region proposal network: anchors, the shared RPN head, and test-time proposal selection.

Names: ``rpn_head.conv``, ``rpn_head.objectness_logits``, ``rpn_head.anchor_deltas`` (the model
puts this under ``proposal_generator.``). Semantics of detectron2's ``DefaultAnchorGenerator``,
``StandardRPNHead`` and ``find_top_rpn_proposals`` at test time (densepose.md §3.2, §3.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from .configs import DensePoseConfig


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, float, float, float],
                 scale_clamp: float) -> torch.Tensor:
    """detectron2 ``Box2BoxTransform.apply_deltas``: (R, 4k) deltas on (R, 4) XYXY boxes -> (R, 4k).
    Deltas are divided by ``weights``; dw, dh clamped at ``scale_clamp``; no +1 convention."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """detectron2 ``Boxes.clip``: x into [0, width], y into [0, height] (in place, returned)."""
    boxes[:, 0].clamp_(min=0, max=width)
    boxes[:, 1].clamp_(min=0, max=height)
    boxes[:, 2].clamp_(min=0, max=width)
    boxes[:, 3].clamp_(min=0, max=height)
    return boxes


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """detectron2 ``Boxes.nonempty``: width > threshold and height > threshold."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """(len(sizes) * len(ratios), 4) XYXY anchors centred on 0: ``w = sqrt(s^2 / a)``, ``h = a w``,
    sizes outer, ratios inner (detectron2 ``generate_cell_anchors``)."""
    anchors = []
    for size in sizes:
        area = size ** 2.0
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32, device="cpu")  # never on the meta device


def grid_anchors(base: torch.Tensor, height: int, width: int, stride: int, offset: float) -> torch.Tensor:
    """All anchors of one level, location-major (row, col), anchor-minor: (H*W*A, 4)."""
    shift_x = torch.arange(offset * stride, width * stride, step=stride, dtype=torch.float32, device=base.device)
    shift_y = torch.arange(offset * stride, height * stride, step=stride, dtype=torch.float32, device=base.device)
    sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")
    sx, sy = sx.reshape(-1), sy.reshape(-1)
    shifts = torch.stack((sx, sy, sx, sy), dim=1)
    return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)


class StandardRPNHead(nn.Module):
    """3x3 conv + ReLU shared over levels, then 1x1 objectness (A) and 1x1 deltas (4A)."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


class RPN(nn.Module):
    """Test-time RPN for one image: proposals (R, 4) XYXY in resized-image pixels, best first."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_features = cfg.rpn_in_features
        self.strides = [2 ** int(f[1:]) for f in cfg.rpn_in_features]
        ratios = cfg.anchor_aspect_ratios
        if len({len(s) for s in cfg.anchor_sizes}) != 1:
            raise ValueError("every level needs the same number of anchor sizes")
        self.rpn_head = StandardRPNHead(cfg.fpn_out_channels, len(cfg.anchor_sizes[0]) * len(ratios))
        # Not a buffer: old detectron2 files carry cell_anchors; they are recomputed here.
        self._cell_anchors = [cell_anchors(tuple(float(v) for v in s), ratios) for s in cfg.anchor_sizes]
        self._grid_cache: dict[tuple[int, int, int, str], torch.Tensor] = {}

    def _anchors(self, level: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        key = (level, height, width, str(device))
        anchors = self._grid_cache.get(key)
        if anchors is None:
            if len(self._grid_cache) > 64:  # bounded: a few input sizes per session
                self._grid_cache.clear()
            anchors = grid_anchors(self._cell_anchors[level], height, width, self.strides[level],
                                   self.cfg.anchor_offset).to(device)
            self._grid_cache[key] = anchors
        return anchors

    def forward(self, features: dict[str, torch.Tensor], image_size: tuple[int, int],
                post_nms_topk: int | None = None) -> torch.Tensor:
        """``post_nms_topk`` overrides ``RPN.POST_NMS_TOPK_TEST`` (a live deviation)."""
        cfg = self.cfg
        feats = [features[f] for f in self.in_features]
        logits, deltas = self.rpn_head(feats)
        scale_clamp = math.log(cfg.box_scale_clamp_ratio)
        top_scores, top_boxes, level_ids = [], [], []
        for level, (logit, delta) in enumerate(zip(logits, deltas)):
            _, a, h, w = logit.shape
            logit = logit.permute(0, 2, 3, 1).reshape(-1).float()  # (H*W*A,) location-major
            delta = delta.view(1, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(-1, 4)
            proposals = apply_deltas(delta, self._anchors(level, h, w, delta.device), cfg.rpn_bbox_reg_weights,
                                     scale_clamp)
            k = min(logit.numel(), cfg.rpn_pre_nms_topk_test)
            scores, idx = logit.topk(k)  # sorted, descending
            top_scores.append(scores)
            top_boxes.append(proposals[idx])
            level_ids.append(torch.full((k,), level, dtype=torch.int64, device=logit.device))
        scores = torch.cat(top_scores)
        boxes = torch.cat(top_boxes)
        levels = torch.cat(level_ids)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if not bool(valid.all()):
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        clip_boxes(boxes, *image_size)
        keep = nonempty(boxes, cfg.rpn_min_size)
        if not bool(keep.all()):
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        topk = cfg.rpn_post_nms_topk_test if post_nms_topk is None else post_nms_topk
        keep = batched_nms(boxes.float(), scores, levels, cfg.rpn_nms_thresh)[:topk]
        return boxes[keep]
