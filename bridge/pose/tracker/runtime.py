"""The TFLite runtime (PyPI ``ai-edge-litert``): one interpreter per model file, with a clear error
where the runtime cannot be installed.

Wheels exist for Linux x86_64/aarch64, macOS arm64 and Windows amd64; none for Intel macOS. There
the tracker is unavailable and frames that need it are answered with ``tracker_unavailable``
(docs/TRACKER.md), never with a picture made without a pose.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelLoadError

log = logging.getLogger(__name__)

INSTALL_HINT = ("the camera tracker needs the TFLite runtime: `pip install ai-edge-litert` "
                "(wheels: Linux x86_64/aarch64, macOS arm64, Windows amd64; not Intel macOS)")


class TrackerUnavailable(ModelLoadError):
    """The runtime or the model files are missing: camera frames cannot be posed here."""


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional dependency
    except ImportError as exc:  # pragma: no cover - depends on the platform
        raise TrackerUnavailable(INSTALL_HINT) from exc
    return Interpreter


def runtime_available() -> bool:
    """Whether the TFLite runtime imports here (cheap after the first call)."""
    try:
        _interpreter_class()
    except TrackerUnavailable:
        return False
    return True


class TfliteModel:
    """One ``.tflite`` file, ready to run: float32 input in, named float32 outputs out.

    Thread contract: one interpreter is not re-entrant; :meth:`run` holds a lock, so a model
    shared by several streams serialises them (each stream's tracker state is separate).
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        interpreter_class = _interpreter_class()
        if not path.is_file():
            raise TrackerUnavailable(f"tracker model file {path} is missing: run `pose2person models fetch blazepose`")
        try:
            self._interp = interpreter_class(model_path=str(path), num_threads=max(1, threads))
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is not a TFLite model this runtime can load: {exc}") from exc
        detail = self._interp.get_input_details()[0]
        self.input_index: int = detail["index"]
        self.input_shape: tuple[int, ...] = tuple(int(v) for v in detail["shape"])
        self._outputs = {d["name"]: d["index"] for d in self._interp.get_output_details()}
        self.output_shapes = {d["name"]: tuple(int(v) for v in d["shape"]) for d in self._interp.get_output_details()}
        self._lock = threading.Lock()
        self.path = path

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run on one input of :attr:`input_shape` (float32); every output, copied."""
        if tensor.shape != self.input_shape:
            raise ValueError(f"{self.path.name}: input {tensor.shape}, expected {self.input_shape}")
        with self._lock:
            self._interp.set_tensor(self.input_index, np.ascontiguousarray(tensor, dtype=np.float32))
            self._interp.invoke()
            return {name: self._interp.get_tensor(index).copy() for name, index in self._outputs.items()}
