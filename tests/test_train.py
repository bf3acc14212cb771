"""pose2person train: a tiny real run learns, writes the reference checkpoint layout, a valid card, resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge import cards
from bridge.generator.checkpoint import load_generator, parse_train_opt, spec_from_options
from bridge.generator.nets import build_generator
from bridge.puppet.synth import SynthOptions, run_synth
from bridge.train.loop import lr_factor, train
from bridge.train.networks import NLayerDiscriminator
from bridge.train.options import TrainOptions, resolved

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    run_synth(root, SynthOptions(count=10, seed=4, size=64, test_fraction=0.2), progress=False)
    return root


def test_pix2pix_cli_run_learns_and_writes_the_reference_layout(tiny_set: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bridge", "train", str(tiny_set), "--name", "tiny", "--checkpoints-dir",
           str(tmp_path), "--recipe", "reference", "--net-g", "resnet_6blocks", "--ngf", "8", "--ndf", "8", "--crop-size", "64",
           "--n-epochs", "4", "--n-epochs-decay", "1", "--save-epoch-freq", "2", "--sample-every", "8",
           "--lr", "0.001", "--batch-size", "2", "--threads", "2", "--model-dir", str(tmp_path / "model"),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "tiny"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "2_net_G.pth", "4_net_D.pth", "train_opt.txt",
                 "loss_log.txt", "samples.png", "loss.png", "card.toml", "train_state.pt"):
        assert (run / name).is_file(), name
    # Loss goes down: the L1 term of the last logged steps is below that of the first.
    state = torch.load(run / "train_state.pt", weights_only=True)
    l1 = state["history"]["G_L1"]
    assert len(l1) >= 4 and np.mean(l1[-2:]) < 0.8 * np.mean(l1[:2])
    assert state["steps"] == 20 and state["epochs_done"] == 5
    # The generator loads with strict keys into build_generator(spec from train_opt.txt) ...
    opts = parse_train_opt(run / "train_opt.txt")
    assert (opts["netG"], opts["ngf"], opts["norm"], opts["no_dropout"], opts["model"]) == \
        ("resnet_6blocks", "8", "batch", "False", "pix2pix")
    spec = spec_from_options(opts)
    net = build_generator(spec)
    net.load_state_dict(torch.load(run / "latest_net_G.pth", weights_only=True), strict=True)
    # ... and through the generator stage's loader, from the card, with its checks.
    card = cards.load_card(tmp_path / "model")
    weights = card.verify_weights()
    assert card.input.pose_source == "keypoints" and card.input.load_size == 64
    assert card.architecture["net_g"] == "resnet_6blocks" and "pose2person train" in card.provenance.command
    loaded_spec, sd = load_generator(weights)
    assert loaded_spec == spec
    build_generator(loaded_spec).load_state_dict(sd, strict=True)
    # The discriminator has the reference's NLayerDiscriminator keys.
    d_keys = set(torch.load(run / "latest_net_D.pth", weights_only=True))
    assert d_keys == set(NLayerDiscriminator(6, 8, 3, "batch").state_dict())
    assert {"model.0.weight", "model.0.bias", "model.2.weight", "model.3.running_mean", "model.11.bias"} <= d_keys
    assert "model.2.bias" not in d_keys  # no conv bias next to BatchNorm, as in the reference


def test_resume_continues_where_it_stopped(tiny_set: Path, tmp_path: Path) -> None:
    base = TrainOptions(dataroot=tiny_set, name="r", checkpoints_dir=tmp_path, net_g="resnet_6blocks", ngf=4,
                        ndf=4, crop_size=32, n_epochs=1, n_epochs_decay=0, batch_size=4, progress=False,
                        sample_every=1000)
    first = train(base)
    assert (first.steps, first.epochs_done) == (2, 1)
    weights = torch.load(tmp_path / "r" / "latest_net_G.pth", weights_only=True)
    second = train(TrainOptions(**{**base.__dict__, "n_epochs": 2, "resume": True}))
    assert (second.steps, second.epochs_done) == (4, 2)
    after = torch.load(tmp_path / "r" / "latest_net_G.pth", weights_only=True)
    assert any(not torch.equal(weights[k], after[k]) for k in weights)


def test_cyclegan_run_writes_both_generators(tiny_set: Path, tmp_path: Path) -> None:
    o = TrainOptions(dataroot=tiny_set, name="c", mode="cyclegan", checkpoints_dir=tmp_path, net_g="resnet_6blocks",
                     ngf=4, ndf=4, crop_size=32, n_epochs=1, n_epochs_decay=0, max_iters=2, progress=False,
                     model_dir=tmp_path / "cmodel")
    result = train(o)
    assert result.steps == 2
    for name in ("G_A", "G_B", "D_A", "D_B"):
        assert (tmp_path / "c" / f"latest_net_{name}.pth").is_file()
    opts = parse_train_opt(tmp_path / "c" / "train_opt.txt")
    assert (opts["model"], opts["gan_mode"], opts["norm"], opts["no_dropout"], opts["pool_size"]) == \
        ("cycle_gan", "lsgan", "instance", "True", "50")
    spec, sd = load_generator(tmp_path / "c" / "latest_net_G_A.pth")
    build_generator(spec).load_state_dict(sd, strict=True)
    card = cards.load_card(tmp_path / "cmodel")
    assert card.verify_weights().name == "latest_net_G.pth"


def test_linear_schedule_matches_the_reference() -> None:
    o = resolved(TrainOptions(dataroot=Path("."), name="s", n_epochs=100, n_epochs_decay=100))
    assert lr_factor(1, o) == 1.0 and lr_factor(100, o) == 1.0
    assert lr_factor(101, o) == pytest.approx(1 - 1 / 101) and lr_factor(200, o) == pytest.approx(1 / 101)
    assert (o.net_g, o.norm, o.dropout, o.gan_mode, o.pool_size) == ("unet_256", "batch", True, "vanilla", 0)


def test_shipped_demo_model_meets_its_stated_quality() -> None:
    from bridge.puppet.eval import evaluate

    folder = REPO / "models" / "puppet"
    card = cards.load_card(folder)
    weights = card.verify_weights()
    assert weights.stat().st_size < 20 * 2**20
    assert card.input.pose_source == "keypoints" and card.input.pose_style == "dp_segm"
    assert "pose2person train" in card.provenance.command and "pose2person synth" in card.provenance.notes
    quality, _, outputs, truths = evaluate(folder, count=16)
    assert outputs.shape == truths.shape == (16, card.input.load_size, card.input.load_size, 3)
    assert quality.psnr >= 24.0, quality.line()
    assert quality.psnr > quality.mean_image_psnr + 6 and quality.ssim > quality.mean_image_ssim + 0.1
