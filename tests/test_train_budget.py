"""pose2person train for newcomers: the recipe and plan from the hardware and a budget, Ctrl-C that
saves a servable card, per-epoch held-out scores and grids kept, the epoch picker, dataset settings
in the card, a relative --model-dir that serve finds, and models import of a run's epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge import cards
from bridge.cli.main import build_parser, main
from bridge.cli.train import options_from_args
from bridge.errors import ConfigError
from bridge.puppet.synth import SynthOptions, run_synth
from bridge.train.heldout import HeldOut, read_scores
from bridge.train.loop import train
from bridge.train.options import TrainOptions
from bridge.train.quality import spread_indices
from bridge.train.recipe import Hardware, apply_recipe, choose_recipe, plan_schedule
from bridge.train.settings import merge_settings, read_settings

REPO = Path(__file__).resolve().parent.parent
TINY = dict(net_g="resnet_6blocks", ngf=4, ndf=4, crop_size=32, batch_size=4, progress=False, sample_every=1000)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train + 4 test puppet pairs, 32 px."""
    root = tmp_path_factory.mktemp("budget_synth")
    run_synth(root, SynthOptions(count=12, seed=7, size=32, test_fraction=0.34), progress=False)
    return root


# -- the recipe and the plan: pure functions of given facts ------------------------------------------
def test_recipe_follows_the_hardware_and_given_flags_win() -> None:
    name, cpu = choose_recipe(Hardware("cpu", cpu_threads=2), "pix2pix")
    assert name == "small"
    assert cpu == {"net_g": "unet_128", "crop_size": 128, "ngf": 16, "ndf": 16, "norm": "instance",
                   "dropout": False, "batch_size": 4}
    name, gpu = choose_recipe(Hardware("cuda", 16, "NVIDIA H100"), "pix2pix")
    assert name == "reference" and gpu["crop_size"] == 256 and gpu["ngf"] == 64 and gpu["batch_size"] == 1
    assert choose_recipe(Hardware("cuda", 16), "pix2pix", "small")[1] == cpu  # chosen by hand
    mixed = apply_recipe({"ngf": 32, "crop_size": 64}, {"ngf"}, cpu)
    assert mixed["ngf"] == 32 and mixed["crop_size"] == 128 and mixed["net_g"] == "unet_128"
    with pytest.raises(ValueError):
        choose_recipe(Hardware("cpu"), "pix2pix", "huge")


def test_plan_fits_whole_epochs_in_the_budget_or_runs_to_the_deadline() -> None:
    # 100 images, batch 4: 25 steps of 0.3 s + 1 s of scores and saves = 8.5 s per epoch.
    plan = plan_schedule(images=100, batch=4, step_s=0.3, epoch_overhead_s=1.0, budget_s=1800, spent_s=10,
                         reserve_s=3)
    assert plan.epochs == 210 and (plan.n_epochs, plan.n_epochs_decay, plan.max_iters) == (105, 105, 0)
    assert plan.steps == 210 * 25 and plan.eta_s <= 1800 - 10 - 3
    # A budget shorter than one epoch of 3000 images: about as many steps as fit, ended by the deadline.
    short = plan_schedule(images=3000, batch=4, step_s=0.3, epoch_overhead_s=1.0, budget_s=60, spent_s=5,
                          reserve_s=3)
    assert (short.n_epochs, short.n_epochs_decay, short.max_iters) == (1, 0, 0)  # the deadline ends it
    assert short.steps == int((60 - 5 - 3 - 1) // 0.3)
    assert short.eta_s <= 60 - 5 - 3 and "--minutes" in short.note


def test_replan_fits_the_time_left_and_never_raises_a_decayed_rate() -> None:
    from bridge.train.loop import _replan

    o = TrainOptions(dataroot=Path("."), name="r", n_epochs=1, n_epochs_decay=0)  # planned: part of one epoch
    grown = _replan(o, 1, epoch_s=60, left_s=600)  # the epoch took a minute, ten are left
    assert (grown.n_epochs, grown.n_epochs_decay) == (6, 5)
    slower = _replan(grown, 3, epoch_s=120, left_s=240)  # still constant: 3 + 2 epochs
    assert (slower.n_epochs, slower.n_epochs_decay) == (3, 2)
    decaying = _replan(TrainOptions(dataroot=Path("."), name="r", n_epochs=4, n_epochs_decay=4), 6, 60, 600)
    assert (decaying.n_epochs, decaying.n_epochs_decay) == (4, 4)  # decaying: never longer
    shorter = _replan(TrainOptions(dataroot=Path("."), name="r", n_epochs=4, n_epochs_decay=4), 6, 60, 60)
    assert (shorter.n_epochs, shorter.n_epochs_decay) == (4, 3)


def test_flags_decide_the_budget() -> None:
    parser = build_parser()
    default = options_from_args(parser.parse_args(["train", "d", "--name", "x"]))
    assert default.minutes == 30 and default.given == frozenset() and default.recipe == "auto"
    fixed = options_from_args(parser.parse_args(["train", "d", "--name", "x", "--n-epochs", "3", "--ngf", "8"]))
    assert fixed.minutes == 0 and fixed.given == {"n_epochs", "ngf"} and fixed.ngf == 8
    both = options_from_args(parser.parse_args(["train", "d", "--name", "x", "--max-iters", "9", "--minutes", "2"]))
    assert both.minutes == 2 and "minutes" in both.given
    with pytest.raises(ConfigError, match="--pick"):
        options_from_args(parser.parse_args(["train", "d", "--name", "x", "--pick", "soon"]))


# -- dataset settings ---------------------------------------------------------------------------------
def _settings(root: Path, **settings: object) -> None:
    summary = {"kept": {"train": 8, "test": 4}, "dropped": {}, "settings": {
        "framing": "center-crop", "pad_color": [0, 0, 0], "pose_source": "tracker-densepose",
        "pose_style": "iuv", "keypoint_layout": "mediapipe33n", "size": 32, **settings}}
    (root / "summary.json").write_text(json.dumps(summary))


def _copy_with_settings(tiny_set: Path, data: Path) -> Path:
    """``tiny_set``'s train/ and test/ copied to ``data``, with :func:`_settings`' summary.json."""
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
        for p in (tiny_set / split).iterdir():
            (data / split / p.name).write_bytes(p.read_bytes())
    _settings(data)
    return data


def test_dataset_settings_fill_what_was_not_given_and_contradictions_warn(tmp_path: Path) -> None:
    _settings(tmp_path)
    data = read_settings(tmp_path)
    assert data is not None and data.keypoint_layout == "mediapipe33n" and data.pad_color == (0, 0, 0)
    o = TrainOptions(dataroot=tmp_path, name="x", framing="letterbox", given=frozenset({"framing"}))
    merged, warnings = merge_settings(o, data)
    assert (merged.framing, merged.pad_color, merged.pose_source, merged.pose_style, merged.keypoint_layout) == \
        ("letterbox", (0, 0, 0), "tracker-densepose", "iuv", "mediapipe33n")
    assert len(warnings) == 1 and "--framing letterbox contradicts" in warnings[0] and "center-crop" in warnings[0]
    _settings(tmp_path, framing="stretch")
    with pytest.raises(ConfigError, match="settings.framing"):
        read_settings(tmp_path)
    assert read_settings(tmp_path / "nothing") is None  # an old dataset: the flags' values stand


def test_the_card_knows_its_data(tiny_set: Path, tmp_path: Path) -> None:
    data = _copy_with_settings(tiny_set, tmp_path / "data")
    o = TrainOptions(dataroot=data, name="known", checkpoints_dir=tmp_path / "ck", n_epochs=1, n_epochs_decay=0,
                     given=frozenset(TINY) | {"n_epochs", "n_epochs_decay"}, model_dir=tmp_path / "models" / "known",
                     **TINY)  # type: ignore[arg-type]
    train(o)
    for folder in (tmp_path / "ck" / "known", tmp_path / "models" / "known"):
        card = cards.load_card(folder)
        assert (card.input.framing, card.input.pad_color, card.input.pose_source, card.input.pose_style) == \
            ("center-crop", (0, 0, 0), "tracker-densepose", "iuv")
        assert card.input.load_size == 32
        assert card.extra["dataset"]["keypoint_layout"] == "mediapipe33n" and card.extra["dataset"]["size"] == 32


# -- held-out scores, grids and the picker -----------------------------------------------------------
def test_shown_rows_are_spread_over_the_test_frames() -> None:
    assert spread_indices(100, 4) == [0, 33, 66, 99]
    assert spread_indices(3, 4) == [0, 1, 2]
    frames = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    held = HeldOut.choose((frames, frames), frames, frames, 8)
    assert [int(held.a[i, 0, 0, 0]) for i in held.shown] == [0, 13, 26, 39]
    assert held.is_test and len(held.a) == 32


def test_every_epoch_keeps_its_scores_and_grid_and_pick_writes_that_epoch(tiny_set: Path, tmp_path: Path) -> None:
    o = TrainOptions(dataroot=tiny_set, name="p", checkpoints_dir=tmp_path, n_epochs=2, n_epochs_decay=1,
                     save_epoch_freq=0, pick="2", **TINY)  # type: ignore[arg-type]
    result = train(o)
    run = result.run_dir
    records = read_scores(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["set"] == "test" and r["count"] == 4 and not r["partial"] for r in records)
    assert all(r["mean_image_psnr"] > 0 and r["psnr"] > 0 and 0 < r["ssim"] <= 1 for r in records)
    assert records[0]["psnr"] != records[2]["psnr"]  # the model changed, and the scores say so
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    # Only the picked epoch's checkpoint is kept (save_epoch_freq 0), and the card holds it.
    assert (run / "2_net_G.pth").is_file() and not (run / "1_net_G.pth").exists()
    card = cards.load_card(run)
    assert card.weights.file == "2_net_G.pth" and card.weights.sha256 == cards.sha256_of(run / "2_net_G.pth")
    assert "epoch 2 (picked)" in card.provenance.notes and result.picked == "epoch 2 (picked)"
    # --pick best: the best held-out PSNR's generator, the same tensors as that epoch's checkpoint.
    o = TrainOptions(dataroot=tiny_set, name="b", checkpoints_dir=tmp_path, n_epochs=2, n_epochs_decay=1,
                     save_epoch_freq=1, pick="best", model_dir=tmp_path / "models" / "b", **TINY)  # type: ignore[arg-type]
    train(o)
    records = read_scores(tmp_path / "b")
    best = max(reversed(records), key=lambda r: r["psnr"])
    saved = torch.load(tmp_path / "b" / "best_net_G.pth", weights_only=True)
    of_epoch = torch.load(tmp_path / "b" / f"{best['epoch']}_net_G.pth", weights_only=True)
    assert all(torch.equal(saved[k], of_epoch[k]) for k in saved)
    exported = cards.load_card(tmp_path / "models" / "b")
    assert exported.weights.sha256 == cards.sha256_of(tmp_path / "b" / "best_net_G.pth")
    assert f"epoch {best['epoch']}, the best held-out PSNR" in exported.provenance.notes


def test_without_a_test_split_the_grid_and_scores_say_training_frames(tiny_set: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "no_test"
    (data / "train").mkdir(parents=True)
    for p in (tiny_set / "train").iterdir():
        (data / "train" / p.name).write_bytes(p.read_bytes())
    o = TrainOptions(dataroot=data, name="n", checkpoints_dir=tmp_path, n_epochs=1, n_epochs_decay=0, pick="best",
                     **TINY)  # type: ignore[arg-type]
    with caplog.at_level("WARNING"):
        result = train(o)
    assert "no test split" in caplog.text and "TRAINING frames" in caplog.text
    assert "--pick best: no held-out scores" in caplog.text
    assert [r["set"] for r in read_scores(result.run_dir)] == ["train"]
    assert not (result.run_dir / "best_net_G.pth").exists()
    assert cards.load_card(result.run_dir).weights.file == "latest_net_G.pth"


# -- Ctrl-C, and serve finding a card trained with a relative --model-dir ------------------------------
@pytest.fixture(scope="module")
def interrupted(tiny_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A budgeted CLI run from its own working directory with ``--model-dir models/me`` (relative),
    interrupted with SIGINT once its first epoch is scored."""
    work = tmp_path_factory.mktemp("ctrl_c")
    env = {**os.environ, "POSE2PERSON_MODELS": str(work / "user_models"), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bridge", "train", str(tiny_set), "--name", "me", "--minutes", "5", "--net-g",
           "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--crop-size", "32", "--threads", "1",
           "--model-dir", "models/me", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scores = work / "checkpoints" / "me" / "scores.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not (scores.is_file() and scores.read_text()):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return work, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_ctrl_c_saves_exports_the_card_and_says_how_to_continue(
        interrupted: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    work, done = interrupted
    assert done.returncode == 0, done.stderr
    assert "plan: pix2pix resnet_6blocks" in done.stderr and "ETA" in done.stderr
    assert "stopped (Ctrl-C)" in done.stdout and "card models/me/card.toml" in done.stdout
    assert "continue with: pose2person train" in done.stdout and "--continue" in done.stdout
    state = torch.load(work / "checkpoints" / "me" / "train_state.pt", weights_only=True)
    assert state["steps"] >= 2
    card = cards.load_card(work / "models" / "me")
    assert card.verify_weights() == (work / "models" / "me" / "latest_net_G.pth").resolve()
    assert cards.sha256_of(work / "checkpoints" / "me" / "latest_net_G.pth") == card.weights.sha256
    # Registered for serve, since models/me is not a folder serve searches.
    pointer = cards.load_card(work / "user_models" / "me")
    assert pointer.weights_path() == (work / "models" / "me" / "latest_net_G.pth").resolve()
    assert pointer.extra["registered"]["folder"] == str((work / "models" / "me").resolve())
    assert "serve it with: pose2person serve --model me" in done.stdout


def test_serve_finds_a_card_trained_with_a_relative_model_dir(
        interrupted: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import start_bridge

    work, _ = interrupted
    monkeypatch.setenv("POSE2PERSON_MODELS", str(work / "user_models"))
    running = start_bridge(tmp_path, "--model", "me")  # the daemon runs in the repository, not in work/
    try:
        assert "unknown model" not in running.log_text()
        with running.client() as client:
            assert client.model() == "me"
        done = subprocess.run([sys.executable, "-m", "bridge", "demo", "-o", str(tmp_path / "d.mp4"), "--to",
                               f"127.0.0.1:{running.osc_port}", "--seconds", "1", "--fps", "4", "--no-progress"],
                              capture_output=True, text=True, cwd=REPO, timeout=90)
    finally:
        running.stop()
    assert done.returncode == 0, done.stderr
    assert "4/4 frames" in done.stdout  # drawn by the trained model, found through its registration


def test_registration_never_replaces_another_model(tiny_set: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.train.export import register_model

    monkeypatch.setenv("POSE2PERSON_MODELS", str(tmp_path / "user"))
    o = TrainOptions(dataroot=tiny_set, name="x", checkpoints_dir=tmp_path / "ck", n_epochs=1, n_epochs_decay=0,
                     model_dir=tmp_path / "elsewhere" / "me", **TINY)  # type: ignore[arg-type]
    result = train(o)
    assert "registered in" in result.served
    other = cards.load_card(tmp_path / "user" / "me")
    cards.write_card(cards.ModelCard(name="me", weights=other.weights), tmp_path / "user" / "me")  # imported, say
    line = register_model(tmp_path / "elsewhere" / "me")
    assert "--models-dir" in line and "registered" not in cards.load_card(tmp_path / "user" / "me").extra
    # Nor is a name the checkout ships (serve would find the shipped one first).
    mine = cards.load_card(tmp_path / "elsewhere" / "me")
    (tmp_path / "other" / "puppet").mkdir(parents=True)
    (tmp_path / "other" / "puppet" / "latest_net_G.pth").write_bytes(mine.weights_path().read_bytes())
    cards.write_card(replace(mine, name="puppet"), tmp_path / "other" / "puppet")
    line = register_model(tmp_path / "other" / "puppet")
    assert "ships a model called 'puppet'" in line and not (tmp_path / "user" / "puppet").exists()


# -- models import of a run's epochs -----------------------------------------------------------------
def test_import_of_a_runs_epoch_keeps_the_runs_card(tiny_set: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy_with_settings(tiny_set, tmp_path / "data")
    o = TrainOptions(dataroot=data, name="run", checkpoints_dir=tmp_path / "ck", n_epochs=2, n_epochs_decay=0,
                     save_epoch_freq=1, given=frozenset(TINY) | {"n_epochs", "n_epochs_decay", "save_epoch_freq"},
                     **TINY)  # type: ignore[arg-type]
    run = train(o).run_dir
    for epoch in ("1", "best"):
        assert main(["models", "import", str(run), "--epoch", epoch, "--name", f"e{epoch}", "--dest",
                     str(tmp_path / "models")]) == 0
        card = cards.load_card(tmp_path / "models" / f"e{epoch}")
        assert card.weights.file == f"{epoch}_net_G.pth"
        assert (card.input.pose_source, card.input.pose_style, card.input.framing, card.input.pad_color,
                card.input.load_size) == ("tracker-densepose", "iuv", "center-crop", (0, 0, 0), 32)
        assert card.extra["dataset"]["keypoint_layout"] == "mediapipe33n"
        assert f"epoch {epoch} of a pose2person train run" in card.provenance.notes
    assert main(["models", "import", str(run), "--epoch", "../x", "--dest", str(tmp_path / "models")]) != 0


def test_the_printed_continue_command_resumes_the_same_run(
        interrupted: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    import shlex

    work, done = interrupted
    run = work / "checkpoints" / "me"
    before = torch.load(run / "train_state.pt", weights_only=True)
    planned = json.loads((run / "options.json").read_text())
    line = next(s for s in done.stdout.splitlines() if s.startswith("continue with: "))
    cmd = shlex.split(line.removeprefix("continue with: pose2person "))
    env = {**os.environ, "POSE2PERSON_MODELS": str(work / "user_models"), "PYTHONPATH": str(REPO)}
    again = subprocess.run([sys.executable, "-m", "bridge", *cmd, "--max-iters", str(before["steps"] + 2)], cwd=work,
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "stopped at --max-iters" in again.stdout
    after = torch.load(run / "train_state.pt", weights_only=True)
    assert after["steps"] == before["steps"] + 2
    resumed = json.loads((run / "options.json").read_text())
    # The network and the planned schedule are the run's own, not planned afresh.
    assert {k: resumed[k] for k in ("net_g", "ngf", "norm", "crop_size", "batch_size", "n_epochs", "n_epochs_decay")} \
        == {k: planned[k] for k in ("net_g", "ngf", "norm", "crop_size", "batch_size", "n_epochs", "n_epochs_decay")}


def test_score_every_keeps_fewer_grids_but_always_the_last(tiny_set: Path, tmp_path: Path) -> None:
    o = TrainOptions(dataroot=tiny_set, name="s", checkpoints_dir=tmp_path, n_epochs=3, n_epochs_decay=2,
                     save_epoch_freq=0, score_every=2, **TINY)  # type: ignore[arg-type]
    run = train(o).run_dir
    assert [r["epoch"] for r in read_scores(run)] == [2, 4, 5]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_002.png", "epoch_004.png", "epoch_005.png"]
