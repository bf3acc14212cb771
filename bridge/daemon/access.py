"""Who may do what, on every network surface: one :class:`AccessPolicy` per daemon.

OSC over UDP and TCP, HTTP (OSCQuery, ``/health``, ``/metrics``, the pages, the monitor) and
the WebSocket all ask this one object (docs/SECURITY.md, "Network surfaces"):

* **Which clients** (``--allow-client``): every surface; others get no OSC reply and HTTP 403.
* **Which names** a browser may use for the bridge (``Host`` and ``Origin``): the bound
  address, loopback names and addresses, the machine's name and its advertised ``.local``
  name, and ``--http-host`` additions. A page on another site that rebinds its DNS name to
  this machine sends its own name and is refused, so DNS rebinding gets nowhere.
* **Who is authorised** for state-changing OSC (model switch, recording, shutdown): one
  connection (TCP, WebSocket) or one UDP address *and port* that sent the right
  ``/pose2person/auth``, never a whole host: a web page does not inherit a local tool's
  authorisation.
* **Who may read pictures and figures** over HTTP (``/monitor/state``, ``/health``'s
  figures, ``/metrics``): whoever presents the *monitor key*: the control token when one is
  set, else a random key made at start and logged in the monitor's URL (as Jupyter does).
* **How much work** a host may cause: :class:`~bridge.daemon.budget.RateBudget` (messages
  and requests per second) and :class:`~bridge.daemon.budget.ConnectionBudget` (sockets).

Loop-thread only, except :meth:`AccessPolicy.key_ok` and the pure checks (no state).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import socket
import time
from collections import OrderedDict
from typing import Hashable
from urllib.parse import urlsplit

from ..config import Config
from .budget import ConnectionBudget, RateBudget, connection_room

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
AUTH_FAILURES_PER_MINUTE = 10  # wrong /auth tokens a host may send a minute; the rest are refused unread


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def machine_names() -> frozenset[str]:
    """This machine's own names: its host name, that name's first label, and ``<label>.local``
    (what zeroconf advertises, bridge/daemon/discovery.py)."""
    full = socket.gethostname().strip().lower().rstrip(".")
    label = full.split(".")[0]
    return frozenset(n for n in (full, label, f"{label}.local") if n)


class AccessPolicy:
    """The daemon's one access policy (see the module docstring). ``monitor_key`` "" makes a
    random one (unless a control token is set, which then is the key)."""

    def __init__(self, config: Config, *, monitor_key: str = "") -> None:
        self._config = config
        sec = config.security
        self.monitor_key: str = sec.token or monitor_key or secrets.token_urlsafe(18)
        self.key_is_token = bool(sec.token)
        self.rate = RateBudget(sec.max_packets_per_s, max(config.osc.max_clients, 256))
        room = connection_room(sec.max_connections, config.shm.max_channels)
        # A quarter of the room per host: one host's idle sockets cannot lock out the others.
        self.connections = ConnectionBudget(room, max(4, min(sec.max_connections_per_host, room // 4)))
        self._names: frozenset[str] = LOOPBACK_NAMES | machine_names() | frozenset(config.http.hosts)
        bound = _ip(config.http.host)
        self._bound = bound if bound is not None and not bound.is_unspecified else None
        self._authorized: OrderedDict[Hashable, float] = OrderedDict()  # peer keys that sent the token
        self._auth_failures: OrderedDict[str, list[float]] = OrderedDict()  # host -> [window start, count]

    # -- which clients --------------------------------------------------------------------
    def client_allowed(self, host: str) -> bool:
        """``--allow-client`` (everyone when it is not given)."""
        return self._config.security.client_allowed(host)

    # -- which names (Host, Origin) --------------------------------------------------------
    def name_allowed(self, hostname: str, local_address: str | None = None) -> bool:
        """May a browser reach this bridge under ``hostname`` (no port, no brackets)?

        An address is fine when it is loopback, the bound address or the address this very
        connection arrived at (``local_address``): a page can only send such a ``Host`` when
        the browser connected to that address itself, so it cannot be a rebinding. A name
        must be one of the allowed names."""
        name = hostname.strip().lower().rstrip(".").strip("[]")
        if not name:
            return False
        addr = _ip(name)
        if addr is None:
            return name in self._names
        if addr.is_loopback or (self._bound is not None and addr == self._bound):
            return True
        local = _ip(local_address) if local_address else None
        return local is not None and addr == local

    def host_header_allowed(self, host_header: str | None, local_address: str | None) -> bool:
        """The ``Host`` header of an HTTP request: a missing one is not a browser (allowed); an
        empty one, one with a user part or a bad port is refused."""
        if host_header is None:
            return True
        try:
            parts = urlsplit(f"//{host_header.strip()}")
            hostname, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
        except ValueError:  # a bad port, brackets that do not close
            return False
        if "@" in parts.netloc or hostname is None:
            return False
        return self.name_allowed(hostname, local_address)

    def origin_allowed(self, origin: str | None, local_address: str | None) -> bool:
        """The ``Origin`` header: absent (not a browser page) or naming an allowed name.
        ``null`` (sandboxed frames, files) is refused."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
            hostname, _ = parts.hostname, parts.port
        except ValueError:
            return False
        # A browser's Origin is scheme://host[:port]: nothing else (no user part, no path).
        if parts.scheme not in ("http", "https") or not hostname or "@" in parts.netloc or parts.path:
            return False
        return self.name_allowed(hostname, local_address)

    # -- monitor key ----------------------------------------------------------------------
    def key_ok(self, presented: str | None) -> bool:
        """The monitor key (or control token), compared in constant time."""
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.monitor_key.encode())

    # -- authorisation per connection -----------------------------------------------------
    def is_authorized(self, peer_key: Hashable) -> bool:
        return peer_key in self._authorized

    def authorize(self, peer_key: Hashable) -> None:
        self._authorized.pop(peer_key, None)
        self._authorized[peer_key] = time.monotonic()
        while len(self._authorized) > self._config.osc.max_clients:
            self._authorized.popitem(last=False)

    def forget(self, peer_key: Hashable) -> None:
        """A connection closed: its authorisation ends with it."""
        self._authorized.pop(peer_key, None)

    def auth_attempt_allowed(self, host: str) -> bool:
        """False once ``host`` sent :data:`AUTH_FAILURES_PER_MINUTE` wrong tokens this minute:
        further attempts are refused without being compared (guessing stays slow)."""
        window = self._auth_failures.get(host)
        return window is None or time.monotonic() - window[0] > 60.0 or window[1] < AUTH_FAILURES_PER_MINUTE

    def auth_failed(self, host: str) -> None:
        now = time.monotonic()
        window = self._auth_failures.pop(host, None)
        if window is None or now - window[0] > 60.0:
            window = [now, 0.0]
        window[1] += 1
        self._auth_failures[host] = window
        while len(self._auth_failures) > 1024:
            self._auth_failures.popitem(last=False)


__all__ = ["AccessPolicy", "machine_names", "AUTH_FAILURES_PER_MINUTE"]
