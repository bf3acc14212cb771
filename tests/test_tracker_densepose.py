"""The DensePose-shaped pose source (``tracker-densepose``, issue 15): the camera tracker's keypoints
drawn as DensePose parts, clipped to and grown into the person mask (bridge/pose/shaped.py), for
models trained on DensePose renders, live on a CPU.

* the shaping itself on hand-made drawings and masks (no model);
* on a registry photo (tests/photos.py) with the real tracker and selfie segmentation: the shaped
  part map covers the person mask and stays inside it;
* through a running daemon: a tiny random-weights generator card whose pose source is
  ``densepose``, served with ``--pose tracker-densepose``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

import test_generator_serve as gs
from bridge.client import BridgeClient
from bridge.pose.shaped import part_map, shape_to_mask
from bridge.pose.types import PoseInstance, PoseResult
from conftest import start_bridge
from photos import photo_bgr
from tracker_fixtures import CARD_DIR, ensure_tracker_files, tracker_models, tracker_pins


def _person(box: tuple[int, int, int, int], part: int, score: float = 1.0) -> PoseInstance:
    x, y, w, h = box
    labels = np.full((h, w), part, np.uint8)
    uv = np.zeros((2, h, w), np.float32)
    uv[0] = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    return PoseInstance(box, labels, uv, score)


def test_parts_are_clipped_to_the_mask_and_grown_into_it_by_nearest_part() -> None:
    # Two parts side by side (a stick figure's torso and arm) inside a wider silhouette.
    labels = np.zeros((60, 30), np.uint8)
    labels[:, :20] = 2
    labels[:30, 20:] = 16
    uv = np.zeros((2, 60, 30), np.float32)
    drawn = PoseResult(120, 100, (PoseInstance((40, 20, 30, 60), labels, uv),))
    mask = np.zeros((100, 120), bool)
    mask[15:85, 30:80] = True  # wider and taller than the drawing
    mask[0:5, 0:5] = True  # a speck far away: nobody's
    mask[20:40, 65:70] = False  # a gap in the drawing: clipped
    shaped = shape_to_mask(drawn, mask, grow=0.5)  # reach: half the drawing's larger side, 30 px
    pm = part_map(shaped)
    assert not (pm[~mask] > 0).any()  # nothing outside the mask
    assert (pm[15:85, 30:80][mask[15:85, 30:80]] > 0).all()  # the silhouette is filled
    assert pm[2, 2] == 0  # too far from every person
    assert pm[50, 32] == 2 and pm[22, 78] == 16 and pm[80, 75] == 2  # nearest part
    assert len(shaped.instances) == 1 and shaped.instances[0].box_xywh == (30, 15, 50, 70)


def test_a_person_the_mask_misses_keeps_the_drawing_and_people_keep_their_pixels() -> None:
    a, b = _person((10, 10, 20, 40), 2, 0.9), _person((70, 10, 20, 40), 1, 0.8)
    drawn = PoseResult(100, 60, (a, b))
    mask = np.zeros((60, 100), bool)
    mask[5:55, 5:35] = True  # only a's silhouette; b is missed by the mask
    shaped = shape_to_mask(drawn, mask)
    assert [i.score for i in shaped.instances] == [0.9, 0.8]
    assert shaped.instances[0].box_xywh == (5, 5, 30, 50)
    assert shaped.instances[1].box_xywh == (70, 10, 20, 40)  # unchanged
    assert (shaped.instances[1].labels == 1).all()
    # U/V of grown pixels come from the nearest drawn pixel
    assert shaped.instances[0].uv[0, 0, 0] == pytest.approx(0.0) and shaped.instances[0].uv[0, -1, 0] == pytest.approx(1.0)
    assert shape_to_mask(PoseResult(100, 60, ()), mask).empty
    with pytest.raises(ValueError):
        shape_to_mask(drawn, mask[:10])


def _shaped(name: str) -> tuple[np.ndarray, PoseResult, PoseResult, np.ndarray]:
    from bridge.pose.camera import CameraPoser
    from bridge.pose.keypoints import keypoints_to_pose
    from bridge.pose.tracker.loader import load_segmenter

    models = tracker_models()
    rgb = np.ascontiguousarray(photo_bgr(name)[..., ::-1])
    drawn = keypoints_to_pose(CameraPoser(models).keypoints(rgb))
    mask = load_segmenter(CARD_DIR, tracker_pins()).mask(rgb)
    return rgb, drawn, shape_to_mask(drawn, mask), mask


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_a_mask_shaped_part_map_covers_the_mask_on_a_photo(name: str) -> None:
    rgb, drawn, shaped, mask = _shaped(name)
    assert 0.2 < mask.mean() < 0.9  # the segmentation sees the person (upper body, close up)
    before, after = part_map(drawn) > 0, part_map(shaped) > 0
    cover_before = (before & mask).sum() / mask.sum()
    cover = (after & mask).sum() / mask.sum()
    outside = (after & ~mask).sum() / after.sum()
    assert cover >= 0.9 and cover > cover_before + 0.1, (cover, cover_before)  # most mask pixels get a part
    assert outside <= 0.02, outside  # few parts outside the mask
    # Parts the drawing put inside the mask keep their label (only the outline changes).
    kept = before & mask
    assert (part_map(shaped)[kept] == part_map(drawn)[kept]).mean() > 0.99
    labels = set(np.unique(part_map(shaped))) - {0}
    assert {2, 23, 24} <= labels  # torso front, both head halves


@pytest.fixture(scope="module")
def artist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weights generator imported as an artist's DensePose model (pose source densepose)."""
    ensure_tracker_files()
    root = tmp_path_factory.mktemp("dpgen")
    folder = gs.colab_folder(root, "artist", "resnet_6blocks", "instance", "cycle_gan", 1)
    done = gs.cli("models", "import", str(folder), "--dest", str(root / "models"), "--pose-source", "densepose")
    assert done.returncode == 0, done.stderr
    assert 'pose_source = "densepose"' in (root / "models" / "artist" / "card.toml").read_text()
    return root / "models"


@pytest.fixture(scope="module")
def client(artist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeClient]:
    bridge = start_bridge(tmp_path_factory.mktemp("serve"), "--model", "artist", "--models-dir", str(artist),
                          "--pose", "tracker-densepose", timeout=120)
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=60) as c:
            yield c
    finally:
        bridge.stop()


def test_the_densepose_model_is_served_with_tracker_densepose_poses(client: BridgeClient, artist: Path) -> None:
    """No DensePose weights anywhere: the camera frame is posed by the tracker + mask, rendered
    like DensePose's dp_segm on the frame, and the artist's generator draws from that."""
    from bridge.pose.render import render_pose

    rgb, _, shaped, _ = _shaped("astronaut")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    want_pose = render_pose(shaped, "dp_segm", bgr)  # RGB
    session = client.open_shm("cam", 512, 512, "BGRA8")
    assert client.set_view("pose") == "pose"
    try:
        pose, _ = client.process_shm(session, frame, 1, timeout=60)
    finally:
        client.set_view("person")
    assert client.safe_notice(1) is None
    got_pose = cv2.cvtColor(pose, cv2.COLOR_BGRA2RGB)
    assert (np.abs(got_pose.astype(int) - want_pose).max(axis=2) > 1).mean() < 0.01
    client.close_shm(session)
    session = client.open_shm("cam2", 512, 512, "BGRA8")  # a new stream: the first frame's tracking again
    out, _ = client.process_shm(session, frame, 2, timeout=60)
    assert client.safe_notice(2) is None
    want = gs.expected_output(artist, "artist", got_pose)
    assert np.abs(cv2.cvtColor(out, cv2.COLOR_BGRA2RGB).astype(int) - want.astype(int)).max() <= 1
    empty = np.full((240, 320, 4), 70, np.uint8)
    session3 = client.open_shm("cam3", 320, 240, "BGRA8")
    client.process_shm(session3, empty, 3, timeout=60)
    reason = client.safe_notice(3)
    assert reason is not None and reason.startswith("no_person"), reason
