"""The frames a run is judged on, and what is kept each epoch: held-out scores and sample grids.

The held-out set is the dataset's ``test`` split (``pose2person dataset build`` keeps it apart
from the training frames). Scored: up to :data:`SCORED` test frames spread evenly over the split;
shown: :data:`SHOWN` rows, also spread out (neighbouring video frames are near duplicates). A
dataset without a test split is scored on training frames, and everything says so: the log, the
grid's title (its last column is "training frame", not "truth"), and ``"set": "train"`` in
``scores.jsonl``. Such scores measure fitting, not quality, and ``--pick best`` will not use them.

``scores.jsonl`` gets one JSON object per epoch end (and per stop mid-epoch, ``"partial": true``)::

    {"epoch": 3, "step": 120, "images": 480, "seconds": 61.2, "set": "test", "partial": false,
     "count": 32, "psnr": 21.4, "ssim": 0.81, "mean_image_psnr": 13.1, "mean_image_ssim": 0.66,
     "white_psnr": 11.7, "losses": {"G_GAN": 0.9, "G_L1": 8.1, "D_real": 0.5, "D_fake": 0.5}}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .quality import Scores, score, spread_indices
from .report import sample_grid

log = logging.getLogger(__name__)
SCORED = 32
SHOWN = 4
SCORES_FILE = "scores.jsonl"
SAMPLES_DIR = "samples"


@dataclass
class HeldOut:
    """Pose images ``a`` and truths ``b`` (uint8, N x S x S x 3) to score, the rows to show, and the
    mean training image; ``is_test`` False when they are training frames (no test split)."""

    a: np.ndarray
    b: np.ndarray
    shown: list[int]
    mean_image: np.ndarray
    is_test: bool

    @classmethod
    def choose(cls, test: tuple[np.ndarray, np.ndarray] | None, train_a: np.ndarray, train_b: np.ndarray,
               crop: int) -> "HeldOut":
        """Spread-out frames of the test split (else of the training set), centre-cropped to ``crop``."""
        is_test = test is not None
        a_all, b_all = test if test is not None else (train_a, train_b)
        idx = spread_indices(len(a_all), SCORED)
        a, b = _centre(a_all[idx], crop), _centre(b_all[idx], crop)
        shown = [idx.index(i) for i in spread_indices(len(a_all), SHOWN) if i in idx]
        mean_from = spread_indices(len(train_b), 256)
        mean = _centre(train_b[mean_from], crop).astype(np.float64).mean(0).round().astype(np.uint8)
        if not is_test:
            log.warning("no test split in the dataset: scores and sample grids use TRAINING frames (they show "
                        "how well it fits, not how it does on poses it never saw); build the dataset with a "
                        "test split for held-out scores")
        return cls(a, b, shown, mean, is_test)

    @property
    def set_name(self) -> str:
        return "test" if self.is_test else "train"

    def evaluate(self, generate: Callable[[np.ndarray], np.ndarray], batch: int = 8) -> tuple[Scores, np.ndarray]:
        """(scores, outputs) of ``generate`` (uint8 batch -> uint8 batch) on the scored frames."""
        outs = np.concatenate([generate(self.a[i:i + batch]) for i in range(0, len(self.a), batch)])
        return score(outs, self.b, self.mean_image), outs

    def grid(self, outputs: np.ndarray, path: Path, caption: str) -> None:
        """Rows of input | output | truth (or training frame) for the shown frames."""
        rows = [[self.a[i], outputs[i], self.b[i]] for i in self.shown]
        last = "truth (held out)" if self.is_test else "training frame"
        if not self.is_test:
            caption += "  NO HELD-OUT SET: training frames"
        path.parent.mkdir(parents=True, exist_ok=True)
        sample_grid(rows, ["input (pose)", "output", last], path, caption)


def append_scores(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / SCORES_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_scores(run_dir: Path) -> list[dict[str, Any]]:
    """The run's score records, oldest first (unreadable lines skipped: a run killed mid-write)."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            out.append(record)
    return out


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The held-out record with the highest PSNR (the latest on a tie), or None without held-out scores."""
    held = [r for r in records if r.get("set") == "test" and isinstance(r.get("psnr"), (int, float))]
    return max(reversed(held), key=lambda r: r["psnr"]) if held else None


def _centre(images: np.ndarray, crop: int) -> np.ndarray:
    size = images.shape[1]
    if size <= crop:
        return images
    off = (size - crop) // 2
    return images[:, off:off + crop, off:off + crop]
