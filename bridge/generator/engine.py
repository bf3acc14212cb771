"""One generator network on one device: precision, norm mode, acceleration, warm-up, batches.

Contract: :meth:`GeneratorEngine.run` takes float32 ``(N, C, h, w)`` in [-1, 1] and returns
float32 ``(N, output_nc, h, w)``; it is called from one thread at a time (the pipeline
worker). Frames of one batch never influence each other: BatchNorm in batch-statistics
modes normalises per sample (:class:`~bridge.generator.nets.FrameBatchNorm2d`).

Speed-ups are opt-in or chosen by measurement (docs/BENCHMARKS.md, "Generator stage"):

* ``precision``: ``fp32`` (exact), ``fp16`` (CUDA autocast), ``bf16`` (CPU/CUDA autocast);
  the deviations are measured by ``pose2person check`` and bench/generator.py;
* ``accel``: ``eager``; ``onednn`` (CPU: TorchScript freeze + oneDNN fusion, traced per input
  size); ``compile`` (``torch.compile``); ``cuda-graph`` (CUDA: the forward captured once per
  input size and replayed); ``auto`` picks ``cuda-graph`` on CUDA and
  ``eager`` elsewhere (by measurement: docs/GENERATOR.md).
  ``reference`` norm mode always runs eager, because its dropout must draw random numbers.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ModelLoadError
from .nets import GeneratorSpec, build_generator, set_norm_mode

log = logging.getLogger(__name__)

ACCELS: tuple[str, ...] = ("auto", "eager", "onednn", "compile", "cuda-graph")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. Anything else must be available or it is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError as exc:
        raise ModelLoadError(f"--device {requested!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("--device mps: Apple MPS is not available")
    return dev


class GeneratorEngine:
    """A loaded generator, ready to run batches (see the module docstring)."""

    def __init__(self, spec: GeneratorSpec, state_dict: dict[str, torch.Tensor], *, device: str = "auto",
                 precision: str = "fp32", norm_mode: str = "stable", accel: str = "auto", seed: int = 0) -> None:
        if precision not in PRECISIONS:
            raise ModelLoadError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if accel not in ACCELS:
            raise ModelLoadError(f"accel {accel!r} is not one of {', '.join(ACCELS)}")
        self.spec = spec
        self.device = pick_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise ModelLoadError("fp16 runs on CUDA or MPS only; on the CPU use bf16 or fp32")
        self.precision, self.norm_mode, self.seed = precision, norm_mode, seed
        net = build_generator(spec)
        net.load_state_dict(state_dict, strict=True)
        set_norm_mode(net, norm_mode)
        net.eval().requires_grad_(False)
        if self.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
            if precision == "fp32":
                # TF32 convolutions (cuDNN's default) round inputs to 10 mantissa bits: fp32 here
                # means the test path's numbers, so it is off; fp16/bf16 are the fast modes.
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
        self.net = net.to(self.device)
        self.accel = self._choose_accel(accel)
        self._compiled: dict[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self.nbytes = sum(t.numel() * t.element_size() for t in self.net.state_dict().values())

    def _choose_accel(self, accel: str) -> str:
        if self.norm_mode == "reference":
            return "eager"
        if accel == "auto":
            # CPU: eager, by measurement (bench/generator.py: TorchScript + oneDNN and OpenVINO gave
            # 1.00x and 1.28x on 2 Zen cores, eager fp32 already runs the convolutions near peak).
            return {"cuda": "cuda-graph"}.get(self.device.type, "eager")
        if accel == "cuda-graph" and self.device.type != "cuda":
            raise ModelLoadError("accel cuda-graph needs a CUDA device")
        if accel == "onednn" and self.device.type != "cpu":
            return "eager"
        return accel

    def describe(self) -> str:
        return f"{self.spec.describe()} on {self.device}, {self.precision}, norm mode {self.norm_mode}, {self.accel}"

    # -- running --------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.net(x)

    def _forward_fn(self, shape: tuple[int, ...], x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        fn = self._compiled.get(shape)
        if fn is not None:
            return fn
        if self.accel == "onednn" and self.precision == "fp32":
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still the fastest CPU path here
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(self.net, x, check_trace=False)
                fn = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        elif self.accel == "compile":
            compiled = torch.compile(self.net, dynamic=False)

            def fn(t: torch.Tensor) -> torch.Tensor:
                with self._autocast():
                    return compiled(t)
        else:
            fn = self._eager
        self._compiled[shape] = fn
        return fn

    def _graph_run(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm up cuDNN's algorithm choice before capture
                    self._eager(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._eager(static_in)
            entry = (graph, static_in, static_out)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Generate for a float32 ``(N, C, h, w)`` batch in [-1, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.norm_mode == "reference":
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(self.seed)  # test.py's dropout, reproducible: same seed, same masks
                y = self._eager(x)
        elif self.accel == "cuda-graph":
            try:
                y = self._graph_run(x)
            except RuntimeError as exc:  # capture can fail on some drivers/ops: fall back, once
                log.warning("CUDA graph capture failed (%s); running eager", exc)
                self.accel = "eager"
                y = self._eager(x)
        else:
            y = self._forward_fn(tuple(x.shape), x)(x)
        return y.float().cpu().numpy()

    def warm_up(self, width: int, height: int, batch: int = 1) -> None:
        """Run at the model's input size so the first real frame pays no tracing or allocation
        (TorchScript's profiling executor optimises the graph only after its second run)."""
        x = np.zeros((batch, self.spec.input_nc, height, width), np.float32)
        for _ in range(3 if self.accel in ("onednn", "compile") else 1):
            self.run(x)
