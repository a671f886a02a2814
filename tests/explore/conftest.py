"""Fixtures for the explorer: an app on the fake session (fast), helpers to read messages."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("fastapi")

from mirage.explore.app import create_app  # noqa: E402
from mirage.explore.config import ExploreConfig  # noqa: E402
from mirage.explore.wire import unpack  # noqa: E402
from mirage.explore.worlds import IMAGE_BOUNDS, Start, WorldMaker  # noqa: E402
from mirage.geometry import Camera  # noqa: E402
from mirage.pipeline import PipelineConfig  # noqa: E402

from .fakes import FakeSession  # noqa: E402

SIZE = (32, 32)


def fake_maker(steps: int = 2) -> WorldMaker:
    image = torch.linspace(-1, 1, SIZE[0] * SIZE[1] * 3).reshape(3, *SIZE)
    camera = Camera.from_fov(torch.eye(4)[None], SIZE[0], SIZE[1], 60.0)
    start = Start(image, camera, bounds=IMAGE_BOUNDS, source={"image": "test"})
    return WorldMaker(None, PipelineConfig(steps=steps), start, depth_estimator=None, masker=None,
                      session_class=FakeSession, backbone_name="fake")


@pytest.fixture(scope="session")
def tiny_world():
    """The real thing: the tiny backbone (shipped weights) on procedural room 0."""
    from mirage.explore.worlds import build_world

    return build_world(scene=0, family="room")


@pytest.fixture
def make_client():
    from fastapi.testclient import TestClient

    clients = []

    def make(**config):
        client = TestClient(create_app(fake_maker(), ExploreConfig(**config)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def receive(ws) -> dict:
    """The next message as a dict; binary ones have their payload under "payload"."""
    message = ws.receive()
    if message.get("text") is not None:
        return json.loads(message["text"])
    if message.get("bytes") is not None:
        header, payload = unpack(message["bytes"])
        return {**header, "payload": payload}
    raise AssertionError(f"the socket closed: {message}")


def receive_until(ws, kind: str, limit: int = 50) -> tuple[dict, list[dict]]:
    """Messages up to and including the first of ``kind``: (that one, all before it)."""
    seen = []
    for _ in range(limit):
        m = receive(ws)
        if m["type"] == kind:
            return m, seen
        seen.append(m)
    raise AssertionError(f"no {kind!r} message in {limit}: {[m['type'] for m in seen]}")


def opened(ws) -> dict:
    """Read the opening messages (hello, state, view, points); returns hello."""
    hello = receive(ws)
    assert hello["type"] == "hello", hello
    receive_until(ws, "points")
    return hello
