"""The real BlazePose files for tests: fetched once from PyPI (pinned), shared by the tracker tests."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from clienttools import missing
from conftest import REPO

from bridge.errors import ModelLoadError

CARD_DIR = REPO / "models" / "blazepose"


@functools.lru_cache(maxsize=1)
def _pins():  # noqa: ANN202 - test helper
    from bridge.pose.tracker.weights import parse_pins

    return parse_pins(tomllib.loads((CARD_DIR / "card.toml").read_text())["tracker"])


def tracker_pins():  # noqa: ANN201
    return _pins()


def ensure_tracker_files() -> Path:
    """The card folder with verified model files (fetching them if needed), or skip/fail."""
    from bridge.pose.tracker.runtime import runtime_available
    from bridge.pose.tracker.weights import fetch

    if not runtime_available():
        missing("the TFLite runtime is not installed (pip install ai-edge-litert)")
    try:
        fetch(_pins(), CARD_DIR)
    except ModelLoadError as exc:
        missing(f"the BlazePose files could not be fetched: {exc}")
    return CARD_DIR


@functools.lru_cache(maxsize=1)
def _models():  # noqa: ANN202
    from bridge.pose.tracker.loader import load_tracker_models

    return load_tracker_models(CARD_DIR, _pins(), threads=1)


def tracker_models():  # noqa: ANN201
    ensure_tracker_files()
    return _models()
