"""The optional ``chunks`` of our trajectory JSON (version 2): written, read, checked; version-1
files still load."""

from __future__ import annotations

import json

import pytest

from mirage.errors import ConfigError, FileFormatError
from mirage.world import generate_scene, make_trajectory
from mirage.cameras import load_trajectory_chunks, load_trajectory_json, save_trajectory_json
from mirage.world import load_trajectory


@pytest.fixture(scope="module")
def cams():
    return make_trajectory("orbit", generate_scene("room", 1), 9, 32, 32)


def test_chunks_round_trip_and_raise_the_version(cams, tmp_path):
    chunks = [{"frames": 4, "seed": 3}, {"frames": 4, "seed": None}]
    save_trajectory_json(tmp_path / "c.json", cams, fps=16, chunks=chunks)
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["version"] == 2 and data["chunks"] == chunks
    assert load_trajectory_chunks(tmp_path / "c.json") == chunks
    assert load_trajectory(tmp_path / "c.json").cam2world.equal(cams.cam2world)
    save_trajectory_json(tmp_path / "plain.json", cams)
    assert json.loads((tmp_path / "plain.json").read_text())["version"] == 1  # older readers read it
    assert load_trajectory_chunks(tmp_path / "plain.json") is None


def test_version_one_files_still_load(cams, tmp_path):
    save_trajectory_json(tmp_path / "v1.json", cams)
    data = json.loads((tmp_path / "v1.json").read_text())
    assert data["version"] == 1 and "chunks" not in data
    assert load_trajectory_json(tmp_path / "v1.json").K.equal(cams.K)
    data["chunks"] = [{"frames": 8, "seed": None}]
    (tmp_path / "v1c.json").write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match="version"):  # a version-1 reader would ignore them
        load_trajectory_chunks(tmp_path / "v1c.json")
    data["version"] = 3
    (tmp_path / "v3.json").write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match="version"):
        load_trajectory_json(tmp_path / "v3.json")


@pytest.mark.parametrize("chunks, match", [
    ([{"frames": 4, "seed": None}], "add up to 8"),
    ([{"frames": 0, "seed": None}, {"frames": 8, "seed": None}], r"chunks\[0\].frames"),
    ([{"frames": 8}], r"chunks\[0\]"),
    ([{"frames": 8, "seed": -1}], r"chunks\[0\].seed"),
    ([{"frames": 8, "seed": True}], r"chunks\[0\].seed"),
    ([], "non-empty"),
    ({"frames": 8}, "non-empty list"),
])
def test_bad_chunks(cams, tmp_path, chunks, match):
    with pytest.raises(ConfigError, match=match):
        save_trajectory_json(tmp_path / "x.json", cams, chunks=chunks)
    save_trajectory_json(tmp_path / "ok.json", cams, chunks=[{"frames": 8, "seed": 1}])
    data = json.loads((tmp_path / "ok.json").read_text())
    data["chunks"] = chunks
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=match):
        load_trajectory_chunks(tmp_path / "bad.json")
