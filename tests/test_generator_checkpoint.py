"""Loading reference checkpoints: layouts, the documented remap, train_opt.txt, unsafe files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from bridge.errors import ModelLoadError
from bridge.generator.checkpoint import (generator_role, infer_spec, load_generator, parse_train_opt,
                                         spec_from_options, write_train_opt)
from bridge.generator.nets import GeneratorSpec, build_generator
from generator_reference import random_checkpoint, reference_keys

# What BaseOptions.print_options writes (format '{:>25}: {:<30}{}'), for a CycleGAN run.
TRAIN_OPT = """----------------- Options ---------------
               batch_size: 1                             
                crop_size: 256                           
                 dataroot: ./datasets/me                 	[default: None]
                direction: AtoB                          
                 input_nc: 3                             
                load_size: 286                           
                    model: cycle_gan                     
                     name: me                            	[default: experiment_name]
                     netG: resnet_9blocks                
                      ngf: 8                             	[default: 64]
               no_dropout: True                          
                     norm: instance                      
                output_nc: 3                             
               preprocess: resize_and_crop               
----------------- End -------------------
"""

CASES = [
    ("latest_net_G_A.pth", "resnet_9blocks", "instance", False),
    ("latest_net_G_B.pth", "resnet_6blocks", "instance", True),
    ("latest_net_G.pth", "unet_256", "batch", True),
    ("15_net_G.pth", "unet_128", "batch", False),
    ("latest_net_G.pth", "resnet_9blocks", "none", False),
]


@pytest.mark.parametrize("filename,net_g,norm,dropout", CASES)
def test_reference_checkpoints_load_strictly(tmp_path: Path, filename: str, net_g: str, norm: str,
                                             dropout: bool) -> None:
    sd = random_checkpoint(reference_keys(net_g, 8, norm, dropout))
    path = tmp_path / filename
    torch.save(sd, path)  # what BaseModel.save_networks writes: a plain state dict
    spec, loaded = load_generator(path)
    assert (spec.net_g, spec.norm, spec.ngf) == (net_g, norm, 8)
    if net_g.startswith("resnet"):
        assert spec.use_dropout == dropout  # visible from the conv_block.5/6 key shift
    net = build_generator(spec)
    net.load_state_dict(loaded, strict=True)
    for k, v in sd.items():
        assert torch.equal(net.state_dict()[k], v)


def test_module_prefix_metadata_and_wrappers_are_remapped(tmp_path: Path) -> None:
    sd = random_checkpoint(reference_keys("resnet_6blocks", 8, "instance"))
    wrapped = {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}}
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(wrapped, path)
    spec, loaded = load_generator(path)
    assert set(loaded) == set(sd)


def test_2018_instance_norm_running_stats_are_dropped(tmp_path: Path) -> None:
    sd = random_checkpoint(reference_keys("resnet_6blocks", 8, "instance"))
    # networks.py@78913853 built InstanceNorm2d(track_running_stats=True): its buffers were saved.
    norm_layers = ["model.2", "model.5", "model.8"] + [f"model.{i}.conv_block.{j}" for i in range(10, 16)
                                                        for j in (2, 6)] + ["model.17", "model.20"]
    for layer in norm_layers:
        sd[f"{layer}.running_mean"] = torch.zeros(4)
        sd[f"{layer}.running_var"] = torch.ones(4)
        sd[f"{layer}.num_batches_tracked"] = torch.tensor(0)
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(sd, path)
    spec, loaded = load_generator(path)
    assert spec.norm == "instance"  # conv biases say InstanceNorm even though stats are present
    assert not any("running" in k or "num_batches" in k for k in loaded)
    build_generator(spec).load_state_dict(loaded, strict=True)


def test_dropout_key_shift_follows_the_card(tmp_path: Path) -> None:
    sd = random_checkpoint(reference_keys("resnet_6blocks", 8, "instance", dropout=True))
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    spec, loaded = load_generator(path, GeneratorSpec("resnet_6blocks", ngf=8, use_dropout=False))
    assert "model.10.conv_block.5.weight" in loaded and "model.10.conv_block.6.weight" not in loaded
    assert torch.equal(loaded["model.10.conv_block.5.weight"], sd["model.10.conv_block.6.weight"])
    build_generator(spec).load_state_dict(loaded, strict=True)


def test_train_opt_is_read_and_must_agree_with_the_weights(tmp_path: Path) -> None:
    (tmp_path / "train_opt.txt").write_text(TRAIN_OPT)
    opts = parse_train_opt(tmp_path / "train_opt.txt")
    assert opts["netG"] == "resnet_9blocks" and opts["ngf"] == "8" and opts["dataroot"] == "./datasets/me"
    assert spec_from_options(opts) == GeneratorSpec("resnet_9blocks", 3, 3, 8, "instance", False)
    good = tmp_path / "latest_net_G_A.pth"
    torch.save(random_checkpoint(reference_keys("resnet_9blocks", 8, "instance")), good)
    spec, _ = load_generator(good)
    assert spec.ngf == 8
    bad = tmp_path / "latest_net_G_B.pth"
    torch.save(random_checkpoint(reference_keys("resnet_9blocks", 16, "instance")), bad)
    with pytest.raises(ModelLoadError, match=r"ngf: 8 in .*train_opt.txt but 16 in the weights"):
        load_generator(bad)


def test_write_train_opt_round_trips_in_the_reference_format(tmp_path: Path) -> None:
    path = tmp_path / "train_opt.txt"
    write_train_opt(path, {"netG": "unet_256", "ngf": 64, "no_dropout": False, "lambda_L1": 100.0},
                    defaults={"netG": "resnet_9blocks"})
    lines = path.read_text().splitlines()
    assert lines[0] == "----------------- Options ---------------" and lines[-1].startswith("-----------------")
    assert lines[2] == "{:>25}: {:<30}{}".format("netG", "unet_256", "\t[default: resnet_9blocks]")
    assert parse_train_opt(path) == {"lambda_L1": "100.0", "netG": "unet_256", "ngf": "64", "no_dropout": "False"}


def test_g_b_swaps_channel_counts() -> None:
    opts = {"netG": "resnet_6blocks", "input_nc": "1", "output_nc": "3"}
    assert spec_from_options(opts, "G_B").input_nc == 3
    assert generator_role(Path("latest_net_G_B.pth")) == "G_B"
    assert generator_role(Path("30_net_G.pth")) == "G"


class Payload:
    """Unpickling this would call os.system: a stand-in for a malicious checkpoint."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch /tmp/p2p-pwned-by-checkpoint",))


def test_a_checkpoint_that_needs_unsafe_unpickling_is_refused(tmp_path: Path) -> None:
    marker = Path("/tmp/p2p-pwned-by-checkpoint")
    marker.unlink(missing_ok=True)
    path = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(1), "evil": Payload()}, path)
    with pytest.raises(ModelLoadError, match="unsafe unpickling"):
        load_generator(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelLoadError):
        load_generator(raw)
    assert not marker.exists()


def test_truncated_missing_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "latest_net_G.pth"
    torch.save(random_checkpoint(reference_keys("unet_128", 8, "batch")), good)
    cut = tmp_path / "cut_net_G.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_generator(cut)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_generator(tmp_path / "nope.pth")
    other = tmp_path / "d_net_G.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelLoadError, match="neither a reference ResNet nor a U-Net"):
        load_generator(other)


def test_infer_spec_reports_what_keys_show() -> None:
    sd = random_checkpoint(reference_keys("unet_256", 16, "batch", in_nc=1, out_nc=3))
    assert infer_spec(sd) == GeneratorSpec("unet_256", 1, 3, 16, "batch", True)
    sd = random_checkpoint(reference_keys("resnet_9blocks", 4, "none", out_nc=1))
    assert infer_spec(sd) == GeneratorSpec("resnet_9blocks", 3, 1, 4, "none", False)
