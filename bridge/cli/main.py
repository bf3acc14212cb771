"""The ``pose2person`` command line: flags -> Config -> the right entry point. No logic here.

Exit codes: 0 success, 1 a command failed (e.g. nothing discovered, a frame failed),
2 usage error, 3 the daemon could not start (bad config, port in use, model missing).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import BridgeError
from ..util.logutil import OneLineFormatter

# One module per command (bridge/cli/<command>.py, each with add_parser(sub) and run(args)), in --help order.
COMMANDS = ("serve", "discover", "send", "synth", "dataset", "train", "demo", "replay", "record", "models", "check",
            "run", "pose")
EXIT_FAILED = 1
EXIT_STARTUP = 3
log = logging.getLogger("bridge")


def _module(command: str):  # noqa: ANN202 - a bridge.cli command module
    return importlib.import_module(f"{__package__}.{command}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose2person", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pose2person {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        _module(command).add_parser(sub)
    return parser


def _setup_logging(level: str) -> None:
    """One record, one line: the formatter escapes control characters in messages, which may
    carry client text (paths, names), so nobody can forge a log line (docs/SECURITY.md)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return _module(args.command).run(args)
    except BridgeError as exc:
        log.error("%s", exc)
        return EXIT_STARTUP if args.command == "serve" else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
