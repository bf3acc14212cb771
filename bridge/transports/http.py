"""HTTP: the OSCQuery namespace (Vidvox OSCQueryProposal, JSON over HTTP GET) and ``/health``.

The namespace is generated from :data:`bridge.protocol.ADDRESSES`, so it cannot drift from
what the dispatcher accepts. Read-only: nothing here changes the bridge's state.

* ``GET /`` (or any OSC path): that node as JSON. Containers have ``FULL_PATH`` and
  ``CONTENTS``; methods have ``FULL_PATH``, ``TYPE``, ``ACCESS``, ``DESCRIPTION``, the custom
  ``REPLY``, and ``RANGE``, ``EXTENDED_TYPE``, ``VALUE`` where they apply. A node can be both
  (``/pose2person/register`` is a method with the child ``host``).
* ``GET /path?ATTR``: ``{"ATTR": value}`` for ``FULL_PATH``, ``CONTENTS``, ``TYPE``, ``ACCESS``,
  ``DESCRIPTION``, ``RANGE``, ``EXTENDED_TYPE``, ``VALUE``; 204 when the node has no such
  attribute; 400 for an attribute name the server does not know.
* ``GET /?HOST_INFO``: name, OSC endpoint, supported extensions, protocol version.
* ``GET /health``: whatever ``status_fn()`` returns.
* ``GET /metrics``: ``metrics_fn()``, Prometheus text format 0.0.4 (when given).

Unknown paths answer 404 and bad attributes 400, both with a JSON body ``{"error": ...}``.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..config import HttpConfig
from ..errors import TransportError
from ..protocol import ADDRESSES, PROTOCOL_VERSION, Address
from ..util.logutil import RateLimitedLog

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 0.5  # open keep-alive connections get this long on stop

#: OSCQuery attributes a client may ask for one at a time (``GET /path?ATTR``).
QUERY_ATTRIBUTES: frozenset[str] = frozenset(
    {"FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "DESCRIPTION", "RANGE", "EXTENDED_TYPE", "VALUE"}
)

#: ``HOST_INFO`` ``EXTENSIONS``: what this server implements (no WebSocket yet, so no LISTEN).
EXTENSIONS: dict[str, bool] = {
    "ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "EXTENDED_TYPE": True,
    "TAGS": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False,
    "LISTEN": False, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False, "PATH_REMOVED": False,
}


def _method_attributes(address: Address) -> dict[str, Any]:
    """The static OSCQuery attributes of one method (everything but ``VALUE``)."""
    attrs: dict[str, Any] = {
        "TYPE": max(address.signatures, key=len) if address.signatures else "",
        "ACCESS": address.access,
        "DESCRIPTION": address.description,
    }
    if address.range is not None:
        attrs["RANGE"] = [{} if r is None else dict(r) for r in address.range]
    if address.extended_type:
        attrs["EXTENDED_TYPE"] = list(address.extended_type)
    if address.reply:
        attrs["REPLY"] = address.reply
    return attrs


def build_namespace(addresses: tuple[Address, ...] = ADDRESSES) -> dict[str, Any]:
    """The static OSCQuery tree rooted at ``/`` (without ``VALUE``s, which are filled per request).

    Every path prefix of an address becomes a node; a node that is an address gets its method
    attributes, a node with children gets ``CONTENTS``, and a node may have both.
    """
    root: dict[str, Any] = {"FULL_PATH": "/"}
    for address in addresses:
        node = root
        path = ""
        for part in address.path.strip("/").split("/"):
            path += "/" + part
            contents = node.setdefault("CONTENTS", {})
            node = contents.setdefault(part, {"FULL_PATH": path})
        node.update(_method_attributes(address))
    root.setdefault("CONTENTS", {})
    return root


def _find(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node = tree
    for part in (p for p in path.split("/") if p):
        child = node.get("CONTENTS", {}).get(part)
        if child is None:
            return None
        node = child
    return node


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


class OscQueryServer:
    """Serves the OSCQuery namespace and ``/health`` on ``config.host:config.port``.

    Contract: ``async_start`` binds (port 0 = any free port) and returns the bound port, or
    raises :class:`TransportError` (port in use, address not available). ``async_stop`` is
    idempotent and closes the listener and open connections within ~0.5 s. ``osc_port_fn``,
    ``status_fn`` and ``value_fn`` are called per request on the event loop; they must be cheap
    and must not block. ``value_fn(path)`` returns the current value tuple of a method, or
    ``None`` when it has none. ``routes(app)``, if given, adds routes before the namespace's
    catch-all (bridge/transports/ws.py: the WebSocket, the web and monitor pages).
    """

    def __init__(self, config: HttpConfig, *, osc_host: str, osc_port_fn: Callable[[], int], name: str,
                 status_fn: Callable[[], dict[str, Any]],
                 value_fn: Callable[[str], tuple[Any, ...] | None] | None = None,
                 routes: Callable[[web.Application], None] | None = None,
                 metrics_fn: Callable[[], str] | None = None) -> None:
        self._config = config
        self._metrics_fn = metrics_fn
        self._routes = routes  # installs more routes (WebSocket, pages) before the catch-all
        self._osc_host = osc_host
        self._osc_port_fn = osc_port_fn
        self._name = name
        self._status_fn = status_fn
        self._value_fn = value_fn
        self._namespace = build_namespace()
        self._method_paths = frozenset(a.path for a in ADDRESSES)
        self._runner: web.AppRunner | None = None
        self._port = config.port
        self._ratelog = RateLimitedLog(log)

    @property
    def port(self) -> int:
        """The bound port after ``async_start`` (before it: the configured one, maybe 0)."""
        return self._port

    # -- lifecycle ------------------------------------------------------------------------
    async def async_start(self) -> int:
        """Bind and serve; returns the bound port. Raises TransportError if the address is unusable."""
        if self._runner is not None:
            return self._port
        runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self._config.host, self._config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise TransportError(
                f"cannot bind HTTP {self._config.host}:{self._config.port}: {reason}"
                " (another bridge running? use --http-port or --no-http)") from None
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break
        return self._port

    async def async_stop(self) -> None:
        """Stop listening and close connections. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- app ------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        """The aiohttp application. Routes more specific than the namespace go before the catch-all."""
        app = web.Application(middlewares=[self._error_middleware])
        app.router.add_get("/health", self._handle_health)
        if self._metrics_fn is not None:
            app.router.add_get("/metrics", self._handle_metrics)
        # (a WebSocket route for OSCQuery LISTEN would be added here, before the catch-all)
        if self._routes is not None:
            self._routes(app)
        app.router.add_get("/{path:.*}", self._handle_namespace)
        return app

    @web.middleware
    async def _error_middleware(self, request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                self._ratelog.log(logging.DEBUG, "http client error", "HTTP %s %s -> %d",
                                  request.method, request.path_qs, exc.status)
                return _json_error(exc.status, exc.reason)
            raise
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path_qs)
            return _json_error(500, "internal error (see the bridge's log)")
        if response.status >= 400:
            self._ratelog.log(logging.DEBUG, "http client error", "HTTP %s %s -> %d",
                              request.method, request.path_qs, response.status)
        return response

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response(self._status_fn())

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        assert self._metrics_fn is not None
        from ..util.metrics import PROMETHEUS_CONTENT_TYPE

        return web.Response(body=self._metrics_fn().encode("utf-8"), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    async def _handle_namespace(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info.get("path", "").strip("/")
        node = _find(self._namespace, path)
        if node is None:
            return _json_error(404, f"no OSC node at {path}")
        query = request.query_string
        if not query:
            return web.json_response(self._with_values(node))
        attribute = query.split("&", 1)[0].split("=", 1)[0].upper()
        if attribute == "HOST_INFO":
            return web.json_response(self._host_info(request))
        if attribute not in QUERY_ATTRIBUTES:
            return _json_error(400, f"unknown attribute {attribute!r}; known: HOST_INFO, "
                                    + ", ".join(sorted(QUERY_ATTRIBUTES)))
        if attribute == "VALUE":
            value = self._value(path)
            if value is None:
                return web.Response(status=204)
            return web.json_response({"VALUE": value})
        if attribute not in node:
            return web.Response(status=204)
        if attribute == "CONTENTS":
            return web.json_response({"CONTENTS": self._with_values(node)["CONTENTS"]})
        return web.json_response({attribute: node[attribute]})

    # -- helpers --------------------------------------------------------------------------
    def _value(self, path: str) -> list[Any] | None:
        if self._value_fn is None or path not in self._method_paths:
            return None
        value = self._value_fn(path)
        return None if value is None else list(value)

    def _with_values(self, node: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``node`` and its subtree with current ``VALUE``s filled in."""
        out = copy.deepcopy(node)
        stack = [out]
        while stack:
            current = stack.pop()
            value = self._value(current["FULL_PATH"])
            if value is not None:
                current["VALUE"] = value
            stack.extend(current.get("CONTENTS", {}).values())
        return out

    def _host_info(self, request: web.Request) -> dict[str, Any]:
        osc_ip = self._osc_host
        if _is_unspecified(osc_ip):
            # Bound to every interface: the address this client reached us at is one it can use.
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            if sockname:
                osc_ip = str(sockname[0])
        return {
            "NAME": self._name,
            "OSC_IP": osc_ip,
            "OSC_PORT": self._osc_port_fn(),
            "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": dict(EXTENSIONS),
            "PROTOCOL_VERSION": PROTOCOL_VERSION,
        }


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
