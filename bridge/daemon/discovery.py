"""Zeroconf (mDNS/DNS-SD): advertise the bridge and browse for bridges and OSCQuery services.

The daemon advertises one instance name under two service types, as OSCQuery tools expect:

* ``_osc._udp.local.`` on the OSC port (UDP; TCP shares the number),
* ``_oscjson._tcp.local.`` on the HTTP (OSCQuery) port, unless HTTP is disabled.

Both records carry the same TXT: ``txtvers=1``, ``version=<bridge version>``, ``osc=<port>``,
``http=<port or empty>``, ``proto=<wire protocol version>``. ``proto`` is what tells a
pose2person bridge apart from any other OSCQuery service on the network.

Imports zeroconf only (no torch, no aiohttp).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

from zeroconf import DNSQuestionType, InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ..config import DiscoveryConfig
from ..errors import TransportError
from ..protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)

OSC_TYPE = "_osc._udp.local."
OSCJSON_TYPE = "_oscjson._tcp.local."
SERVICE_TYPES: tuple[str, str] = (OSC_TYPE, OSCJSON_TYPE)
TXT_VERSION = "1"

STOP_TIMEOUT_S = 1.5  # async_stop: unregister (goodbye packets) + close, all of it
RESOLVE_TIMEOUT_MS = 1500  # one service's SRV/TXT/A lookup while browsing
RESOLVE_GRACE_S = 0.5  # after the browse window, how long pending lookups may still finish
CONFLICT_CHECK_MS = 600  # how long to wait for another service that already answers to our instance name
MAX_RENAMES = 20  # "name (2)" .. "name (20)"; beyond that advertising fails with TransportError

_UNSPECIFIED = ("0.0.0.0", "::", "")

InterfacesArg = Any  # list[str] | InterfaceChoice; zeroconf's own alias is private


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).version == 6
    except ValueError:
        return False


def _ip_version_for(addresses: Sequence[str]) -> IPVersion:
    """V4Only unless an IPv6 address is among ``addresses`` (then both families)."""
    return IPVersion.All if any(_is_ipv6(a) for a in addresses) else IPVersion.V4Only


def host_ipv4_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses, found locally (no packets are sent).

    Tries the interface list (``ifaddr``, which zeroconf itself depends on), then the
    addresses the host name resolves to; falls back to ``["127.0.0.1"]`` when neither
    yields a non-loopback address.
    """
    found: list[str] = []

    def add(addr: str) -> None:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return
        if ip.version == 4 and not ip.is_loopback and not ip.is_link_local and addr not in found:
            found.append(addr)

    try:
        import ifaddr  # a dependency of zeroconf

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    add(ip.ip)
    except Exception:  # noqa: BLE001 - any failure just means "try the next way"
        log.debug("interface enumeration failed", exc_info=True)
    if not found:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_DGRAM):
                add(str(info[4][0]))
        except OSError:
            log.debug("host name lookup failed", exc_info=True)
    return found or ["127.0.0.1"]


def _is_ipv6_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.version == 6 and ip.is_loopback


def advertise_plan(interfaces: Sequence[str], bind_host: str) -> tuple[InterfacesArg, IPVersion, list[str]]:
    """Where to advertise: ``(zeroconf interfaces, ip_version, advertised addresses)``.

    * explicit ``interfaces`` (``--zeroconf-interface``): exactly those, and those addresses;
    * otherwise a specific ``bind_host``: only that interface and address (a bridge bound to
      127.0.0.1 is announced on loopback only, where it is reachable);
    * otherwise (``0.0.0.0``/``::``): every interface, advertising this host's non-loopback
      IPv4 addresses (see :func:`host_ipv4_addresses`).

    The IPv6 loopback ``::1`` is left out: mDNS cannot be sent on it (the kernel answers
    "network unreachable"). An empty address list means "nothing to advertise on".
    """
    if interfaces:
        addrs = [a for a in interfaces if not _is_ipv6_loopback(a)]
        return addrs, _ip_version_for(addrs), addrs
    if bind_host not in _UNSPECIFIED:
        addrs = [] if _is_ipv6_loopback(bind_host) else [bind_host]
        return addrs, _ip_version_for(addrs), addrs
    return InterfaceChoice.All, IPVersion.V4Only, host_ipv4_addresses()


def _server_name() -> str:
    """``<hostname>.local.`` from the first label of the host name (mDNS host names are one label)."""
    label = socket.gethostname().split(".")[0].strip() or "localhost"
    return f"{label}.local."


def _open_zeroconf(interfaces: InterfacesArg, ip_version: IPVersion) -> AsyncZeroconf:
    try:
        return AsyncZeroconf(interfaces=interfaces, ip_version=ip_version)
    except (OSError, ValueError, RuntimeError) as exc:  # bad address, no such interface, 5353 refused
        raise TransportError(f"cannot open zeroconf on {interfaces}: {exc}") from None


class Advertiser:
    """Announces the running bridge on zeroconf; ``async_start`` once, ``async_stop`` any number of times.

    Contract: ``async_start`` returns after both records are probed and announced (about 2-3 s),
    raising :class:`TransportError` if zeroconf cannot open its sockets or refuses the name
    (an instance name is at most 63 bytes). On a name conflict (another bridge, or any service,
    already answers to the instance name under one of the two types) the instance is renamed
    ``name (2)``, ``name (3)``, ... (the DNS-SD convention) rather than failing, with a warning;
    the INFO lines show the final name. ``async_stop``
    withdraws the records (goodbye packets) and closes zeroconf within ~1.5 s; it never raises.
    When there is no usable address (only the IPv6 loopback ``::1``), ``async_start`` logs a
    warning and advertises nothing.
    """

    def __init__(self, config: DiscoveryConfig, *, osc_port: int, http_port: int | None, bind_host: str,
                 version: str) -> None:
        self._config = config
        self._osc_port = osc_port
        self._http_port = http_port
        self._bind_host = bind_host
        self._version = version
        self._azc: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []

    @property
    def properties(self) -> dict[str, str]:
        """The TXT record both services carry."""
        return {
            "txtvers": TXT_VERSION,
            "version": self._version,
            "osc": str(self._osc_port),
            "http": "" if self._http_port is None else str(self._http_port),
            "proto": str(PROTOCOL_VERSION),
        }

    @property
    def registered_names(self) -> list[str]:
        """Full service names as registered (after any conflict renaming)."""
        return [info.name for info in self._infos]

    async def async_start(self) -> None:
        """Register ``_osc._udp`` (and ``_oscjson._tcp`` when there is an HTTP port); wait for the announcements."""
        if self._azc is not None:
            return
        interfaces, ip_version, addresses = advertise_plan(self._config.interfaces, self._bind_host)
        if not addresses:
            log.warning("zeroconf: not advertising: mDNS does not work on the IPv6 loopback ::1"
                        " (bind to 127.0.0.1 or name an interface with --zeroconf-interface)")
            return
        name = self._config.instance_name or socket.gethostname().split(".")[0] or "pose2person"
        services = [(OSC_TYPE, self._osc_port)]
        if self._http_port is not None:
            services.append((OSCJSON_TYPE, self._http_port))
        azc = _open_zeroconf(interfaces, ip_version)
        self._azc = azc
        server = _server_name()
        try:
            wanted, name = name, await _async_free_name(azc, name, [type_ for type_, _ in services])
            if name != wanted:
                log.warning("zeroconf: the name %r is taken (another bridge with the same --name?); advertising "
                            "as %r", wanted, name)
            # Register both first, then wait for both probe+announce sequences together (~2 s, not ~4 s).
            waiters = []
            for type_, port in services:
                info = AsyncServiceInfo(type_, f"{name}.{type_}", port=port, properties=self.properties,
                                        server=server, parsed_addresses=addresses)
                waiters.append(await azc.async_register_service(info, allow_name_change=True))
                self._infos.append(info)
            await asyncio.gather(*waiters)
            for info in self._infos:
                log.info("zeroconf: advertising %r as %s port %d on %s", _instance_name(info.name, info.type),
                         info.type.removesuffix(".local."), info.port, ", ".join(addresses))
        except ZeroconfError as exc:  # e.g. an instance name over 63 bytes
            await self.async_stop()
            raise TransportError(f"cannot advertise {name!r} on zeroconf: {exc}") from None
        except BaseException:
            await self.async_stop()
            raise

    async def async_stop(self) -> None:
        """Withdraw every record and close zeroconf, bounded to ~1.5 s. Idempotent; never raises."""
        azc, self._azc = self._azc, None
        if azc is None:
            return
        self._infos = []

        async def _withdraw() -> None:
            try:
                await azc.async_unregister_all_services()
            finally:
                await azc.async_close()

        try:
            await asyncio.wait_for(_withdraw(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("zeroconf: withdrawal did not finish in %.1f s; going on", STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - shutdown must go on
            log.exception("zeroconf: withdrawal failed")
        else:
            log.debug("zeroconf: withdrawn")


async def _async_taken(azc: AsyncZeroconf, type_: str, instance: str) -> bool:
    """True when some responder answers for ``instance`` under ``type_`` within CONFLICT_CHECK_MS.

    Multicast answers (QM): a unicast answer to port 5353 reaches only one of the sockets that share
    it on this host (SO_REUSEPORT), quite possibly not ours."""
    info = AsyncServiceInfo(type_, f"{instance}.{type_}")
    return await info.async_request(azc.zeroconf, CONFLICT_CHECK_MS, question_type=DNSQuestionType.QM)


async def _async_free_name(azc: AsyncZeroconf, name: str, types: Sequence[str]) -> str:
    """``name``, or the first of ``name (2)``, ``name (3)``, ... that nobody answers for.

    zeroconf's own probing (``allow_name_change``) does not notice a second bridge with the same
    name: it looks in its cache for a PTR record naming the instance, and the other bridge's answers
    to the probe are SRV/TXT/address records, so both would advertise one name and browsers would
    list one of them. So the name is resolved first, as a browser would, under every type.
    """
    for n in range(1, MAX_RENAMES + 1):
        candidate = name if n == 1 else f"{name} ({n})"
        taken = await asyncio.gather(*(_async_taken(azc, type_, candidate) for type_ in types))
        if not any(taken):
            return candidate
    raise TransportError(f"zeroconf: {name!r} and {MAX_RENAMES - 1} renamed variants are all taken")


class NullAdvertiser:
    """Stands in for :class:`Advertiser` when zeroconf is off (``--no-zeroconf``): does nothing."""

    @property
    def registered_names(self) -> list[str]:
        """Always empty: nothing is advertised."""
        return []

    async def async_start(self) -> None:
        """Do nothing."""
        log.debug("zeroconf: disabled, not advertising")

    async def async_stop(self) -> None:
        """Do nothing (idempotent)."""


@dataclass(frozen=True)
class FoundBridge:
    """One instance name seen while browsing, its ``_osc._udp`` and ``_oscjson._tcp`` records merged.

    ``osc_port``/``http_port`` come from the SRV records (``None`` when that type was not seen);
    ``version`` (``""`` for anything that is not a bridge) and ``properties`` from the TXT
    records. :attr:`is_bridge` tells a pose2person bridge from other OSC/OSCQuery services.
    """

    name: str
    addresses: tuple[str, ...]
    osc_port: int | None
    http_port: int | None
    version: str
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        """True when the TXT record has ``proto`` (only pose2person bridges publish it)."""
        return "proto" in self.properties

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field (addresses as a list) plus ``is_bridge``."""
        return {"name": self.name, "addresses": list(self.addresses), "osc_port": self.osc_port,
                "http_port": self.http_port, "version": self.version, "is_bridge": self.is_bridge,
                "properties": dict(self.properties)}


def _instance_name(full_name: str, type_: str) -> str:
    suffix = "." + type_
    return full_name[: -len(suffix)] if full_name.endswith(suffix) else full_name


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _decode_properties(info: AsyncServiceInfo) -> dict[str, str]:
    """TXT entries as ``str -> str``; a key without ``=value`` maps to ``""``; bad UTF-8 is replaced."""
    return {_text(key): _text(value) for key, value in info.properties.items()}


def _merge(resolved: dict[tuple[str, str], AsyncServiceInfo]) -> list[FoundBridge]:
    by_name: dict[str, dict[str, Any]] = {}
    for (type_, full_name), info in resolved.items():
        name = _instance_name(full_name, type_)
        entry = by_name.setdefault(name, {"addresses": [], "osc": None, "http": None, "props": {}})
        for addr in info.parsed_addresses():
            if addr not in entry["addresses"]:
                entry["addresses"].append(addr)
        entry["props"].update(_decode_properties(info))
        if type_ == OSC_TYPE:
            entry["osc"] = info.port
        else:
            entry["http"] = info.port
    found = [
        FoundBridge(name=name, addresses=tuple(sorted(e["addresses"])), osc_port=e["osc"], http_port=e["http"],
                    version=e["props"].get("version", "") if "proto" in e["props"] else "",
                    properties=dict(sorted(e["props"].items())))
        for name, e in by_name.items()
    ]
    return sorted(found, key=lambda f: f.name.lower())


async def async_browse(interfaces: Sequence[str] = (), timeout: float = 3.0) -> list[FoundBridge]:
    """Listen for ``timeout`` seconds and return every OSC/OSCQuery service seen, sorted by name.

    ``interfaces`` restricts browsing to those interface addresses (default: all interfaces,
    IPv4). Services withdrawn during the window are left out; a service whose records could not
    be resolved in time is left out too. Raises :class:`TransportError` when zeroconf cannot
    open its sockets or an interface is the IPv6 loopback ``::1`` (mDNS cannot run there).
    """
    addrs = list(interfaces)
    if any(_is_ipv6_loopback(a) for a in addrs):
        raise TransportError("mDNS does not work on the IPv6 loopback ::1; browse on 127.0.0.1 instead")
    ifaces: InterfacesArg = addrs if addrs else InterfaceChoice.All
    azc = _open_zeroconf(ifaces, _ip_version_for(addrs))
    resolved: dict[tuple[str, str], AsyncServiceInfo] = {}
    pending: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def resolve(key: tuple[str, str]) -> None:
        info = await azc.async_get_service_info(key[0], key[1], timeout=RESOLVE_TIMEOUT_MS)
        if info is not None:
            resolved[key] = info
        else:
            log.debug("zeroconf: could not resolve %s", key[1])

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        log.debug("zeroconf: %s %s", state_change.name, name)
        key = (service_type, name)
        previous = pending.pop(key, None)
        if previous is not None:
            previous.cancel()  # a newer event (update or removal) supersedes that lookup
        if state_change is ServiceStateChange.Removed:
            resolved.pop(key, None)
            return
        task = asyncio.get_running_loop().create_task(resolve(key))
        pending[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if pending.get(key) is done:
                del pending[key]

        task.add_done_callback(forget)

    browser = AsyncServiceBrowser(azc.zeroconf, list(SERVICE_TYPES), handlers=[on_change])
    try:
        await asyncio.sleep(max(0.0, timeout))
        if pending:
            await asyncio.wait(set(pending.values()), timeout=RESOLVE_GRACE_S)
    finally:
        for task in list(pending.values()):
            task.cancel()
        try:
            await asyncio.wait_for(browser.async_cancel(), STOP_TIMEOUT_S)
            await asyncio.wait_for(azc.async_close(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.debug("zeroconf: browser close timed out")
    return _merge(resolved)


def format_table(found: list[FoundBridge]) -> str:
    """A fixed-width text table (header + one row per service); bridges marked ``yes`` in BRIDGE."""
    headers = ("NAME", "ADDRESSES", "OSC", "HTTP", "VERSION", "BRIDGE")
    rows = [
        (f.name, ",".join(f.addresses) or "-", "-" if f.osc_port is None else str(f.osc_port),
         "-" if f.http_port is None else str(f.http_port), f.version or "-", "yes" if f.is_bridge else "no")
        for f in found
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (headers, *rows)]
    return "\n".join(lines)
