"""The OSCQuery/HTTP server: namespace, attributes, HOST_INFO, /health, errors; real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from bridge.config import HttpConfig
from bridge.errors import TransportError
from bridge.protocol import ADDRESSES, PROTOCOL_VERSION
from bridge.transports.http import EXTENSIONS, OscQueryServer, build_namespace

from conftest import start_bridge


def _get(port: int, path: str) -> tuple[int, Any]:
    """(status, parsed JSON body or None) for GET http://127.0.0.1:port<path>."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None


def _server(**kwargs: Any) -> OscQueryServer:
    def value_fn(path: str) -> tuple[Any, ...] | None:
        return ("invert",) if path == "/pose2person/model" else None

    return OscQueryServer(HttpConfig(host="127.0.0.1", port=kwargs.pop("port", 0)), osc_host="127.0.0.1",
                          osc_port_fn=lambda: 9999, name="test bridge",
                          status_fn=lambda: {"status": "ok", "model": "invert"}, value_fn=value_fn, **kwargs)


def _with_server(body: Callable[[OscQueryServer, int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = _server()
        port = await server.async_start()
        try:
            await body(server, port)
        finally:
            await server.async_stop()
            await server.async_stop()  # idempotent

    asyncio.run(main())


def _walk(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {node["FULL_PATH"]: node}
    for child in node.get("CONTENTS", {}).values():
        out.update(_walk(child))
    return out


def test_namespace_root_has_every_address() -> None:
    async def body(server: OscQueryServer, port: int) -> None:
        assert port > 0 and server.port == port
        status, root = await asyncio.to_thread(_get, port, "/")
        assert status == 200
        assert root["FULL_PATH"] == "/" and "pose2person" in root["CONTENTS"]
        nodes = _walk(root)
        for address in ADDRESSES:
            node = nodes[address.path]
            for key in ("FULL_PATH", "TYPE", "ACCESS", "DESCRIPTION"):
                assert key in node, (address.path, key)
            assert node["TYPE"] == max(address.signatures, key=len)
            assert node["ACCESS"] == address.access
            assert node["DESCRIPTION"] == address.description
            assert node["REPLY"] == address.reply
        # containers, and a node that is both a method and a container
        assert "CONTENTS" in nodes["/pose2person/frame"] and "TYPE" not in nodes["/pose2person/frame"]
        register = nodes["/pose2person/register"]
        assert register["TYPE"] == "i" and "host" in register["CONTENTS"]
        assert register["RANGE"] == [{"MIN": 1, "MAX": 65535}]
        assert nodes["/pose2person/models"]["TYPE"] == "" and nodes["/pose2person/models"]["ACCESS"] == 1
        assert nodes["/pose2person/frame/path"]["TYPE"] == "ssi"
        assert nodes["/pose2person/frame/path"]["EXTENDED_TYPE"] == ["filepath", "filepath", ""]
        assert nodes["/pose2person/shm/open"]["RANGE"][0] == {}
        assert nodes["/pose2person/model"]["VALUE"] == ["invert"]
        assert "VALUE" not in nodes["/pose2person/ping"]

    _with_server(body)


def test_subtree_value_and_attributes() -> None:
    async def body(server: OscQueryServer, port: int) -> None:
        status, frame = await asyncio.to_thread(_get, port, "/pose2person/frame")
        assert status == 200 and frame["FULL_PATH"] == "/pose2person/frame"
        assert set(frame["CONTENTS"]) == {"path", "shm"}
        assert frame["CONTENTS"]["shm"]["TYPE"] == "si"
        assert await asyncio.to_thread(_get, port, "/pose2person/model?VALUE") == (200, {"VALUE": ["invert"]})
        assert await asyncio.to_thread(_get, port, "/pose2person/frame/shm?TYPE") == (200, {"TYPE": "si"})
        assert await asyncio.to_thread(_get, port, "/pose2person/model?ACCESS") == (200, {"ACCESS": 3})
        assert await asyncio.to_thread(_get, port, "/pose2person/ping?FULL_PATH") == (
            200, {"FULL_PATH": "/pose2person/ping"})
        status, desc = await asyncio.to_thread(_get, port, "/pose2person/ping?DESCRIPTION")
        assert status == 200 and "pong" in desc["DESCRIPTION"]
        status, rng = await asyncio.to_thread(_get, port, "/pose2person/shm/open?RANGE")
        assert status == 200 and rng["RANGE"][3] == {"VALS": ["BGRA8", "RGBA8", "RGB8", "BGR8", "RGBAF32"]}
        # an attribute the node lacks: 204 No Content
        assert await asyncio.to_thread(_get, port, "/pose2person/ping?VALUE") == (204, None)
        assert await asyncio.to_thread(_get, port, "/pose2person/ping?RANGE") == (204, None)

    _with_server(body)


def test_host_info() -> None:
    async def body(server: OscQueryServer, port: int) -> None:
        status, info = await asyncio.to_thread(_get, port, "/?HOST_INFO")
        assert status == 200
        assert info["NAME"] == "test bridge"
        assert info["OSC_IP"] == "127.0.0.1" and info["OSC_PORT"] == 9999 and info["OSC_TRANSPORT"] == "UDP"
        assert info["PROTOCOL_VERSION"] == PROTOCOL_VERSION
        assert info["EXTENSIONS"] == EXTENSIONS == {
            "ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
            "EXTENDED_TYPE": True, "UNIT": False, "CRITICAL": False, "CLIPMODE": False, "LISTEN": False,
            "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False, "PATH_REMOVED": False}

    _with_server(body)


def test_errors_and_health() -> None:
    async def body(server: OscQueryServer, port: int) -> None:
        status, err = await asyncio.to_thread(_get, port, "/pose2person/nope")
        assert status == 404 and "nope" in err["error"]
        status, err = await asyncio.to_thread(_get, port, "/nothing/here?VALUE")
        assert status == 404
        status, err = await asyncio.to_thread(_get, port, "/pose2person/model?GABBAGABBAHEY")
        assert status == 400 and "GABBAGABBAHEY" in err["error"]
        assert await asyncio.to_thread(_get, port, "/health") == (200, {"status": "ok", "model": "invert"})

    _with_server(body)


def test_port_in_use_raises_transport_error() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            server = _server(port=busy.getsockname()[1])
            with pytest.raises(TransportError, match="cannot bind HTTP"):
                await server.async_start()
            await server.async_stop()  # harmless after a failed start

    asyncio.run(main())


def test_build_namespace_is_static_and_complete() -> None:
    tree = build_namespace()
    assert set(_walk(tree)) >= {a.path for a in ADDRESSES} | {"/", "/pose2person", "/pose2person/shm"}
    assert all("VALUE" not in node for node in _walk(tree).values())


def test_daemon_serves_oscquery_and_health(tmp_path: Path) -> None:
    running = start_bridge(tmp_path, http=True)
    try:
        assert running.http_port is not None
        status, root = _get(running.http_port, "/")
        assert status == 200
        nodes = _walk(root)
        assert nodes["/pose2person/model"]["VALUE"] == ["passthrough"]
        status, health = _get(running.http_port, "/health")  # without the monitor key: liveness only
        assert status == 200 and set(health) == {"status", "version"} and health["status"] == "ok"
        status, health = _get(running.http_port, f"/health?key={running.monitor_key}")
        assert status == 200 and health["status"] == "ok" and health["model"] == "passthrough"
        status, info = _get(running.http_port, "/?HOST_INFO")
        assert status == 200 and info["OSC_PORT"] == running.osc_port
    finally:
        assert running.stop() == 0
