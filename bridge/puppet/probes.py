"""The probe poses of pose coverage (:mod:`bridge.datasets.coverage`), drawn from the puppet's pose
distribution and shipped as ``bridge/datasets/probe_poses.npz``.

:func:`make_probes` is deterministic: probe ``i`` depends only on ``(seed, i)``. The characters
take turns (their proportions differ), poses come from :func:`bridge.puppet.skeleton.random_pose`
(one in ten seen from behind, as ``pose2person synth`` draws them), and each body's common-skeleton
keypoints are scaled into a unit square (coverage looks at angles only; the unit square keeps the
file small and the picture easy to draw).

``python -m bridge.puppet.probes`` rewrites the shipped file (the test-suite checks that the file
equals a fresh :func:`make_probes`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..datasets.coverage import PROBE_COUNT, PROBE_FILE, PROBE_SEED
from . import skeleton as pp

RENDER_SIZE = 256


def make_probes(count: int = PROBE_COUNT, seed: int = PROBE_SEED) -> np.ndarray:
    """float32 ``(count, COMMON_COUNT, 3)``: x, y in [0, 1] of the puppet's square frame, score."""
    chars = list(pp.CHARACTERS.values())
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        char = chars[i % len(chars)]
        pose = pp.random_pose(rng, RENDER_SIZE, char, away_chance=0.1)
        pts = pp.pose_keypoints(pose, char)
        pts[:, :2] /= RENDER_SIZE
        out.append(pts)
    return np.round(np.stack(out), 5).astype(np.float32)


def probe_bytes(probes: np.ndarray, seed: int = PROBE_SEED) -> bytes:
    """The ``.npz`` file's bytes (numpy arrays only: loads with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, keypoints=probes, seed=np.int64(seed))
    return buf.getvalue()


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write the shipped probe poses of pose coverage")
    parser.add_argument("--out", type=Path, default=PROBE_FILE)
    args = parser.parse_args()
    probes = make_probes()
    args.out.write_bytes(probe_bytes(probes))
    print(f"wrote {len(probes)} probe poses to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
