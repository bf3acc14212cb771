"""ResNet (FrozenBN, stride in the 1x1 conv) + FPN p2..p6, with detectron2's parameter names.

Names: ``bottom_up.stem.conv1{,.norm}``, ``bottom_up.res{2..5}.{i}.{conv1,conv2,conv3,shortcut}{,.norm}``,
``fpn_lateral{2..5}``, ``fpn_output{2..5}`` (the model puts this under ``backbone.``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import DensePoseConfig


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics; all four tensors are buffers (no ``num_batches_tracked``),
    as detectron2's. Eval forward is ``F.batch_norm(training=False)``, detectron2's no-grad path."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with ``bn(x) == x * scale + shift`` per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale


class Conv2dNorm(nn.Conv2d):
    """detectron2's ``layers.Conv2d``: conv, then the optional ``norm`` submodule (named ``norm``
    in the state dict), then an optional activation."""

    def __init__(self, *args: object, norm: nn.Module | None = None, relu: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


def _conv_bn(cin: int, cout: int, k: int, stride: int, pad: int, eps: float, dilation: int = 1,
             groups: int = 1) -> Conv2dNorm:
    return Conv2dNorm(cin, cout, k, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False,
                      norm=FrozenBatchNorm2d(cout, eps))


class BasicStem(nn.Module):
    """conv1 7x7/2 + FrozenBN + ReLU, then max-pool 3x3/2 (pad 1)."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.conv1 = _conv_bn(3, cfg.stem_out_channels, 7, 2, 3, cfg.frozen_bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 (each FrozenBN), ReLU after the first two; ``relu(conv3 + shortcut)``.
    With ``stride_in_1x1`` (MSRA weights) the stage stride sits in the first 1x1 conv."""

    def __init__(self, cin: int, cout: int, bottleneck: int, stride: int, cfg: DensePoseConfig, dilation: int = 1) -> None:
        super().__init__()
        eps = cfg.frozen_bn_eps
        self.shortcut = _conv_bn(cin, cout, 1, stride, 0, eps) if cin != cout else None
        s1, s3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.conv1 = _conv_bn(cin, bottleneck, 1, s1, 0, eps)
        self.conv2 = _conv_bn(bottleneck, bottleneck, 3, s3, dilation, eps, dilation=dilation, groups=cfg.num_groups)
        self.conv3 = _conv_bn(bottleneck, cout, 1, 1, 0, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out)


class ResNet(nn.Module):
    """Stem + res2..res5; returns ``{"res2": ..., ..., "res5": ...}`` (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.stem = BasicStem(cfg)
        cin, cout = cfg.stem_out_channels, cfg.res2_out_channels
        bottleneck = cfg.num_groups * cfg.width_per_group
        self.stage_names: list[str] = []
        for idx, blocks in enumerate(cfg.res_blocks):
            name = f"res{idx + 2}"
            stride = 1 if idx == 0 or (idx == 3 and cfg.res5_dilation == 2) else 2
            dilation = cfg.res5_dilation if idx == 3 else 1
            layers = []
            for b in range(blocks):
                layers.append(BottleneckBlock(cin, cout, bottleneck, stride if b == 0 else 1, cfg, dilation))
                cin = cout
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            cout *= 2
            bottleneck *= 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


class FPN(nn.Module):
    """Feature pyramid over res2..res5: ``p_k = output_k(lateral_k(res_k) + up2(prev))``, and
    ``p6 = max_pool2d(p5, kernel 1, stride 2)`` (detectron2's ``LastLevelMaxPool``)."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.bottom_up = ResNet(cfg)
        in_channels = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
        out = cfg.fpn_out_channels
        self.levels = [int(f[3:]) for f in cfg.fpn_in_features]  # [2, 3, 4, 5]
        for level, feature in zip(self.levels, cfg.fpn_in_features):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(in_channels[feature], out, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(out, out, 3, padding=1))

    def forward_features(self, bottom: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        results: dict[str, torch.Tensor] = {}
        prev: torch.Tensor | None = None
        for level in reversed(self.levels):
            lateral = getattr(self, f"fpn_lateral{level}")(bottom[f"res{level}"])
            prev = lateral if prev is None else lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            results[f"p{level}"] = getattr(self, f"fpn_output{level}")(prev)
        results["p6"] = F.max_pool2d(results["p5"], kernel_size=1, stride=2, padding=0)
        return {k: results[k] for k in ("p2", "p3", "p4", "p5", "p6")}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(self.bottom_up(x))
