"""Zeroconf advertise/browse on 127.0.0.1 only (never another interface), and `pose2person discover`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import pytest
from zeroconf import InterfaceChoice, IPVersion

from bridge.config import DiscoveryConfig
from bridge.daemon.discovery import (Advertiser, FoundBridge, NullAdvertiser, advertise_plan, async_browse, format_table,
                              host_ipv4_addresses)
from bridge.errors import TransportError

from conftest import REPO, start_bridge

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh event loop (no pytest-asyncio)."""
    return asyncio.run(coro)


def _unique_name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_advertise_browse_withdraw() -> None:
    name = _unique_name("p2p-test")

    async def main() -> None:
        adv = Advertiser(DiscoveryConfig(interfaces=(LOOPBACK,), instance_name=name),
                         osc_port=19400, http_port=19401, bind_host=LOOPBACK, version="9.8.7")
        await adv.async_start()
        try:
            found = {f.name: f for f in await async_browse([LOOPBACK], timeout=2.0)}
            assert name in found, list(found)
            bridge = found[name]
            assert bridge.osc_port == 19400 and bridge.http_port == 19401
            assert bridge.version == "9.8.7" and bridge.is_bridge
            assert bridge.addresses == (LOOPBACK,)
            assert bridge.properties["txtvers"] == "1" and bridge.properties["proto"] == "1"
            assert bridge.properties["osc"] == "19400" and bridge.properties["http"] == "19401"
            assert name in format_table([bridge])
        finally:
            started = time.monotonic()
            await adv.async_stop()
            assert time.monotonic() - started < 2.0  # shutdown budget
            await adv.async_stop()  # idempotent
        after = await async_browse([LOOPBACK], timeout=1.0)
        assert name not in [f.name for f in after]

    run(main())


def test_advertise_without_http_port() -> None:
    name = _unique_name("p2p-nohttp")

    async def main() -> None:
        adv = Advertiser(DiscoveryConfig(interfaces=(LOOPBACK,), instance_name=name),
                         osc_port=19402, http_port=None, bind_host=LOOPBACK, version="1.0")
        await adv.async_start()
        try:
            found = {f.name: f for f in await async_browse([LOOPBACK], timeout=1.5)}
        finally:
            await adv.async_stop()
        assert found[name].osc_port == 19402 and found[name].http_port is None
        assert found[name].properties["http"] == ""

    run(main())


def test_advertise_plan() -> None:
    assert advertise_plan(("127.0.0.1",), "0.0.0.0") == (["127.0.0.1"], IPVersion.V4Only, ["127.0.0.1"])
    assert advertise_plan((), "127.0.0.1") == (["127.0.0.1"], IPVersion.V4Only, ["127.0.0.1"])
    interfaces, version, addresses = advertise_plan((), "0.0.0.0")
    assert interfaces is InterfaceChoice.All and version is IPVersion.V4Only
    assert addresses == host_ipv4_addresses() and addresses
    assert addresses == ["127.0.0.1"] or not any(a.startswith("127.") for a in addresses)  # loopback only as fallback
    # mDNS cannot run on the IPv6 loopback: nothing to advertise on
    assert advertise_plan((), "::1")[2] == []
    assert advertise_plan(("::1", "127.0.0.1"), "::1")[2] == ["127.0.0.1"]


def test_ipv6_loopback_is_not_advertised_nor_browsed() -> None:
    adv = Advertiser(DiscoveryConfig(instance_name="unused"), osc_port=1, http_port=None, bind_host="::1",
                     version="0")

    async def main() -> None:
        await adv.async_start()  # a warning, no sockets
        assert adv.registered_names == []
        await adv.async_stop()
        with pytest.raises(TransportError, match="::1"):
            await async_browse(["::1"], timeout=0.1)

    run(main())


def test_null_advertiser() -> None:
    null = NullAdvertiser()

    async def main() -> None:
        await null.async_start()
        await null.async_stop()
        await null.async_stop()

    run(main())
    assert null.registered_names == []


def test_found_bridge_flag_and_json() -> None:
    bridge = FoundBridge("b", (LOOPBACK,), 1, 2, "0.1.0", {"proto": "1", "txtvers": "1"})
    other = FoundBridge("o", (), 3, None, "", {"txtvers": "1"})
    assert bridge.is_bridge and not other.is_bridge
    as_json = json.loads(json.dumps(bridge.as_dict()))
    assert as_json == {"name": "b", "addresses": [LOOPBACK], "osc_port": 1, "http_port": 2, "version": "0.1.0",
                       "is_bridge": True, "properties": {"proto": "1", "txtvers": "1"}}


def test_format_table() -> None:
    rows = [FoundBridge("studio A", ("10.0.0.2",), 9400, 9401, "0.1.0", {"proto": "1"}),
            FoundBridge("other tool", (), None, 5678, "", {})]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["NAME", "ADDRESSES", "OSC", "HTTP", "VERSION", "BRIDGE"]
    assert "studio A" in table[1] and "9400" in table[1] and table[1].endswith("yes")
    assert "other tool" in table[2] and table[2].endswith("no")
    assert format_table([]).startswith("NAME")


def test_discover_cli_finds_daemon(tmp_path: Path) -> None:
    name = _unique_name("p2p-e2e")
    running = start_bridge(tmp_path, "--name", name, zeroconf=True, http=True)
    try:
        assert running.http_port is not None
        proc = subprocess.run([sys.executable, "-m", "bridge", "discover", "--interface", LOOPBACK,
                               "--timeout", "2", "--json"], capture_output=True, text=True, cwd=REPO, timeout=30)
        assert proc.returncode == 0, proc.stderr
        found = {entry["name"]: entry for entry in json.loads(proc.stdout)}
        assert name in found, proc.stdout
        entry = found[name]
        assert entry["osc_port"] == running.osc_port and entry["http_port"] == running.http_port
        assert entry["is_bridge"] is True and LOOPBACK in entry["addresses"]
    finally:
        assert running.stop() == 0
    assert "zeroconf: advertising" in running.log_text()


def test_discover_bad_interface_is_refused() -> None:
    from bridge.cli.discover import run_discover
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError):
        run_discover(["not-an-address"], 1.0, False)
