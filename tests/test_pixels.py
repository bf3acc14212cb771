"""bridge.formats.pixels.convert: channel order, alpha, uint8 <-> float32 and row flips, against
hand-written expectations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bridge.formats.pixels import FORMATS, channel_order, convert, format_for, has_alpha, is_float

# One 1x2 picture in every format, written out by hand:
# pixel 0 = R 10, G 20, B 30, A 40; pixel 1 = R 255, G 0, B 128, A 255.
HAND = {
    "BGRA8": np.array([[[30, 20, 10, 40], [128, 0, 255, 255]]], np.uint8),
    "RGBA8": np.array([[[10, 20, 30, 40], [255, 0, 128, 255]]], np.uint8),
    "RGB8": np.array([[[10, 20, 30], [255, 0, 128]]], np.uint8),
    "BGR8": np.array([[[30, 20, 10], [128, 0, 255]]], np.uint8),
    "RGBAF32": np.array([[[10, 20, 30, 40], [255, 0, 128, 255]]], np.float32) / np.float32(255),
}
OPAQUE_FROM_3 = {  # 3-channel sources gain alpha 255 / 1.0
    "BGRA8": np.array([[[30, 20, 10, 255], [128, 0, 255, 255]]], np.uint8),
    "RGBA8": np.array([[[10, 20, 30, 255], [255, 0, 128, 255]]], np.uint8),
    "RGBAF32": np.array([[[10, 20, 30, 255], [255, 0, 128, 255]]], np.float32) / np.float32(255),
}


def test_format_helpers() -> None:
    assert set(FORMATS) == {"BGRA8", "RGBA8", "RGB8", "BGR8", "RGBAF32"}
    assert channel_order("BGRA8") == "BGRA" and channel_order("RGB8") == "RGB"
    assert has_alpha("RGBAF32") and not has_alpha("BGR8")
    assert is_float("RGBAF32") and not is_float("RGBA8")
    assert format_for(3) == "BGR8" and format_for(4) == "BGRA8"
    assert format_for(3, "RGB") == "RGB8" and format_for(4, "RGBA") == "RGBA8"
    with pytest.raises((ValueError, KeyError)):
        format_for(2)


@pytest.mark.parametrize("src,dst", list(itertools.product(FORMATS, FORMATS)))
def test_explicit_values_for_every_pair(src: str, dst: str) -> None:
    out = convert(HAND[src], src, dst)
    if has_alpha(dst) and not has_alpha(src):
        expected = OPAQUE_FROM_3[dst]
    else:
        expected = HAND[dst]
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    if is_float(dst):
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    else:
        assert np.array_equal(out, expected), (src, dst, out)
    assert out.flags.c_contiguous


def _lossless(src: str, dst: str) -> bool:
    return not has_alpha(src) or has_alpha(dst)


@pytest.mark.parametrize("src,dst", [p for p in itertools.product(FORMATS, FORMATS) if _lossless(*p)])
def test_round_trip_where_lossless(src: str, dst: str) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (9, 7, 4 if has_alpha(src) else 3), dtype=np.uint8)
    if is_float(src):
        image = image.astype(np.float32) / np.float32(255)  # values on the 8-bit grid
    back = convert(convert(image, src, dst), dst, src)
    assert back.dtype == image.dtype
    if is_float(src):
        np.testing.assert_allclose(back, image, rtol=0, atol=1e-7)
    else:
        assert np.array_equal(back, image)


def test_all_256_levels_survive_float_round_trip() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(4, axis=2)
    f = convert(levels, "RGBA8", "RGBAF32")
    assert f.dtype == np.float32
    assert f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_allclose(f[..., 0].ravel(), np.arange(256) / 255.0, rtol=0, atol=1e-7)
    assert np.array_equal(convert(f, "RGBAF32", "RGBA8"), levels)


def test_float_to_uint8_rounds_and_clips() -> None:
    f = np.array([[[-0.5, 0.0, 0.5 / 255, 0.49 / 255], [0.5, 1.0, 1.5, 254.6 / 255]]], np.float32)
    out = convert(f, "RGBAF32", "RGBA8")
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 0, 0, 0], [128, 255, 255, 255]]]  # rint(127.5) = 128 (half to even)


def test_alpha_is_added_opaque() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    assert (convert(rgb, "RGB8", "BGRA8")[..., 3] == 255).all()
    assert (convert(rgb, "BGR8", "RGBAF32")[..., 3] == 1.0).all()


def test_alpha_is_dropped() -> None:
    out = convert(HAND["BGRA8"], "BGRA8", "BGR8")
    assert out.tolist() == [[[30, 20, 10], [128, 0, 255]]]


def test_flip_rows() -> None:
    image = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(3, 2, 3)
    flipped = convert(image, "RGB8", "RGB8", flip_rows=True)
    assert flipped.tolist() == [image[2].tolist(), image[1].tolist(), image[0].tolist()]
    assert flipped.flags.c_contiguous and flipped is not image
    assert not np.shares_memory(flipped, image)
    both = convert(image, "RGB8", "BGRA8", flip_rows=True)
    assert both[0, 0].tolist() == [image[2, 0, 2], image[2, 0, 1], image[2, 0, 0], 255]
    assert np.array_equal(convert(flipped, "RGB8", "RGB8", flip_rows=True), image)


def test_same_format_no_flip_returns_input() -> None:
    image = np.zeros((2, 2, 4), np.uint8)
    assert convert(image, "BGRA8", "BGRA8") is image


def test_conversion_does_not_modify_input() -> None:
    image = HAND["BGRA8"].copy()
    out = convert(image, "BGRA8", "RGBA8")
    out[...] = 0
    assert np.array_equal(image, HAND["BGRA8"])


def test_flip_rows_with_format_change_and_float() -> None:
    # 2 rows x 1 pixel, RGBAF32 -> BGR8 flipped: row order reversed, colour order swapped, alpha dropped.
    f = np.array([[[1.0, 0.0, 0.5, 0.25]], [[0.0, 1.0, 0.2, 1.0]]], np.float32)
    out = convert(f, "RGBAF32", "BGR8", flip_rows=True)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[51, 255, 0]], [[128, 0, 255]]]  # rint(0.2*255)=51, rint(127.5)=128


def test_read_only_and_non_contiguous_inputs() -> None:
    base = np.arange(2 * 6 * 4, dtype=np.uint8).reshape(2, 6, 4)
    strided = base[:, ::2]  # every other pixel: not contiguous
    strided.flags.writeable = False
    out = convert(strided, "BGRA8", "RGB8")
    assert out.flags.c_contiguous and out.flags.writeable
    expected = [[[p[2], p[1], p[0]] for p in row] for row in base[:, ::2].tolist()]
    assert out.tolist() == expected
    flipped = convert(strided, "BGRA8", "BGRA8", flip_rows=True)
    assert flipped.tolist() == base[::-1, ::2].tolist()


def test_uint8_to_float_exact_values() -> None:
    rgb = np.array([[[0, 51, 255]]], np.uint8)
    out = convert(rgb, "RGB8", "RGBAF32")
    assert out.dtype == np.float32 and out.shape == (1, 1, 4)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.2, 1.0, 1.0], rtol=0, atol=1e-7)
    bgr = np.array([[[0, 51, 255]]], np.uint8)  # B 0, G 51, R 255
    np.testing.assert_allclose(convert(bgr, "BGR8", "RGBAF32")[0, 0], [1.0, 0.2, 0.0, 1.0], rtol=0, atol=1e-7)
