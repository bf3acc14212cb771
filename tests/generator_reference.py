"""Independent expectations for the generator tests, written from the reference's documented
layout (docs/GENERATOR.md, shared/notes/cyclegan.md), not from bridge.generator.nets.

* :func:`reference_keys` lists the ``state_dict`` names and shapes pytorch-CycleGAN-and-pix2pix
  saves for a generator, from the documented index rules;
* :func:`random_checkpoint` fills them with random tensors (a checkpoint "saved by the
  reference", without running it);
* :func:`functional_forward` runs such a state dict with ``torch.nn.functional`` ops only, in
  test.py's semantics (train-mode BatchNorm on the frame's own statistics, no dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Shapes = dict[str, tuple[int, ...]]


def _norm(shapes: Shapes, prefix: str, c: int, norm: str) -> None:
    if norm == "batch":
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()


def resnet_keys(n_blocks: int, ngf: int, norm: str, dropout: bool, in_nc: int = 3, out_nc: int = 3) -> Shapes:
    bias = norm == "instance"
    s: Shapes = {}

    def conv(idx: str, cout: int, cin: int, k: int, transposed: bool = False, with_bias: bool = bias) -> None:
        s[f"{idx}.weight"] = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        if with_bias:
            s[f"{idx}.bias"] = (cout,)

    conv("model.1", ngf, in_nc, 7); _norm(s, "model.2", ngf, norm)
    conv("model.4", ngf * 2, ngf, 3); _norm(s, "model.5", ngf * 2, norm)
    conv("model.7", ngf * 4, ngf * 2, 3); _norm(s, "model.8", ngf * 4, norm)
    second = 6 if dropout else 5
    for b in range(n_blocks):
        i = 10 + b
        conv(f"model.{i}.conv_block.1", ngf * 4, ngf * 4, 3); _norm(s, f"model.{i}.conv_block.2", ngf * 4, norm)
        conv(f"model.{i}.conv_block.{second}", ngf * 4, ngf * 4, 3)
        _norm(s, f"model.{i}.conv_block.{second + 1}", ngf * 4, norm)
    u = 10 + n_blocks
    conv(f"model.{u}", ngf * 2, ngf * 4, 3, transposed=True); _norm(s, f"model.{u + 1}", ngf * 2, norm)
    conv(f"model.{u + 3}", ngf, ngf * 2, 3, transposed=True); _norm(s, f"model.{u + 4}", ngf, norm)
    conv(f"model.{u + 7}", out_nc, ngf, 7, with_bias=True)
    return s


def unet_keys(num_downs: int, ngf: int, norm: str, in_nc: int = 3, out_nc: int = 3) -> Shapes:
    bias = norm == "instance"
    s: Shapes = {}
    # levels from the outside in: (outer_nc, inner_nc)
    levels = [(out_nc, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
    levels += [(ngf * 8, ngf * 8)] * (num_downs - 4)
    prefix = "model.model."
    s[prefix + "0.weight"] = (ngf, in_nc, 4, 4)
    if bias:
        s[prefix + "0.bias"] = (ngf,)
    s[prefix + "3.weight"] = (ngf * 2, out_nc, 4, 4)
    s[prefix + "3.bias"] = (out_nc,)
    prefix += "1.model."
    for depth, (outer, inner) in enumerate(levels[1:], start=1):
        innermost = depth == len(levels) - 1
        s[prefix + "1.weight"] = (inner, outer, 4, 4)
        if bias:
            s[prefix + "1.bias"] = (inner,)
        if innermost:
            s[prefix + "3.weight"] = (inner, outer, 4, 4)
            if bias:
                s[prefix + "3.bias"] = (outer,)
            _norm(s, prefix + "4", outer, norm)
        else:
            _norm(s, prefix + "2", inner, norm)
            s[prefix + "5.weight"] = (inner * 2, outer, 4, 4)
            if bias:
                s[prefix + "5.bias"] = (outer,)
            _norm(s, prefix + "6", outer, norm)
            prefix += "3.model."
    return s


def reference_keys(net_g: str, ngf: int = 64, norm: str = "instance", dropout: bool = False,
                   in_nc: int = 3, out_nc: int = 3) -> Shapes:
    if net_g.startswith("resnet"):
        return resnet_keys(9 if net_g == "resnet_9blocks" else 6, ngf, norm, dropout, in_nc, out_nc)
    return unet_keys(8 if net_g == "unet_256" else 7, ngf, norm, in_nc, out_nc)


def random_checkpoint(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(7, dtype=torch.long)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            sd[name] = torch.randn(shape, generator=g) * 0.1
        elif name.endswith(".weight") and len(shape) == 1:
            sd[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[name] = 0.05 * torch.randn(shape, generator=g)
    return sd


# -- a functional forward, test.py semantics ------------------------------------------------
def _normalize(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, norm: str) -> torch.Tensor:
    if norm == "instance":
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5)
    if norm == "batch":  # train mode on a batch of one frame: that frame's statistics, biased variance
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        w, b = sd[prefix + ".weight"].view(1, -1, 1, 1), sd[prefix + ".bias"].view(1, -1, 1, 1)
        return (x - mean) / torch.sqrt(var + 1e-5) * w + b
    return x


def _bias(sd: dict[str, torch.Tensor], name: str) -> torch.Tensor | None:
    return sd.get(name + ".bias")


def resnet_forward(x: torch.Tensor, sd: dict[str, torch.Tensor], n_blocks: int, norm: str, dropout: bool) -> torch.Tensor:
    def conv(h: torch.Tensor, idx: str, stride: int = 1, pad: int = 0) -> torch.Tensor:
        return F.conv2d(h, sd[idx + ".weight"], _bias(sd, idx), stride=stride, padding=pad)

    h = F.relu(_normalize(conv(F.pad(x, (3,) * 4, mode="reflect"), "model.1"), sd, "model.2", norm))
    h = F.relu(_normalize(conv(h, "model.4", 2, 1), sd, "model.5", norm))
    h = F.relu(_normalize(conv(h, "model.7", 2, 1), sd, "model.8", norm))
    second = 6 if dropout else 5
    for b in range(n_blocks):
        p = f"model.{10 + b}.conv_block."
        r = F.relu(_normalize(conv(F.pad(h, (1,) * 4, mode="reflect"), p + "1"), sd, p + "2", norm))
        r = _normalize(conv(F.pad(r, (1,) * 4, mode="reflect"), p + str(second)), sd, p + str(second + 1), norm)
        h = h + r
    u = 10 + n_blocks
    for idx, nidx in ((u, u + 1), (u + 3, u + 4)):
        h = F.conv_transpose2d(h, sd[f"model.{idx}.weight"], _bias(sd, f"model.{idx}"), stride=2, padding=1,
                               output_padding=1)
        h = F.relu(_normalize(h, sd, f"model.{nidx}", norm))
    h = conv(F.pad(h, (3,) * 4, mode="reflect"), f"model.{u + 7}")
    return torch.tanh(h)


def unet_forward(x: torch.Tensor, sd: dict[str, torch.Tensor], num_downs: int, norm: str) -> torch.Tensor:
    def down(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.conv2d(h, sd[name + ".weight"], _bias(sd, name), stride=2, padding=1)

    def up(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.conv_transpose2d(h, sd[name + ".weight"], _bias(sd, name), stride=2, padding=1)

    def level(h: torch.Tensor, prefix: str, depth: int) -> torch.Tensor:
        # The reference's down-ReLU is in place, so the skip carries leaky_relu(h).
        skip = F.leaky_relu(h, 0.2)
        if depth == num_downs - 1:  # innermost
            inner = up(F.relu(down(skip, prefix + "1")), prefix + "3")
            return torch.cat([skip, _normalize(inner, sd, prefix + "4", norm)], 1)
        d = _normalize(down(skip, prefix + "1"), sd, prefix + "2", norm)
        inner = level(d, prefix + "3.model.", depth + 1)
        return torch.cat([skip, _normalize(up(F.relu(inner), prefix + "5"), sd, prefix + "6", norm)], 1)

    h = down(x, "model.model.0")
    h = level(h, "model.model.1.model.", 1)
    return torch.tanh(up(F.relu(h), "model.model.3"))


def functional_forward(x: torch.Tensor, sd: dict[str, torch.Tensor], net_g: str, norm: str,
                       dropout: bool = False) -> torch.Tensor:
    with torch.no_grad():
        if net_g.startswith("resnet"):
            return resnet_forward(x, sd, 9 if net_g == "resnet_9blocks" else 6, norm, dropout)
        return unet_forward(x, sd, 8 if net_g == "unet_256" else 7, norm)
