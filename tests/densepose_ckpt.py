"""Test helper: random-weight DensePose checkpoints in the official model-zoo layouts.

``official_arrays(config)`` gives ``{name: float32 ndarray}`` with every name and shape the
config's detectron2 module tree has (built independently of the loader under test: names come
from the model built on the meta device, values from a seeded numpy generator, scaled so that
activations stay O(1)). ``write_pkl`` writes it as detectron2's model zoo does (a pickle of
``{"model": arrays, "__author__": ...}``), ``write_pth`` as ``torch.save`` of a detectron2
training checkpoint (``{"model": tensors, "iteration": ...}``).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np

#: cls_score bias that makes every proposal a confident person (softmax [3, -3] -> 0.9975 +- a bit)
PERSON_BIAS = (3.0, -3.0)
NOBODY_BIAS = (-6.0, 6.0)
CLS_WEIGHT_SCALE = 0.02


def official_arrays(config_name: str, seed: int = 0, cls_bias: tuple[float, float] | None = PERSON_BIAS
                    ) -> dict[str, np.ndarray]:
    import torch

    from bridge.densepose.configs import get_config
    from bridge.densepose.model import build_model

    with torch.device("meta"):
        model = build_model(get_config(config_name))
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    total = sum(t.numel() for t in state.values())
    # One uniform draw for everything (fast), centred and scaled per tensor; views, not copies.
    pool = rng.random(total, dtype=np.float32)
    pool -= np.float32(0.5)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, tensor in state.items():
        shape = tuple(tensor.shape)
        n = math.prod(shape)
        a = pool[offset:offset + n].reshape(shape)
        offset += n
        leaf = name.rsplit(".", 1)[1]
        if ".norm." in name or leaf in ("running_mean", "running_var"):
            # FrozenBN / GroupNorm: near-identity statistics
            a *= np.float32(0.1)
            if leaf in ("weight", "running_var"):
                a += np.float32(1.0)
        elif leaf == "bias":
            a *= np.float32(0.02)
        elif len(shape) == 1:  # GroupNorm affine weight inside ASPP
            a[...] = 1.0
        else:
            transposed = "densepose_predictor" in name
            fan_in = (shape[0] if transposed else shape[1]) * (math.prod(shape[2:]) if len(shape) > 2 else 1)
            a *= np.float32(math.sqrt(12.0 / fan_in))  # unit-variance-per-fan-in uniform
        arrays[name] = a
    # Quiet regressors so proposals and detections stay near their anchors (many distinct
    # boxes), and a small class weight so the bias decides: scores vary a little around it.
    for name in ("proposal_generator.rpn_head.anchor_deltas.weight", "roi_heads.box_predictor.bbox_pred.weight"):
        arrays[name] *= np.float32(1e-3)
    arrays["roi_heads.box_predictor.cls_score.weight"] *= np.float32(CLS_WEIGHT_SCALE)
    if cls_bias is not None:
        arrays["roi_heads.box_predictor.cls_score.bias"] = np.array(cls_bias, np.float32)
    return arrays


def write_pkl(path: Path, arrays: dict[str, np.ndarray], protocol: int = 4, author: str | None = "Detectron2 Model Zoo",
              extra: dict[str, np.ndarray] | None = None) -> Path:
    model = dict(arrays)
    model.update(extra or {})
    data: dict[str, object] = {"model": model}
    if author is not None:
        data["__author__"] = author
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


def write_pth(path: Path, arrays: dict[str, np.ndarray], wrapped: bool = True) -> Path:
    import torch

    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    torch.save({"model": state, "iteration": 129999} if wrapped else state, path)
    return path
