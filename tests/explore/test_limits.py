"""The explorer's limits: a page that does not read is disconnected, an uploaded world cannot
raise the server's compute, oversized or malformed uploads are refused naming what was
uploaded (never a server path or a command-line flag), and a new or loaded world shows its own
start (header, ground truth, walkable area)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest
from fastapi.testclient import TestClient

from mirage.explore.app import create_app
from mirage.explore.config import ExploreConfig
from mirage.explore.routers.socket import Outbox, SlowReader
from tests.pipeline.bombs import npz_claiming, png_header, zero_npz, zero_png

from .conftest import fake_maker, opened, receive_until
from .test_server import _npy, _png, _walk


# -- the send queue ------------------------------------------------------------------------------
def test_the_outbox_is_bounded_in_bytes_and_overflows_once():
    async def run():
        box = Outbox(limit=1000)
        for _ in range(3):
            box.put(b"x" * 300)
        assert box.bytes == 900 and not box.overflowed
        assert await box.get() == b"x" * 300 and box.bytes == 600
        box.put(b"y" * 500)  # 1100 > 1000: the page is not keeping up
        assert box.overflowed and box.overflow.is_set() and box.bytes == 0
        box.put(b"z")  # ignored from now on
        with pytest.raises(SlowReader):
            await box.get()

    asyncio.run(run())


def test_one_message_larger_than_the_limit_still_goes_when_nothing_waits():
    async def run():
        box = Outbox(limit=10)
        box.put(b"x" * 100)
        assert not box.overflowed and await box.get() == b"x" * 100

    asyncio.run(run())


class RawClient:
    """A WebSocket client on a plain socket with a small receive buffer: it sends and never
    reads, as a stuck or hostile page would."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += self.sock.recv(1)
        assert b" 101 " in reply.split(b"\r\n")[0], reply

    def send_text(self, text: str) -> bool:
        data, mask = text.encode(), os.urandom(4)
        head = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", len(data)))
        try:
            self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


def test_a_page_that_never_reads_is_disconnected_and_its_session_closed():
    from mirage.explore.server import start_in_thread

    app = create_app(fake_maker(), ExploreConfig(max_send_bytes=256 * 1024, max_pending=64))
    running = start_in_thread(app)
    manager = app.state.manager
    try:
        port = int(running.url.rsplit(":", 1)[1])
        client = RawClient("127.0.0.1", port)
        deadline = time.monotonic() + 60
        opened_tab = False
        while time.monotonic() < deadline:
            opened_tab |= bool(manager.tabs)
            if opened_tab and not manager.tabs:
                break  # the server let the tab go
            client.send_text(json.dumps({"type": "move", "forward": 0.25}))
            time.sleep(0.002)
        assert opened_tab and manager.tabs == {}, "the tab of a page that does not read stayed open"
        client.close()
    finally:
        running.stop()


# -- uploaded worlds cannot raise the server's compute ---------------------------------------------
def _client(steps: int, **config) -> TestClient:
    client = TestClient(create_app(fake_maker(steps=steps), ExploreConfig(**config)))
    client.__enter__()
    return client


def _saved_world(steps: int) -> bytes:
    client = _client(steps)
    try:
        with client.websocket_connect("/ws") as ws:
            sid = opened(ws)["session"]
            _walk(ws, [{"forward": 0.25}])
            return client.get(f"/api/sessions/{sid}/world").content
    finally:
        client.__exit__(None, None, None)


def test_a_world_asking_for_more_steps_than_the_server_runs_is_refused():
    heavy, light = _saved_world(steps=3000), _saved_world(steps=2)
    client = _client(steps=6)
    try:
        with client.websocket_connect("/ws") as ws:
            sid = opened(ws)["session"]
            r = client.post(f"/api/sessions/{sid}/world", files={"world": ("heavy.mirage-world", heavy)})
            detail = r.json()["detail"]
            assert r.status_code == 400 and "'heavy.mirage-world'" in detail and "steps = 3000" in detail
            assert "at most 6" in detail
            r = client.post(f"/api/sessions/{sid}/world", files={"world": ("light.mirage-world", light)})
            assert r.status_code == 200, r.text
            assert receive_until(ws, "state")[0]["frames"] == 5
    finally:
        client.__exit__(None, None, None)


def test_a_real_session_file_asking_for_more_compute_is_refused(tiny_world, tmp_path):
    """The tiny backbone's session file: steps, preceding and references are checked."""
    from dataclasses import replace

    from mirage.explore.worlds import WorldMaker

    heavy_maker = WorldMaker(tiny_world.backbone, replace(tiny_world.config, steps=tiny_world.config.steps + 1,
                                                          references=3), tiny_world.start,
                             depth_estimator=tiny_world.depth_estimator, masker=tiny_world.masker,
                             session_class=tiny_world.session_class, session_options=tiny_world.session_options)
    session = heavy_maker.new()
    session.save(tmp_path / "w.mirage-world")
    client = TestClient(create_app(tiny_world))
    with client:
        with client.websocket_connect("/ws") as ws:
            sid = opened(ws)["session"]
            r = client.post(f"/api/sessions/{sid}/world",
                            files={"world": ("mine.mirage-world", (tmp_path / "w.mirage-world").read_bytes())})
            assert r.status_code == 400 and "steps = 7 but this server runs at most 6" in r.json()["detail"]


# -- uploads: caps checked before decoding, messages name the upload -------------------------------
def _bomb(tmp_path, name, make, *args) -> bytes:
    make(tmp_path / name, *args)
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("case", ["huge png", "real bomb png", "zip bomb depth", "huge depth png",
                                  "depth npz shape", "depth png shape", "not an image", "truncated npz"])
def test_a_bad_upload_is_refused_naming_the_upload_and_nothing_else(make_client, tmp_path, case):
    image = ("holiday.png", _png())
    make = {
        "huge png": lambda: {"image": ("huge.png", _bomb(tmp_path, "h.png", png_header, 20000, 20000))},
        "real bomb png": lambda: {"image": ("bomb.png", _bomb(tmp_path, "b.png", zero_png, 6000, 6000))},
        "zip bomb depth": lambda: {  # 256 MiB of float32 in 0.3 MB
            "image": image, "depth": ("d.npz", _bomb(tmp_path, "d.npz", zero_npz, "depth", (8192, 8192)))},
        "huge depth png": lambda: {
            "image": image, "depth": ("d.png", _bomb(tmp_path, "d.png", zero_png, 9000, 9000, "I;16"))},
        "depth npz shape": lambda: {
            "image": image, "depth": ("d.npz", _bomb(tmp_path, "s.npz", npz_claiming, "depth", (10, 10), b"\0" * 400))},
        "depth png shape": lambda: {
            "image": image, "depth": ("d.png", _bomb(tmp_path, "s.png", zero_png, 10, 10, "I;16"))},
        "not an image": lambda: {"image": ("notes.png", b"hello")},
        "truncated npz": lambda: {"image": image, "depth": ("d.npz", b"PK\x03\x04" + b"\0" * 40)},
    }
    files = make[case]()
    expect = {"huge png": "'huge.png' has more pixels than Pillow opens; images may have at most 16.8 MP", "real bomb png": "'bomb.png' is 6000x6000",
              "zip bomb depth": "'d.npz'", "huge depth png": "'d.png' is 9000x9000",
              "depth npz shape": "image's shape (24, 40)", "depth png shape": "image's shape (24, 40)",
              "not an image": "'notes.png' is not a readable image", "truncated npz": "'d.npz'"}[case]
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        r = client.post(f"/api/sessions/{sid}/start", files=files)
        detail = r.json()["detail"]
        assert r.status_code == 400 and expect in detail, detail
        assert "/tmp" not in detail and "--" not in detail and "internal error" not in detail
        assert len(detail.splitlines()) == 1
        assert _walk(ws, [{"forward": 0.25}])[0]["total_frames"] == 5  # the world goes on


def test_a_bad_world_file_is_named_by_its_upload_name(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        r = client.post(f"/api/sessions/{sid}/world", files={"world": ("trip.mirage-world", b"\0" * 64)})
        assert r.status_code == 400 and "/tmp" not in r.json()["detail"]


# -- a new or loaded world shows its own start ------------------------------------------------------
def test_start_from_image_sends_the_new_source_and_no_ground_truth(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        r = client.post(f"/api/sessions/{sid}/start", files={"image": ("holiday.png", _png())})
        assert r.status_code == 200
        state = receive_until(ws, "state")[0]
        assert state["reason"] == "start" and state["has_ground_truth"] is False
        assert state["source"]["image"] == "holiday.png" and len(state["source"]["sha256"]) == 64
        path = client.get(f"/api/sessions/{sid}/path.json").json()
        assert path["start"] == state["source"]


def test_loading_a_world_takes_its_start_not_the_tabs(make_client, tiny_world):
    """A world walked from scene room 0, loaded into a tab that started from an image: the
    ground truth and walkable area are room 0's again."""
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        tab = client.app.state.manager.get(sid)
        tab.start = tiny_world.start.__class__(**{**tab.start.__dict__, "source": {"scene": 0, "family": "room"}})
        _walk(ws, [{"forward": 0.25}])
        world = client.get(f"/api/sessions/{sid}/world").content
    with client.websocket_connect("/ws") as ws:
        hello = opened(ws)
        assert hello["source"] == {"image": "test"} and not hello["has_ground_truth"]
        r = client.post(f"/api/sessions/{hello['session']}/world", files={"world": ("room.mirage-world", world)})
        assert r.status_code == 200, r.text
        state = receive_until(ws, "state")[0]
        assert state["source"] == {"scene": 0, "family": "room"} and state["has_ground_truth"]
        tab = client.app.state.manager.get(hello["session"])
        assert tab.start.scene is not None and tab.start.bounds == tiny_world.start.bounds
        ws.send_text('{"type": "options", "ground_truth": true}')
        ws.send_text('{"type": "move", "forward": 0.25}')
        chunk = receive_until(ws, "chunk")[0]
        assert chunk["has_ground_truth"]


def test_a_world_without_a_start_record_has_no_ground_truth(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}])
        body = client.get(f"/api/sessions/{sid}/world").json()
        inner = json.loads(body["body"])
        inner.pop("start")  # an older file
        import hashlib

        text = json.dumps(inner)
        old = json.dumps({"format": "fake-session", "sha256": hashlib.sha256(text.encode()).hexdigest(),
                          "body": text}).encode()
        r = client.post(f"/api/sessions/{sid}/world", files={"world": ("old.mirage-world", old)})
        assert r.status_code == 200, r.text
        state = receive_until(ws, "state")[0]
        assert state["source"] == {"world": "old.mirage-world"} and not state["has_ground_truth"]


def test_a_broken_real_world_file_is_named_by_its_upload(tiny_world, tmp_path):
    session = tiny_world.new()
    session.save(tmp_path / "w.mirage-world")
    good = (tmp_path / "w.mirage-world").read_bytes()
    tampered = bytearray(good)
    tampered[-5] ^= 0xFF
    client = TestClient(create_app(tiny_world))
    with client:
        with client.websocket_connect("/ws") as ws:
            sid = opened(ws)["session"]
            for data, expect in [(b"\0" * 64, "not a readable safetensors"), (bytes(tampered), "digest"),
                                 (good[: len(good) // 2], "the world file 'trip.mirage-world'")]:
                r = client.post(f"/api/sessions/{sid}/world", files={"world": ("trip.mirage-world", data)})
                detail = r.json()["detail"]
                assert r.status_code == 400 and expect in detail, detail
                assert detail.startswith("the world file 'trip.mirage-world'") and "/tmp" not in detail, detail
