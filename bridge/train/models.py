"""One optimisation step of pix2pix and of CycleGAN, as the reference computes them.

pix2pix (Isola et al.): ``G: A -> B``, conditional PatchGAN ``D(A, B)``;
``loss_D = 0.5 (GAN(D(A, G(A)), fake) + GAN(D(A, B), real))``,
``loss_G = GAN(D(A, G(A)), real) + lambda_L1 |G(A) - B|``.

CycleGAN (Zhu et al.): ``G_A: A -> B``, ``G_B: B -> A``, ``D_A`` judges B images, ``D_B`` A images;
``loss_G = GAN_A + GAN_B + lambda_A |G_B(G_A(A)) - A| + lambda_B |G_A(G_B(B)) - B|
+ lambda_idt (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|)``, each ``loss_D = 0.5 (real + pooled fake)``.

Generators come from :func:`bridge.generator.nets.build_generator`, so their ``state_dict`` is what
the generator stage serves. In training their BatchNorm layers use batch statistics and update
their running buffers (the reference's ``train()``); :func:`serve_mode` switches back to the
stage's per-frame statistics for samples.
"""

from __future__ import annotations

import random
import types
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..generator.nets import FrameBatchNorm2d, GeneratorSpec, build_generator, init_weights, set_norm_mode
from .networks import GANLoss, ImagePool, NLayerDiscriminator
from .options import TrainOptions


def train_mode(net: nn.Module) -> None:
    """Reference training behaviour: BatchNorm on batch statistics with running updates, dropout on."""
    set_norm_mode(net, "reference")
    for m in net.modules():
        if isinstance(m, FrameBatchNorm2d):
            m.forward = types.MethodType(nn.BatchNorm2d.forward, m)  # type: ignore[method-assign]
    net.train()


@contextmanager
def serve_mode(*nets: nn.Module) -> Iterator[None]:
    """Temporarily run ``nets`` as the generator stage does ("stable": per-frame stats, no dropout)."""
    for net in nets:
        for m in net.modules():
            if isinstance(m, FrameBatchNorm2d) and "forward" in m.__dict__:
                del m.forward
        set_norm_mode(net, "stable")
        net.eval()
    try:
        yield
    finally:
        for net in nets:
            train_mode(net)


def generator_spec(o: TrainOptions, input_nc: int = 3, output_nc: int = 3) -> GeneratorSpec:
    return GeneratorSpec(str(o.net_g), input_nc, output_nc, o.ngf, str(o.norm), bool(o.dropout))


def _discriminator(o: TrainOptions, input_nc: int) -> NLayerDiscriminator:
    d = NLayerDiscriminator(input_nc, o.ndf, o.n_layers_d, str(o.norm))
    init_weights(d)
    return d


def _adam(params: object, o: TrainOptions) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999))  # type: ignore[arg-type]


def _requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class Pix2Pix:
    generator_names = ("G",)

    def __init__(self, o: TrainOptions, device: torch.device) -> None:
        self.o = o
        self.spec = generator_spec(o)
        self.G = build_generator(self.spec).to(device)
        self.D = _discriminator(o, 6).to(device)
        train_mode(self.G)
        self.D.train()
        self.gan = GANLoss(str(o.gan_mode)).to(device)
        self.l1 = nn.L1Loss()
        self.optimizers = {"G": _adam(self.G.parameters(), o), "D": _adam(self.D.parameters(), o)}

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        fake = self.G(a)
        _requires_grad([self.D], True)
        opt_d = self.optimizers["D"]
        opt_d.zero_grad(set_to_none=True)
        d_fake = self.gan(self.D(torch.cat([a, fake.detach()], 1)), False)
        d_real = self.gan(self.D(torch.cat([a, b], 1)), True)
        ((d_fake + d_real) * 0.5).backward()
        opt_d.step()
        _requires_grad([self.D], False)
        opt_g = self.optimizers["G"]
        opt_g.zero_grad(set_to_none=True)
        g_gan = self.gan(self.D(torch.cat([a, fake], 1)), True)
        g_l1 = self.l1(fake, b) * self.o.lambda_l1
        (g_gan + g_l1).backward()
        opt_g.step()
        return {"G_GAN": g_gan.item(), "G_L1": g_l1.item(), "D_real": d_real.item(), "D_fake": d_fake.item()}

    @torch.no_grad()
    def generate(self, a: torch.Tensor) -> torch.Tensor:
        with serve_mode(self.G):
            return self.G(a)


class CycleGAN:
    generator_names = ("G_A", "G_B")

    def __init__(self, o: TrainOptions, device: torch.device) -> None:
        self.o = o
        self.spec = generator_spec(o)
        self.G_A = build_generator(self.spec).to(device)
        self.G_B = build_generator(generator_spec(o, 3, 3)).to(device)
        self.D_A = _discriminator(o, 3).to(device)
        self.D_B = _discriminator(o, 3).to(device)
        for g in (self.G_A, self.G_B):
            train_mode(g)
        self.D_A.train()
        self.D_B.train()
        rng = random.Random(o.seed)
        self.pool_a, self.pool_b = ImagePool(int(o.pool_size or 0), rng), ImagePool(int(o.pool_size or 0), rng)
        self.gan = GANLoss(str(o.gan_mode)).to(device)
        self.l1 = nn.L1Loss()
        self.optimizers = {
            "G": _adam(list(self.G_A.parameters()) + list(self.G_B.parameters()), o),
            "D": _adam(list(self.D_A.parameters()) + list(self.D_B.parameters()), o),
        }

    def nets(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        o = self.o
        fake_b, fake_a = self.G_A(a), self.G_B(b)
        rec_a, rec_b = self.G_B(fake_b), self.G_A(fake_a)
        _requires_grad([self.D_A, self.D_B], False)
        opt_g = self.optimizers["G"]
        opt_g.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        if o.lambda_identity > 0:
            losses["idt_A"] = self.l1(self.G_A(b), b) * o.lambda_b * o.lambda_identity
            losses["idt_B"] = self.l1(self.G_B(a), a) * o.lambda_a * o.lambda_identity
        losses["G_A"] = self.gan(self.D_A(fake_b), True)
        losses["G_B"] = self.gan(self.D_B(fake_a), True)
        losses["cycle_A"] = self.l1(rec_a, a) * o.lambda_a
        losses["cycle_B"] = self.l1(rec_b, b) * o.lambda_b
        sum(losses.values()).backward()  # type: ignore[union-attr]
        opt_g.step()
        _requires_grad([self.D_A, self.D_B], True)
        opt_d = self.optimizers["D"]
        opt_d.zero_grad(set_to_none=True)
        for name, d, real, fake in (("D_A", self.D_A, b, self.pool_b.query(fake_b)),
                                    ("D_B", self.D_B, a, self.pool_a.query(fake_a))):
            loss = (self.gan(d(real), True) + self.gan(d(fake.detach()), False)) * 0.5
            loss.backward()
            losses[name] = loss.detach()
        opt_d.step()
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def generate(self, a: torch.Tensor) -> torch.Tensor:
        with serve_mode(self.G_A, self.G_B):
            return self.G_A(a)


def build_model(o: TrainOptions, device: torch.device) -> Pix2Pix | CycleGAN:
    return Pix2Pix(o, device) if o.mode == "pix2pix" else CycleGAN(o, device)
