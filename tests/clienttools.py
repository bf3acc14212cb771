"""Helpers for the client-sketch tests: finding real tools, where artifacts go.

Like ``conftest.require_tool``: a missing tool skips the test with a reason, except under
CI=true, where it fails (CI installs every tool, see .ci/run).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from conftest import IN_CI, REPO

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
DOCS_IMAGES = REPO / "docs" / "images"
# Set UPDATE_DOCS_SCREENSHOTS=1 to refresh the committed screenshots in docs/images.
UPDATE_DOCS = os.environ.get("UPDATE_DOCS_SCREENSHOTS", "") == "1"


def missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str, install: str) -> ModuleType:
    """Import ``name`` or skip (fail under CI) with how to install it."""
    if importlib.util.find_spec(name) is None:
        missing(f"python package {name} is not installed ({install})")
    return importlib.import_module(name)


def require_chromium() -> str:
    """Path of a Chromium binary (apt package chromium)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing("chromium is not installed (apt-get install chromium); .ci/run installs it")
    raise AssertionError  # unreachable


def processing_core_jar() -> Path:
    """Processing 4's core.jar, from the py5 wheel (``pip install py5``; in the test extras).

    Found without importing py5 (importing it would start a JVM)."""
    spec = importlib.util.find_spec("py5")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            jar = Path(location) / "jars" / "core.jar"
            if jar.is_file():
                return jar
    missing("Processing's core.jar comes with the py5 wheel: pip install py5 (in the test extras)")
    raise AssertionError  # unreachable


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def save_screenshot(png: bytes, name: str) -> Path:
    """Write a screenshot into the test artifacts (and docs/images with UPDATE_DOCS_SCREENSHOTS=1)."""
    path = artifact(name)
    path.write_bytes(png)
    if UPDATE_DOCS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        (DOCS_IMAGES / name).write_bytes(png)
    return path
