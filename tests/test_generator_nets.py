"""The generator networks against the reference's documented layout and an independent forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.generator.nets import GeneratorSpec, build_generator, has_batch_stats, set_norm_mode
from generator_reference import functional_forward, random_checkpoint, reference_keys

ARCHS = [
    ("resnet_9blocks", "instance", False),
    ("resnet_9blocks", "instance", True),
    ("resnet_6blocks", "batch", False),
    ("resnet_6blocks", "none", True),
    ("unet_256", "batch", True),
    ("unet_128", "batch", False),
    ("unet_128", "instance", False),
    ("unet_256", "none", False),
]


@pytest.mark.parametrize("net_g,norm,dropout", ARCHS)
def test_state_dict_matches_reference_layout(net_g: str, norm: str, dropout: bool) -> None:
    spec = GeneratorSpec(net_g, 3, 3, 8, norm, dropout)
    got = {k: tuple(v.shape) for k, v in build_generator(spec).state_dict().items()}
    assert got == reference_keys(net_g, 8, norm, dropout)


def test_full_size_parameter_counts_match_the_reference() -> None:
    # Figures of the reference's own networks (shared/notes/cyclegan.md, measured there).
    resnet = build_generator(GeneratorSpec("resnet_9blocks"))
    assert len(resnet.state_dict()) == 48
    assert sum(p.numel() for p in resnet.parameters()) == 11_378_179
    unet = build_generator(GeneratorSpec("unet_256", norm="batch", use_dropout=True))
    assert len(unet.state_dict()) == 82
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 2) == 54.41


@pytest.mark.parametrize("net_g,norm,dropout", ARCHS)
def test_forward_equals_an_independent_functional_forward(net_g: str, norm: str, dropout: bool) -> None:
    sd = random_checkpoint(reference_keys(net_g, 8, norm, dropout), seed=3)
    net = build_generator(GeneratorSpec(net_g, 3, 3, 8, norm, dropout))
    net.load_state_dict(sd, strict=True)
    size = 128 if net_g == "unet_128" else (256 if net_g == "unet_256" else 64)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        ours = net(x)
    expected = functional_forward(x, sd, net_g, norm, dropout)
    assert ours.shape == (1, 3, size, size)
    assert torch.max(torch.abs(ours - expected)).item() < 1e-5


def test_stable_mode_normalises_each_frame_alone_so_batches_do_not_mix() -> None:
    sd = random_checkpoint(reference_keys("unet_128", 8, "batch"), seed=1)
    net = build_generator(GeneratorSpec("unet_128", 3, 3, 8, "batch", True))
    net.load_state_dict(sd, strict=True)
    assert has_batch_stats(net)
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        together = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert torch.max(torch.abs(together - alone)).item() < 1e-5
    running = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    with torch.inference_mode():
        net(x)
    assert all(torch.equal(running[k], v) for k, v in net.state_dict().items() if "running" in k)


def test_norm_modes() -> None:
    sd = random_checkpoint(reference_keys("unet_128", 8, "batch"), seed=2)
    net = build_generator(GeneratorSpec("unet_128", 3, 3, 8, "batch", True))
    net.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        stable = net(x)
        set_norm_mode(net, "reference")
        torch.manual_seed(4)
        ref1 = net(x)
        torch.manual_seed(4)
        ref2 = net(x)
        torch.manual_seed(5)
        ref3 = net(x)
        set_norm_mode(net, "eval")
        ev = net(x)
    assert torch.equal(ref1, ref2)  # seeded dropout is reproducible
    assert not torch.equal(ref1, ref3) and not torch.equal(ref1, stable)  # and really on
    assert torch.max(torch.abs(stable - functional_forward(x, sd, "unet_128", "batch"))).item() < 1e-5
    assert not torch.allclose(ev, stable)  # running statistics differ from the frame's own
    with pytest.raises(ValueError):
        set_norm_mode(net, "train")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="netG"):
        GeneratorSpec("resnet_12blocks")
    with pytest.raises(ValueError, match="norm"):
        GeneratorSpec(norm="group")
    assert np.isclose(GeneratorSpec().ngf, 64)
