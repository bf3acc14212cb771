"""``pose2person discover``: list bridges (and other OSC/OSCQuery services) seen on zeroconf."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
from typing import Any

from ..errors import ConfigError
from .options import add_log_level

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    disc = sub.add_parser("discover", help="list bridges (and other OSCQuery services) on the network")
    disc.add_argument("--interface", action="append", metavar="ADDR", default=[],
                      help="browse only on this interface address (repeatable)")
    disc.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    disc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_log_level(disc, "warning")


def run_discover(interfaces: list[str], timeout: float, as_json: bool) -> int:
    """Browse for ``timeout`` seconds and print what was found to stdout.

    Prints a table (or, with ``as_json``, a JSON list of objects with the fields of
    :class:`bridge.daemon.discovery.FoundBridge` plus ``is_bridge``). Returns 0 when at least one service was found,
    else logs the warning "no bridges found" and returns 1 (JSON mode still prints ``[]``).
    Raises :class:`ConfigError` for a bad interface address or timeout and
    :class:`TransportError` when zeroconf cannot open its sockets.
    """
    for iface in interfaces:
        try:
            ipaddress.ip_address(iface)
        except ValueError:
            raise ConfigError(f"--interface {iface!r} is not an IP address") from None
    if not timeout > 0:
        raise ConfigError(f"--timeout must be positive, not {timeout}")
    from ..daemon.discovery import async_browse, format_table  # zeroconf: loaded only for this command

    found = asyncio.run(async_browse(interfaces, timeout))
    if as_json:
        print(json.dumps([f.as_dict() for f in found], indent=2))
    elif found:
        print(format_table(found))
    if not found:
        where = ", ".join(interfaces) if interfaces else "all interfaces"
        log.warning("no bridges found (listened %.1f s on %s)", timeout, where)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    return run_discover(args.interface, args.timeout, args.json)
