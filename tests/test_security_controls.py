"""The LAN mitigations of docs/SECURITY.md: control token, remote shutdown, rate limit, shm budget."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge.client import BridgeClient, RemoteError
from bridge.osc import encode_message
from conftest import drain, start_bridge, wait_until

P = "/pose2person"


def test_a_control_token_guards_state_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("correct horse battery\n")
    bridge = start_bridge(tmp_path, "--token-file", str(token))
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=5) as client:
            with pytest.raises(RemoteError) as err:
                client.set_model("invert", timeout=5)
            assert err.value.code == "not_authorized"
            assert client.model() == "passthrough"  # asking is not changing: no token needed
            client.ping(1)  # nor is anything else that only concerns this client
            client.send(f"{P}/auth", "wrong token!")
            with pytest.raises(RemoteError) as err:
                client.wait_for(lambda m: m.address == f"{P}/auth/ok", 5)
            assert err.value.code == "not_authorized"
            client.send(f"{P}/auth", "correct horse battery")
            assert client.wait_for(lambda m: m.address == f"{P}/auth/ok", 5).args == (1,)
            assert client.set_model("invert", timeout=5) == "invert"
            client.send(f"{P}/shutdown")
            client.wait_for(lambda m: m.address == f"{P}/shutting_down", 5)
        assert bridge.proc.wait(10) == 0
    finally:
        bridge.stop()


def test_remote_shutdown_needs_a_configured_token(bridge) -> None:  # type: ignore[no-untyped-def]
    with BridgeClient("127.0.0.1", bridge.osc_port, timeout=5) as client:
        client.send(f"{P}/shutdown")
        with pytest.raises(RemoteError) as err:
            client.wait_for(lambda m: m.address == f"{P}/shutting_down", 5)
        assert err.value.code == "not_authorized"
        client.send(f"{P}/auth", "anything at all")  # no token configured: nothing to unlock
        assert client.wait_for(lambda m: m.address == f"{P}/auth/ok", 5).args == (0,)
        assert client.set_model("invert", timeout=5) == "invert"
    assert bridge.proc.poll() is None


def test_a_flooding_host_is_rate_limited_and_others_keep_being_served(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "--rate-limit", "200")
    try:
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.bind(("127.0.0.1", 0))
        ping = encode_message(f"{P}/ping", 1)
        for _ in range(2000):
            flood.sendto(ping, ("127.0.0.1", bridge.osc_port))
        replies = drain(flood, 0.05)
        pongs = sum(r.startswith(f"{P}/pong".encode()) for r in replies)
        limited = sum(b"rate_limited" in r for r in replies)
        assert pongs <= 400  # about one second's worth of burst plus what trickled back in
        assert 1 <= limited <= 5  # told, but not once per dropped packet
        assert any("rate_limited" in line for line in bridge.log_lines) or wait_until(
            lambda: any("rate_limited" in line for line in bridge.log_lines), 2)
        flood.close()
        # The same host again after the bucket refilled: served.
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=5) as client:
            assert wait_until(lambda: client.ping(2) >= 0, 5)
    finally:
        bridge.stop()


def test_the_shared_memory_budget_caps_channel_files(bridge) -> None:  # type: ignore[no-untyped-def]
    with BridgeClient("127.0.0.1", bridge.osc_port, timeout=5) as client:
        client.open_shm("small", 64, 64, "RGBA8")
        # 7680x4320 RGBAF32: 3 slots x 2 files x 531 MB, far over the 2 GiB default budget.
        client.send(f"{P}/shm/open", "huge", 7680, 4320, "RGBAF32")
        with pytest.raises(RemoteError) as err:
            client.wait_for(lambda m: m.address == f"{P}/shm/opened", 5)
        assert err.value.code == "too_many_channels" and "budget" in err.value.message
        assert not any("huge" in p.name for p in bridge.shm_dir.iterdir())
        assert all(p.stat().st_mode & 0o077 == 0 for p in bridge.shm_dir.iterdir())  # owner-only files
