"""The generator stage in a real daemon: Colab folders imported as cards, frames over shm and
file paths compared with an independent expectation, the check command, hot swap under load."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from bridge.client import BridgeClient, RemoteError
from bridge.generator.checkpoint import write_train_opt
from conftest import REPO, start_bridge
from generator_reference import functional_forward, random_checkpoint, reference_keys
from pose_frames import pose_picture_bgr, pose_picture_bgra, pose_picture_rgb

P = "/pose2person"


def colab_folder(root: Path, name: str, net_g: str, norm: str, model: str, seed: int) -> Path:
    """A checkpoints/<name>/ folder as the pytorch-CycleGAN-and-pix2pix Colab leaves it."""
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    dropout = model == "pix2pix"
    sd = random_checkpoint(reference_keys(net_g, 4, norm, dropout and net_g.startswith("resnet")), seed=seed)
    files = ["latest_net_G.pth"] if model == "pix2pix" else ["latest_net_G_A.pth", "latest_net_G_B.pth"]
    for f in files:
        torch.save(sd, folder / f)
    torch.save({"model.0.weight": torch.zeros(4, 6, 4, 4)}, folder / files[0].replace("_G", "_D"))
    write_train_opt(folder / "train_opt.txt", {
        "netG": net_g, "ngf": 4, "norm": norm, "no_dropout": not dropout, "input_nc": 3, "output_nc": 3,
        "load_size": 128 if model == "pix2pix" else 72, "crop_size": 128 if model == "pix2pix" else 64,
        "preprocess": "resize_and_crop",
        "direction": "AtoB", "model": model, "name": name})
    return folder


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    dest = root / "models"
    for name, net_g, norm, model, seed in (("artist", "resnet_6blocks", "instance", "cycle_gan", 1),
                                           ("styleb", "unet_128", "batch", "pix2pix", 2)):
        folder = colab_folder(root, name, net_g, norm, model, seed)
        done = cli("models", "import", str(folder), "--dest", str(dest), "--pose-source", "image")
        assert done.returncode == 0, done.stderr
    return dest


def expected_output(models: Path, name: str, rgb: np.ndarray) -> np.ndarray:
    """test.py's path computed here: PIL squash to 64, ToTensor/Normalize, a functional forward of
    the checkpoint, tensor2im's truncation; then the documented resize back (cv2, area when shrinking)."""
    folder = {"artist": "latest_net_G_A.pth", "styleb": "latest_net_G.pth"}[name]
    sd = torch.load(models / name / folder, weights_only=True)
    net_g, norm = ("resnet_6blocks", "instance") if name == "artist" else ("unet_128", "batch")
    size = 64 if name == "artist" else 128
    squashed = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC)).astype(np.float32)
    x = torch.from_numpy(((squashed / np.float32(255) - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1))[None]
    y = functional_forward(x, sd, net_g, norm)[0].numpy()
    out = ((y.transpose(1, 2, 0) + 1) / 2 * 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA if w < size and h < size else cv2.INTER_LINEAR)


def camera_bgra(h: int, w: int, seed: int) -> np.ndarray:
    """Noise as a camera frame (for DensePose: models whose pose source is image refuse it)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    frame[..., 3] = 255
    return frame


def test_import_wrote_cards_with_the_training_options(models: Path) -> None:
    card = (models / "artist" / "card.toml").read_text()
    assert 'file = "latest_net_G_A.pth"' in card and 'net_g = "resnet_6blocks"' in card
    assert "load_size = 64" in card  # test.py serves at crop_size (load_size 72 was for training crops)
    listed = cli("models", "list", "--models-dir", str(models))
    assert listed.returncode == 0 and "artist" in listed.stdout and "styleb" in listed.stdout
    shown = cli("models", "show", "styleb", "--models-dir", str(models))
    assert shown.returncode == 0 and "match the card" in shown.stdout
    again = cli("models", "import", str(models.parent / "checkpoints" / "artist"), "--dest", str(models),
                "--pose-source", "image")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_frames_over_shm_and_paths_match_the_reference_test_path(models: Path, tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), timeout=120)
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=60) as client:
            frame = pose_picture_bgra(48, 80, 1)  # Processing-style BGRA8, not square
            session = client.open_shm("cam", 80, 48, "BGRA8")
            out, latency = client.process_shm(session, frame, 7)
            expected = expected_output(models, "artist", np.ascontiguousarray(frame[..., 2::-1]))
            assert out.shape == frame.shape and (out[..., 3] == 255).all()
            diff = np.abs(out[..., 2::-1].astype(int) - expected.astype(int))
            assert diff.max() <= 1, diff.max()
            assert latency > 0
            # The same through a file path (BGR PNG on disk, result PNG written atomically).
            path = bridge.root / "in.png"
            cv2.imwrite(str(path), frame[..., :3])
            done = client.process_path(str(path), str(bridge.root / "out.png"), 8)
            assert (done.width, done.height) == (80, 48)
            result = cv2.imread(str(bridge.root / "out.png"))
            assert np.abs(result[..., ::-1].astype(int) - expected.astype(int)).max() <= 1
            assert client.model() == "artist"
    finally:
        bridge.stop()


def test_check_command_passes_in_fp32_over_shm(models: Path, tmp_path: Path) -> None:
    img = tmp_path / "pose.png"
    Image.fromarray(pose_picture_rgb(64, 64, 3)).save(img)
    wide = tmp_path / "wide.png"
    Image.fromarray(pose_picture_rgb(40, 90, 4)).save(wide)
    done = cli("check", "styleb", str(img), str(wide), "--models-dir", str(models))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "pose.png" in done.stdout and "wide.png" in done.stdout


def test_hot_swap_under_load_keeps_frames_flowing(models: Path, tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), timeout=120)
    try:
        switcher = BridgeClient("127.0.0.1", bridge.osc_port, timeout=120)
        client = BridgeClient("127.0.0.1", bridge.osc_port, timeout=30)
        session = client.open_shm("load", 64, 64, "RGB8")
        stop = threading.Event()
        replies: list[str] = []

        def switch() -> None:
            names = ["styleb", "artist", "passthrough", "invert", "styleb", "artist"]
            for name in names:
                replies.append(switcher.set_model(name, timeout=120))
            stop.set()

        thread = threading.Thread(target=switch)
        thread.start()
        ids: list[int] = []
        blank = 0
        fid = 0
        while not stop.is_set() or fid < 10:
            fid += 1
            frame = pose_picture_rgb(64, 64, fid)  # an RGB8 channel
            out, _ = client.process_shm(session, frame, fid)  # waits for this frame's own reply
            ids.append(fid)
            blank += int(out.max() == out.min())
            if fid > 2000:
                break
        thread.join(60)
        assert replies == ["styleb", "artist", "passthrough", "invert", "styleb", "artist"]
        assert ids == list(range(1, len(ids) + 1))  # every frame answered, in order, no gap
        assert blank == 0  # never a black or flat frame during a swap
        status = client.status()
        assert status.errors == 0 and status.dropped == 0
        client.close()
        switcher.close()
    finally:
        bridge.stop()


def test_a_broken_model_is_refused_and_the_active_one_keeps_serving(models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "models" / "broken"
    bad.mkdir(parents=True)
    (bad / "latest_net_G.pth").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (bad / "card.toml").write_text('name = "broken"\n[weights]\nfile = "latest_net_G.pth"\n')
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), "--models-dir",
                          str(tmp_path / "models"), timeout=120)
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=60) as client:
            with pytest.raises(RemoteError) as err:
                client.set_model("broken", timeout=60)
            assert err.value.code == "model_load_failed" and "truncated or corrupt" in err.value.message
            session = client.open_shm("cam", 32, 32, "RGB8")
            out, _ = client.process_shm(session, pose_picture_rgb(32, 32, 9), 1)
            assert client.model() == "artist" and out.shape == (32, 32, 3)
    finally:
        bridge.stop()


def test_run_offline_writes_images_and_videos(models: Path, tmp_path: Path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    rgb = pose_picture_rgb(50, 70, 5)
    Image.fromarray(rgb).save(images / "a.png")
    video = images / "clip.mp4"
    # pose renders as a compressed video: at a realistic size compression keeps them pose images
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(4):
        writer.write(pose_picture_bgr(240, 320, 40 + i, noise=False))
    writer.release()
    out = tmp_path / "out"
    done = cli("run", str(images), "-o", str(out), "--model", "artist", "--models-dir", str(models),
               "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "5 frame(s)" in done.stdout
    result = np.asarray(Image.open(out / "a.png").convert("RGB"))
    assert np.abs(result.astype(int) - expected_output(models, "artist", rgb).astype(int)).max() <= 1
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def tiny_densepose(root: Path) -> Path:
    """``root/tiny_densepose/``: a DensePose card with random weights in the official R_50_FPN
    layout, tuned to find people, at a small short side."""
    from densepose_ckpt import official_arrays, write_pkl

    dp = root / "tiny_densepose"
    dp.mkdir(parents=True)
    write_pkl(dp / "model_final_000000.pkl", official_arrays("densepose_rcnn_R_50_FPN_s1x", seed=1))
    (dp / "card.toml").write_text(
        'name = "tiny_densepose"\nkind = "densepose"\n[weights]\nfile = "model_final_000000.pkl"\n'
        '[densepose]\nconfig = "densepose_rcnn_R_50_FPN_s1x"\nshort_side = 160\nmax_side = 256\nmax_people = 2\n')
    return dp


def test_pose_densepose_runs_both_stages_on_camera_frames(models: Path, tmp_path: Path) -> None:
    """--pose densepose: DensePose (random weights in the official layout, tuned to find people)
    renders the pose image, the generator draws the person; every frame is answered."""
    tiny_densepose(tmp_path / "dp")
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), "--models-dir",
                          str(tmp_path / "dp"), "--pose", "densepose", "--densepose-model", "tiny_densepose",
                          timeout=180)
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=120) as client:
            session = client.open_shm("cam", 96, 64, "BGRA8")
            for fid in (1, 2):
                out, _ = client.process_shm(session, camera_bgra(64, 96, fid), fid, timeout=120)
                assert out.shape == (64, 96, 4) and (out[..., 3] == 255).all()
            # The same DensePose card served on its own gives the pose image.
            assert client.set_model("tiny_densepose", timeout=120) == "tiny_densepose"
            pose, _ = client.process_shm(session, camera_bgra(64, 96, 3), 3, timeout=120)
            assert pose.shape == (64, 96, 4)
    finally:
        bridge.stop()


def test_densepose_pipelines_one_clients_frames_and_answers_them_in_order(models: Path, tmp_path: Path) -> None:
    """--pose densepose --pipeline-depth 2: a camera streaming faster than the model has two
    frames in flight, DensePose of the next beside the generator of this one. Every frame is
    answered exactly once (ready or overtaken), results come in frame order, each is that frame's
    own picture (DensePose here, then test.py's generator path computed independently), and the
    per-stage timings still cover pose and generator."""
    from bridge.densepose import load_predictor
    from bridge.densepose.settings import DensePoseSettings
    from bridge.pose.render import render_pose

    dp = tiny_densepose(tmp_path / "dp")
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), "--models-dir",
                          str(tmp_path / "dp"), "--pose", "densepose", "--densepose-model", "tiny_densepose",
                          "--pipeline-depth", "2", timeout=180)
    predictor = load_predictor(dp / "model_final_000000.pkl", "densepose_rcnn_R_50_FPN_s1x",
                               settings=DensePoseSettings(short_side=160, max_side=256, max_people=2))
    frames = {fid: camera_bgra(64, 96, 100 + fid) for fid in range(1, 13)}
    answers: list[tuple[str, int]] = []
    results: dict[int, np.ndarray] = {}
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=120) as client:
            session = client.open_shm("cam", 96, 64, "BGRA8")

            def take(msg: Any) -> None:
                ready = msg.address == f"{P}/frame/ready"
                answers.append((msg.address, int(msg.args[1] if ready else msg.args[0])))
                if ready:
                    try:
                        results[answers[-1][1]] = client.read_result(session, answers[-1][1])
                    except Exception:  # overwritten already by a newer result: not checked
                        pass

            for fid, frame in frames.items():  # a camera: the next frame goes without waiting
                client.submit_shm(session, frame, fid)
                deadline = time.monotonic() + 0.05
                while (msg := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
                    take(msg)
            while len(answers) < len(frames) and (msg := client.receive(60)) is not None:
                take(msg)
            stages = client.request(f"{P}/status/stages", (), f"{P}/status/stages/reply").args
    finally:
        bridge.stop()
    assert {a for a, _ in answers} <= {f"{P}/frame/ready", f"{P}/frame/dropped"}, answers
    assert sorted(fid for _, fid in answers) == list(frames), answers  # each frame answered once
    ready = [fid for a, fid in answers if a.endswith("ready")]
    assert ready == sorted(ready) and len(ready) >= 2, answers  # in frame order
    assert results
    for fid, out in results.items():
        bgr = np.ascontiguousarray(frames[fid][..., :3])
        want = expected_output(models, "artist", render_pose(predictor.predict(bgr), "dp_segm", bgr))
        assert np.abs(out[..., 2::-1].astype(int) - want.astype(int)).max() <= 1, fid
    counts = {stages[i]: stages[i + 4] for i in range(0, len(stages), 5)}
    assert counts.get("pose", 0) >= len(ready) and counts.get("generator", 0) >= len(ready), stages
    text = "\n".join(bridge.log_lines)
    assert "2 frame(s) per client in flight" in text


def test_max_batch_generates_several_clients_together_with_the_same_pictures(models: Path, tmp_path: Path) -> None:
    """--max-batch 4: four clients' frames share network calls; each gets what it gets alone."""
    bridge = start_bridge(tmp_path, "--model", "artist", "--models-dir", str(models), "--max-batch", "4",
                          timeout=120)
    try:
        clients = [BridgeClient("127.0.0.1", bridge.osc_port, timeout=60) for _ in range(4)]
        sessions = [c.open_shm(f"b{i}", 48, 40, "BGRA8") for i, c in enumerate(clients)]
        frames = [pose_picture_bgra(40, 48, 20 + i) for i in range(4)]
        for round_ in range(3):
            for c, s, f in zip(clients, sessions, frames):
                c.submit_shm(s, f, round_ + 1)
            for c, s, f in zip(clients, sessions, frames):
                c.wait_for(lambda m, r=round_: m.address == "/pose2person/frame/ready" and m.args[1] == r + 1, 60)
                out = c.read_result(s, round_ + 1)
                want = expected_output(models, "artist", np.ascontiguousarray(f[..., 2::-1]))
                assert np.abs(out[..., 2::-1].astype(int) - want.astype(int)).max() <= 1
        for c in clients:
            c.close()
    finally:
        bridge.stop()
    text = "\n".join(bridge.log_lines)
    assert "generated in one batch" in text
    assert any(f"a batch of {n} frames" in text for n in (2, 3, 4))  # clients really shared calls
