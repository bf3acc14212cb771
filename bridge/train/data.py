"""Training images in memory: aligned pairs (``train/`` AB files, or ``trainA``/``trainB`` by name)
and unaligned sets for CycleGAN, with the reference's resize -> random crop -> (flip) -> [-1, 1].

Datasets here are small (thousands of 256 px images), so decoding everything once and keeping
uint8 arrays is faster than a worker pool on a 2-core machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _load(path: Path, size: int) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)  # the reference's square squash
    return np.asarray(img, dtype=np.uint8)


def load_pairs(root: Path, split: str, load_size: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(A, B, names): uint8 (N, S, S, 3) arrays of aligned pairs from ``root/<split>/`` AB images, or
    from ``<split>A``/``<split>B`` files of the same name. Raises FileNotFoundError if neither exists."""
    ab_files = _images(root / split)
    a_list: list[np.ndarray] = []
    b_list: list[np.ndarray] = []
    names: list[str] = []
    if ab_files:
        for p in ab_files[: limit or None]:
            img = Image.open(p).convert("RGB")
            w, h = img.size
            a_list.append(_load_pil(img.crop((0, 0, w // 2, h)), load_size))
            b_list.append(_load_pil(img.crop((w // 2, 0, w, h)), load_size))
            names.append(p.stem)
    else:
        a_dir, b_dir = root / f"{split}A", root / f"{split}B"
        b_by_name = {p.stem: p for p in _images(b_dir)}
        for p in _images(a_dir)[: limit or None]:
            if p.stem in b_by_name:
                a_list.append(_load(p, load_size))
                b_list.append(_load(b_by_name[p.stem], load_size))
                names.append(p.stem)
    if not names:
        raise FileNotFoundError(f"no {split} pairs in {root} (expected {split}/ AB images or {split}A/ + {split}B/)")
    return np.stack(a_list), np.stack(b_list), names


def load_unpaired(root: Path, split: str, load_size: int) -> tuple[np.ndarray, np.ndarray]:
    """CycleGAN's two image sets (``<split>A``, ``<split>B``); their sizes may differ."""
    a = [_load(p, load_size) for p in _images(root / f"{split}A")]
    b = [_load(p, load_size) for p in _images(root / f"{split}B")]
    if not a or not b:
        raise FileNotFoundError(f"cyclegan needs {split}A/ and {split}B/ images in {root}")
    return np.stack(a), np.stack(b)


def _load_pil(img: Image.Image, size: int) -> np.ndarray:
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), truncating as the reference's tensor2im."""
    x = ((t.detach().float().cpu().clamp(-1, 1).permute(0, 2, 3, 1).numpy() + 1) / 2 * 255)
    return x.astype(np.uint8)


def augment(arrays: list[np.ndarray], crop: int, flip: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random crop (and flip) for each array of one sample (pix2pix keeps A and B aligned)."""
    size = arrays[0].shape[0]
    if size > crop:
        y, x = (int(v) for v in rng.integers(0, size - crop + 1, 2))
        arrays = [a[y:y + crop, x:x + crop] for a in arrays]
    if flip and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    return arrays
