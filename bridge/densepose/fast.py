"""Exact-math speed-ups of the DensePose forward pass (``DensePoseSettings.fast``, on by default).

None of these changes what is computed, only how; results equal the reference path up to float
rounding (tests compare both; typical relative difference 1e-6):

* :func:`fuse_frozen_bn`: each conv followed by a FrozenBN becomes one conv with
  ``W * scale`` and bias ``shift`` (FrozenBN is an affine map per channel).
* channels-last memory format for the convolutions (oneDNN's preferred layout on CPU).
* :func:`fc1_as_conv`: the box head's fc1 on the flattened 256x7x7 ROI features is a 7x7 conv.
* :func:`decoder_windows`: the Panoptic-FPN decoder only over the parts of the stride-4 map the
  DensePose ROIAlign will read (each kept person's box plus margins; overlapping windows
  merged), pasted into a
  zero map of the full size so ROIAlign's border handling is unchanged. Every decoder op is
  local (3x3 convs, x2 bilinear upsampling, a 1x1 conv), so values inside the window equal the
  full computation once each level's crop has :data:`LEVEL_MARGIN` extra pixels: the
  p5 branch (3 x conv + upsample) corrupts at most 21 stride-4 pixels at a crop edge, less than
  the 4 * 8 = 32 the margin provides; p4 9 < 16, p3 3 < 8, p2 1 < 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .backbone import Conv2dNorm, FrozenBatchNorm2d

LEVEL_MARGIN = 4  # pixels of each FPN level added around its crop
ROI_MARGIN = 2  # stride-4 pixels around the boxes (ROIAlign's bilinear taps + rounding)


def fuse_frozen_bn(model: nn.Module) -> int:
    """Fold every ``Conv2dNorm`` + ``FrozenBatchNorm2d`` pair in place; returns how many.
    The module tree no longer has the ``.norm`` tensors afterwards (load weights first)."""
    fused = 0
    for module in model.modules():
        if isinstance(module, Conv2dNorm) and isinstance(module.norm, FrozenBatchNorm2d):
            scale, shift = module.norm.scale_and_shift()
            weight = module.weight * scale.reshape(-1, 1, 1, 1)
            bias = shift if module.bias is None else module.bias * scale + shift
            module.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
            module.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
            module.norm = None
            fused += 1
    return fused


def fc1_as_conv(box_head: nn.Module, channels: int, resolution: int) -> None:
    """Let the box head run fc1 as a ``resolution`` x ``resolution`` conv (same weights, viewed as
    (out, C, R, R); oneDNN's conv is about 2x faster than the BLAS GEMM on this CPU). The view is
    a non-persistent buffer: the state dict is unchanged, ``.to()`` moves it."""
    fc1 = box_head.fc1
    weight = fc1.weight.detach().reshape(fc1.out_features, channels, resolution, resolution)
    box_head.register_buffer("fc1_conv_weight", weight, persistent=False)


def decoder_window(boxes: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) on the stride-4 map (``height`` x ``width``) covering every sample
    ROIAlign (aligned=False, so a box is at least 1 map pixel wide) takes for XYXY ``boxes``
    given in image pixels."""
    b = boxes.detach().float().cpu() / 4.0
    x0 = math.floor(float(b[:, 0].min())) - ROI_MARGIN
    y0 = math.floor(float(b[:, 1].min())) - ROI_MARGIN
    x1 = math.ceil(float(torch.maximum(b[:, 2], b[:, 0] + 1).max())) + ROI_MARGIN + 1
    y1 = math.ceil(float(torch.maximum(b[:, 3], b[:, 1] + 1).max())) + ROI_MARGIN + 1
    return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)


Window = tuple[int, int, int, int]


def decoder_windows(boxes: torch.Tensor, height: int, width: int) -> list[Window]:
    """One window per box (:func:`decoder_window`), overlapping ones merged into their bounding
    window until none overlap: people far apart cost two small windows, not one big one."""
    windows = [decoder_window(boxes[i:i + 1], height, width) for i in range(boxes.shape[0])]
    merged = True
    while merged and len(windows) > 1:
        merged = False
        for i in range(len(windows)):
            for j in range(i + 1, len(windows)):
                a, b = windows[i], windows[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    windows[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del windows[j]
                    merged = True
                    break
            if merged:
                break
    return windows


def decoder_in_windows(decoder: nn.Module, features: list[torch.Tensor], windows: list[Window]) -> torch.Tensor:
    """The decoder's full-size (1, C, H, W) output, exact inside each of the (disjoint)
    ``windows`` and zero elsewhere."""
    p2 = features[0]
    result = p2.new_zeros((1, decoder.predictor.out_channels, *p2.shape[-2:]))
    for y0, y1, x0, x1 in windows:
        result[:, :, y0:y1, x0:x1] = _decode_window(decoder, features, (y0, y1, x0, x1))
    return result


def decoder_in_window(decoder: nn.Module, features: list[torch.Tensor], window: Window) -> torch.Tensor:
    """The decoder's full-size (1, C, H, W) output, exact inside ``window`` and zero outside."""
    return decoder_in_windows(decoder, features, [window])


def _decode_window(decoder: nn.Module, features: list[torch.Tensor], window: Window) -> torch.Tensor:
    """The decoder's output over ``window`` only: (1, C, y1 - y0, x1 - x0)."""
    y0, y1, x0, x1 = window
    p2 = features[0]
    h2 = p2.shape[-2]
    total: torch.Tensor | None = None
    for head, feature in zip(decoder.scale_heads, features):
        f = h2 // feature.shape[-2]  # this level's stride relative to stride 4 (1, 2, 4, 8)
        ly0 = max(y0 // f - LEVEL_MARGIN, 0)
        lx0 = max(x0 // f - LEVEL_MARGIN, 0)
        ly1 = min(-(-y1 // f) + LEVEL_MARGIN, feature.shape[-2])
        lx1 = min(-(-x1 // f) + LEVEL_MARGIN, feature.shape[-1])
        out = head(feature[:, :, ly0:ly1, lx0:lx1])
        out = out[:, :, y0 - ly0 * f:y1 - ly0 * f, x0 - lx0 * f:x1 - lx0 * f]
        total = out if total is None else total + out
    assert total is not None
    return decoder.predictor(total)
