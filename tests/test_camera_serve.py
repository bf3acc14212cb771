"""Camera frames become a person through a running daemon (issue 14): body tracker -> keypoints ->
the keypoint drawing -> generator, with nothing answered by unexplained garbage.

The demo model ``puppet`` is served as ``make run`` serves it. Footage: the synthetic puppet
rendered as a camera picture (the tracker finds it; its own keypoints and picture are the
truth), and a real photo of a person from a pinned registry wheel (tests/photos.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from bridge import protocol
from bridge.client import BridgeClient, RemoteError
from bridge.daemon.proc import DaemonProcess
from bridge.pose.check import pose_image_problem
from bridge.puppet.eval import psnr
from bridge.puppet.synth import SynthOptions, random_sample
from conftest import REPO
from photos import photo_bgr
from tracker_fixtures import CARD_DIR, ensure_tracker_files

P = protocol.PREFIX


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """``pose2person serve`` with no model flag: the demo model, as ``make run`` starts it."""
    ensure_tracker_files()
    with DaemonProcess([], shm_dir=tmp_path_factory.mktemp("shm")) as running:
        assert running.model == "puppet"
        yield running


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[BridgeClient]:
    with BridgeClient("127.0.0.1", daemon.port, timeout=60) as c:
        yield c


def puppet_camera(i: int, size: int = 512) -> np.ndarray:
    """A held-out puppet pose (seed 4242: not in the demo model's training set) filmed as an RGB camera
    picture of ``size`` pixels."""
    sample = random_sample(SynthOptions(seed=4242, size=256), i)
    return cv2.resize(sample.person_rgb, (size, size), interpolation=cv2.INTER_CUBIC)


def photo_frame() -> np.ndarray:
    """The astronaut in a 640x480 BGRA camera frame (grey surround), as Processing sends it."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[48:432, 128:512] = cv2.resize(photo_bgr("astronaut"), (384, 384), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)


def test_camera_pictures_of_the_puppet_come_back_as_the_puppet(client: BridgeClient) -> None:
    """Round trip: the puppet filmed -> tracked -> drawn -> generated is the puppet again, in its pose."""
    session = client.open_shm("cam-puppet", 512, 512, "RGB8")
    scores, blank = [], []
    for i in range(4):
        frame = puppet_camera(i)
        out, _ = client.process_shm(session, frame, i + 1, timeout=60)
        assert client.safe_notice(i + 1) is None
        scores.append(psnr(out, frame))
        blank.append(psnr(np.full_like(frame, 255), frame))
    # white frame (the puppet's background) scores ~12 dB; the figure in the right pose well above
    assert np.mean(scores) >= np.mean(blank) + 6.0, (scores, blank)
    client.close_shm(session)


def test_a_photo_of_a_person_gives_a_figure_not_a_copy_of_the_camera(client: BridgeClient) -> None:
    frame = photo_frame()
    session = client.open_shm("cam-photo", 640, 480, "BGRA8")
    out, _ = client.process_shm(session, frame, 1, timeout=60)
    assert client.safe_notice(1) is None
    rgb = cv2.cvtColor(out, cv2.COLOR_BGRA2RGB)
    # The old behaviour answered a posterised copy of the camera picture; the puppet is drawn on white.
    assert np.abs(out[..., :3].astype(int) - frame[..., :3]).mean() > 40
    assert (rgb.min(axis=2) > 200).mean() > 0.5  # mostly the puppet's white background
    red_shirt = (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    assert red_shirt.mean() > 0.01  # 'ada' wears red
    # the pose view shows what the generator got: a pose image with a body in it
    assert client.set_view("pose") == "pose"
    try:
        pose, _ = client.process_shm(session, frame, 2, timeout=60)
    finally:
        client.set_view("person")
    assert pose_image_problem(cv2.cvtColor(pose, cv2.COLOR_BGRA2RGB), "dp_segm") is None
    client.close_shm(session)


def test_nobody_in_front_of_the_camera_gets_a_safe_picture_with_the_reason(client: BridgeClient) -> None:
    session = client.open_shm("cam-empty", 320, 240, "BGRA8")
    empty = np.full((240, 320, 4), 70, np.uint8)
    out, _ = client.process_shm(session, empty, 1, timeout=60)
    reason = client.safe_notice(1)
    assert reason is not None and reason.startswith("no_person"), reason
    assert np.array_equal(out, empty)  # policy last, no good frame yet: the camera picture itself
    client.send(f"{P}/safe", "off")
    client.wait_for(lambda m: m.address == protocol.SAFE)
    try:
        with pytest.raises(RemoteError) as err:
            client.process_shm(session, empty, 2, timeout=60)
        assert err.value.code == "no_person"
    finally:
        client.send(f"{P}/safe", "last")
        client.wait_for(lambda m: m.address == protocol.SAFE)
    client.close_shm(session)


def test_mirrored_cameras_keep_the_persons_left_on_the_left(client: BridgeClient) -> None:
    """With /mirror 1 a mirrored frame is answered with the exact mirror image of what its unmirrored
    frame gets: the person's right arm drives the figure's right arm. Without it the tracker, which
    cannot know the picture is mirrored, takes the person's right for their left, and the figure's
    arm and leg parts swap sides. (A real face: the puppet's head looks the same from the front and
    the back, so its left and right are ambiguous to any tracker.) Each case on its own channel, so
    each tracker starts afresh and identical pictures get identical landmarks."""
    frame = np.ascontiguousarray(photo_frame()[..., :3])
    mirrored = np.ascontiguousarray(frame[:, ::-1])
    client.set_view("pose")
    answers = []
    try:
        for name, picture, mirror in (("m-plain", frame, False), ("m-flag", mirrored, True),
                                      ("m-noflag", mirrored, False)):
            assert client.set_mirror(mirror) is mirror
            session = client.open_shm(name, 640, 480, "BGR8")
            answers.append(client.process_shm(session, picture, 1, timeout=60)[0].astype(int))
            client.close_shm(session)
    finally:
        client.set_view("person")
        client.set_mirror(False)
    plain, flagged, unflagged = answers
    expected = plain[:, ::-1]
    assert np.abs(flagged - expected).mean() < 0.05  # the same picture, flipped
    swapped = np.abs(unflagged - expected).max(axis=2) > 0
    assert swapped.mean() > 0.005, swapped.mean()  # left and right parts drawn the other way round


def test_models_menu_lists_what_can_run_and_always_the_active_model(client: BridgeClient) -> None:
    names = client.models()
    assert "puppet" in names and "passthrough" in names
    assert "blazepose" not in names  # the tracker's card is not a model
    assert not [n for n in names if n.startswith("densepose_")]  # their weights are not downloaded here
    with pytest.raises(RemoteError) as err:
        client.set_model("blazepose")
    assert err.value.code in ("unknown_model", "model_load_failed")


def test_a_model_that_takes_pose_images_refuses_camera_pictures(tmp_path: Path) -> None:
    """pose source image: a camera picture is refused with the reason; a pose image is generated."""
    torch = pytest.importorskip("torch")
    from bridge.generator.checkpoint import write_train_opt
    from generator_reference import random_checkpoint, reference_keys

    folder = tmp_path / "checkpoints" / "poseimg"
    folder.mkdir(parents=True)
    torch.save(random_checkpoint(reference_keys("resnet_6blocks", 4, "instance", False), seed=3),
               folder / "latest_net_G.pth")
    write_train_opt(folder / "train_opt.txt", {"netG": "resnet_6blocks", "ngf": 4, "norm": "instance",
                                               "no_dropout": True, "input_nc": 3, "output_nc": 3, "load_size": 64,
                                               "crop_size": 64, "preprocess": "resize_and_crop", "direction": "AtoB",
                                               "model": "pix2pix", "name": "poseimg"})
    done = subprocess.run([sys.executable, "-m", "bridge", "models", "import", str(folder), "--dest",
                           str(tmp_path / "models"), "--pose-source", "image"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with DaemonProcess(["--model", "poseimg", "--models-dir", str(tmp_path / "models")], shm_dir=tmp_path) as d, \
            BridgeClient("127.0.0.1", d.port, timeout=60) as c:
        session = c.open_shm("img", 640, 480, "BGRA8")
        with pytest.raises(RemoteError) as err:
            c.process_shm(session, photo_frame(), 1)
        assert err.value.code == "not_a_pose_image" and "camera picture" in err.value.message
        c.set_view("pose")  # the pose image of a real camera frame, from the tracker, through the puppet
        c.set_model("puppet")
        pose, _ = c.process_shm(session, photo_frame(), 2)
        c.set_view("person")
        c.set_model("poseimg")
        out, _ = c.process_shm(session, pose, 3)  # a pose image: accepted and generated
        assert c.safe_notice(3) is None and out.shape == pose.shape


def test_without_the_tracker_files_camera_frames_get_a_clear_error(tmp_path: Path) -> None:
    """A tracker card whose files are missing (here: a models dir that shadows the shipped card)."""
    shadow = tmp_path / "models" / "blazepose"
    shadow.mkdir(parents=True)
    (shadow / "card.toml").write_text((CARD_DIR / "card.toml").read_text())
    with DaemonProcess(["--models-dir", str(tmp_path / "models")], shm_dir=tmp_path) as d, \
            BridgeClient("127.0.0.1", d.port, timeout=60) as c:
        assert d.model == "puppet"  # keypoint messages still work without the tracker
        session = c.open_shm("nt", 320, 240, "BGRA8")
        with pytest.raises(RemoteError) as err:
            c.process_shm(session, np.zeros((240, 320, 4), np.uint8), 1)
        assert err.value.code == "tracker_unavailable"
        assert "pose2person models fetch blazepose" in err.value.message


def test_send_counts_frames_without_a_person_as_failed(daemon: DaemonProcess, tmp_path: Path) -> None:
    """``pose2person send`` with a photo of a person and an empty picture: one figure, one failure."""
    person = tmp_path / "person.png"
    cv2.imwrite(str(person), photo_frame()[..., :3])
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.full((480, 640, 3), 70, np.uint8))
    out = tmp_path / "out"
    # The empty picture first: sent right after the person, it would get the person's pose, held for
    # the tracker card's hold_ms (docs/TRACKER.md, "Hold").
    done = subprocess.run([sys.executable, "-m", "bridge", "send", str(empty), str(person), "--to",
                           f"127.0.0.1:{daemon.port}", "-o", str(out), "--no-progress", "--timeout", "60"],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 frames, 1 failed" in done.stdout + done.stderr
    assert "no_person" in done.stderr
    figure = cv2.imread(str(out / "person.png"))
    assert figure is not None and (figure.min(axis=2) > 200).mean() > 0.5  # the puppet on white


def test_run_offline_tracks_a_video_and_poses_photos(tmp_path: Path) -> None:
    """``pose2person run`` with the demo model: a video of the puppet is tracked frame to frame and
    comes back as the puppet; an empty photo gets no picture and is counted."""
    ensure_tracker_files()
    inputs = tmp_path / "in"
    inputs.mkdir()
    writer = cv2.VideoWriter(str(inputs / "dance.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    frames = [puppet_camera(i) for i in range(4)]
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    cv2.imwrite(str(inputs / "empty.png"), np.full((240, 320, 3), 70, np.uint8))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bridge", "run", str(inputs), "-o", str(out), "--model", "puppet",
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # one frame without a picture
    assert "4 frame(s)" in done.stdout and "1 frame(s) without a picture" in done.stdout
    assert "empty.png frame 0: no_person" in done.stderr
    cap = cv2.VideoCapture(str(out / "dance.mp4"))
    got = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        got.append(bgr[..., ::-1])
    assert len(got) == 4
    scores = [psnr(g, f) for g, f in zip(got, frames)]
    assert np.mean(scores) >= psnr(np.full_like(frames[0], 255), frames[0]) + 5.0, scores
