"""The reference pre/post-processing against expectations computed here with PIL and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bridge.generator.processing import (InputContract, frame_input, map_output, model_input_size, normalize,
                                         reference_resize, to_uint8)


def camera(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 3, :, 0] = 250  # a red band on top: tells RGB from BGR and up from down
    return img


def test_squash_is_a_pil_bicubic_resize_to_the_square_without_letterbox() -> None:
    rgb = camera(90, 160)
    expected = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.BICUBIC))
    got = reference_resize(rgb, InputContract())
    assert got.shape == (256, 256, 3)
    assert np.array_equal(got, expected)
    assert got[:80, :, 0].mean() > 240  # red stays red, on top


def test_normalisation_is_totensor_then_normalize_in_float32() -> None:
    rgb = camera(8, 8)
    x = normalize(rgb)
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    expected = ((rgb.astype(np.float32) / np.float32(255)) - np.float32(0.5)) / np.float32(0.5)
    assert np.array_equal(x, expected.transpose(2, 0, 1))
    assert x[0, 0, 0] == pytest.approx(rgb[0, 0, 0] / 127.5 - 1, abs=1e-6)


def test_output_is_truncated_not_rounded_and_rgb() -> None:
    y = np.zeros((3, 1, 4), np.float32)
    y[0, 0] = [-1.0, 0.0, 0.999, 1.0]
    y[1, 0] = 2 * (100.9 / 255) - 1  # 100.9 -> 100, rounding would give 101
    out = to_uint8(y)
    assert out.shape == (1, 4, 3)
    assert list(out[0, :, 0]) == [0, 127, 254, 255]
    assert set(out[0, :, 1].tolist()) == {100}
    gray = to_uint8(np.full((1, 2, 2), 0.5, np.float32))
    assert gray.shape == (2, 2, 3) and (gray == 191).all()  # one channel is tiled to three


def test_preprocess_none_and_scale_width_sizes() -> None:
    none = InputContract(preprocess="none")
    assert model_input_size(202, 99, none) == (200, 100)  # round(202/4)*4, round(99/4)*4
    assert reference_resize(camera(99, 202), none).shape == (100, 200, 3)
    assert reference_resize(camera(100, 200), none).shape == (100, 200, 3)
    sw = InputContract(load_size=128, crop_size=64, preprocess="scale_width")
    assert model_input_size(256, 100, sw) == (128, 64)  # int(max(128*100/256, 64)) = 64
    assert model_input_size(256, 400, sw) == (128, 200)
    rgb = camera(400, 256)
    assert np.array_equal(reference_resize(rgb, sw), np.asarray(Image.fromarray(rgb).resize((128, 200), Image.BICUBIC)))


def test_letterbox_pads_with_the_card_colour_and_maps_back() -> None:
    rgb = camera(60, 120)
    c = InputContract(framing="letterbox", pad_color=(255, 255, 255))
    framed, fmap = frame_input(rgb, c)
    assert framed.shape == (120, 120, 3)
    assert (framed[:30] == 255).all() and (framed[90:] == 255).all()
    assert np.array_equal(framed[30:90], rgb)
    back = map_output(framed, fmap, c)  # the identity "model": bars cut away again
    assert back.shape == rgb.shape and np.array_equal(back, rgb)


def test_center_crop_puts_the_output_back_in_place() -> None:
    rgb = camera(60, 120)
    c = InputContract(framing="center-crop", pad_color=(0, 0, 0))
    framed, fmap = frame_input(rgb, c)
    assert np.array_equal(framed, rgb[:, 30:90])
    back = map_output(framed, fmap, c)
    assert np.array_equal(back[:, 30:90], rgb[:, 30:90]) and (back[:, :30] == 0).all()
    stretch = InputContract(framing="center-crop", output_mapping="stretch")
    assert map_output(framed, fmap, stretch).shape == rgb.shape


def test_squash_output_maps_back_to_the_frame_size() -> None:
    c = InputContract()
    rgb = camera(48, 64)
    framed, fmap = frame_input(rgb, c)
    assert framed is rgb
    out = map_output(np.zeros((256, 256, 3), np.uint8), fmap, c)
    assert out.shape == (48, 64, 3)
    same = camera(256, 256)
    _, fmap = frame_input(same, c)
    assert map_output(same, fmap, c) is same or np.array_equal(map_output(same, fmap, c), same)


def test_contract_validation() -> None:
    with pytest.raises(ValueError):
        InputContract(framing="zoom")
    with pytest.raises(ValueError):
        InputContract(load_size=64, crop_size=128)
