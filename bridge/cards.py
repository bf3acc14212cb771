"""Model cards: one small TOML file per model, with the input contract and provenance.

A card lives at ``<models dir>/<name>/card.toml`` beside its weights. Schema (every table
optional except ``name``; see models/README.md)::

    name = "puppet"
    kind = "generator"            # or "densepose", or "tracker" (the camera tracker's files: not servable)
    description = "..."
    [weights]       file = "latest_net_G.pth"   url = ""   sha256 = "..."   size = 0
    [architecture]  net_g = "unet_256"   norm = "batch"   ngf = 64   input_nc = 3   output_nc = 3   use_dropout = true
    [input]         pose_source = "image"   pose_style = "dp_segm"   framing = "squash"   pad_color = [255, 255, 255]
                    load_size = 256   crop_size = 256   preprocess = "resize_and_crop"   aspect = 1.0
                    output_mapping = "inverse"   direction = "AtoB"
    [runtime]       precision = "fp32"   norm_mode = "stable"
    [provenance]    license = ""   origin = ""   command = ""   notes = ""

No torch here: listing and showing cards is instant.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ModelLoadError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CARD_FILE = "card.toml"
KINDS = ("generator", "densepose", "tracker")
#: Kinds a client can switch to with ``/pose2person/model`` (a tracker card only serves other models).
SERVABLE_KINDS = ("generator", "densepose")
POSE_SOURCES = ("image", "densepose", "keypoints", "tracker-densepose")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class WeightsInfo:
    file: str = ""
    url: str = ""
    sha256: str = ""
    size: int = 0


@dataclass(frozen=True)
class InputInfo:
    pose_source: str = "image"
    pose_style: str = "dp_segm"
    framing: str = "squash"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    load_size: int = 256
    crop_size: int = 256
    preprocess: str = "resize_and_crop"
    aspect: float = 1.0
    output_mapping: str = "inverse"
    direction: str = "AtoB"


@dataclass(frozen=True)
class RuntimeInfo:
    precision: str = "fp32"
    norm_mode: str = "stable"


@dataclass(frozen=True)
class Provenance:
    license: str = ""
    origin: str = ""
    command: str = ""
    notes: str = ""


@dataclass(frozen=True)
class ModelCard:
    """A parsed card. ``folder`` is where it was read from (weights paths are relative to it)."""

    name: str
    kind: str = "generator"
    description: str = ""
    weights: WeightsInfo = field(default_factory=WeightsInfo)
    architecture: Mapping[str, Any] = field(default_factory=dict)
    input: InputInfo = field(default_factory=InputInfo)
    runtime: RuntimeInfo = field(default_factory=RuntimeInfo)
    provenance: Provenance = field(default_factory=Provenance)
    extra: Mapping[str, Any] = field(default_factory=dict)  # other tables (e.g. a DensePose config), kept as-is
    folder: Path = Path()

    def weights_path(self) -> Path:
        """The weights file: relative to the card's folder unless the card gives an absolute path."""
        if not self.weights.file:
            raise ModelLoadError(f"model card {self.name!r} names no weights file")
        p = Path(self.weights.file).expanduser()
        return p if p.is_absolute() else (self.folder / p)

    def verify_weights(self) -> Path:
        """The weights path after checking it exists and matches the card's size and sha256."""
        path = self.weights_path()
        if not path.is_file():
            hint = f" (download: {self.weights.url})" if self.weights.url else ""
            raise ModelLoadError(f"model {self.name!r}: weights {path} not found{hint}")
        if self.weights.size and path.stat().st_size != self.weights.size:
            raise ModelLoadError(f"model {self.name!r}: {path.name} is {path.stat().st_size} bytes, "
                                 f"the card says {self.weights.size} (truncated or replaced?)")
        if self.weights.sha256 and sha256_of(path) != self.weights.sha256.lower():
            raise ModelLoadError(f"model {self.name!r}: {path.name} does not match the card's sha256")
        return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _section(cls: type, raw: object, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{where}: must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ModelLoadError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or len(value) != len(default):
                raise ModelLoadError(f"{where}.{key}: expected a list of {len(default)}")
            value = tuple(value)
        elif isinstance(default, bool) or not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif type(value) is not type(default):
                raise ModelLoadError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        values[key] = value
    return cls(**values)


def parse_card(data: Mapping[str, Any], folder: Path, where: str = CARD_FILE) -> ModelCard:
    """Validate a card's TOML data (raise ModelLoadError naming the bad key)."""
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise ModelLoadError(f"{where}: 'name' must be a non-empty string without '/' or ':'")
    kind = data.get("kind", "generator")
    if kind not in KINDS:
        raise ModelLoadError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    inp: InputInfo = _section(InputInfo, data.get("input"), f"{where} [input]")
    if inp.pose_source not in POSE_SOURCES:
        raise ModelLoadError(f"{where} [input].pose_source must be one of {', '.join(POSE_SOURCES)}")
    runtime: RuntimeInfo = _section(RuntimeInfo, data.get("runtime"), f"{where} [runtime]")
    if runtime.precision not in PRECISIONS:
        raise ModelLoadError(f"{where} [runtime].precision must be one of {', '.join(PRECISIONS)}")
    arch = data.get("architecture", {})
    if not isinstance(arch, dict):
        raise ModelLoadError(f"{where} [architecture] must be a table")
    known = {"name", "kind", "description", "weights", "architecture", "input", "runtime", "provenance"}
    return ModelCard(
        name=name, kind=kind, description=str(data.get("description", "")),
        weights=_section(WeightsInfo, data.get("weights"), f"{where} [weights]"),
        architecture=dict(arch), input=inp, runtime=runtime,
        provenance=_section(Provenance, data.get("provenance"), f"{where} [provenance]"),
        extra={k: v for k, v in data.items() if k not in known}, folder=folder,
    )


def load_card(path: Path) -> ModelCard:
    """Read ``path`` (a card file, or a folder holding ``card.toml``)."""
    path = Path(path)
    file = path / CARD_FILE if path.is_dir() else path
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"cannot read model card {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelLoadError(f"model card {file} is not valid TOML: {exc}") from None
    return parse_card(data, file.parent.resolve(), str(file))


# -- writing ----------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def card_to_toml(card: ModelCard) -> str:
    """The card as TOML text (round-trips through :func:`load_card`)."""
    lines = [f"name = {_toml_value(card.name)}", f"kind = {_toml_value(card.kind)}",
             f"description = {_toml_value(card.description)}"]
    tables: list[tuple[str, Mapping[str, Any]]] = [
        ("weights", asdict(card.weights)), ("architecture", card.architecture), ("input", asdict(card.input)),
        ("runtime", asdict(card.runtime)), ("provenance", asdict(card.provenance)),
    ]
    tables += [(k, v) for k, v in card.extra.items() if isinstance(v, Mapping)]
    for title, table in tables:
        if not table:
            continue
        lines += ["", f"[{title}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_card(card: ModelCard, folder: Path) -> Path:
    """Write ``folder/card.toml`` atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CARD_FILE
    tmp = folder / f".{CARD_FILE}.tmp"
    tmp.write_text(card_to_toml(card), encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- finding ----------------------------------------------------------------------------
def shipped_models_dir() -> Path:
    """``models/`` of this checkout (cards and small weights shipped with the project)."""
    return Path(__file__).resolve().parent.parent / "models"


def user_models_dir() -> Path:
    """Where ``pose2person models import`` puts cards: ``$POSE2PERSON_MODELS`` or the XDG data dir."""
    env = os.environ.get("POSE2PERSON_MODELS")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pose2person" / "models"


def default_model_dirs() -> tuple[Path, ...]:
    return tuple(d for d in (shipped_models_dir(), user_models_dir()) if d.is_dir())


def find_cards(dirs: tuple[Path, ...] | list[Path]) -> dict[str, ModelCard]:
    """Every valid card in ``dirs`` by name (the first directory wins on a name clash).
    Invalid cards are skipped here; :func:`find_card` reports them when asked by name."""
    cards: dict[str, ModelCard] = {}
    for d in dirs:
        for file in sorted(Path(d).glob(f"*/{CARD_FILE}")):
            try:
                card = load_card(file)
            except ModelLoadError:
                continue
            cards.setdefault(card.name, card)
    return cards


def find_card(name: str, dirs: tuple[Path, ...] | list[Path]) -> ModelCard | None:
    """The card called ``name`` (folder ``name/`` first, then any card whose name matches).

    ``name`` comes from clients (``/pose2person/model``): it is looked up as a folder only when it
    is one plain folder name, so ``../x`` or ``/tmp/x`` cannot reach a card outside ``dirs``, and a
    name the file system refuses (too long) is simply not found."""
    if _plain_name(name):
        for d in dirs:
            file = Path(d) / name / CARD_FILE
            try:
                found = file.is_file()
            except OSError:  # ENAMETOOLONG and the like: no such card
                found = False
            if found:
                return load_card(file)
    return find_cards(dirs).get(name)


def _plain_name(name: str) -> bool:
    """One path component: not empty, no separator, no NUL, not ``.``/``..``, at most 255 bytes."""
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")
            and len(name.encode("utf-8", "surrogatepass")) <= 255)
