"""The explorer's server through FastAPI's TestClient: protocol, files, many tabs, bad input.
These run on a fake session (tests/explore/fakes.py); test_real_session.py runs the real one."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

from .conftest import SIZE, opened, receive, receive_until

H, W = SIZE


def test_page_and_static_files_are_served(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and "mirage explore" in page.text
    assert 'type="importmap"' in page.text
    for path in ("/static/js/main.js", "/static/explore.css", "/static/vendor/three/three.module.js",
                 "/static/vendor/three/three.core.js", "/static/vendor/three/LICENSE"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert len(r.content) > 100, path


def test_hello_then_a_move_gives_its_frames_reads_timings_and_points(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        hello = opened(ws)
        assert (hello["height"], hello["width"], hello["step_frames"]) == (H, W, 4)
        ws.send_text(json.dumps({"type": "move", "forward": 0.25, "id": 7}))
        chunk, before = receive_until(ws, "chunk")
        assert before == []  # a fast chunk sends no progress
        assert chunk["move_id"] == 7 and chunk["frames"] == 4 and chunk["has_reads"]
        assert len(chunk["payload"]) == 2 * 4 * H * W * 3  # frames, then tinted reads
        assert set(chunk["timing"]) >= {"read", "denoise", "decode", "depth", "update", "wall"}
        assert chunk["stats"]["points"] == 5 and chunk["stats"]["references"]
        # the new cameras walk forward (+z here) by 0.25 in 4 equal steps
        z = [c[11] for c in chunk["cameras"]]
        np.testing.assert_allclose(z, [0.0625, 0.125, 0.1875, 0.25], atol=1e-6)
        points = receive(ws)
        assert points["type"] == "points" and points["total"] == 5
        assert len(points["payload"]) == 5 * 15
        xyz = np.frombuffer(points["payload"][: 5 * 12], dtype="<f4").reshape(5, 3)
        np.testing.assert_allclose(xyz[-1], [0, 0, 2.25], atol=1e-5)


def test_a_slow_chunk_reports_each_denoising_step(make_client, monkeypatch):
    from mirage.explore import tab

    monkeypatch.setattr(tab, "PROGRESS_AFTER_S", -1.0)  # every chunk counts as slow
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text('{"type": "move", "forward": 0.25}')
        chunk, before = receive_until(ws, "chunk")
        assert [(m["type"], m["step"], m["steps"]) for m in before] == [("progress", 1, 2), ("progress", 2, 2)]


def test_undo_restores_the_walk_and_reroll_replaces_the_last_chunk(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text('{"type": "move", "yaw": 30}')
        first, _ = receive_until(ws, "chunk")
        ws.send_text('{"type": "move", "forward": 0.5}')
        receive_until(ws, "chunk")
        ws.send_text('{"type": "undo"}')
        state, _ = receive_until(ws, "state")
        assert state["reason"] == "undo" and state["frames"] == 5 and len(state["path"]) == 5
        view, _ = receive_until(ws, "view")
        assert view["payload"][-H * W * 3:] == first["payload"][3 * H * W * 3: 4 * H * W * 3]
        ws.send_text('{"type": "reroll", "seed": 5}')
        state, _ = receive_until(ws, "state")
        assert state["reason"] == "reroll" and state["frames"] == 1
        again, _ = receive_until(ws, "chunk")
        assert again["seed"] == 5 and again["cameras"] == first["cameras"]
        assert again["payload"][: 4 * H * W * 3] != first["payload"][: 4 * H * W * 3]
        ws.send_text('{"type": "undo"}')
        receive_until(ws, "state")
        ws.send_text('{"type": "undo"}')
        error, _ = receive_until(ws, "error")
        assert "nothing to undo" in error["message"]


@pytest.mark.parametrize("bad, expect", [
    ("{not json", "bad message"),
    ('{"type": "fly"}', "bad message"),
    ('{"type": "move", "forward": "far"}', "forward"),
    ('{"type": "move", "forward": NaN}', "bad message"),
    ('{"type": "move", "warp": 1}', "warp"),
    ('[1, 2]', "bad message"),
    ('{"type": "move", "pad": "' + "x" * 5000 + '"}', "limit is 4096"),
])
def test_a_bad_message_gets_an_error_and_the_session_goes_on(make_client, bad, expect):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text('{"type": "move", "forward": 0.25}')
        receive_until(ws, "points")
        ws.send_text(bad)
        error = receive(ws)
        assert error["type"] == "error" and expect in error["message"], error
        ws.send_bytes(b"\x00\x01")
        assert "binary" in receive(ws)["message"]
        ws.send_text('{"type": "move", "forward": 0.25}')
        chunk, _ = receive_until(ws, "chunk")
        assert chunk["total_frames"] == 9  # the session kept its first step


def test_moves_are_clipped_to_one_step_and_bounded_by_the_walkable_area(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text('{"type": "move", "forward": 50}')
        chunk, _ = receive_until(ws, "chunk")
        assert chunk["cameras"][-1][11] == pytest.approx(1.0)  # clipped to move_step, inside radius 1
        ws.send_text('{"type": "move", "forward": 1}')
        chunk, _ = receive_until(ws, "chunk")
        assert chunk["cameras"][-1][11] == pytest.approx(1.0)  # the edge of the disc
        notice = receive_until(ws, "notice")[0]
        assert "edge" in notice["message"]


def test_four_tabs_at_once_each_keep_their_own_world_and_a_fifth_is_told_the_server_is_full(make_client):
    client = make_client(max_sessions=4)
    sockets = [client.websocket_connect("/ws") for _ in range(4)]
    ws = [s.__enter__() for s in sockets]
    try:
        ids = {opened(w)["session"] for w in ws}
        assert len(ids) == 4
        for i, w in enumerate(ws):  # every tab sends before any reads: the worker interleaves
            for _ in range(2):
                w.send_text(json.dumps({"type": "move", "yaw": 10 * (i + 1)}))
        for i, w in enumerate(ws):
            a, _ = receive_until(w, "chunk")
            b, _ = receive_until(w, "chunk")
            assert b["total_frames"] == 9
            yaw = np.degrees(np.arctan2(b["cameras"][-1][2], b["cameras"][-1][10]))
            assert yaw == pytest.approx(20 * (i + 1), abs=1e-4)
        with client.websocket_connect("/ws") as extra:
            full = receive(extra)
            assert full["type"] == "full" and "full" in full["message"]
    finally:
        for s in sockets:
            s.__exit__(None, None, None)
    with client.websocket_connect("/ws") as again:  # closed tabs free their places
        assert opened(again)["type"] == "hello"


def test_steps_from_several_tabs_take_fair_turns():
    from mirage.explore.config import ExploreConfig
    from mirage.explore.manager import TabManager

    from .conftest import fake_maker

    manager = TabManager(fake_maker(), ExploreConfig(max_pending=10))
    order, gate = [], threading.Event()
    a, b = manager.open(lambda m: None), manager.open(lambda m: None)
    manager.submit(a.id, lambda t: gate.wait(5), kind="act")  # holds the worker while we queue
    manager.start()
    try:
        for k in range(3):
            manager.submit(a.id, lambda t, k=k: order.append(("a", k)), kind="act")
        for k in range(3):
            manager.submit(b.id, lambda t, k=k: order.append(("b", k)), kind="act")
        gate.set()
        last = manager.submit(b.id, lambda t: None, kind="act")
        last.result(timeout=10)
    finally:
        manager.stop()
    tabs = [t for t, _ in order]
    assert all(x != y for x, y in zip(tabs, tabs[1:])), order  # turns alternate
    assert [k for t, k in order if t == "a"] == [k for t, k in order if t == "b"] == [0, 1, 2]


def test_a_tab_that_floods_steps_is_told_it_is_busy(make_client):
    client = make_client(max_pending=1)
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        for _ in range(6):
            ws.send_text('{"type": "move", "forward": 0.1}')
        kinds = []
        for _ in range(60):
            kinds.append(receive(ws)["type"])
            if kinds.count("busy") and kinds.count("chunk") >= 1 and kinds[-1] == "points":
                break
        assert "busy" in kinds


def test_idle_sessions_are_closed_with_a_notice(make_client):
    client = make_client(idle_seconds=0.3)
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        time.sleep(0.4)
        client.get("/api/health")
        notice, _ = receive_until(ws, "notice")
        assert "closed" in notice["message"]
        with pytest.raises(Exception):
            for _ in range(5):
                receive(ws)


def _walk(ws, moves):
    chunks = []
    for move in moves:
        ws.send_text(json.dumps({"type": "move", **move}))
        chunks.append(receive_until(ws, "chunk")[0])
    return chunks


def test_save_then_load_in_another_tab_continues_identically(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}, {"yaw": 20}])
        world = client.get(f"/api/sessions/{sid}/world")
        assert world.status_code == 200 and "attachment" in world.headers["content-disposition"]
        after = _walk(ws, [{"forward": 0.25}, {"right": 0.2}])
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        r = client.post(f"/api/sessions/{sid}/world", files={"world": ("w.mirage-world", world.content)})
        assert r.status_code == 200, r.text
        state, _ = receive_until(ws, "state")
        assert state["reason"] == "load" and state["frames"] == 9
        again = _walk(ws, [{"forward": 0.25}, {"right": 0.2}])
        assert [c["payload"] for c in again] == [c["payload"] for c in after]


def test_a_tampered_or_foreign_world_file_is_refused_and_the_world_is_unchanged(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}])
        good = client.get(f"/api/sessions/{sid}/world").content
        tampered = good.replace(b"0.", b"1.", 1)
        for data in (tampered, good[: len(good) // 2], b"hello", b""):
            r = client.post(f"/api/sessions/{sid}/world", files={"world": ("w.mirage-world", data)})
            assert r.status_code == 400 and r.json()["detail"], r.text
        chunk = _walk(ws, [{"forward": 0.25}])[0]
        assert chunk["total_frames"] == 9


def _png(h=24, w=40) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)).save(buf, format="PNG")
    return buf.getvalue()


def _npy(shape) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.full(shape, 2.0, np.float32))
    return buf.getvalue()


def test_start_from_an_uploaded_image_and_depth(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}])
        r = client.post(f"/api/sessions/{sid}/start",
                        files={"image": ("room.png", _png()), "depth": ("room.npy", _npy((24, 40)))})
        assert r.status_code == 200, r.text
        state, _ = receive_until(ws, "state")
        assert state["reason"] == "start" and state["frames"] == 1
        assert _walk(ws, [{"forward": 0.25}])[0]["total_frames"] == 5


@pytest.mark.parametrize("files, status, expect", [
    ({"image": ("a.png", b"this is not an image")}, 400, "not a readable image"),
    ({"image": ("a.png", _png()), "depth": ("d.npy", _npy((10, 10)))}, 400, "shape"),
    ({"image": ("a.png", _png()), "depth": ("d.npy", b"garbage")}, 400, "depth"),
    ({"image": ("a.png", b"\x89PNG" + b"0" * 5000)}, 413, "limit"),
    ({"image": ("a.png", b"")}, 400, "empty"),
])
def test_a_bad_upload_is_refused_and_the_session_goes_on(make_client, files, status, expect):
    client = make_client(max_upload_bytes=4096)
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}])
        r = client.post(f"/api/sessions/{sid}/start", files=files)
        assert r.status_code == status and expect in r.json()["detail"], r.text
        assert _walk(ws, [{"forward": 0.25}])[0]["total_frames"] == 9


def test_exports_ply_and_path(make_client):
    client = make_client()
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        _walk(ws, [{"forward": 0.25}, {"yaw": 15}])
        ws.send_text('{"type": "reroll", "seed": 11}')
        receive_until(ws, "chunk")
        ply = client.get(f"/api/sessions/{sid}/points.ply").content
        head, _, body = ply.partition(b"end_header\n")
        assert b"element vertex 9" in head and b"property uchar red" in head
        rows = np.frombuffer(body, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
        assert len(rows) == 9 and np.isfinite(rows["xyz"]).all()
        path = client.get(f"/api/sessions/{sid}/path.json").json()
        assert path["format"] == "mirage-trajectory" and len(path["frames"]) == 9
        assert path["chunks"] == [{"frames": 4, "seed": None}, {"frames": 4, "seed": 11}]


def test_files_of_an_unknown_session_are_404(make_client):
    client = make_client()
    assert client.get("/api/sessions/nope/points.ply").status_code == 404


def test_a_tab_that_lets_old_frames_go_says_so_once(make_client, monkeypatch):
    from tests.explore.fakes import FakeSession

    monkeypatch.setattr(FakeSession, "evicting", 4, raising=False)  # every step lets 4 frames go
    client = make_client(keep_frames=8)
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text('{"type": "move", "forward": 0.25}')
        chunk, before = receive_until(ws, "chunk")
        notices = [m for m in before if m["type"] == "notice"]
        assert len(notices) == 1 and "last 8 frames" in notices[0]["message"]
        ws.send_text('{"type": "move", "forward": 0.25}')
        chunk, before = receive_until(ws, "chunk")
        assert not [m for m in before if m["type"] == "notice"]  # told once
        assert chunk["total_frames"] == 9
