"""Safe checkpoint loading: model-zoo ``.pkl`` through a restricted unpickler, ``.pth`` with
``torch.load(weights_only=True)``; then a strict name/shape check against the module tree.

A ``.pkl`` is a plain Python pickle (detectron2 reads it with ``pickle.load``, which runs any
code the file asks for). Here only the globals needed to rebuild numpy arrays are resolvable
(:data:`ALLOWED_GLOBALS`); any other global raises :class:`~bridge.errors.ModelLoadError`
naming it, *before* anything is called. The result must be ``{"model": {str: ndarray}, ...}``.

Keys detectron2 files may carry that this tree does not have, and which are dropped silently
(:data:`IGNORED_KEYS`): ``pixel_mean``, ``pixel_std`` (non-persistent buffers in newer
detectron2, saved by older versions) and ``proposal_generator.anchor_generator.cell_anchors.N``
(persistent buffers in old versions; recomputed from the config here). Every other missing or
unexpected key, or a shape mismatch, is an error that names the config the file looks like.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelLoadError
from ..util.state_dicts import key_mismatch
from .configs import CONFIGS

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: (module, name) pairs a weights pickle may reference. numpy.core.* is the numpy 1.x
#: spelling, numpy._core.* the 2.x one; both are accepted and resolved to what is installed.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
})

IGNORED_KEYS = re.compile(r"^(pixel_mean|pixel_std|proposal_generator\.anchor_generator\.cell_anchors\.\d+)$")


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it (``encode(s, "latin1")``),
    limited to the latin-1/utf-8 codecs so a pickle cannot reach other codec machinery."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "utf8", "iso88591"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode(encoding, errors)


class _WeightsUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; refuses persistent ids (pickle's default)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"{module}.{name}")
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core." + module[len("numpy.core."):]
        elif module.startswith("numpy._core.") and int(np.__version__.split(".")[0]) < 2:
            module = "numpy.core." + module[len("numpy._core."):]
        return getattr(importlib.import_module(module), name)


class _Refused(pickle.UnpicklingError):
    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


def read_pkl(path: Path) -> dict[str, np.ndarray]:
    """The ``"model"`` dict of a detectron2 model-zoo pickle, read without running code.

    Raises ModelLoadError for a refused global, a truncated/corrupt file, a Caffe2/Detectron1
    file, or any structure other than ``{"model": {str: ndarray}}``.
    """
    try:
        with open(path, "rb") as f:
            data = _WeightsUnpickler(f, encoding="latin1").load()
    except _Refused as exc:
        log.error("%s: blocked pickle global %s", path, exc.qualname)
        raise ModelLoadError(
            f"{path}: refused to load: the pickle asks for the global {exc.qualname!r}, but a weights "
            f"file may only contain numpy arrays, numbers, strings and containers (a tampered or "
            f"non-weights file; nothing in it was run)") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a detectron2 checkpoint (top level is {type(data).__name__}, not a dict)")
    if "model" not in data:
        if "blobs" in data:
            raise ModelLoadError(f"{path}: a Caffe2/Detectron1 checkpoint ('blobs'); only detectron2 "
                                 f"model-zoo files (with 'model' and '__author__') are supported")
        model = data
    else:
        model = data["model"]
        if "__author__" not in data:
            log.warning("%s: no '__author__' (detectron2 would treat it as a Caffe2 file); loading "
                        "it by exact names anyway", path)
        else:
            log.info("%s: checkpoint by %s", path, data["__author__"])
    if not isinstance(model, dict):
        raise ModelLoadError(f"{path}: 'model' is {type(model).__name__}, not a dict of arrays")
    for key, value in model.items():
        if not isinstance(key, str):
            raise ModelLoadError(f"{path}: parameter name {key!r} is not a string")
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise ModelLoadError(f"{path}: parameter {key!r} is {type(value).__name__}, not a numeric array")
    return model


def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``torch.save``d file (plain, or detectron2's ``{"model": ...}``),
    read with ``weights_only=True``; ``module.`` / ``_orig_mod.`` prefixes stripped."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path}: refused or corrupt torch file ({exc})".splitlines()[0]) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path}: truncated or corrupt torch file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a state dict (top level is {type(data).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{path}: entry {key!r} is not a named tensor")
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read ``path`` (``.pkl`` or a torch file, sniffed by content) into CPU float tensors."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK") or path.suffix in (".pth", ".pt"):
        state = read_pth(path)
    else:
        state = {k: _to_tensor(v) for k, v in read_pkl(path).items()}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """Share memory with a writable native-order array; copy read-only ones (protocol-5
    out-of-band buffers) and byte-swap foreign-endian ones."""
    import torch

    if array.flags.writeable and array.dtype.isnative:
        return torch.from_numpy(array)
    return torch.from_numpy(np.array(array, dtype=array.dtype.newbyteorder("="), copy=True))


def guess_config(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The supported config whose parameter layout ``shapes`` matches, or None."""
    given = {k: v for k, v in shapes.items() if not IGNORED_KEYS.match(k)}
    for name in CONFIGS:
        if given == _expected_shapes(name):
            return name
    return None


_SHAPES_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def _expected_shapes(config_name: str) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a config's module tree (built on the meta device: no memory)."""
    import torch

    from .model import build_model

    if config_name not in _SHAPES_CACHE:
        with torch.device("meta"):
            model = build_model(CONFIGS[config_name])
        _SHAPES_CACHE[config_name] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _SHAPES_CACHE[config_name]


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], config_name: str, source: str,
              assign: bool = False) -> None:
    """Load ``state`` into ``model`` strictly: only :data:`IGNORED_KEYS` may be extra, nothing
    may be missing, every shape must match. Raises ModelLoadError naming the likely config.
    ``assign=True`` makes the module use the given tensors (no copy; for a model built on the
    meta device)."""
    own = model.state_dict()
    ignored = sorted(k for k in state if IGNORED_KEYS.match(k))
    if ignored:
        log.info("%s: ignoring %d documented unused keys (%s)", source, len(ignored), ", ".join(ignored))
    given = {k: v for k, v in state.items() if not IGNORED_KEYS.match(k)}
    problem = key_mismatch({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in given.items()})
    if problem:
        guess = guess_config({k: tuple(v.shape) for k, v in state.items()})
        hint = (f"; it looks like a {guess} checkpoint (use --config {guess})" if guess and guess != config_name
                else "; it matches no supported config")
        raise ModelLoadError(f"{source}: not a {config_name} checkpoint: {problem}{hint}")
    model.load_state_dict(given, strict=True, assign=assign)
