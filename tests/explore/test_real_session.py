"""The explorer on the real session (tiny backbone, room 0) through TestClient: an exported path
replays in `mirage generate` to the explored video frame for frame, re-roll included."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import opened, receive_until

pytest.importorskip("fastapi")


def test_an_exported_path_replays_in_generate_to_the_same_video(tiny_world, tmp_path):
    from fastapi.testclient import TestClient

    from mirage.cli import build_parser
    from mirage.cli.generate import prepare, replay_chunks
    from mirage.explore.app import create_app
    from mirage.pipeline import LatentDisagreementMasker, TinyDepthEstimator, generate

    app = create_app(tiny_world)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        for move in ({"forward": 0.2}, {"yaw": -20}, {"right": 0.1, "yaw": 10}):
            ws.send_text(json.dumps({"type": "move", **move}))
            receive_until(ws, "chunk")
        ws.send_text('{"type": "reroll", "seed": 1234}')
        chunk, _ = receive_until(ws, "chunk")
        assert chunk["seed"] == 1234
        path = tmp_path / "path.json"
        path.write_bytes(client.get(f"/api/sessions/{sid}/path.json").content)
        explored = app.state.manager.get(sid).session.video.clone()

    args = build_parser().parse_args(["generate", "--scene", "0", "--family", "room", "--trajectory", str(path),
                                      "--no-progress"])
    backbone, start, config, _ = prepare(args)
    chunks = replay_chunks(args.trajectory, len(start.cameras), backbone)
    assert [c["seed"] for c in chunks] == [0, None, 1234]  # the re-roll replaced the third step
    replayed = generate(backbone, start.image, start.cameras, config, depth_estimator=TinyDepthEstimator(backbone),
                        masker=LatentDisagreementMasker(), first_depth=start.depth, first_exclude=start.exclude,
                        chunks=chunks).video
    assert replayed.shape == explored.shape == (13, 3, 64, 64)
    torch.testing.assert_close(replayed, explored, rtol=0, atol=0)
