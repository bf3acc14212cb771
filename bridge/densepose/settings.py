"""Live settings of the DensePose stage: the knobs a performer turns, and what each costs.

Defaults reproduce ``apply_net.py show`` (min score 0.8, everyone, short side 800, fp32) except
where a value is marked as a deviation. No torch here (the CLI and model cards build these).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

from ..errors import ConfigError

PeopleOrder = Literal["score", "area"]


@dataclass(frozen=True)
class DensePoseSettings:
    """How one predictor runs.

    * ``min_score``: detections must score strictly above this (detectron2's
      ``SCORE_THRESH_TEST``; ``apply_net show`` sets 0.8).
    * ``max_people``: keep at most this many people (0 = all, up to the config's 100). Which
      ones: ``people_order="score"`` keeps the most confident (= detectron2's first N, exact),
      ``"area"`` the largest boxes. Either way the kept ones stay in detectron2's drawing order
      (descending score). A cap skips DensePose-head work per dropped person.
    * ``short_side``: ``INPUT.MIN_SIZE_TEST``; None = the config's (800). Smaller is faster and
      a deviation from the published model (logged once as such). ``max_side`` likewise.
    * ``fp16``: run the networks in half precision on CUDA (a deviation; ignored on CPU).
      Box decoding, NMS and the chart conversion stay fp32.
    * ``nms_thresh``: ``NMS_THRESH_TEST`` override (apply_net ``--nms_thresh``); None = 0.5.
    * ``max_proposals``: ``RPN.POST_NMS_TOPK_TEST`` override (None = the config's 1000). Fewer
      proposals make the box head proportionally cheaper (a deviation: a person the RPN ranks
      low can be missed).
    * ``fast``: exact-math speed-ups (:mod:`bridge.densepose.fast`: FrozenBN folded into the
      convs, channels-last, decoder only around the kept people). Same results up to float
      rounding; ``False`` runs the plain reference path (the benchmark's baseline).
    """

    min_score: float = 0.8
    max_people: int = 0
    people_order: PeopleOrder = "score"
    short_side: int | None = None
    max_side: int | None = None
    fp16: bool = False
    nms_thresh: float | None = None
    max_proposals: int | None = None
    fast: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score < 1.0:
            raise ConfigError(f"min score must be in [0, 1), not {self.min_score}")
        if self.max_people < 0:
            raise ConfigError(f"max people must be >= 0 (0 = all), not {self.max_people}")
        if self.people_order not in ("score", "area"):
            raise ConfigError(f"people order must be 'score' or 'area', not {self.people_order!r}")
        for name in ("short_side", "max_side"):
            value = getattr(self, name)
            if value is not None and not 32 <= value <= 4096:
                raise ConfigError(f"{name.replace('_', ' ')} must be 32..4096 px, not {value}")
        if self.max_proposals is not None and not 1 <= self.max_proposals <= 10000:
            raise ConfigError(f"max proposals must be 1..10000, not {self.max_proposals}")
        if self.nms_thresh is not None and not 0.0 < self.nms_thresh <= 1.0:
            raise ConfigError(f"NMS threshold must be in (0, 1], not {self.nms_thresh}")


#: keys of a model card's ``[densepose]`` table that are not settings (see models/densepose_rcnn_*/card.toml)
_CARD_ONLY_KEYS = frozenset({"config", "md5_prefix"})


def settings_from_card(table: Mapping[str, Any], **overrides: Any) -> DensePoseSettings:
    """Settings from a DensePose model card's ``[densepose]`` table (``card.extra["densepose"]``),
    then ``overrides`` (e.g. CLI flags; None values are ignored). Unknown keys -> ConfigError."""
    names = {f.name for f in fields(DensePoseSettings)}
    values: dict[str, Any] = {}
    for key, value in list(table.items()) + [(k, v) for k, v in overrides.items() if v is not None]:
        if key in _CARD_ONLY_KEYS:
            continue
        if key not in names:
            raise ConfigError(f"[densepose] {key!r} is not a DensePose setting ({', '.join(sorted(names))})")
        values[key] = value
    try:
        return DensePoseSettings(**values)
    except TypeError as exc:
        raise ConfigError(f"[densepose]: {exc}") from None
