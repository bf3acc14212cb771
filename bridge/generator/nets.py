"""ResNet and U-Net generators whose ``state_dict`` matches pytorch-CycleGAN-and-pix2pix.

Written for this project from the reference's documented layout (docs/GENERATOR.md): module
names, indices and parameter shapes are the reference's,
so its checkpoints load with ``strict=True``. Behaviour that only matters at test time
(batch statistics in BatchNorm, dropout) is controlled by :func:`set_norm_mode` instead of
``train()``/``eval()``, because the reference's test path runs in train mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NetG = Literal["resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128"]
Norm = Literal["instance", "batch", "none"]
NET_NAMES: tuple[str, ...] = ("resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128")
NORMS: tuple[str, ...] = ("instance", "batch", "none")
UNET_DOWNS = {"unet_256": 8, "unet_128": 7}
RESNET_BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6}

#: How BatchNorm layers normalise and whether dropout is active at inference.
#: ``reference``: batch statistics of the current frame, dropout on (test.py without --eval);
#: ``stable``: batch statistics, dropout off (deterministic, flicker-free; the default);
#: ``eval``: running statistics, dropout off (test.py --eval).
NormMode = Literal["reference", "stable", "eval"]
NORM_MODES: tuple[str, ...] = ("reference", "stable", "eval")


@dataclass(frozen=True)
class GeneratorSpec:
    """What ``define_G`` in the reference is called with (less init, which loading overrides)."""

    net_g: str = "resnet_9blocks"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    norm: str = "instance"
    use_dropout: bool = False

    def __post_init__(self) -> None:
        if self.net_g not in NET_NAMES:
            raise ValueError(f"netG {self.net_g!r} is not one of {', '.join(NET_NAMES)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not one of {', '.join(NORMS)}")
        if min(self.input_nc, self.output_nc, self.ngf) < 1:
            raise ValueError("input_nc, output_nc and ngf must be positive")

    def with_(self, **changes: object) -> "GeneratorSpec":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_bias(self) -> bool:
        """The reference gives convs a bias only next to InstanceNorm (a quirk kept for key parity)."""
        return self.norm == "instance"

    def describe(self) -> str:
        drop = "dropout" if self.use_dropout else "no dropout"
        return f"{self.net_g}, ngf {self.ngf}, {self.norm} norm, {drop}, {self.input_nc}->{self.output_nc} channels"


class FrameBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` (same parameters and buffers) that can normalise each sample by its own
    statistics without touching the running buffers.

    With ``use_frame_stats`` it computes per-sample, per-channel mean and biased variance,
    which equals training-mode BatchNorm on a batch of one frame (the reference test path)
    and lets several clients' frames share one batch without mixing their statistics.
    """

    use_frame_stats: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_frame_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class GatedDropout(nn.Module):
    """Dropout(0.5) that is active only in ``reference`` mode (no parameters, so no keys)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p
        self.active = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True) if self.active else x


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return FrameBatchNorm2d(channels)  # affine, running stats: the reference's BatchNorm2d layout
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``; ``conv_block`` indices shift by one with dropout (conv at 5 or 6)."""

    def __init__(self, dim: int, norm: str, use_dropout: bool, bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm_layer(norm, dim),
                                   nn.ReLU(True)]
        if use_dropout:
            layers.append(GatedDropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n residual blocks, u2ngf, ungf, c7s1-output, tanh (one ``model``)."""

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        n_blocks = RESNET_BLOCKS[spec.net_g]
        ngf, norm, bias = spec.ngf, spec.norm, spec.uses_bias
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(spec.input_nc, ngf, 7, bias=bias),
                                   _norm_layer(norm, ngf), nn.ReLU(True)]
        for mult in (1, 2):  # two stride-2 downsamplings
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       _norm_layer(norm, ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, spec.use_dropout, bias) for _ in range(n_blocks)]
        for mult in (4, 2):  # two stride-2 upsamplings
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       _norm_layer(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_nc, 7), nn.Tanh()]  # always with bias
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipBlock(nn.Module):
    """One level of the U-Net. ``model`` holds the reference's layer list at the reference's indices.

    Semantics kept from the reference: its down-ReLU is in-place, so the skip connection
    carries ``leaky_relu(x)``, not ``x``; this block computes the same thing without mutating
    its input.
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None, sub: "UnetSkipBlock | None",
                 kind: Literal["outermost", "middle", "innermost"], norm: str, use_dropout: bool, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        input_nc = outer_nc if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        layers: list[nn.Module]
        if kind == "outermost":
            assert sub is not None
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)  # always with bias
            layers = [down, sub, nn.ReLU(), up, nn.Tanh()]
        elif kind == "innermost":
            up = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, _norm_layer(norm, outer_nc)]
        else:
            assert sub is not None
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, _norm_layer(norm, inner_nc), sub, nn.ReLU(), up,
                      _norm_layer(norm, outer_nc)]
            if use_dropout:
                layers.append(GatedDropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "outermost":
            return self.model(x)
        skip = self.model[0](x)  # leaky_relu(x): what the reference's in-place ReLU leaves in x
        h = skip
        for layer in list(self.model)[1:]:
            h = layer(h)
        return torch.cat([skip, h], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels (8 for unet_256, 7 for unet_128), built inside out."""

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        num_downs, ngf, norm, bias, drop = UNET_DOWNS[spec.net_g], spec.ngf, spec.norm, spec.uses_bias, spec.use_dropout
        block = UnetSkipBlock(ngf * 8, ngf * 8, None, None, "innermost", norm, False, bias)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, None, block, "middle", norm, drop, bias)
        for mult in (4, 2, 1):
            block = UnetSkipBlock(ngf * mult, ngf * mult * 2, None, block, "middle", norm, False, bias)
        self.model = UnetSkipBlock(spec.output_nc, ngf, spec.input_nc, block, "outermost", norm, False, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_generator(spec: GeneratorSpec) -> nn.Module:
    """The generator for ``spec``, randomly initialised (N(0, 0.02) as the reference's ``init_weights``),
    in ``stable`` norm mode and ``eval()``."""
    net: nn.Module = ResnetGenerator(spec) if spec.net_g.startswith("resnet") else UnetGenerator(spec)
    init_weights(net)
    set_norm_mode(net, "stable")
    return net.eval()


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """The reference's default ``normal`` init: conv weights N(0, gain), biases 0; BN weight N(1, gain)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def set_norm_mode(net: nn.Module, mode: str) -> None:
    """Switch every BatchNorm and dropout layer of ``net`` to ``mode`` (see :data:`NORM_MODES`)."""
    if mode not in NORM_MODES:
        raise ValueError(f"norm mode {mode!r} is not one of {', '.join(NORM_MODES)}")
    for m in net.modules():
        if isinstance(m, FrameBatchNorm2d):
            m.use_frame_stats = mode != "eval"
        elif isinstance(m, GatedDropout):
            m.active = mode == "reference"


def has_batch_stats(net: nn.Module) -> bool:
    """True when some layer normalises by the frame's own statistics (batching must stay per-sample)."""
    return any(isinstance(m, FrameBatchNorm2d) and m.use_frame_stats for m in net.modules())
