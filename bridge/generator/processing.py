"""The reference test path's pre/post-processing, and the framing of camera frames around it.

Numpy + PIL only (no torch), so it is testable and usable without a model.

Reference semantics (pytorch-CycleGAN-and-pix2pix ``test.py`` with ``SingleDataset`` and
``get_transform``; docs/GENERATOR.md):

* input is RGB (``Image.open(...).convert('RGB')``);
* ``resize_and_crop``: PIL bicubic squash to ``load_size`` x ``load_size`` (aspect not kept,
  no letterbox), then a crop to ``crop_size`` that is a no-op when the two are equal (the
  reference crops at a random offset otherwise; here the crop is centred, a documented
  deviation that only exists for ``load_size > crop_size``);
* ``scale_width``: width ``load_size``, height ``int(max(load_size * h / w, crop_size))``;
* ``none``: each side rounded to a multiple of 4 (Python ``round``), bicubic, only if needed;
* ``ToTensor`` then ``Normalize(0.5, 0.5)``: ``(v / 255 - 0.5) / 0.5`` in float32;
* output ``((y + 1) / 2 * 255).astype(uint8)``: truncation, not rounding; RGB.

Framing (a camera frame of another aspect ratio, before the squash) and the mapping of the
output back to the client's frame size lie outside the reference path; the model card
chooses them. Only ``squash`` framing of a frame already at the model's size is the
reference path to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ..config import FRAMINGS

Preprocess = Literal["resize_and_crop", "scale_width", "none"]
PREPROCESS_MODES: tuple[str, ...] = ("resize_and_crop", "scale_width", "none")
Framing = Literal["squash", "center-crop", "letterbox"]
#: ``inverse`` undoes the framing (letterbox bars cut away, a centre crop put back in place);
#: ``stretch`` resizes the output to the frame whatever the framing was.
OutputMapping = Literal["inverse", "stretch"]
OUTPUT_MAPPINGS: tuple[str, ...] = ("inverse", "stretch")


@dataclass(frozen=True)
class InputContract:
    """How a model's training images were prepared (train_opt.txt + the model card)."""

    load_size: int = 256
    crop_size: int = 256
    preprocess: str = "resize_and_crop"
    framing: str = "squash"
    pad_color: tuple[int, int, int] = (255, 255, 255)  # RGB, for letterbox bars and uncovered areas
    aspect: float = 1.0  # width / height of the training images before the squash (1 = square)
    output_mapping: str = "inverse"

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess {self.preprocess!r} is not one of {', '.join(PREPROCESS_MODES)}")
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing {self.framing!r} is not one of {', '.join(FRAMINGS)}")
        if self.output_mapping not in OUTPUT_MAPPINGS:
            raise ValueError(f"output mapping {self.output_mapping!r} is not one of {', '.join(OUTPUT_MAPPINGS)}")
        if not (16 <= self.load_size <= 4096 and 16 <= self.crop_size <= self.load_size):
            raise ValueError(f"load_size {self.load_size} / crop_size {self.crop_size} out of range "
                             "(16 <= crop_size <= load_size <= 4096)")
        if not 0.05 <= self.aspect <= 20:
            raise ValueError(f"aspect {self.aspect} out of range")


# -- the reference path -----------------------------------------------------------------
def model_input_size(width: int, height: int, contract: InputContract) -> tuple[int, int]:
    """(width, height) the network sees for an RGB image of ``width`` x ``height``."""
    if contract.preprocess == "resize_and_crop":
        return contract.crop_size, contract.crop_size
    if contract.preprocess == "scale_width":
        if width == contract.load_size and height >= contract.crop_size:
            return width, height
        return contract.load_size, int(max(contract.load_size * height / width, contract.crop_size))
    return int(round(width / 4) * 4), int(round(height / 4) * 4)


def reference_resize(rgb: np.ndarray, contract: InputContract) -> np.ndarray:
    """The reference's geometric transform of an RGB uint8 image (PIL bicubic), as uint8."""
    h, w = rgb.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if contract.preprocess == "resize_and_crop":
        image = image.resize((contract.load_size, contract.load_size), Image.BICUBIC)
        if contract.crop_size < contract.load_size:
            off = (contract.load_size - contract.crop_size) // 2
            image = image.crop((off, off, off + contract.crop_size, off + contract.crop_size))
    else:
        tw, th = model_input_size(w, h, contract)
        if (tw, th) != (w, h):
            image = image.resize((tw, th), Image.BICUBIC)
    return np.asarray(image)


_F255 = np.float32(255.0)
_HALF = np.float32(0.5)


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW in [-1, 1], with ToTensor + Normalize's float32 operations."""
    x = rgb.astype(np.float32).transpose(2, 0, 1) / _F255
    return np.ascontiguousarray((x - _HALF) / _HALF)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """float32 CHW in [-1, 1] -> uint8 HWC RGB, ``tensor2im``'s truncation (1 channel is tiled to 3)."""
    y = np.asarray(y, dtype=np.float32)
    if y.shape[0] == 1:
        y = np.repeat(y, 3, axis=0)
    # Out-of-range values cannot come from tanh; clip only guards reduced-precision overshoot
    # (the reference's astype would wrap them).
    out = (y.transpose(1, 2, 0) + np.float32(1.0)) / np.float32(2.0) * _F255
    return np.clip(out, 0, 255).astype(np.uint8)


# -- framing around it ------------------------------------------------------------------
@dataclass(frozen=True)
class FrameMap:
    """Where the model's picture sits in the client's frame: ``window`` (x, y, w, h) of the frame
    that was framed, plus the padding added around it (left, top, right, bottom)."""

    frame_size: tuple[int, int]
    window: tuple[int, int, int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)


def frame_input(rgb: np.ndarray, contract: InputContract) -> tuple[np.ndarray, FrameMap]:
    """Bring a camera frame to the training aspect ratio as the card says (before the squash)."""
    h, w = rgb.shape[:2]
    if contract.preprocess != "resize_and_crop" or contract.framing == "squash":
        return rgb, FrameMap((w, h), (0, 0, w, h))
    target = contract.aspect
    if contract.framing == "center-crop":
        if w / h > target:
            cw, ch = max(1, round(h * target)), h
        else:
            cw, ch = w, max(1, round(w / target))
        x, y = (w - cw) // 2, (h - ch) // 2
        return rgb[y:y + ch, x:x + cw], FrameMap((w, h), (x, y, cw, ch))
    if w / h > target:  # letterbox: bars above and below
        pw, ph = w, max(h, round(w / target))
    else:
        pw, ph = max(w, round(h * target)), h
    left, top = (pw - w) // 2, (ph - h) // 2
    padded = np.empty((ph, pw, 3), np.uint8)
    padded[:] = np.asarray(contract.pad_color, np.uint8)
    padded[top:top + h, left:left + w] = rgb
    return padded, FrameMap((w, h), (0, 0, w, h), (left, top, pw - w - left, ph - h - top))


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrink = size[0] < image.shape[1] and size[1] < image.shape[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def map_output(out_rgb: np.ndarray, fmap: FrameMap, contract: InputContract) -> np.ndarray:
    """The generated RGB picture placed in a frame of the client's size (see :data:`OUTPUT_MAPPINGS`)."""
    fw, fh = fmap.frame_size
    if contract.output_mapping == "stretch" or fmap.window == (0, 0, fw, fh) and fmap.padding == (0, 0, 0, 0):
        return np.ascontiguousarray(_resize(out_rgb, (fw, fh)))
    left, top, right, bottom = fmap.padding
    if any(fmap.padding):  # letterbox: cut the bars away in output coordinates
        ph, pw = fh + top + bottom, fw + left + right
        sy, sx = out_rgb.shape[0] / ph, out_rgb.shape[1] / pw
        y0, y1 = round(top * sy), round((top + fh) * sy)
        x0, x1 = round(left * sx), round((left + fw) * sx)
        return np.ascontiguousarray(_resize(out_rgb[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], (fw, fh)))
    x, y, cw, ch = fmap.window  # centre crop: put the picture back where it came from
    frame = np.empty((fh, fw, 3), np.uint8)
    frame[:] = np.asarray(contract.pad_color, np.uint8)
    frame[y:y + ch, x:x + cw] = _resize(out_rgb, (cw, ch))
    return frame
