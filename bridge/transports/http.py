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
* ``GET /health``: whatever ``status_fn()`` returns (with an ``access`` policy: only
  ``status`` and ``version`` unless the monitor key is presented).
* ``GET /metrics``: ``metrics_fn()``, Prometheus text format 0.0.4 (when given; with an
  ``access`` policy it needs the monitor key).

Unknown paths answer 404 and bad attributes 400, both with a JSON body ``{"error": ...}``.

With an :class:`~bridge.daemon.access.AccessPolicy` (the daemon always gives one), every
request first passes, in this order: ``--allow-client`` (403 ``client_not_allowed``), the
``Host`` allow-list (403 ``host_not_allowed``: DNS rebinding), the ``Origin`` allow-list when
a browser sends one (403 ``origin_not_allowed``), the host's rate budget (429
``rate_limited``), and for the private reads the monitor key (401 ``key_required``; sent as
``?key=`` or ``Authorization: Bearer``). Connections over the connection budget get 503
and are closed before a request is read.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..config import HttpConfig
from ..daemon.access import AccessPolicy
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


def _json_error(status: int, message: str, code: str = "") -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    if code:
        body["code"] = code
    return web.json_response(body, status=status)


#: Paths whose answers are private (camera pictures, figures): they need the monitor key.
PRIVATE_PATHS = frozenset({"/monitor/state", "/metrics"})

_BUSY_BODY = b'{"error": "too many connections; try again later", "status": 503, "code": "too_many_connections"}\n'
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Retry-After: 1\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def presented_key(request: web.Request) -> str | None:
    """The monitor key of a request: ``Authorization: Bearer KEY`` or the ``key`` query parameter."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("key")


def local_address(request: web.Request) -> str | None:
    """The address this request's connection arrived at."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return str(sockname[0]) if sockname else None


def peer_host(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return str(peername[0]) if peername else "?"


class _CappedRunner(web.AppRunner):
    """An AppRunner whose connections are counted in the daemon's connection budget; one over
    it gets a fixed 503 and is closed before anything of it is read."""

    def __init__(self, app: web.Application, access: AccessPolicy, ratelog: RateLimitedLog, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._access = access
        self._ratelog = ratelog

    async def _make_server(self) -> Any:
        server = await super()._make_server()
        budget, access, ratelog = self._access.connections, self._access, self._ratelog
        admitted: dict[Any, str] = {}  # handler -> host, while open
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if peer else "?"
            # A refused connection is closed on the next loop turn, once aiohttp has finished
            # setting it up (closing it inside connection_made leaves its request task without
            # a manager).
            if not access.client_allowed(host):
                asyncio.get_running_loop().call_soon(handler.force_close)  # like OSC: nothing for unlisted hosts
            elif budget.admit("http", host):
                admitted[handler] = host
            else:
                ratelog.log(logging.WARNING, f"http cap {host}", "HTTP connection from %s refused: %d connections "
                            "open (limit %d, %d per host)", host, budget.open, budget.total, budget.per_host)
                transport.write(_BUSY_RESPONSE)
                asyncio.get_running_loop().call_soon(handler.force_close)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            host = admitted.pop(handler, None)
            if host is not None:
                budget.release("http", host)
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost
        return server


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
                 metrics_fn: Callable[[], str] | None = None, access: AccessPolicy | None = None) -> None:
        self._config = config
        self._access = access
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
        runner: web.AppRunner
        if self._access is not None:
            runner = _CappedRunner(self._make_app(), self._access, self._ratelog, access_log=None,
                                   shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        else:
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
        middlewares = [self._error_middleware]
        if self._access is not None:
            middlewares.append(self._access_middleware)
        app = web.Application(middlewares=middlewares)
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
            self._ratelog.log(logging.ERROR, f"http failed {request.path}", "HTTP %s %s failed", request.method,
                              request.path_qs, exc_info=True)
            return _json_error(500, "internal error (see the bridge's log)")
        if response.status >= 400:
            self._ratelog.log(logging.DEBUG, "http client error", "HTTP %s %s -> %d",
                              request.method, request.path_qs, response.status)
        return response

    @web.middleware
    async def _access_middleware(self, request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """The access policy, before any route: who, under which name, from which page, how often,
        and for the private reads, with which key (see the module docstring)."""
        access = self._access
        assert access is not None
        host = peer_host(request)
        local = local_address(request)
        if not access.client_allowed(host):
            return _json_error(403, "client not allowed (--allow-client)", "client_not_allowed")
        if not access.host_header_allowed(request.headers.get("Host"), local):
            self._ratelog.log(logging.WARNING, f"host header {host}", "HTTP from %s with Host %r refused (not a "
                              "name of this bridge; --http-host adds one)", host, request.headers.get("Host"))
            return _json_error(403, "this bridge is not served under that host name (DNS rebinding?); the operator "
                                    "can add it with --http-host", "host_not_allowed")
        if not access.origin_allowed(request.headers.get("Origin"), local):
            self._ratelog.log(logging.WARNING, f"origin {host}", "HTTP from %s with Origin %r refused", host,
                              request.headers.get("Origin"))
            return _json_error(403, "requests from pages of other sites are refused (open the page from the "
                                    "bridge)", "origin_not_allowed")
        if not access.rate.take(host):
            return web.json_response({"error": "too many requests from this host", "status": 429,
                                      "code": "rate_limited"}, status=429, headers={"Retry-After": "1"})
        if request.path in PRIVATE_PATHS and not access.key_ok(presented_key(request)):
            return _json_error(401, "this needs the monitor key: open the monitor URL the bridge printed at start "
                                    "(or send ?key= / Authorization: Bearer <control token>)", "key_required")
        return await handler(request)

    async def _handle_health(self, request: web.Request) -> web.Response:
        status = self._status_fn()
        if self._access is not None and not self._access.key_ok(presented_key(request)):
            # Liveness for anyone who may connect; the figures (clients, paths, counters) with the key.
            return web.json_response({k: status[k] for k in ("status", "version") if k in status})
        return web.json_response(status)

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
