"""Logging helpers: a rate limit for lines that the network can trigger at will, and a
formatter that keeps every log record on one line (no forged lines from client text)."""

from __future__ import annotations

import logging
import re
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

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: object = None) -> None:
        now = time.monotonic()
        start, logged, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start > WINDOW_S:
            if suppressed:
                self._logger.log(level, "%s: %d similar message(s) suppressed", key, suppressed)
            start, logged, suppressed = now, 0, 0
        if logged < BURST:
            self._logger.log(level, msg, *args, exc_info=exc_info)  # type: ignore[arg-type]
            logged += 1
        else:
            suppressed += 1
        self._windows[key] = (start, logged, suppressed)
        if len(self._windows) > 1024:  # keys come from the network too: stay bounded
            self._windows.clear()


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal
# or a log reader could take as the start of a new line, or that rewrites what was printed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``, ``\\u2028``)."""
    def one(match: re.Match[str]) -> str:
        ch = match.group()
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
            f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return _CONTROL.sub(one, text)


class OneLineFormatter(logging.Formatter):
    """A formatter whose message part never spans lines: client-controlled text (paths, model
    names, addresses) logged with ``%s`` cannot forge a log line. Tracebacks, which the daemon
    itself makes, keep their lines (each of them indented, so none looks like a record)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:  # noqa: N802
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join("    " + escape_controls(line) for line in text.splitlines())
