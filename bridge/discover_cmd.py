"""``pose2person discover``: list bridges (and other OSC/OSCQuery services) seen on zeroconf."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging

from .errors import ConfigError

log = logging.getLogger(__name__)


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
    from .daemon.discovery import async_browse, format_table  # zeroconf: loaded only for this command

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
