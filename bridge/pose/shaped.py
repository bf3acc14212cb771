"""DensePose-shaped poses from keypoints and a person mask: an approximation of DensePose's part
map that runs live on a CPU (pose source ``tracker-densepose``, docs/TRACKER.md).

DensePose (:mod:`bridge.densepose`) labels every pixel of a person with one of 24 body parts. The
keypoint drawing (:func:`bridge.pose.keypoints.keypoints_to_pose`) draws the same parts as capsules
around the skeleton, so its outline is a stick figure's, not the person's. :func:`shape_to_mask`
gives it the person's silhouette from a person mask (``bridge.pose.tracker.segmentation``):

1. every person's drawing is painted into one frame-sized canvas (later people over earlier, as the
   renderers draw them); each pixel remembers its person;
2. **clipped**: drawn pixels outside the mask become background;
3. **grown**: each mask pixel that is not yet a part takes the part (and U/V, and person) of the
   nearest remaining drawn pixel, if that pixel is at most ``grow`` x the person's size away
   (the larger side of its drawing). Mask pixels farther from every tracked person (someone the
   tracker does not follow, a chair the mask took for a person) stay background;
4. a person whose drawing hardly overlaps the mask (under ``min_agreement`` of its pixels: the mask
   missed them) keeps the drawing as it is, neither clipped nor grown.

What differs from DensePose: U/V are the drawing's (along/across each limb), copied outwards to
grown pixels, not coordinates on a body surface; part borders inside the silhouette are where the
nearest drawn part is, not where the body's parts meet. Numpy + OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import PoseInstance, PoseResult

DEFAULT_GROW = 0.25
DEFAULT_MIN_AGREEMENT = 0.3


def _canvas(result: PoseResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels (H, W) uint8, uv (2, H, W) float32, owner (H, W) int16 (-1: nobody)."""
    h, w = result.height, result.width
    labels = np.zeros((h, w), np.uint8)
    uv = np.zeros((2, h, w), np.float32)
    owner = np.full((h, w), -1, np.int16)
    for i, inst in enumerate(result.instances):
        x, y, bw, bh = inst.box_xywh
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if x0 >= x1 or y0 >= y1:
            continue
        sub = inst.labels[y0 - y:y1 - y, x0 - x:x1 - x]
        on = sub > 0
        labels[y0:y1, x0:x1][on] = sub[on]
        owner[y0:y1, x0:x1][on] = i
        for c in range(2):
            uv[c, y0:y1, x0:x1][on] = inst.uv[c, y0 - y:y1 - y, x0 - x:x1 - x][on]
    return labels, uv, owner


def shape_to_mask(result: PoseResult, mask: np.ndarray, grow: float = DEFAULT_GROW,
                  min_agreement: float = DEFAULT_MIN_AGREEMENT) -> PoseResult:
    """``result`` (the keypoint drawing) clipped to and grown into ``mask`` (bool, H x W); see the
    module docstring. People keep their order and scores; a person left with no pixel is dropped."""
    h, w = result.height, result.width
    if mask.shape != (h, w):
        raise ValueError(f"mask {mask.shape} does not match the frame {(h, w)}")
    if result.empty:
        return result
    mask = mask.astype(bool, copy=False)
    labels, uv, owner = _canvas(result)
    drawn = labels > 0
    n = len(result.instances)
    counts = np.bincount(owner[drawn], minlength=n)
    agree = np.bincount(owner[drawn & mask], minlength=n)
    trusts = (counts > 0) & (agree >= min_agreement * np.maximum(counts, 1))
    reach = np.array([grow * max(inst.box_xywh[2], inst.box_xywh[3]) for inst in result.instances], np.float32)

    shaped = owner >= 0
    shaped[shaped] = trusts[owner[shaped]]  # pixels of people the mask shapes
    seeds = shaped & mask
    if seeds.any():
        # Only the region the seeds can reach is searched.
        ys, xs = np.nonzero(seeds)
        r = int(np.ceil(reach[trusts].max())) + 1
        x0, y0 = max(int(xs.min()) - r, 0), max(int(ys.min()) - r, 0)
        x1, y1 = min(int(xs.max()) + r + 1, w), min(int(ys.max()) + r + 1, h)
        win_seeds = seeds[y0:y1, x0:x1]
        src = np.where(win_seeds, 0, 1).astype(np.uint8)
        dist, nearest = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                        labelType=cv2.DIST_LABEL_PIXEL)
        lut = np.zeros(int(nearest.max()) + 1, np.int64)  # label -> flat index of its seed pixel
        lut[nearest[win_seeds]] = np.flatnonzero(win_seeds)
        # Mask pixels nobody drew (a shaped person's drawn mask pixels are seeds; an unshaped
        # person's pixels stay theirs).
        target = mask[y0:y1, x0:x1] & (owner[y0:y1, x0:x1] < 0)
        ty, tx = np.nonzero(target)
        src_flat = lut[nearest[ty, tx]]
        sy, sx = np.divmod(src_flat, x1 - x0)
        who = owner[y0:y1, x0:x1][sy, sx]
        ok = dist[ty, tx] <= reach[who]
        ty, tx, sy, sx, who = ty[ok], tx[ok], sy[ok], sx[ok], who[ok]
        win_labels, win_owner = labels[y0:y1, x0:x1], owner[y0:y1, x0:x1]
        new_labels, new_owner = win_labels.copy(), win_owner.copy()
        new_uv = uv[:, y0:y1, x0:x1].copy()
        new_labels[ty, tx] = win_labels[sy, sx]
        new_owner[ty, tx] = who
        new_uv[:, ty, tx] = uv[:, y0:y1, x0:x1][:, sy, sx]
        labels[y0:y1, x0:x1], owner[y0:y1, x0:x1], uv[:, y0:y1, x0:x1] = new_labels, new_owner, new_uv
    # Clip: shaped people's pixels outside the mask go.
    clip = shaped & ~mask
    labels[clip] = 0
    owner[clip] = -1
    uv[:, clip] = 0
    instances = []
    for i, inst in enumerate(result.instances):
        mine = owner == i
        rows, cols = np.flatnonzero(mine.any(1)), np.flatnonzero(mine.any(0))
        if rows.size == 0:
            continue
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        sel = mine[r0:r1, c0:c1]
        part = np.where(sel, labels[r0:r1, c0:c1], 0).astype(np.uint8)
        puv = np.where(sel[None], uv[:, r0:r1, c0:c1], 0).astype(np.float32)
        instances.append(PoseInstance((c0, r0, c1 - c0, r1 - r0), part, np.ascontiguousarray(puv), inst.score))
    return PoseResult(w, h, tuple(instances))


def part_map(result: PoseResult) -> np.ndarray:
    """(H, W) uint8: every person's parts painted in drawing order (0 = background), the map the
    renderers show; for comparing part maps (bench/tracker_densepose.py)."""
    return _canvas(result)[0]
