"""The discriminator, the GAN losses and the image pool of the reference, key for key.

``NLayerDiscriminator`` (``--netD basic`` = 3 layers) is one ``nn.Sequential`` named ``model``::

    0 Conv(in, ndf, 4, s2, p1)  1 LeakyReLU(0.2)
    then for n = 1 .. n_layers-1:  Conv(ndf*min(2^(n-1),8), ndf*min(2^n,8), 4, s2, p1, bias=use_bias), Norm, LeakyReLU
    then Conv(.., ndf*min(2^n_layers,8), 4, s1, p1, bias=use_bias), Norm, LeakyReLU
    then Conv(.., 1, 4, s1, p1)

so its ``state_dict`` keys (``model.0.weight``, ``model.2.weight``, ``model.3.running_mean`` ...) are the
reference's ``latest_net_D.pth`` keys. ``use_bias`` is True only with InstanceNorm, as in the reference.
"""

from __future__ import annotations

import random

import torch
from torch import nn


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class NLayerDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake logits, one per 70x70 patch (for 3 layers)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), _norm(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), _norm(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GANLoss(nn.Module):
    """``vanilla`` (BCE on logits, pix2pix) or ``lsgan`` (MSE, CycleGAN) against 1 (real) / 0 (fake)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("vanilla", "lsgan"):
            raise ValueError(f"gan mode {mode!r} is not vanilla or lsgan")
        self.loss = nn.BCEWithLogitsLoss() if mode == "vanilla" else nn.MSELoss()

    def forward(self, prediction: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return self.loss(prediction, target)


class ImagePool:
    """The reference's history of generated images (Shrivastava et al.): with probability 0.5 the
    discriminator sees an older fake instead of the new one. Size 0 passes images through."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng, self.images = size, rng, []  # type: ignore[var-annotated]

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.random() > 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)
