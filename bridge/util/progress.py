"""A dependency-free progress bar on stderr, for the long-running commands (synth, dataset, train).

On a terminal it redraws one line; otherwise (a log file under nohup) it writes a plain line at
most every ``every_s`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar.update(n, note)`` after each unit of work; ``bar.close()`` at the end."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None,
                 every_s: float = 10.0) -> None:
        self.total, self.label, self.done = max(int(total), 0), label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and now - self._last < self.every_s and self.done < self.total:
            return
        self._last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        width = 28
        filled = int(width * self.done / self.total) if self.total else 0
        text = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total or '?'} "
                f"{rate:.1f}/s eta {_clock(eta)} {note}")
        self.stream.write(("\r" + text + "   ") if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"
