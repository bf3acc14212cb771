"""What a dataset says about its pictures, for the run and its card: framing, pad colour, pose
source and style, keypoint layout and size.

``pose2person dataset build`` records them in ``DATASET/summary.json`` under ``"settings"``::

    {"framing": str, "pad_color": [r, g, b], "pose_source": "keypoints"|"densepose"|"tracker-densepose",
     "pose_style": str, "keypoint_layout": str|null, "size": int}

``pose2person synth`` writes ``synth.json`` (keypoint poses in its ``style`` and ``layout``, whole
square frames: letterbox, white). A dataset with neither (built before the settings were
recorded) has none: the run keeps its flags' values. Flags the user gave win over the dataset, with
a warning when they contradict it (the card then describes the flags, not the pictures).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..cards import POSE_SOURCES
from ..config import FRAMINGS
from ..errors import ConfigError
from .options import TrainOptions, is_given

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSettings:
    """A dataset's settings; ``where`` names the file they came from."""

    where: str
    framing: str | None = None
    pad_color: tuple[int, int, int] | None = None
    pose_source: str | None = None
    pose_style: str | None = None
    keypoint_layout: str | None = None
    size: int | None = None

    def card_table(self) -> dict[str, Any]:
        """The card's ``[dataset]`` table: what the model was trained on (None values left out)."""
        return {k: v for k, v in (("settings_from", self.where), ("keypoint_layout", self.keypoint_layout),
                                  ("size", self.size)) if v is not None}


def _check(raw: Any, where: str) -> DataSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: \"settings\" must be an object")

    def get(key: str, kind: type, choices: tuple[str, ...] | None = None) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) or (choices and value not in choices):
            want = f"one of {', '.join(choices)}" if choices else kind.__name__
            raise ConfigError(f"{where}: settings.{key} must be {want}, not {value!r}")
        return value

    pad = raw.get("pad_color")
    if pad is not None and (not isinstance(pad, list) or len(pad) != 3
                            or not all(isinstance(v, int) and 0 <= v <= 255 for v in pad)):
        raise ConfigError(f"{where}: settings.pad_color must be [r, g, b] with values 0..255, not {pad!r}")
    return DataSettings(where=where, framing=get("framing", str, FRAMINGS),
                        pad_color=tuple(pad) if pad is not None else None,  # type: ignore[arg-type]
                        pose_source=get("pose_source", str, tuple(s for s in POSE_SOURCES if s != "image")),
                        pose_style=get("pose_style", str), keypoint_layout=get("keypoint_layout", str),
                        size=get("size", int))


def read_settings(root: Path) -> DataSettings | None:
    """The dataset's settings, or None when it records none. Raises ConfigError naming the file
    and key when a recorded value is malformed (a card must not be built on a guess)."""
    summary, synth = Path(root) / "summary.json", Path(root) / "synth.json"
    for path in (summary, synth):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        if path == summary and "settings" in data:
            return _check(data["settings"], str(path.resolve()))
        if path == synth:
            return _check({"framing": "letterbox", "pad_color": [255, 255, 255], "pose_source": "keypoints",
                           "pose_style": data.get("style"), "keypoint_layout": data.get("layout"),
                           "size": data.get("size")}, str(path.resolve()))
    return None


FIELDS = ("framing", "pad_color", "pose_source", "pose_style")


def merge_settings(o: TrainOptions, data: DataSettings | None) -> tuple[TrainOptions, list[str]]:
    """``o`` with the dataset's settings for the options the user did not give, and one warning per
    given option that contradicts the dataset."""
    if data is None:
        return o, []
    changes: dict[str, Any] = {}
    warnings = []
    for name in FIELDS:
        value = getattr(data, name)
        if value is None:
            continue
        if is_given(o, name):
            if getattr(o, name) != value:
                flag = "--" + name.replace("_", "-")
                warnings.append(f"{flag} {_show(getattr(o, name))} contradicts the dataset's {name} {_show(value)} "
                                f"({data.where}): the card will say {_show(getattr(o, name))}")
        else:
            changes[name] = value
    if data.keypoint_layout is not None and o.keypoint_layout is None:
        changes["keypoint_layout"] = data.keypoint_layout
    return replace(o, **changes), warnings


def _show(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
