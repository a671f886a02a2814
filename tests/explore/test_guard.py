"""The explorer serves its own page only: foreign ``Host`` (DNS rebinding) and ``Origin`` (another
site's page) are refused on every route and on the WebSocket; the page's own requests pass."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from mirage.errors import ConfigError
from mirage.explore.config import ExploreConfig
from mirage.explore.guard import normalize_origin, refusal

from .conftest import opened


def scope(host: str | None, origin: str | None = None, server=("127.0.0.1", 8000), kind="http") -> dict:
    headers = [] if host is None else [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": kind, "scheme": "http" if kind == "http" else "ws", "headers": headers, "server": server}


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"])
def test_loopback_names_at_the_servers_port_are_served(host):
    assert refusal(scope(host)) is None
    assert refusal(scope(host, origin=f"http://{host}")) is None


@pytest.mark.parametrize("host, why", [
    ("evil.example:8000", "does not name this server"),  # DNS rebinding: the attacker's name
    ("127.0.0.1:8001", "does not name this server"),  # another port
    ("127.0.0.1", "does not name this server"),  # port 80 implied
    ("localhost.evil.example:8000", "does not name this server"),
    ("", "is not host[:port]"),
    ("127.0.0.1:80:80", "is not host[:port]"),
    ("user@127.0.0.1:8000", "is not host[:port]"),
    (None, "is not host[:port]"),
])
def test_foreign_or_malformed_hosts_are_refused(host, why):
    assert why in refusal(scope(host))


@pytest.mark.parametrize("origin", ["http://evil.example", "http://evil.example:8000", "https://127.0.0.1:8000",
                                    "http://127.0.0.1:8001", "null", "file://", "http://localhost:8000/x"])
def test_a_foreign_origin_is_refused(origin):
    why = refusal(scope("127.0.0.1:8000", origin=origin))
    assert why is not None and "Origin" in why


def test_an_origin_must_match_the_host_it_came_by():
    # a page on localhost:8000 talking to 127.0.0.1:8000 is cross-origin: the browser says so
    assert refusal(scope("127.0.0.1:8000", origin="http://localhost:8000")) is not None
    assert refusal(scope("localhost:8000", origin="http://localhost:8000")) is None


def test_a_server_on_all_interfaces_answers_to_the_address_a_connection_arrived_on():
    arrived = ("192.168.1.5", 8000)  # uvicorn's scope["server"]: the connection's local address
    assert refusal(scope("192.168.1.5:8000", server=arrived)) is None
    assert refusal(scope("localhost:8000", server=arrived)) is not None  # not loopback: no 'localhost'
    assert refusal(scope("evil.example:8000", server=arrived)) is not None


def test_allowed_origins_add_their_hosts_and_origins():
    allowed = frozenset({normalize_origin("https://explore.example.org")})
    via_proxy = scope("explore.example.org", origin="https://explore.example.org", server=("127.0.0.1", 8000))
    via_proxy["scheme"] = "https"
    assert refusal(via_proxy, allowed) is None
    assert refusal(scope("explore.example.org", server=("127.0.0.1", 8000))) is not None  # not without it


@pytest.mark.parametrize("bad", ["evil.example", "ftp://x", "http://", "http://x/path", "*", 5])
def test_allow_origins_are_checked_when_the_config_is_built(bad):
    with pytest.raises(ConfigError):
        ExploreConfig(allow_origins=(bad,))
    assert ExploreConfig(allow_origins=("http://Box.lan:8000/",)).allow_origins == ("http://box.lan:8000",)


# -- through the app -----------------------------------------------------------------------------
def test_the_page_and_socket_work_for_their_own_host_and_origin(make_client):
    client = make_client()  # TestClient: the server is "testserver" on port 80
    assert client.get("/").status_code == 200
    assert client.get("/api/health", headers={"origin": "http://testserver"}).json() == {"ok": True}
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert opened(ws)["session"]


def test_a_foreign_host_gets_403_on_every_route(make_client):
    client = make_client()
    for path in ["/", "/api/health", "/static/js/main.js", "/api/sessions/x/world", "/api/sessions/x/path.json"]:
        r = client.get(path, headers={"host": "evil.example"})
        assert r.status_code == 403 and "does not name this server" in r.json()["detail"], path
    r = client.post("/api/sessions/x/world", headers={"host": "evil.example"}, files={"world": ("w", b"x")})
    assert r.status_code == 403


def test_a_foreign_origin_cannot_post_or_open_a_socket(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        r = client.post(f"/api/sessions/{sid}/world", headers={"origin": "http://evil.example"},
                        files={"world": ("w", b"x")})
        assert r.status_code == 403 and "another site" in r.json()["detail"]
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}):
            pass
    assert closed.value.code == 1008
    assert client.app.state.manager.tabs == {}  # no session was opened for it


def test_allow_origin_lets_a_named_site_in(make_client):
    client = make_client(allow_origins=("http://tools.example:9000",))
    with client.websocket_connect("/ws", headers={"origin": "http://tools.example:9000"}) as ws:
        assert opened(ws)["session"]
