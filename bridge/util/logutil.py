"""Logging helpers: a rate limit for lines that the network can trigger at will."""

from __future__ import annotations

import logging
import time

WINDOW_S = 10.0  # per key, at most BURST lines are logged in each window
BURST = 5


class RateLimitedLog:
    """Logs at most ``BURST`` lines per key per ``WINDOW_S``; reports how many were suppressed.

    A flood of garbage packets must not turn into a flood of log lines.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, logged, suppressed)

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        start, logged, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start > WINDOW_S:
            if suppressed:
                self._logger.log(level, "%s: %d similar message(s) suppressed", key, suppressed)
            start, logged, suppressed = now, 0, 0
        if logged < BURST:
            self._logger.log(level, msg, *args)
            logged += 1
        else:
            suppressed += 1
        self._windows[key] = (start, logged, suppressed)
        if len(self._windows) > 1024:  # keys come from the network too: stay bounded
            self._windows.clear()
