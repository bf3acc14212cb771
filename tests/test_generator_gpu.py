"""The generator engine on CUDA: CUDA-graph replay equals eager, fp16/bf16 stay close.
Skipped without a CUDA device (the suite must pass on CPU-only machines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.generator.engine import GeneratorEngine
from bridge.generator.nets import GeneratorSpec
from generator_reference import random_checkpoint, reference_keys

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available())")]


@pytest.mark.parametrize("net_g,norm", [("resnet_9blocks", "instance"), ("unet_256", "batch")])
def test_cuda_graph_equals_eager_and_reduced_precision_is_close(net_g: str, norm: str) -> None:
    spec = GeneratorSpec(net_g, 3, 3, 16, norm, norm == "batch")
    sd = random_checkpoint(reference_keys(net_g, 16, norm, False), seed=7)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 256, 256)).astype(np.float32)
    cpu = GeneratorEngine(spec, sd, device="cpu", accel="eager").run(x)
    eager = GeneratorEngine(spec, sd, device="cuda", accel="eager").run(x)
    graph_engine = GeneratorEngine(spec, sd, device="cuda", accel="cuda-graph")
    graph_engine.warm_up(256, 256, 2)
    graph = graph_engine.run(x)
    assert graph_engine.accel == "cuda-graph"
    assert np.abs(graph - eager).max() < 1e-5  # replay runs the same kernels
    assert np.abs(eager - cpu).max() * 127.5 < 1.0  # TF32/cuDNN vs CPU: well under one 1/255 step
    for precision in ("fp16", "bf16"):
        low = GeneratorEngine(spec, sd, device="cuda", precision=precision, accel="cuda-graph").run(x)
        assert np.abs(low - eager).max() * 127.5 < 16  # reported by bench/generator.py; a sanity bound here
