"""The WebSocket endpoint of a real daemon: frames and OSC in, results and replies out, and
bad input (garbage headers, huge, truncated and abandoned messages) answered without harm."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import numpy as np
import pytest

from bridge.osc import decode_packet, encode_message
from bridge.transports.ws import MAX_MESSAGE_BYTES
from bridge.transports.wsframe import HEADER, HEADER_SIZE, KIND_RESULT, MAGIC, is_frame, pack_frame
from conftest import RunningBridge, start_bridge

P = "/pose2person"


@pytest.fixture
def ws_bridge(tmp_path: Path) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path, "--model", "invert", http=True)
    yield running
    running.stop()


def url(bridge: RunningBridge) -> str:
    return f"http://127.0.0.1:{bridge.http_port}/ws"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def receive(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, Any]:
    """('frame', (header fields, payload)) or ('osc', OscMessage)."""
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    data: bytes = msg.data
    if is_frame(data):
        return "frame", (HEADER.unpack_from(data, 0), data[HEADER_SIZE:])
    (message,) = decode_packet(data)
    return "osc", message


def raw_header(fmt: int = 2, w: int = 2, h: int = 2, size: int | None = None, *, version: int = 1, kind: int = 1,
               origin: int = 0, frame_id: int = 5) -> bytes:
    size = w * h * 4 if size is None else size
    return HEADER.pack(MAGIC, version, kind, fmt, origin, frame_id, w, h, size, 0.0, 0)


def test_frames_round_trip_in_every_layout(ws_bridge: RunningBridge) -> None:
    rng = np.random.default_rng(3)

    async def go() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url(ws_bridge)) as ws:
            for fmt, origin, dtype in (("RGBA8", 0, np.uint8), ("BGRA8", 0, np.uint8), ("RGB8", 1, np.uint8),
                                       ("RGBAF32", 1, np.float32)):
                channels = 3 if fmt == "RGB8" else 4
                if dtype is np.uint8:
                    image = rng.integers(0, 256, (6, 5, channels), dtype=np.uint8)
                    expected = 255 - image
                else:
                    image = rng.random((6, 5, channels), dtype=np.float32)
                    expected = np.float32(1.0) - image
                if channels == 4:
                    expected[..., 3] = image[..., 3]
                await ws.send_bytes(pack_frame(1, fmt, origin, 40 + origin, image))
                kind, (fields, payload) = await receive(ws)
                assert kind == "frame"
                magic, version, k, code, org, frame_id, w, h, size, latency, _ = fields
                assert (magic, version, k, org, frame_id, w, h) == (MAGIC, 1, KIND_RESULT, origin, 40 + origin, 5, 6)
                assert size == len(payload) == image.nbytes and latency > 0
                got = np.frombuffer(payload, dtype=dtype).reshape(image.shape)
                assert np.array_equal(got, expected), fmt

            # OSC packets on the same socket go through the same namespace as UDP.
            await ws.send_bytes(encode_message(f"{P}/ping", 9))
            assert (await receive(ws))[1].args == (9,)
            await ws.send_bytes(encode_message(f"{P}/model", "passthrough"))
            assert (await receive(ws))[1].args == ("passthrough",)
            image = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
            await ws.send_bytes(pack_frame(1, "RGBA8", 0, 2, image))
            _, (_, payload) = await receive(ws)
            assert payload == image.tobytes()

    run(go())


def test_bad_frames_get_documented_errors_and_the_socket_keeps_serving(ws_bridge: RunningBridge) -> None:
    good = pack_frame(1, "RGBA8", 0, 77, np.full((2, 2, 4), 10, np.uint8))
    cases: list[tuple[bytes | str, str, int]] = [
        (MAGIC + b"\x01\x01", "ws_bad_frame", -1),  # shorter than a header
        (raw_header(version=9) + bytes(16), "ws_bad_frame", 5),
        (raw_header(kind=2) + bytes(16), "ws_bad_frame", 5),  # a result frame sent back
        (raw_header(fmt=42) + bytes(16), "ws_bad_frame", 5),
        (raw_header(origin=3) + bytes(16), "ws_bad_frame", 5),
        (raw_header(size=15) + bytes(15), "ws_bad_frame", 5),  # size disagrees with 2x2 RGBA8
        (raw_header() + bytes(9), "ws_bad_frame", 5),  # truncated payload
        (raw_header() + bytes(17), "ws_bad_frame", 5),  # overlong payload
        (raw_header(w=0), "bad_dimensions", 5),
        (raw_header(w=60000, h=60000, size=0), "image_too_large", 5),  # refused before any allocation
        (b"\x00garbage that is not OSC", "malformed_packet", -1),
        ("a text message", "malformed_packet", -1),
        (encode_message(f"{P}/nothing"), "unknown_address", -1),
    ]

    async def go() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url(ws_bridge)) as ws:
            for data, code, frame_id in cases:
                if isinstance(data, str):
                    await ws.send_str(data)
                else:
                    await ws.send_bytes(data)
                kind, message = await receive(ws)
                assert kind == "osc" and message.address == f"{P}/error", (data[:40], message)
                assert message.args[:2] == (frame_id, code), (data[:40], message.args)
            await ws.send_bytes(good)
            kind, (fields, payload) = await receive(ws)
            assert kind == "frame" and fields[5] == 77 and payload == bytes([245, 245, 245, 10]) * 4

    run(go())
    assert ws_bridge.alive()
    log = ws_bridge.log_text()
    assert "ws_bad_frame from WebSocket" in log and "Traceback" not in log


def test_huge_message_closes_only_that_connection(ws_bridge: RunningBridge) -> None:
    """A message over the limit is refused from its WebSocket length field, before the bridge
    buffers it: close code 1009 ("message too big"); other connections are unaffected."""
    assert ws_bridge.http_port is not None
    sock = _handshake(ws_bridge.http_port)
    size = MAX_MESSAGE_BYTES + HEADER_SIZE + 1
    sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size) + bytes(4) +
                 raw_header(w=4096, h=4097, size=4096 * 4097 * 4) + bytes(60_000))
    reply = b""
    try:
        while len(reply) < 4:
            chunk = sock.recv(100)
            if not chunk:
                break
            reply += chunk
    except ConnectionError:
        pass
    sock.close()
    assert reply[:1] == b"\x88" and struct.unpack(">H", reply[2:4])[0] == 1009, reply

    async def go() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url(ws_bridge)) as ws:
            await ws.send_bytes(encode_message(f"{P}/ping", 1))
            assert (await receive(ws))[1].args == (1,)

    run(go())
    assert ws_bridge.alive() and "Traceback" not in ws_bridge.log_text()


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def test_client_vanishing_mid_frame(ws_bridge: RunningBridge) -> None:
    """A client that dies half-way through a 1 MB frame costs nothing but that frame."""
    assert ws_bridge.http_port is not None
    for _ in range(3):
        sock = _handshake(ws_bridge.http_port)
        payload = raw_header(w=512, h=512) + bytes(512 * 512 * 4)
        mask = os.urandom(4)
        head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", len(payload)) + mask
        half = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:4096]))
        sock.sendall(head + half)
        sock.close()

    async def go() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url(ws_bridge)) as ws:
            await ws.send_bytes(pack_frame(1, "RGBA8", 0, 3, np.zeros((2, 2, 4), np.uint8)))
            kind, (fields, _) = await receive(ws)
            assert kind == "frame" and fields[5] == 3

    run(go())
    assert ws_bridge.alive() and "Traceback" not in ws_bridge.log_text()


def test_latest_frame_wins_over_websocket(tmp_path: Path) -> None:
    running = start_bridge(tmp_path, "--model", "throttle:300", http=True)
    try:
        async def go() -> list[tuple[str, Any]]:
            async with aiohttp.ClientSession() as session, session.ws_connect(url(running)) as ws:
                frame = np.zeros((2, 2, 4), np.uint8)
                await ws.send_bytes(pack_frame(1, "RGBA8", 0, 1, frame))
                await asyncio.sleep(0.1)  # the worker has taken frame 1 (condition: it sleeps 300 ms in it)
                for frame_id in (2, 3):
                    await ws.send_bytes(pack_frame(1, "RGBA8", 0, frame_id, frame))
                return [await receive(ws) for _ in range(3)]

        replies = run(go())
        dropped = [m for kind, m in replies if kind == "osc"]
        frames = [fields[5] for kind, (fields, _) in ((k, v) for k, v in replies if k == "frame")]
        assert [(m.address, m.args) for m in dropped] == [(f"{P}/frame/dropped", (2, 3))]
        assert frames == [1, 3]
    finally:
        running.stop()


def test_cross_origin_pages_are_refused(ws_bridge: RunningBridge) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(url(ws_bridge), headers={"Origin": "http://evil.example"})
            assert info.value.status == 403
            own = f"http://127.0.0.1:{ws_bridge.http_port}"
            async with session.ws_connect(url(ws_bridge), headers={"Origin": own}) as ws:
                await ws.send_bytes(encode_message(f"{P}/ping", 4))
                assert (await receive(ws))[1].args == (4,)

    run(go())


def test_monitor_state_reports_ws_clients(ws_bridge: RunningBridge) -> None:
    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url(ws_bridge)) as ws:
                await ws.send_bytes(pack_frame(1, "BGRA8", 0, 8, np.zeros((40, 30, 4), np.uint8)))
                await receive(ws)
                await ws.send_bytes(raw_header(fmt=42))
                await receive(ws)
            base = f"http://127.0.0.1:{ws_bridge.http_port}"
            async with session.get(f"{base}/monitor", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/web/monitor.html"
            async with session.get(f"{base}/web/monitor.html") as r:
                assert r.status == 200 and "pose2person monitor" in await r.text()
            async with session.get(f"{base}/web/../bridge/server.py") as r:
                assert r.status in (403, 404)
            async with session.get(f"{base}/monitor/state") as r:
                assert r.status == 401 and (await r.json())["code"] == "key_required"  # camera pictures: key only
            async with session.get(f"{base}/monitor?key=abc", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/web/monitor.html?key=abc"
            async with session.get(ws_bridge.url("/monitor/state")) as r:
                return await r.json()  # type: ignore[no-any-return]

    state = run(go())
    (client,) = [c for c in state["clients"] if c["client"].startswith("ws ")]
    assert (client["frames"], client["errors"], client["last_error"]) == (1, 1, "ws_bad_frame")
    assert client["thumbs"]["input"].startswith("data:image/jpeg;base64,") and client["thumbs"]["pose"] is None
    assert (client["width"], client["height"], client["format"]) == (30, 40, "BGRA8")
    assert state["errors"][0]["code"] == "ws_bad_frame"
    assert state["model"] == "invert" and state["totals"]["processed"] == 1
    assert "invert" in state["loaded"] and "passthrough" in state["models"]


def test_shutdown_closes_open_websockets_promptly(tmp_path: Path) -> None:
    running = start_bridge(tmp_path, "--model", "invert", http=True)

    async def go() -> int | None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url(running)) as ws:
            await ws.send_bytes(encode_message(f"{P}/ping", 1))
            await receive(ws)
            stopping = asyncio.get_running_loop().run_in_executor(None, running.stop)
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
            assert await stopping == 0
            return ws.close_code

    try:
        assert run(go()) == 1001  # "going away"
        assert "stopped" in running.log_text() and "Traceback" not in running.log_text()
    finally:
        running.stop()
