"""bridge.formats.paths (allowed roots, symlinks, traversal) and bridge.formats.imageio (safe decode, atomic write).

PNG inputs are built byte by byte by a small encoder below (zlib + CRC), so the expected
pixels do not come from the decoder under test. Symlinks and files are real, in tmp_path.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.errors import ClientError
from bridge.formats.imageio import read_image, write_image_atomic
from bridge.formats.paths import DEFAULT_OUTPUT_SUFFIX, resolve_input, resolve_output

BIG = 10**9

# ---------------------------------------------------------------------------------------------
# an independent PNG encoder


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels: np.ndarray, color_type: int, *, header_size: tuple[int, int] | None = None) -> bytes:
    """Encode ``pixels`` (h, w[, c], uint8 or uint16) as a PNG; colour type 0 grey, 2 RGB, 4 GA, 6 RGBA."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, _ = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))  # filter type 0 on each row
    w, h = header_size or (width, height)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def read(path: Path, **kw: int) -> tuple[np.ndarray, str]:
    return read_image(path, max_pixels=kw.get("max_pixels", BIG), max_bytes=kw.get("max_bytes", BIG), frame_id=9)


def refused(code: str, fn, *args, **kwargs) -> ClientError:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, (info.value.code, info.value.message)
    return info.value


# ---------------------------------------------------------------------------------------------
# paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = (tmp_path / "root").resolve()
    r.mkdir()
    return r


def test_input_inside_root(root: Path) -> None:
    (root / "sub").mkdir()
    f = root / "sub" / "a.png"
    f.write_bytes(b"x")
    assert resolve_input(str(f), (root,), 1) == f
    # ".." that stays inside the root is fine: it is resolved first
    assert resolve_input(str(root / "sub" / ".." / "sub" / "a.png"), (root,), 1) == f
    # any of several roots
    other = root.parent / "other"
    other.mkdir()
    assert resolve_input(str(f), (other, root), 1) == f


def test_input_dotdot_traversal(root: Path) -> None:
    secret = root.parent / "secret.txt"
    secret.write_text("no")
    err = refused("path_not_allowed", resolve_input, str(root / ".." / "secret.txt"), (root,), 4)
    assert err.frame_id == 4
    refused("path_not_allowed", resolve_input, "/etc/passwd", (root,), 4)


def test_input_sibling_with_common_prefix_is_outside(root: Path) -> None:
    sibling = root.parent / (root.name + "2")
    sibling.mkdir()
    (sibling / "a.png").write_bytes(b"x")
    refused("path_not_allowed", resolve_input, str(sibling / "a.png"), (root,), 1)


def test_input_symlink_escape(root: Path) -> None:
    secret = root.parent / "secret.png"
    secret.write_bytes(b"x")
    link = root / "innocent.png"
    link.symlink_to(secret)
    refused("path_not_allowed", resolve_input, str(link), (root,), 1)
    dirlink = root / "dir"
    dirlink.symlink_to(root.parent, target_is_directory=True)
    refused("path_not_allowed", resolve_input, str(dirlink / "secret.png"), (root,), 1)


def test_input_symlink_inside_root_is_followed(root: Path) -> None:
    target = root / "real.png"
    target.write_bytes(b"x")
    (root / "alias.png").symlink_to(target)
    assert resolve_input(str(root / "alias.png"), (root,), 1) == target


def test_input_symlink_loop(root: Path) -> None:
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(ClientError) as info:
        resolve_input(str(root / "loop"), (root,), 1)
    assert info.value.code in ("path_not_allowed", "file_not_found")


def test_input_relative_and_empty(root: Path) -> None:
    (root / "a.png").write_bytes(b"x")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        refused("path_not_allowed", resolve_input, "a.png", (root,), 1)
        refused("path_not_allowed", resolve_input, "./a.png", (root,), 1)
    finally:
        os.chdir(cwd)
    refused("bad_arguments", resolve_input, "", (root,), 1)
    refused("bad_arguments", resolve_input, str(root / "a\x00.png"), (root,), 1)


def test_input_missing_or_directory(root: Path) -> None:
    refused("file_not_found", resolve_input, str(root / "missing.png"), (root,), 1)
    (root / "d").mkdir()
    refused("file_not_found", resolve_input, str(root / "d"), (root,), 1)


def test_output_default_and_explicit(root: Path) -> None:
    src = root / "shot.01.jpg"
    assert resolve_output(None, src, (root,), 1) == root / ("shot.01" + DEFAULT_OUTPUT_SUFFIX)
    assert resolve_output("", src, (root,), 1) == root / "shot.01.pose2person.png"
    assert resolve_output(str(root / "out.png"), src, (root,), 1) == root / "out.png"
    (root / "sub").mkdir()
    assert resolve_output(str(root / "sub" / ".." / "o.png"), src, (root,), 1) == root / "o.png"


def test_output_refusals(root: Path) -> None:
    src = root / "in.png"
    refused("path_not_allowed", resolve_output, "out.png", src, (root,), 1)
    refused("path_not_allowed", resolve_output, str(root / ".." / "out.png"), src, (root,), 1)
    refused("path_not_allowed", resolve_output, str(root.parent / "out.png"), src, (root,), 1)
    # output path that is a symlink (even to a place inside the root) is refused
    (root / "target.png").write_bytes(b"old")
    (root / "link.png").symlink_to(root / "target.png")
    refused("path_not_allowed", resolve_output, str(root / "link.png"), src, (root,), 1)
    # a dangling symlink too
    (root / "dangling.png").symlink_to(root.parent / "elsewhere.png")
    refused("path_not_allowed", resolve_output, str(root / "dangling.png"), src, (root,), 1)
    # a directory symlink pointing out of the root
    (root / "out").symlink_to(root.parent, target_is_directory=True)
    refused("path_not_allowed", resolve_output, str(root / "out" / "x.png"), src, (root,), 1)
    # missing directory inside the root
    refused("write_failed", resolve_output, str(root / "nope" / "x.png"), src, (root,), 1)
    refused("bad_arguments", resolve_output, str(root / ".."), src, (root,), 1)
    assert (root / "target.png").read_bytes() == b"old"


# ---------------------------------------------------------------------------------------------
# read_image

RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [40, 50, 60], [70, 80, 90]]], np.uint8)


def test_read_rgb_png_as_bgr(tmp_path: Path) -> None:
    f = tmp_path / "rgb.png"
    f.write_bytes(png_bytes(RGB, 2))
    image, fmt = read(f)
    assert fmt == "BGR8" and image.dtype == np.uint8
    assert np.array_equal(image, RGB[..., ::-1])


def test_read_rgba_png_as_bgra(tmp_path: Path) -> None:
    rgba = np.concatenate([RGB, np.array([[[0], [128], [255]], [[1], [2], [3]]], np.uint8)], axis=2)
    f = tmp_path / "rgba.png"
    f.write_bytes(png_bytes(rgba, 6))
    image, fmt = read(f)
    assert fmt == "BGRA8"
    assert np.array_equal(image, rgba[..., [2, 1, 0, 3]])


def test_read_grey_png_as_bgr(tmp_path: Path) -> None:
    grey = np.array([[0, 100, 255], [7, 8, 9]], np.uint8)
    f = tmp_path / "grey.png"
    f.write_bytes(png_bytes(grey, 0))
    image, fmt = read(f)
    assert fmt == "BGR8" and image.shape == (2, 3, 3)
    assert np.array_equal(image, np.repeat(grey[..., None], 3, axis=2))


def test_read_grey_alpha_png(tmp_path: Path) -> None:
    ga = np.stack([np.array([[0, 100, 255]], np.uint8), np.array([[255, 255, 255]], np.uint8)], axis=2)
    f = tmp_path / "ga.png"
    f.write_bytes(png_bytes(ga, 4))
    image, fmt = read(f)
    assert fmt in ("BGR8", "BGRA8")
    assert np.array_equal(image[..., :3], np.repeat(ga[..., :1], 3, axis=2))


def test_read_16_bit_pngs_scaled_to_8_bits(tmp_path: Path) -> None:
    grey16 = np.array([[0, 255, 256, 65535], [0x1234, 0xABCD, 0x8000, 0x7FFF]], np.uint16)
    f = tmp_path / "g16.png"
    f.write_bytes(png_bytes(grey16, 0))
    image, fmt = read(f)
    assert fmt == "BGR8" and image.dtype == np.uint8
    assert image[..., 0].tolist() == [[0, 0, 1, 255], [0x12, 0xAB, 0x80, 0x7F]]
    rgb16 = (RGB.astype(np.uint16) << 8) | 0xFF
    f = tmp_path / "rgb16.png"
    f.write_bytes(png_bytes(rgb16, 2))
    image, fmt = read(f)
    assert fmt == "BGR8" and np.array_equal(image, RGB[..., ::-1])


def test_read_truncated_png(tmp_path: Path) -> None:
    data = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), 2)
    f = tmp_path / "cut.png"
    f.write_bytes(data[: len(data) // 2])
    refused("image_decode_failed", read, f)
    f.write_bytes(data[:20])  # cut inside IHDR
    refused("image_decode_failed", read, f)


def test_read_corrupt_idat(tmp_path: Path) -> None:
    data = bytearray(png_bytes(RGB, 2))
    start = data.index(b"IDAT") + 4
    data[start : start + 4] = b"\xff\xff\xff\xff"
    f = tmp_path / "bad.png"
    f.write_bytes(bytes(data))
    refused("image_decode_failed", read, f)


def test_read_empty_and_text_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused("image_decode_failed", read, empty)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n" * 10)
    refused("image_decode_failed", read, text)


def test_read_missing_file(tmp_path: Path) -> None:
    err = refused("file_not_found", read, tmp_path / "missing.png")
    assert err.frame_id == 9


def test_read_pixel_limit_before_decoding(tmp_path: Path) -> None:
    f = tmp_path / "ok.png"
    f.write_bytes(png_bytes(RGB, 2))
    assert read(f, max_pixels=6)[0].shape == (2, 3, 3)
    refused("image_too_large", read, f, max_pixels=5)
    # A header claiming 10000x5000 (50 Mpx) with a tiny IDAT: refused from the header alone.
    claim = tmp_path / "claim.png"
    claim.write_bytes(png_bytes(RGB, 2, header_size=(10000, 5000)))
    refused("image_too_large", read, claim, max_pixels=7680 * 4320)


def test_read_decompression_bomb_is_too_large(tmp_path: Path) -> None:
    # 20000 x 20000 is past PIL's own bomb limit: still "too large", not "cannot decode".
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(RGB, 2, header_size=(20000, 20000)))
    refused("image_too_large", read, bomb, max_pixels=7680 * 4320)


def test_read_max_bytes(tmp_path: Path) -> None:
    f = tmp_path / "ok.png"
    data = png_bytes(RGB, 2)
    f.write_bytes(data)
    assert read(f, max_bytes=len(data))[1] == "BGR8"
    refused("image_too_large", read, f, max_bytes=len(data) - 1)


# ---------------------------------------------------------------------------------------------
# write_image_atomic


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_write_png_round_trips_exactly(tmp_path: Path) -> None:
    bgra = np.random.default_rng(2).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    out = tmp_path / "o.png"
    write_image_atomic(out, bgra, "BGRA8", 1)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (6, 5)
        assert np.array_equal(np.asarray(im), bgra[..., [2, 1, 0, 3]])
    bgr = bgra[..., :3].copy()
    write_image_atomic(out, bgr, "BGR8", 1)  # replaces the existing file
    with Image.open(out) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), bgr[..., ::-1])
    assert read(out)[1] == "BGR8"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["o.jpg", "o.JPEG"])
def test_write_jpeg_drops_alpha(tmp_path: Path, name: str) -> None:
    bgra = np.zeros((16, 16, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[..., 3] = 7
    out = tmp_path / name
    write_image_atomic(out, bgra, "BGRA8", 1)
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (16, 16)
        px = np.asarray(im).astype(int)
    assert np.abs(px - [200, 0, 0]).max() <= 4  # lossy, but red
    assert _leftovers(tmp_path) == []


def test_write_unknown_extension(tmp_path: Path) -> None:
    for name in ("o.gif", "o.txt", "noext"):
        refused("write_failed", write_image_atomic, tmp_path / name, np.zeros((2, 2, 3), np.uint8), "BGR8", 1)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_other_formats(tmp_path: Path) -> None:
    refused("internal", write_image_atomic, tmp_path / "o.png", np.zeros((2, 2, 4), np.float32), "RGBAF32", 1)
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    refused("write_failed", write_image_atomic, tmp_path / "nope" / "o.png", np.zeros((2, 2, 3), np.uint8),
            "BGR8", 1)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# paths the file system itself refuses: a ClientError, never a raw OSError ("internal")

LONG = "a" * 300  # one path component over NAME_MAX (255 bytes)


def test_input_name_too_long_is_file_not_found(root: Path) -> None:
    err = refused("file_not_found", resolve_input, str(root / LONG), (root,), 3)
    assert err.frame_id == 3
    refused("file_not_found", resolve_input, str(root / LONG / "a.png"), (root,), 3)


def test_output_name_too_long_is_write_failed(root: Path) -> None:
    src = root / "in.png"
    refused("write_failed", resolve_output, str(root / (LONG + ".png")), src, (root,), 1)
    refused("write_failed", resolve_output, str(root / LONG / "x.png"), src, (root,), 1)
    # the default output name of an input whose own name is just short enough
    long_input = root / ("b" * 245 + ".jpg")
    long_input.write_bytes(b"x")
    assert resolve_input(str(long_input), (root,), 1) == long_input
    refused("write_failed", resolve_output, None, long_input, (root,), 1)


def test_unknown_user_home_is_refused(root: Path) -> None:
    for raw in ("~no-such-user-p2p/a.png", "~no-such-user-p2p"):
        refused("path_not_allowed", resolve_input, raw, (root,), 1)
        refused("path_not_allowed", resolve_output, raw, root / "in.png", (root,), 1)


def test_output_with_nul_is_refused(root: Path) -> None:
    refused("bad_arguments", resolve_output, str(root / "a\x00b.png"), root / "in.png", (root,), 1)


def test_input_fifo_and_device_are_not_regular_files(root: Path) -> None:
    fifo = root / "pipe.png"
    os.mkfifo(fifo)  # reading it would block the worker forever
    refused("file_not_found", resolve_input, str(fifo), (root,), 1)
    (root / "null.png").symlink_to("/dev/null")
    refused("path_not_allowed", resolve_input, str(root / "null.png"), (root,), 1)
    refused("file_not_found", resolve_input, "/dev/null", (Path("/dev"),), 1)


def test_input_root_itself_is_not_a_file(root: Path) -> None:
    refused("file_not_found", resolve_input, str(root), (root,), 1)
    refused("file_not_found", resolve_input, str(root) + "/", (root,), 1)


# ---------------------------------------------------------------------------------------------
# more readers and writers


def test_read_files_written_by_pil(tmp_path: Path) -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for name, kwargs in (("p.bmp", {}), ("p.tiff", {}), ("p.png", {"optimize": True})):
        f = tmp_path / name
        Image.fromarray(rgb, "RGB").save(f, **kwargs)
        image, fmt = read(f)
        assert fmt == "BGR8", name
        assert np.array_equal(image, rgb[..., ::-1]), name
    # a palette PNG: indices expanded through the palette
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    f = tmp_path / "pal.png"
    pal.save(f)
    image, fmt = read(f)
    assert fmt == "BGR8" and image.tolist() == [[[0, 0, 255], [255, 0, 0]]]
    # JPEG is lossy: a flat colour comes back close
    f = tmp_path / "p.jpg"
    Image.new("RGB", (16, 16), (200, 30, 60)).save(f, quality=95)
    image, fmt = read(f)
    assert fmt == "BGR8" and image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - [60, 30, 200]).max() <= 4


def test_read_directory_is_file_not_found(tmp_path: Path) -> None:
    refused("file_not_found", read, tmp_path)


def test_read_garbage_with_png_signature(tmp_path: Path) -> None:
    f = tmp_path / "sig.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    refused("image_decode_failed", read, f)


def test_read_zero_width_header(tmp_path: Path) -> None:
    f = tmp_path / "zero.png"
    f.write_bytes(png_bytes(RGB, 2, header_size=(0, 2)))
    with pytest.raises(ClientError) as info:
        read(f)
    assert info.value.code in ("bad_dimensions", "image_decode_failed")


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_write_lossless_formats_round_trip(tmp_path: Path, ext: str) -> None:
    bgr = np.random.default_rng(6).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    out = tmp_path / ("o" + ext)
    write_image_atomic(out, bgr, "BGR8", 1)
    with Image.open(out) as im:
        assert im.size == (9, 7)
        assert np.array_equal(np.asarray(im.convert("RGB")), bgr[..., ::-1])
    image, fmt = read(out)
    assert fmt == "BGR8" and np.array_equal(image, bgr)
    assert _leftovers(tmp_path) == []


def test_write_webp_is_readable(tmp_path: Path) -> None:
    bgra = np.full((8, 8, 4), (10, 200, 30, 255), np.uint8)
    out = tmp_path / "o.webp"
    write_image_atomic(out, bgra, "BGRA8", 1)
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.size == (8, 8)
        px = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(px - [30, 200, 10]).max() <= 8
    assert _leftovers(tmp_path) == []


def test_write_with_the_longest_file_name(tmp_path: Path) -> None:
    # 251 + ".png" = 255 bytes, the longest name a POSIX file system allows; the temporary
    # name must not push past that limit.
    out = tmp_path / ("n" * 251 + ".png")
    write_image_atomic(out, np.zeros((2, 3, 3), np.uint8), "BGR8", 1)
    assert read(out)[0].shape == (2, 3, 3)
    assert _leftovers(tmp_path) == []


def test_write_over_a_directory_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    refused("write_failed", write_image_atomic, tmp_path / "d.png", np.zeros((2, 2, 3), np.uint8), "BGR8", 1)
    assert (tmp_path / "d.png").is_dir()
    assert _leftovers(tmp_path) == []


def test_write_replaces_a_hard_linked_file_without_touching_the_other_name(tmp_path: Path) -> None:
    # Atomic replace: a new inode is renamed over the name, the old content lives on elsewhere.
    out = tmp_path / "o.png"
    write_image_atomic(out, np.zeros((2, 2, 3), np.uint8), "BGR8", 1)
    old = out.read_bytes()
    os.link(out, tmp_path / "other.png")
    write_image_atomic(out, np.full((2, 2, 3), 255, np.uint8), "BGR8", 1)
    assert (tmp_path / "other.png").read_bytes() == old
    assert (read(out)[0] == 255).all()


def test_write_name_too_long_fails_cleanly(tmp_path: Path) -> None:
    # The temporary file can be written, the rename onto the impossible name cannot.
    refused("write_failed", write_image_atomic, tmp_path / (LONG + ".png"), np.zeros((2, 2, 3), np.uint8),
            "BGR8", 1)
    assert list(tmp_path.iterdir()) == []
