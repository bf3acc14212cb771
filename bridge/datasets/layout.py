"""Writing paired datasets in the layouts pytorch-CycleGAN-and-pix2pix reads.

    DIR/trainA/<name>.png   pose images (domain A)         DIR/testA/<name>.png
    DIR/trainB/<name>.png   person images (domain B)       DIR/testB/<name>.png
    DIR/train/<name>.png    A | B side by side (pix2pix ``aligned``: A is the left half)
    DIR/test/<name>.png

The same name in A and B is the same frame, so CycleGAN's unaligned loader and pix2pix's aligned
loader both work on one folder (``--dataroot DIR``). ``pose2person train`` reads either.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SPLITS = ("train", "test")


class DatasetWriter:
    """Writes pose/person pairs (RGB uint8, same size) under ``root``; counts what it wrote per split."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.counts = {s: 0 for s in SPLITS}
        for split in SPLITS:
            for sub in (f"{split}A", f"{split}B", split):
                (self.root / sub).mkdir(parents=True, exist_ok=True)

    def write(self, name: str, pose_rgb: np.ndarray, person_rgb: np.ndarray, split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        if pose_rgb.shape != person_rgb.shape:
            raise ValueError(f"pair shapes differ: {pose_rgb.shape} vs {person_rgb.shape}")
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        cv2.imwrite(str(self.root / f"{split}A" / f"{name}.png"), pose_rgb[..., ::-1], params)
        cv2.imwrite(str(self.root / f"{split}B" / f"{name}.png"), person_rgb[..., ::-1], params)
        cv2.imwrite(str(self.root / split / f"{name}.png"), np.concatenate([pose_rgb, person_rgb], 1)[..., ::-1],
                    params)
        self.counts[split] += 1

    def _files(self, name: str, split: str) -> list[Path]:
        return [self.root / sub / f"{name}.png" for sub in (f"{split}A", f"{split}B", split)]

    def move(self, name: str, src: str, dst: str) -> None:
        """Move a written pair from split ``src`` to ``dst`` (renames; the held-out split is chosen
        once an input's frames are all known)."""
        for a, b in zip(self._files(name, src), self._files(name, dst)):
            a.replace(b)
        self.counts[src] -= 1
        self.counts[dst] += 1

    def remove(self, name: str, split: str) -> None:
        """Delete a written pair (a frame too near the held-out slice)."""
        for f in self._files(name, split):
            f.unlink(missing_ok=True)
        self.counts[split] -= 1


def read_rgb(path: Path) -> np.ndarray:
    """A PNG/JPEG as RGB uint8 (raises ValueError if it is not an image)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path} is not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])
