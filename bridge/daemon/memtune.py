"""Allocator tuning for frame-sized buffers (glibc only; a no-op elsewhere).

glibc serves allocations above its mmap threshold (128 KiB at first, adapting up to 32 MiB)
with fresh ``mmap`` pages and returns them on ``free``. A daemon that decodes and encodes a
multi-megabyte frame many times a second then page-faults every buffer in anew each frame
(about 3,500 minor faults per 1280x720 path frame, measured in bench/transport.py). Raising
the mmap and trim thresholds once at start-up lets freed frame buffers be reused from the
heap instead. Memory stays bounded by the largest frames in flight.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024  # frames up to 8K RGBA (~133 MB) split into smaller arrays
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024  # keep up to this much freed heap for the next frame


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds; True if applied. Safe to call more than once."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD_BYTES))
    log.debug("glibc allocator thresholds %s", "raised" if ok else "unchanged")
    return ok
