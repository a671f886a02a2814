"""`LocalOnly`: the explorer answers its own page only, told by the ``Host`` and ``Origin`` headers.

Any web site a person visits can make their browser talk to ``127.0.0.1``: open a WebSocket
(the browser sends the site's ``Origin`` but does not block it), post forms, and, after DNS
rebinding (a name of the site's own that resolves to ``127.0.0.1``), send any request with that
name in ``Host``. So, as Jupyter Server does (and Starlette's ``TrustedHostMiddleware`` for
``Host``), every HTTP request and WebSocket must

- name this server in ``Host``: the address its connection arrived on (an IP literal; for a
  loopback address also ``localhost`` and the other loopback literals), at the port it arrived on;
- if it carries an ``Origin`` (browsers always send one on WebSockets and posts), come from that
  same host and port.

``allow_origins`` (``mirage explore --allow-origin URL``) adds origins, and their host names,
for deliberate use: a proxy, another machine's name. A client without ``Origin`` (curl, a
script) passes the ``Host`` check alone. A refused request gets 403 with the reason; a refused
WebSocket is closed before it opens (the browser sees a failed connection).
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from mirage.errors import ConfigError

__all__ = ["LocalOnly", "normalize_origin", "refusal"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
CLOSE_POLICY_VIOLATION = 1008


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    """("name", port) of ``host[:port]`` (IPv6 in brackets), lower case; None when malformed."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.username is not None:
        return None
    return name, port if port is not None else DEFAULT_PORTS[scheme]


def normalize_origin(origin: str) -> str:
    """``scheme://host:port`` of an origin URL (default port written out); :class:`ConfigError`
    for anything that is not an http(s) origin."""
    parts = urlsplit(origin.strip())
    where = _host_port(parts.netloc, parts.scheme) if parts.scheme in ("http", "https") else None
    if where is None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"an allowed origin must look like http://host:port but is {origin!r}")
    name, port = where
    return f"{parts.scheme}://{f'[{name}]' if ':' in name else name}:{port}"


def refusal(scope: dict, allow_origins: frozenset[str] = frozenset()) -> str | None:
    """Why the request of ``scope`` (ASGI http or websocket) is refused, or None to serve it."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    host = headers.get("host", "")
    where = _host_port(host, scheme)
    if where is None:
        return f"the Host header {host!r} is not host[:port]"
    allowed_hosts = {tuple(_host_port(urlsplit(o).netloc, urlsplit(o).scheme)) for o in allow_origins}
    server = scope.get("server") or (None, None)
    own = {server[0]} | (set(LOOPBACK_NAMES) if server[0] and _is_loopback(server[0]) else set())
    if not ((where[0] in own and where[1] == server[1]) or where in allowed_hosts):
        return (f"the Host header {host!r} does not name this server (it serves "
                f"{server[0]}:{server[1]}); a page that reached it under another name is refused")
    origin = headers.get("origin")
    if origin is None:
        return None  # not a browser: the Host check is all there is
    try:
        normalized = normalize_origin(origin)
    except ConfigError:
        return f"the Origin {origin!r} is not this server's"
    name, port = where
    own_origin = f"{scheme}://{f'[{name}]' if ':' in name else name}:{port}"
    if normalized != own_origin and normalized not in allow_origins:
        return f"the Origin {origin!r} is another site's; this server serves its own page only"
    return None


class LocalOnly:
    """ASGI middleware: serve a request only when :func:`refusal` finds no reason not to."""

    def __init__(self, app, allow_origins=()) -> None:
        self.app = app
        self.allow_origins = frozenset(normalize_origin(o) for o in allow_origins)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        reason = refusal(scope, self.allow_origins)
        if reason is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION, "reason": reason[:120]})
            return
        body = json.dumps({"detail": f"refused: {reason}"}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
