"""Loading pytorch-CycleGAN-and-pix2pix generator checkpoints safely, unchanged.

Contract of :func:`load_generator`: read the file without executing code
(``torch.load(weights_only=True)`` or safetensors), apply the documented remap, work out
the architecture (``train_opt.txt`` when given, else the weights), and return a spec and a
state dict that ``build_generator(spec).load_state_dict(sd, strict=True)`` accepts.

The remap (pure: :func:`remap_state_dict`), in the reference loader's spirit:

1. unwrap ``{"state_dict": ...}`` / ``{"model": ...}`` containers some forks save;
2. drop ``_metadata``; strip ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile);
3. drop InstanceNorm ``running_mean`` / ``running_var`` / ``num_batches_tracked``, which
   2018-era code saved and current code (and ours) never uses (the reference's
   ``__patch_instance_norm_state_dict``);
4. on request, move ResNet blocks between the dropout layout (second conv at
   ``conv_block.6``) and the plain one (``conv_block.5``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping

import torch

from ..errors import ModelLoadError
from ..util.state_dicts import key_mismatch
from .nets import NET_NAMES, RESNET_BLOCKS, UNET_DOWNS, GeneratorSpec, build_generator

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
_PREFIXES = ("module.", "_orig_mod.")
_STAT_NAMES = ("running_mean", "running_var", "num_batches_tracked")
OPT_HEADER = "----------------- Options ---------------"
OPT_FOOTER = "----------------- End -------------------"


# -- reading files ----------------------------------------------------------------------
def read_weights(path: Path) -> StateDict:
    """The tensors in ``path`` (``.pth``/``.pt`` via ``weights_only=True``, or ``.safetensors``)."""
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelLoadError(f"{path.name} is a safetensors file: pip install safetensors") from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a valid safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except __import__("pickle").UnpicklingError as exc:
        # weights_only refuses any global outside torch's allow-list; we never retry unsafely.
        raise ModelLoadError(
            f"{path} needs unsafe unpickling to load, which could run code, so it is refused. "
            f"A checkpoint saved with torch.save(net.state_dict()) never needs it; re-save the weights "
            f"as a plain state dict (or safetensors) on a trusted machine. Detail: {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from None
    return unwrap(obj, path)


def unwrap(obj: object, path: Path | str = "checkpoint") -> StateDict:
    """A flat name -> tensor dict out of what ``torch.load`` returned."""
    for key in ("state_dict", "model", "netG", "G"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping) and obj.get(key):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path} holds no tensors")
    return tensors


# -- the remap --------------------------------------------------------------------------
def clean_names(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``) and drop ``_metadata``."""
    out: StateDict = {}
    for key, value in sd.items():
        if key == "_metadata":
            continue
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def drop_instance_norm_stats(sd: StateDict, net: torch.nn.Module) -> list[str]:
    """Remove running-stat entries that sit on InstanceNorm layers of ``net``; return their names."""
    instance_norms = {name for name, m in net.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)}
    dropped = [k for k in sd if k.rpartition(".")[2] in _STAT_NAMES and k.rpartition(".")[0] in instance_norms]
    for k in dropped:
        del sd[k]
    return dropped


_BLOCK_KEY = re.compile(r"^(model\.\d+\.conv_block\.)(\d+)(\..+)$")


def shift_dropout_keys(sd: StateDict, to_dropout: bool) -> StateDict:
    """ResNet blocks: second conv/norm at 5/6 (plain) <-> 6/7 (dropout). Other keys unchanged."""
    moves = {5: 6, 6: 7} if to_dropout else {6: 5, 7: 6}
    out: StateDict = {}
    for key, value in sd.items():
        m = _BLOCK_KEY.match(key)
        if m and int(m.group(2)) in moves:
            key = f"{m.group(1)}{moves[int(m.group(2))]}{m.group(3)}"
        out[key] = value
    return out


def remap_state_dict(sd: Mapping[str, torch.Tensor], spec: GeneratorSpec) -> tuple[StateDict, list[str]]:
    """The documented remap for ``spec``: returns the state dict and notes on what changed."""
    notes: list[str] = []
    out = clean_names(sd)
    if spec.net_g.startswith("resnet"):
        has_dropout_layout = _resnet_has_dropout_layout(out)
        if has_dropout_layout is not None and has_dropout_layout != spec.use_dropout:
            out = shift_dropout_keys(out, to_dropout=spec.use_dropout)
            notes.append(f"ResNet block keys moved to the {'dropout' if spec.use_dropout else 'plain'} layout")
    dropped = drop_instance_norm_stats(out, build_generator(spec))
    if dropped:
        notes.append(f"dropped {len(dropped)} InstanceNorm running-stat entries (2018-era checkpoint)")
    return out, notes


def _resnet_has_dropout_layout(sd: Mapping[str, torch.Tensor]) -> bool | None:
    blocks = [k for k in sd if ".conv_block." in k and k.endswith(".weight")]
    if not blocks:
        return None
    return any(".conv_block.6.weight" in k and sd[k].dim() == 4 for k in blocks)


# -- architecture from the weights -------------------------------------------------------
def infer_spec(sd: Mapping[str, torch.Tensor]) -> GeneratorSpec:
    """The architecture the (cleaned) weights were saved from. U-Net dropout leaves no trace
    in the keys, so it is reported as the reference default for U-Nets (pix2pix: on)."""
    sd = clean_names(sd)
    has_stats = any(k.endswith("running_mean") for k in sd)
    if "model.1.weight" in sd and sd["model.1.weight"].dim() == 4 and sd["model.1.weight"].shape[-1] == 7:
        first = sd["model.1.weight"]
        blocks = {int(k.split(".")[1]) for k in sd if ".conv_block." in k}
        n = len(blocks)
        name = next((k for k, v in RESNET_BLOCKS.items() if v == n), None)
        if name is None:
            raise ModelLoadError(f"a ResNet generator with {n} blocks is not a reference netG (6 or 9)")
        last = sd.get(f"model.{17 + n}.weight")
        if last is None:
            raise ModelLoadError(f"ResNet weights without the final conv model.{17 + n}.weight")
        # Only BatchNorm keeps running stats in current code; 2018 InstanceNorm did too, but
        # then conv biases exist (use_bias is True only next to InstanceNorm).
        norm = "instance" if "model.1.bias" in sd else ("batch" if has_stats else "none")
        return GeneratorSpec(name, int(first.shape[1]), int(last.shape[0]), int(first.shape[0]), norm,
                             bool(_resnet_has_dropout_layout(sd)))
    if "model.model.0.weight" in sd:
        first = sd["model.model.0.weight"]
        depth, prefix = 1, "model.model.1.model."
        while prefix + "1.weight" in sd:
            depth += 1
            if prefix + "3.model.1.weight" not in sd:
                break
            prefix += "3.model."
        name = next((k for k, v in UNET_DOWNS.items() if v == depth), None)
        if name is None:
            raise ModelLoadError(f"a U-Net with {depth} levels is not a reference netG (unet_128: 7, unet_256: 8)")
        out_nc = int(sd["model.model.3.weight"].shape[1])
        norm = "instance" if "model.model.0.bias" in sd else ("batch" if has_stats else "none")
        return GeneratorSpec(name, int(first.shape[1]), out_nc, int(first.shape[0]), norm, norm == "batch")
    raise ModelLoadError("the weights are neither a reference ResNet nor a U-Net generator "
                         "(no model.1.weight or model.model.0.weight)")


# -- train_opt.txt ----------------------------------------------------------------------
def parse_train_opt(path: Path) -> dict[str, str]:
    """``train_opt.txt`` (``BaseOptions.print_options`` format) as name -> value text."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    opts: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("---"):
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            continue
        value = value.split("\t[default:", 1)[0].strip()
        opts[key.strip()] = value
    if not opts:
        raise ModelLoadError(f"{path} has no options in the train_opt.txt format")
    return opts


def write_train_opt(path: Path, options: Mapping[str, object], defaults: Mapping[str, object] | None = None) -> None:
    """Write options as the reference does: sorted, ``'{:>25}: {:<30}{}'``, with a
    ``\\t[default: X]`` note where the value differs from ``defaults``."""
    lines = [OPT_HEADER]
    for key in sorted(options):
        value = options[key]
        note = ""
        if defaults is not None and key in defaults and defaults[key] != value:
            note = f"\t[default: {defaults[key]}]"
        lines.append("{:>25}: {:<30}{}".format(str(key), str(value), note))
    lines.append(OPT_FOOTER)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def spec_from_options(opts: Mapping[str, str], generator: str = "G") -> GeneratorSpec:
    """The spec that ``define_G`` got for ``generator`` (``G``, ``G_A`` or ``G_B``) in that run."""
    try:
        net_g = opts.get("netG", "resnet_9blocks")
        if net_g not in NET_NAMES:
            raise ModelLoadError(f"train_opt.txt: netG {net_g!r} is not one of {', '.join(NET_NAMES)}")
        input_nc, output_nc = int(opts.get("input_nc", "3")), int(opts.get("output_nc", "3"))
        if generator == "G_B":  # the reference builds netG_B as define_G(output_nc, input_nc, ...)
            input_nc, output_nc = output_nc, input_nc
        return GeneratorSpec(net_g, input_nc, output_nc, int(opts.get("ngf", "64")), opts.get("norm", "instance"),
                             opts.get("no_dropout", "False") != "True")
    except ValueError as exc:
        raise ModelLoadError(f"train_opt.txt: {exc}") from None


def generator_role(path: Path) -> str:
    """``G``, ``G_A`` or ``G_B`` from a reference file name such as ``latest_net_G_A.pth``."""
    m = re.search(r"_net_(G(?:_[AB])?)\.", path.name)
    return m.group(1) if m else "G"


# -- the whole load ---------------------------------------------------------------------
def load_generator(path: Path, spec: GeneratorSpec | None = None,
                   train_opt: Path | None = None) -> tuple[GeneratorSpec, StateDict]:
    """Read, remap and check ``path``; returns ``(spec, state_dict)`` for a strict load.

    The spec comes from ``spec`` if given, else ``train_opt`` (or ``train_opt.txt`` beside the
    file), else the weights; when both an options file and the weights speak, they must agree
    (an error names both). One log line says where the architecture came from.
    """
    path = Path(path)
    raw = read_weights(path)
    from_weights = infer_spec(raw)
    source = "the weights"
    if spec is None:
        opt_path = train_opt if train_opt is not None else path.with_name("train_opt.txt")
        if opt_path.is_file():
            spec = spec_from_options(parse_train_opt(opt_path), generator_role(path))
            source = str(opt_path.name)
            _check_agreement(spec, from_weights, opt_path)
        else:
            spec = from_weights
            source = "the weights (no train_opt.txt)"
    else:
        source = "the model card"
        _check_agreement(spec, from_weights, "the model card", allow_dropout_change=True)
    sd, notes = remap_state_dict(raw, spec)
    _strict_check(sd, spec, path)
    log.info("%s: %s (architecture from %s%s)", path.name, spec.describe(), source,
             "; " + "; ".join(notes) if notes else "")
    return spec, sd


def _check_agreement(spec: GeneratorSpec, weights: GeneratorSpec, what: object,
                     allow_dropout_change: bool = False) -> None:
    fields = ["net_g", "input_nc", "output_nc", "ngf", "norm"]
    if spec.net_g.startswith("resnet") and not allow_dropout_change:
        fields.append("use_dropout")  # visible in ResNet keys; invisible in U-Net keys
    diffs = [f"{f}: {getattr(spec, f)} in {what} but {getattr(weights, f)} in the weights" for f in fields
             if getattr(spec, f) != getattr(weights, f)]
    if diffs:
        raise ModelLoadError("the options and the weights disagree: " + "; ".join(diffs))


def _strict_check(sd: StateDict, spec: GeneratorSpec, path: Path) -> None:
    want = {k: tuple(v.shape) for k, v in build_generator(spec).state_dict().items()}
    problem = key_mismatch(want, {k: tuple(v.shape) for k, v in sd.items()})
    if problem:
        raise ModelLoadError(f"{path.name} does not fit {spec.describe()}: {problem}")
