"""The allocator tuning applies on glibc Linux, is harmless to repeat, and stops frame-sized
buffers from being faulted in anew on every allocation."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bridge.daemon.memtune import tune_allocator
from conftest import REPO

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate a 1080p float32 RGBA frame (TouchDesigner's format, 33 MB: above glibc's adaptive
# mmap limit of 32 MiB) six times, as a daemon does frame after frame; print the minor page
# faults of the last five.
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from bridge.daemon.memtune import tune_allocator
    assert tune_allocator()
size = 1920 * 1080 * 4 * 4 + 1
np.ones(size, np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(size, np.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, cwd=REPO)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are a glibc feature")
def test_tuning_applies_and_is_idempotent() -> None:
    assert tune_allocator() is True
    assert tune_allocator() is True


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are a glibc feature")
def test_frame_buffers_are_reused_instead_of_faulted_in_anew() -> None:
    plain, tuned = _faults("plain"), _faults("tuned")
    assert plain > 0  # untuned, every 33 MB buffer is a fresh mmap that faults in
    assert tuned * 4 < plain, (plain, tuned)
