"""``pose2person models import`` never silently picks pose source ``image``: it reads the folder's
card (``pose2person train``), else the dataset name in ``train_opt.txt``, else asks or fails."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bridge import cards
from bridge.cli.main import main
from bridge.generator.checkpoint import write_train_opt
from bridge.puppet.synth import SynthOptions, run_synth
from bridge.train.loop import train
from bridge.train.options import TrainOptions
from conftest import REPO
from generator_reference import random_checkpoint, reference_keys


def colab_folder(root: Path, name: str, dataroot: str) -> Path:
    """A tiny pix2pix ``checkpoints/<name>/`` folder as the reference code leaves it."""
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    torch.save(random_checkpoint(reference_keys("resnet_6blocks", 4, "instance", False), seed=5),
               folder / "latest_net_G.pth")
    write_train_opt(folder / "train_opt.txt", {
        "dataroot": dataroot, "name": name, "netG": "resnet_6blocks", "ngf": 4, "norm": "instance",
        "no_dropout": True, "input_nc": 3, "output_nc": 3, "load_size": 64, "crop_size": 64,
        "preprocess": "resize_and_crop", "direction": "AtoB", "model": "pix2pix"})
    return folder


def import_cli(folder: Path, dest: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """The command with no terminal on stdin (as in CI or a script)."""
    return subprocess.run([sys.executable, "-m", "bridge", "models", "import", str(folder), "--dest", str(dest),
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name, dataroot, source, style", [
    ("me", "./datasets/densepose_me", "densepose", "dp_segm"),
    ("me_iuv", "/content/data/me-IUV", "densepose", "iuv"),
    ("dancer", "./datasets/dancer_openpose", "keypoints", "dp_segm"),
    ("skeleton2person", "./datasets/mine", "keypoints", "dp_segm"),
])
def test_the_pose_source_is_inferred_from_the_dataset_name_and_said(tmp_path: Path, name: str, dataroot: str,
                                                                     source: str, style: str) -> None:
    folder = colab_folder(tmp_path, name, dataroot)
    done = import_cli(folder, tmp_path / "models")
    assert done.returncode == 0, done.stderr
    card = cards.load_card(tmp_path / "models" / name)
    assert (card.input.pose_source, card.input.pose_style) == (source, style)
    said = done.stdout.splitlines()[0]
    assert said.startswith(f"pose source {source}") and "train_opt.txt" in said and "--pose-source" in said
    assert f"pose source {source}" in done.stderr  # and logged


def test_a_densepose_dataset_is_said_with_its_evidence(tmp_path: Path) -> None:
    done = import_cli(colab_folder(tmp_path, "me", "./datasets/densepose_me"), tmp_path / "models")
    assert done.returncode == 0, done.stderr
    assert "pose source densepose, pose style dp_segm" in done.stdout
    assert "'densepose' in train_opt.txt's dataroot './datasets/densepose_me'" in done.stdout


@pytest.mark.parametrize("dataroot", ["./datasets/me", "./datasets/dense_skeletons"])
def test_an_undecidable_folder_without_a_terminal_fails_naming_the_flag(tmp_path: Path, dataroot: str) -> None:
    done = import_cli(colab_folder(tmp_path, "me", dataroot), tmp_path / "models")
    assert done.returncode == 1
    assert "--pose-source image|densepose|keypoints" in done.stderr and "cannot tell" in done.stderr
    assert not (tmp_path / "models" / "me").exists()


def test_an_explicit_pose_source_always_wins(tmp_path: Path) -> None:
    folder = colab_folder(tmp_path, "me", "./datasets/densepose_me")
    done = import_cli(folder, tmp_path / "models", "--pose-source", "image", "--framing", "letterbox")
    assert done.returncode == 0, done.stderr
    card = cards.load_card(tmp_path / "models" / "me")
    assert (card.input.pose_source, card.input.framing) == ("image", "letterbox")
    assert "as given" in done.stdout


def test_at_a_terminal_it_asks_and_enter_means_densepose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = colab_folder(tmp_path, "me", "./datasets/me")
    answers = iter(["what", ""])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["models", "import", str(folder), "--dest", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "cannot tell" in out and "1) densepose" in out and "chosen at the prompt" in out
    assert cards.load_card(tmp_path / "models" / "me").input.pose_source == "densepose"


def test_a_folder_from_pose2person_train_keeps_its_card_settings(tmp_path: Path) -> None:
    """Any --epoch: pose source and style, framing and pad colour come from the run's card.toml,
    even when the dataset's name says otherwise ("puppet" would mean keypoints)."""
    data = tmp_path / "puppet_set"
    run_synth(data, SynthOptions(count=4, seed=1, size=32, test_fraction=0.25), progress=False)
    o = TrainOptions(dataroot=data, name="run", checkpoints_dir=tmp_path / "checkpoints", net_g="resnet_6blocks",
                     ngf=4, ndf=4, crop_size=32, n_epochs=1, n_epochs_decay=0, batch_size=4, save_epoch_freq=1,
                     sample_every=1000, progress=False, pose_source="densepose", pose_style="iuv",
                     framing="center-crop")
    run = train(o).run_dir
    made = cards.load_card(run)  # the run's card, with a pad colour of its own
    cards.write_card(replace(made, input=replace(made.input, pad_color=(0, 0, 0))), run)
    done = import_cli(run, tmp_path / "models", "--epoch", "1", "--name", "run1")
    assert done.returncode == 0, done.stderr
    card = cards.load_card(tmp_path / "models" / "run1")
    assert card.weights.file == "1_net_G.pth"
    assert (card.input.pose_source, card.input.pose_style, card.input.framing, card.input.pad_color) == \
        ("densepose", "iuv", "center-crop", (0, 0, 0))
    assert "card.toml" in done.stdout and "pose2person train" in done.stdout
    # An explicit source wins; the run's other settings still hold.
    done = import_cli(run, tmp_path / "models", "--pose-source", "keypoints", "--name", "run2")
    assert done.returncode == 0, done.stderr
    card = cards.load_card(tmp_path / "models" / "run2")
    assert (card.input.pose_source, card.input.framing, card.input.pad_color) == \
        ("keypoints", "center-crop", (0, 0, 0))
