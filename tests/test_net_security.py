"""Issue 17: the network surfaces under attack (docs/SECURITY.md, "Network surfaces").

Each test reproduces one finding of the issue against a real daemon subprocess on 127.0.0.1
(other "hosts" are other loopback addresses, 127.0.0.2 and up) and checks the fix: DNS
rebinding, the monitor and figures behind the key and ``--allow-client``, authorisation per
connection, work budgets per message, bundle and reply, WebSocket caps, descriptor
exhaustion, test stages behind ``--test-models``, and one-line, rate-limited logs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import os
import re
import resource
import socket
import struct
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.client import BridgeClient, RemoteError
from bridge.daemon.access import machine_names
from bridge.osc import decode_packet, encode_bundle, encode_message
from bridge.transports.ws import WsPeer
from conftest import RunningBridge, drain, start_bridge, wait_until

P = "/pose2person"


def http_get(port: int, path: str, *, host: str | None = None, headers: dict[str, str] | None = None,
             source: str = "127.0.0.1") -> tuple[int, dict[str, Any] | None]:
    """(status, JSON body or None) of one raw GET with exactly the ``Host`` a browser would send;
    status 0 when the bridge closed the connection without answering."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def errors_of(packets: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for data in packets:
        for msg in decode_packet(data):
            if msg.address == f"{P}/error":
                out.append((str(msg.args[1]), str(msg.args[2])))
    return out


def pong(client: BridgeClient, token: int) -> None:
    """Ping and wait for the pong, passing over the error replies expected on the way."""
    client.send(f"{P}/ping", token)
    client.wait_for(lambda m: m.address == f"{P}/pong" and m.args == (token,), 10, error_for=lambda e: False)


TOKEN = "correct horse battery"


def start_with_token(tmp_path: Path) -> RunningBridge:
    """A daemon whose control token (``--token-file``) is :data:`TOKEN`."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return start_bridge(tmp_path, "--token-file", str(token))


def udp(source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((source, 0))
    return sock


# -- 1. DNS rebinding: Host and Origin allow-list --------------------------------------------------

@pytest.fixture
def web_daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    running = start_bridge(tmp_path, "--http-host", "show.example", http=True)
    yield running
    running.stop()


def test_a_rebound_dns_name_gets_nothing(web_daemon: RunningBridge) -> None:
    port = web_daemon.http_port
    assert port is not None
    evil = f"rebind.evil.example:{port}"
    status, body = http_get(port, web_daemon.url("/monitor/state").split(str(port), 1)[1], host=evil)
    assert status == 403 and body is not None and body["code"] == "host_not_allowed"
    assert http_get(port, "/?HOST_INFO", host=evil)[0] == 403
    # The same page, once its name points here, opening the WebSocket: refused too.
    async def handshake(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws", headers=headers) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
    assert asyncio.run(handshake({"Host": evil, "Origin": f"http://{evil}"})) == 403
    assert asyncio.run(handshake({"Origin": f"http://{evil}"})) == 403  # the right Host, a foreign page
    assert asyncio.run(handshake({"Origin": "null"})) == 403
    assert asyncio.run(handshake({"Origin": f"http://localhost:{port}"})) == 101
    assert asyncio.run(handshake({})) == 101  # tools send no Origin
    # The names of this machine and --http-host additions are served.
    for name in ("localhost", "127.0.0.1", "show.example", *sorted(machine_names())):
        assert http_get(port, "/?HOST_INFO", host=f"{name}:{port}")[0] == 200, name
    assert http_get(port, "/?HOST_INFO", host="[::1]")[0] == 200
    status, body = http_get(port, "/health", host=evil, headers={"Origin": f"http://{evil}"})
    assert status == 403
    assert web_daemon.alive()


# -- 2. private reads need the key; --allow-client on every surface ---------------------------------

def test_the_monitor_and_figures_need_the_key_and_allow_client(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a long enough token\n")
    daemon = start_bridge(tmp_path, "--token-file", str(token), "--allow-client", "127.0.0.2/32", http=True)
    try:
        port = daemon.http_port
        assert port is not None and daemon.monitor_key is None  # the token is the key: never printed
        assert "/monitor?key=<the control token>" in daemon.log_text()
        assert "a long enough token" not in daemon.log_text()
        # 127.0.0.1 is not an allowed client: nothing, on any surface.
        for path in ("/monitor/state", "/health", "/metrics", "/", "/web/index.html"):
            assert http_get(port, path)[0] == 0, path
        with BridgeClient("127.0.0.1", daemon.osc_port, timeout=0.5) as outsider:
            with pytest.raises(TimeoutError):
                outsider.ping(1)
        # 127.0.0.2 may connect; its private reads need the token.
        allowed = "127.0.0.2"
        status, body = http_get(port, "/monitor/state", source=allowed)
        assert status == 401 and body is not None and body["code"] == "key_required"
        assert http_get(port, "/metrics", source=allowed)[0] == 401
        status, health = http_get(port, "/health", source=allowed)
        assert status == 200 and set(health or {}) == {"status", "version"}
        assert http_get(port, "/monitor/state?key=wrong-key-here", source=allowed)[0] == 401
        bearer = {"Authorization": "Bearer a long enough token"}
        status, state = http_get(port, "/monitor/state", source=allowed, headers=bearer)
        assert status == 200 and state is not None and "clients" in state
        status, health = http_get(port, "/health", source=allowed, headers=bearer)
        assert status == 200 and health is not None and health["model"] == "passthrough"
        assert http_get(port, "/?HOST_INFO", source=allowed)[0] == 200  # OSCQuery stays open
        with BridgeClient("127.0.0.1", daemon.osc_port, timeout=5, bind=(allowed, 0)) as client:
            assert client.ping(2) >= 0
        assert "Traceback" not in daemon.log_text() and daemon.alive()
    finally:
        daemon.stop()


def test_without_a_token_the_key_is_random_and_printed(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, http=True)
    try:
        port = daemon.http_port
        assert port is not None and daemon.monitor_key and len(daemon.monitor_key) >= 20
        assert http_get(port, "/monitor/state")[0] == 401
        status, state = http_get(port, f"/monitor/state?key={daemon.monitor_key}")
        assert status == 200 and state is not None and "totals" in state
    finally:
        daemon.stop()
    again = start_bridge(tmp_path, http=True)  # a new key at each start
    try:
        assert again.monitor_key and again.monitor_key != daemon.monitor_key
    finally:
        again.stop()


def test_no_monitor_keeps_no_pictures(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a long enough token\n")
    daemon = start_bridge(tmp_path, "--no-monitor", "--token-file", str(token), http=True)
    try:
        port = daemon.http_port
        assert port is not None and "/monitor?key=" not in daemon.log_text()
        assert http_get(port, "/monitor/state", headers={"Authorization": "Bearer x"})[0] == 401
        status, body = http_get(port, "/monitor/state", headers={"Authorization": "Bearer a long enough token"})
        assert status == 404 and body is not None and "--no-monitor" in body["error"]
        with daemon.client() as client:  # a frame passes; nothing of it is kept for a monitor
            from PIL import Image

            Image.new("RGB", (16, 16), (1, 2, 3)).save(daemon.root / "in.png")
            client.process_path(str(daemon.root / "in.png"), str(daemon.root / "out.png"), 1)
    finally:
        daemon.stop()


# -- 2b. authorisation per connection, not per host --------------------------------------------------

def test_authorisation_belongs_to_one_address_and_port(tmp_path: Path) -> None:
    daemon = start_with_token(tmp_path)
    try:
        with daemon.client() as tool, daemon.client() as page:  # one host, two sockets
            tool.send(f"{P}/auth", TOKEN)
            assert tool.wait_for(lambda m: m.address == f"{P}/auth/ok", 5).args == (1,)
            with pytest.raises(RemoteError) as err:
                page.set_model("invert", timeout=5)  # the other socket of that host inherits nothing
            assert err.value.code == "not_authorized"
            assert tool.set_model("invert", timeout=10) == "invert"
        # TCP: authorisation ends with the connection.
        with socket.create_connection(("127.0.0.1", daemon.osc_port), timeout=5) as tcp:
            tcp.sendall(_framed(encode_message(f"{P}/model", "passthrough")))
            assert ("not_authorized" in str(errors_of([_read_framed(tcp)])))
    finally:
        daemon.stop()


def _framed(packet: bytes) -> bytes:
    return struct.pack(">i", len(packet)) + packet


def _read_framed(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    size = struct.unpack(">i", head)[0]
    body = b""
    while len(body) < size:
        body += sock.recv(size - len(body))
    return body


# -- 3. work budgets ---------------------------------------------------------------------------------

def test_one_datagram_buys_no_more_than_its_messages(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, "--rate-limit", "300")
    try:
        attacker, other = udp("127.0.0.2"), udp("127.0.0.1")
        dest = ("127.0.0.1", daemon.osc_port)
        # 2,000 /models in one datagram (the 14 s freeze): refused whole, one answer.
        flood = encode_bundle([encode_message(f"{P}/models")] * 2000)
        assert len(flood) < 65507
        attacker.sendto(flood, dest)
        got = drain(attacker)
        assert [code for code, _ in errors_of(got)] == ["bundle_too_large"] and len(got) == 1
        # 64 unknown addresses (the most a bundle may hold): the answers stay near the request's size.
        junk = encode_bundle([encode_message("/a")] * 64)
        attacker.sendto(junk, dest)
        got = drain(attacker)
        codes = [code for code, _ in errors_of(got)]
        assert codes.count("unknown_address") < 64 and codes[-1] == "too_many_replies"
        assert sum(len(g) for g in got) <= 4096 + 512
        # The budget counts messages: 300/s buys five bundles of 64 pings at most, then rate_limited.
        pings = encode_bundle([encode_message(f"{P}/ping", i) for i in range(60)])
        time.sleep(1.1)  # a full bucket
        for _ in range(8):
            attacker.sendto(pings, dest)
        got = drain(attacker)
        pongs = sum(m.address == f"{P}/pong" for g in got for m in decode_packet(g))
        assert pongs <= 300 + 60 and "rate_limited" in [c for c, _ in errors_of(got)]
        # Another host was never held up.
        other.sendto(encode_message(f"{P}/ping", 7), dest)
        other.settimeout(5)
        assert decode_packet(other.recv(2048))[0].args == (7,)
    finally:
        daemon.stop()


class _Inotify:
    """Counts opens and reads under a folder (Linux inotify through libc): proof that the
    daemon did or did not touch its model folders."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, *paths: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        for path in paths:
            self._libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_ACCESS | self.IN_OPEN)

    def events(self) -> int:
        count = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return count
            pos = 0
            while pos < len(data):
                name_len = struct.unpack_from("iIII", data, pos)[3]
                pos += 16 + name_len
                count += 1

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="inotify is Linux only")
def test_naming_models_never_reads_the_model_folders(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "mine").mkdir(parents=True)
    (models / "mine" / "card.toml").write_text("not a card\n")
    daemon = start_bridge(tmp_path, "--models-dir", str(models))
    watch = _Inotify(models, models / "mine")
    try:
        with daemon.client() as client:
            client.ping(1)
            watch.events()  # what start-up and a refresh did so far
            for i in range(300):
                client.send(f"{P}/model", f"nosuchmodel{i}")
                client.send(f"{P}/models")
                if i % 50 == 49:
                    pong(client, i)  # paced below the rate budget
            pong(client, 9999)
            touched = watch.events()
        # Before: every name re-read every card (600 scans here); now a timer refresh at most.
        assert touched <= 20, touched
    finally:
        watch.close()
        daemon.stop()


def test_the_monitor_state_is_computed_a_few_times_a_second(web_daemon: RunningBridge) -> None:
    url = web_daemon.url("/monitor/state")

    async def hammer() -> tuple[set[float], float]:
        seen: set[float] = set()
        async with aiohttp.ClientSession() as session:
            t0 = time.monotonic()
            for _ in range(40):
                async with session.get(url) as r:
                    seen.add((await r.json())["generated"])
            return seen, time.monotonic() - t0

    seen, elapsed = asyncio.run(hammer())
    assert len(seen) <= elapsed * 4 + 2, (len(seen), elapsed)


# -- 4. WebSocket caps ----------------------------------------------------------------------------------

def test_websockets_are_capped_per_host_and_reopen(web_daemon: RunningBridge) -> None:
    url = f"http://127.0.0.1:{web_daemon.http_port}/ws"

    async def go() -> tuple[int, int, int]:
        async with aiohttp.ClientSession() as session:
            opened, refused = [], 0
            for _ in range(14):
                try:
                    opened.append(await session.ws_connect(url))
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 503
                    refused += 1
            count = len(opened)
            await opened.pop().close()
            await asyncio.sleep(0.2)
            again = await session.ws_connect(url)  # a closed one makes room
            await again.send_bytes(encode_message(f"{P}/ping", 3))
            reply = await again.receive(timeout=5)
            assert decode_packet(reply.data)[0].args == (3,)
            for ws in [*opened, again]:
                await ws.close()
            return count, refused, len(opened)

    count, refused, _ = asyncio.run(go())
    assert count == 4 and refused == 10  # 32 in all, an eighth per host
    assert web_daemon.alive()


def test_a_client_that_never_reads_holds_a_bounded_queue() -> None:
    async def go() -> WsPeer:
        peer = WsPeer("127.0.0.1", 1, max_bytes=16 * 1024 * 1024)
        for _ in range(32):
            peer.reply(bytes(8 * 1024 * 1024))  # 8 MiB results nobody reads
        return peer

    peer = asyncio.run(go())
    assert peer.queued_bytes <= 16 * 1024 * 1024 and peer.dropped_replies == 30
    lone = WsPeer("127.0.0.1", 2, max_bytes=1024)
    lone.reply(bytes(4096))  # an empty queue takes one message of any size
    assert lone.queued_bytes == 4096 and lone.dropped_replies == 0


# -- 5. descriptor exhaustion -------------------------------------------------------------------------

FD_LIMIT = 200


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_idle_connections_cannot_use_up_the_descriptors(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, http=True, preexec_fn=_low_fd_limit)
    conns: list[socket.socket] = []
    try:
        limit = int(re.search(r"(\d+) client connections at most", daemon.log_text()).group(1))  # type: ignore[union-attr]
        assert limit < FD_LIMIT
        refused = 0
        for i in range(FD_LIMIT + 50):  # more idle connections than the daemon has descriptors
            sock = socket.create_connection(("127.0.0.1", daemon.osc_port), timeout=5,
                                            source_address=(f"127.0.0.{2 + i % 4}", 0))
            conns.append(sock)
        for sock in conns[-20:]:
            sock.settimeout(5)
            try:
                if b"too_many_connections" in _read_framed(sock):
                    refused += 1
            except (OSError, struct.error):
                pass
        assert refused == 20
        # Everyone else is still served: OSC, a path frame, a channel, HTTP.
        from PIL import Image

        Image.new("RGB", (8, 8), (9, 9, 9)).save(daemon.root / "in.png")
        with daemon.client() as client:
            assert client.ping(1) >= 0
            client.process_path(str(daemon.root / "in.png"), str(daemon.root / "out.png"), 2)
            session = client.open_shm("fdtest", 8, 8, "BGRA8")
            client.close_shm(session)
        status, health = http_get(daemon.http_port or 0, daemon.url("/health").split(str(daemon.http_port), 1)[1])
        assert status == 200 and health is not None and health["connections"]["refused"] >= 20
        assert "Traceback" not in daemon.log_text()
        assert sum("Too many open files" in line for line in daemon.log_lines) <= 5
    finally:
        for sock in conns:
            sock.close()
        daemon.stop()


# -- 6. test stages only with --test-models -------------------------------------------------------

def test_test_stages_are_not_on_the_wire_without_the_flag(tmp_path: Path) -> None:
    daemon = start_bridge(tmp_path, test_models=False)
    try:
        with daemon.client() as client:
            names = client.models()
            assert "fault" not in names and "throttle" not in names and names[:2] == ["passthrough", "invert"]
            for spec in ("fault:hang-after:0", "throttle:5000", "fault:raise"):
                with pytest.raises(RemoteError) as err:
                    client.set_model(spec, timeout=5)
                assert err.value.code == "unknown_model"
            assert client.model() == "passthrough"
    finally:
        daemon.stop()


# -- 7. logs: one record, one line; rate limited per key ----------------------------------------------

def test_logs_cannot_be_forged_or_flooded(tmp_path: Path) -> None:
    daemon = start_with_token(tmp_path)
    try:
        with daemon.client() as client:
            client.send(f"{P}/frame/path", "/nowhere\n05:00:00 WARNING bridge: forged line", 1)
            with pytest.raises(RemoteError):
                client.wait_for(lambda m: False, 2)
            for _ in range(300):
                client.send(f"{P}/auth", "not the token")
            registering = udp()  # its replies go elsewhere once registered: a socket of its own
            for port in range(100):
                registering.sendto(encode_message(f"{P}/register", 20000 + port), ("127.0.0.1", daemon.osc_port))
            registering.close()
            pong(client, 1)
            wait_until(lambda: any("\\n05:00:00 WARNING" in ln for ln in daemon.log_lines), 3)
        assert not any(ln.startswith("05:00:00") for ln in daemon.log_lines)
        assert any("\\n05:00:00 WARNING bridge: forged line" in ln for ln in daemon.log_lines)
        assert sum("wrong control token" in ln for ln in daemon.log_lines) <= 5
        assert sum("registered reply port" in ln for ln in daemon.log_lines) <= 5
        assert len(daemon.log_lines) < 60
    finally:
        daemon.stop()


def test_wrong_tokens_are_refused_unchecked_after_ten_a_minute(tmp_path: Path) -> None:
    daemon = start_with_token(tmp_path)
    try:
        with daemon.client() as client:
            for _ in range(10):
                client.send(f"{P}/auth", "guess guess guess")
            pong(client, 1)
            client.send(f"{P}/auth", TOKEN)  # even the right one, this minute
            with pytest.raises(RemoteError) as err:
                client.wait_for(lambda m: m.address == f"{P}/auth/ok", 5,
                                error_for=lambda e: "not checked" in e.message)
            assert err.value.code == "not_authorized"
    finally:
        daemon.stop()
