"""From network outputs to :class:`~bridge.pose.types.PoseResult`, as detectron2 does it.

* :func:`rescale_boxes`: ``detector_postprocess``: boxes x (W / new_w, H / new_h), clipped to the
  frame, empty ones dropped; order (descending score) kept.
* :func:`select_people`: the live ``max_people`` cap (not in detectron2; "score" = its first N).
* :func:`chart_to_instance`: ``densepose_chart_predictor_output_to_result``: the XYXY box as
  float32 XYWH, each value truncated (``.long()``), ``w = max(w, 1)``, ``h = max(h, 1)``; coarse
  and fine logits resampled to (h, w) bilinearly (align_corners False), ``labels = fine_argmax *
  (coarse_argmax > 0)``; U and V resampled likewise and each pixel takes the channel of its label
  (background 0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..pose.types import PoseInstance
from .rpn import clip_boxes, nonempty


def rescale_boxes(boxes: torch.Tensor, resized: tuple[int, int], frame: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame-pixel boxes, keep mask) for resized-image XYXY ``boxes``; ``resized`` and ``frame``
    are (h, w). The mask is detectron2's ``nonempty()`` after scaling and clipping."""
    out = boxes.clone().float()
    scale_x = frame[1] / resized[1]
    scale_y = frame[0] / resized[0]
    out[:, 0::2] *= scale_x
    out[:, 1::2] *= scale_y
    clip_boxes(out, *frame)
    return out, nonempty(out)


def select_people(boxes: torch.Tensor, max_people: int, order: str) -> torch.Tensor:
    """Indices (ascending, so detectron2's order is kept) of the people to keep."""
    n = boxes.shape[0]
    if max_people <= 0 or n <= max_people:
        return torch.arange(n, device=boxes.device)
    if order == "area":
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # stable: equal areas keep the better-scoring (earlier) detection
        idx = torch.sort(area, descending=True, stable=True).indices[:max_people]
        return torch.sort(idx).values
    return torch.arange(max_people, device=boxes.device)


def int_box_xywh(box_xyxy: torch.Tensor) -> tuple[int, int, int, int]:
    """detectron2 ``BoxMode.convert`` (float32 XYXY -> XYWH) then ``make_int_box`` (``.long()``)."""
    xywh = box_xyxy.clone().float()
    xywh[2] -= xywh[0]
    xywh[3] -= xywh[1]
    x, y, w, h = xywh.long().tolist()
    return x, y, w, h


def chart_to_instance(coarse: torch.Tensor, fine: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                      box_xyxy: torch.Tensor, score: float) -> PoseInstance:
    """One detection's chart outputs ((1, C, S, S) each) and frame-pixel box -> PoseInstance.

    ``box_xywh`` is the truncated box detectron2's visualizer draws into. A box narrower or lower
    than 1 px (detectron2 still resamples it to 1 px but then draws nothing) is kept with an
    empty (0-sized) labels/uv array so renderers, like detectron2's, draw nothing for it.
    """
    x, y, w, h = int_box_xywh(box_xyxy)
    if w <= 0 or h <= 0:
        w0, h0 = max(w, 0), max(h, 0)
        return PoseInstance((x, y, w0, h0), np.zeros((h0, w0), np.uint8), np.zeros((2, h0, w0), np.float32), score)
    size = (h, w)
    coarse = coarse.float()
    coarse_arg = F.interpolate(coarse, size, mode="bilinear", align_corners=False).argmax(dim=1)
    fine_arg = F.interpolate(fine.float(), size, mode="bilinear", align_corners=False).argmax(dim=1)
    labels = (fine_arg * (coarse_arg > 0).long())[0]  # (h, w) int64, 0..24
    u_box = F.interpolate(u.float(), size, mode="bilinear", align_corners=False)[0]
    v_box = F.interpolate(v.float(), size, mode="bilinear", align_corners=False)[0]
    # gather picks, per pixel, exactly the element detectron2's per-part masked copy picks.
    index = labels[None]
    uv = torch.cat((u_box.gather(0, index), v_box.gather(0, index)), dim=0)
    uv = torch.where((labels > 0)[None], uv, torch.zeros((), dtype=uv.dtype, device=uv.device))
    return PoseInstance((x, y, w, h), labels.to(torch.uint8).cpu().numpy(),
                        np.ascontiguousarray(uv.cpu().numpy(), dtype=np.float32), float(score))
