"""How well a generator draws the puppet: PSNR and SSIM on held-out synthetic poses, against baselines.

The held-out set is ``pose2person synth`` samples of a seed that training did not use
(:data:`HELD_OUT_SEED`), rendered at 256 px and brought to the model's size with the reference's
PIL bicubic squash, exactly as a client's frame would be. The model runs as the generator stage
runs it (reference pre/post-processing, "stable" norm mode). Baselines: the mean training image
(what a model that ignores the pose would best output) and a blank white frame; PSNR and SSIM are
:mod:`bridge.train.quality`'s, as the per-epoch scores of ``pose2person train`` compute them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..train.quality import Scores, psnr, ssim
from .synth import SynthOptions, random_sample

__all__ = ["Quality", "evaluate", "held_out", "psnr", "ssim"]

HELD_OUT_SEED = 1000  # the demo model was trained on seed 1
RENDER_SIZE = 256


@dataclass(frozen=True)
class Quality(Scores):
    """:class:`bridge.train.quality.Scores` on the puppet's held-out poses, with a report line."""

    def line(self) -> str:
        return (f"PSNR {self.psnr:.2f} dB, SSIM {self.ssim:.3f} on {self.count} held-out poses "
                f"(mean training image: {self.mean_image_psnr:.2f} dB / {self.mean_image_ssim:.3f}; "
                f"white frame: {self.white_psnr:.2f} dB)")


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


def held_out(count: int, size: int, seed: int = HELD_OUT_SEED, character: str = "ada") -> tuple[np.ndarray, np.ndarray]:
    """(pose images, true person images): uint8 (count, size, size, 3), rendered at 256 then resized."""
    opts = SynthOptions(seed=seed, size=RENDER_SIZE, characters=(character,))
    poses, people = [], []
    for i in range(count):
        s = random_sample(opts, i)
        poses.append(_resize(s.pose_rgb, size))
        people.append(_resize(s.person_rgb, size))
    return np.stack(poses), np.stack(people)


def mean_training_image(size: int, count: int = 64, seed: int = 1, character: str = "ada") -> np.ndarray:
    _, people = held_out(count, size, seed, character)
    return people.astype(np.float64).mean(0).round().astype(np.uint8)


def run_generator(model_dir: Path, poses: np.ndarray) -> np.ndarray:
    """The card's generator on ``poses`` (uint8, already at its load size), one frame at a time."""
    import torch

    from .. import cards
    from ..generator.checkpoint import load_generator
    from ..generator.nets import build_generator, set_norm_mode

    card = cards.load_card(model_dir)
    spec, sd = load_generator(card.verify_weights())
    net = build_generator(spec)
    net.load_state_dict(sd, strict=True)
    set_norm_mode(net, card.runtime.norm_mode)
    outs = []
    with torch.inference_mode():
        for pose in poses:
            x = torch.from_numpy(np.array(pose)).permute(2, 0, 1)[None].float() / 127.5 - 1
            y = net(x)[0].permute(1, 2, 0).numpy()
            outs.append(((y + 1) / 2 * 255).astype(np.uint8))  # truncation, as tensor2im
    return np.stack(outs)


def evaluate(model_dir: Path, count: int = 16, seed: int = HELD_OUT_SEED) -> tuple[Quality, np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """(quality, pose images, outputs, truths) for the model in ``model_dir``."""
    from .. import cards

    size = cards.load_card(model_dir).input.load_size
    poses, truths = held_out(count, size, seed)
    outputs = run_generator(model_dir, poses)
    mean = mean_training_image(size)
    white = np.full_like(truths[0], 255)
    q = Quality(
        count=count,
        psnr=float(np.mean([psnr(o, t) for o, t in zip(outputs, truths)])),
        ssim=float(np.mean([ssim(o, t) for o, t in zip(outputs, truths)])),
        mean_image_psnr=float(np.mean([psnr(mean, t) for t in truths])),
        mean_image_ssim=float(np.mean([ssim(mean, t) for t in truths])),
        white_psnr=float(np.mean([psnr(white, t) for t in truths])),
    )
    return q, poses, outputs, truths


def write_picture(poses: np.ndarray, outputs: np.ndarray, truths: np.ndarray, path: Path, q: Quality,
                  rows: int = 4, scale: int = 2) -> None:
    """The README picture: rows of input pose | output | truth, in pairs of samples side by side."""
    from ..train.report import sample_grid

    def big(img: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.BICUBIC))

    grid_rows = []
    for r in range(rows):
        i, j = 2 * r, 2 * r + 1
        grid_rows.append([big(poses[i]), big(outputs[i]), big(truths[i]), big(poses[j]), big(outputs[j]),
                          big(truths[j])])
    sample_grid(grid_rows, ["input pose", "output", "truth"] * 2, path,
                f"held-out poses: PSNR {q.psnr:.1f} dB, SSIM {q.ssim:.3f} "
                f"(mean-image baseline {q.mean_image_psnr:.1f} dB / {q.mean_image_ssim:.3f})")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="PSNR/SSIM of a puppet generator on held-out synthetic poses")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--picture", type=Path, default=None, help="also write the input | output | truth grid")
    args = parser.parse_args()
    q, poses, outputs, truths = evaluate(args.model_dir, args.count)
    print(q.line())
    if args.picture:
        write_picture(poses, outputs, truths, args.picture, q)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
