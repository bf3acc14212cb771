"""Reading and writing frame files safely: size limits before decoding, atomic writes.

Decoding uses OpenCV (fast, headless); PIL reads only the header to learn the size so
a decompression bomb is refused before any pixel is decoded. The files themselves are opened by
:mod:`bridge.formats.safefs`: below an allowed root no link is followed, only regular files are
read, and the size is checked while reading.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

# cv2 must not be a second, unbounded decoder path: cap what it accepts as well. OpenCV reads
# this when it loads, so it is set before the import (a no-op if cv2 was imported earlier).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**30))
import cv2  # noqa: E402
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ClientError
from .pixels import format_for
from .safefs import read_bytes, write_atomic

WRITE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def read_image(path: Path, *, max_pixels: int, max_bytes: int, frame_id: int,
               roots: tuple[Path, ...] = ()) -> tuple[np.ndarray, str]:
    """Decode an image file into ``(pixels, format)`` with format ``BGR8`` or ``BGRA8``.

    ``path`` was checked inside one of ``roots`` (a client's path): it is opened by walking from
    that root without following links (:func:`bridge.formats.safefs.read_bytes`); with no roots it
    is the caller's own file (its folder is trusted, the file itself still no link, FIFO or device).
    Grey images become BGR; 16-bit images are scaled to 8 bits. Raises ClientError with
    ``path_not_allowed``, ``file_not_found``, ``image_too_large``, ``bad_dimensions`` or
    ``image_decode_failed``.
    """
    data = read_bytes(path, roots, max_bytes=max_bytes, frame_id=frame_id)
    if not data:
        raise ClientError("image_decode_failed", f"{path.name} is empty", frame_id)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:  # PIL's own pixel cap: far over any sane limit
        raise ClientError("image_too_large", f"{path.name} is too large: {exc}", frame_id) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClientError("image_decode_failed", f"{path.name} is not a readable image: {exc}", frame_id) from None
    if width <= 0 or height <= 0:
        raise ClientError("bad_dimensions", f"{path.name} is {width}x{height}", frame_id)
    if width * height > max_pixels:
        raise ClientError("image_too_large", f"{path.name} is {width}x{height}, over the {max_pixels}-pixel limit",
                          frame_id)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ClientError("image_decode_failed", f"{path.name} could not be decoded (corrupt or truncated)", frame_id)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ClientError("image_decode_failed", f"{path.name} has unsupported sample type {image.dtype}", frame_id)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 2:  # grey + alpha
        image = cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    return image, format_for(image.shape[2], "BGR")


#: PNG level 1: a live loop wants speed over bytes (measured at 720p on the bench frame: 52 ms
#: against 68 ms at OpenCV's default level 3, for 1 % more bytes); PNG is lossless at every
#: level, so the pixels are the same.
ENCODE_PARAMS: dict[str, list[int]] = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 1]}


def write_image_atomic(path: Path, image: np.ndarray, fmt: str, frame_id: int,
                       roots: tuple[Path, ...] = ()) -> None:
    """Encode ``image`` (``BGR8``/``BGRA8``) by ``path``'s extension and publish it atomically.

    The bytes go to an unpredictable hidden temporary name created exclusively in the same folder,
    then are renamed over ``path``, so a reader polling ``path`` sees the old file or the whole new
    one. With ``roots`` the folder is reached from its root without following links, at every call
    (:func:`bridge.formats.safefs.write_atomic`): a folder swapped for a link since the path was
    checked is refused (``path_not_allowed``), never written through.
    """
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ClientError("write_failed", f"unsupported output extension {ext!r}; use png, jpg, bmp, tif or webp",
                          frame_id)
    if fmt not in ("BGR8", "BGRA8"):
        raise ClientError("internal", f"cannot encode format {fmt}", frame_id)
    if ext in (".jpg", ".jpeg") and fmt == "BGRA8":
        image = image[..., :3]
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(image), ENCODE_PARAMS.get(ext, []))
    if not ok:
        raise ClientError("write_failed", f"could not encode {path.name}", frame_id)
    write_atomic(path, memoryview(np.ascontiguousarray(encoded).reshape(-1)), roots, frame_id)
