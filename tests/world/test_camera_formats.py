"""Real camera formats and the written path grammar as `--trajectory` (load_trajectory)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mirage.errors import ConfigError, FileFormatError
from mirage.world import generate_scene, load_trajectory, make_trajectory
from mirage.cameras import read_colmap, read_realestate10k, write_colmap, write_realestate10k
from mirage.world.path_grammar import GRAMMAR, PathGrammarError, parse_path, path_poses


@pytest.fixture(scope="module")
def cams():
    scene = generate_scene("room", 3)
    return make_trajectory("orbit", scene, 5, 48, 64, turns=0.25)


def test_realestate10k_file_round_trips(cams, tmp_path):
    write_realestate10k(tmp_path / "seq.txt", cams, [0, 10, 20, 30, 40])
    seq = read_realestate10k(tmp_path / "seq.txt")
    assert seq.normalised and seq.timestamps.tolist() == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(seq.K[0, 0, 2], (cams.K[0, 0, 2].item() + 0.5) / 64)  # pixel-edge, normalised
    loaded = load_trajectory(tmp_path / "seq.txt", height=48, width=64)
    torch.testing.assert_close(loaded.K, cams.K, rtol=0, atol=1e-4)
    torch.testing.assert_close(loaded.cam2world, cams.cam2world, rtol=0, atol=1e-5)
    # at another size the intrinsics follow the rescale rule
    torch.testing.assert_close(load_trajectory(tmp_path / "seq.txt", height=24, width=32).K, cams.scaled(24, 32).K,
                               rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="`height` and `width` are needed"):
        load_trajectory(tmp_path / "seq.txt")


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_model_is_a_trajectory_first_image_first(cams, tmp_path, binary):
    names = [f"img_{k}.jpg" for k in (3, 1, 4, 0, 2)]  # written out of order; read in name order
    order = [3, 1, 4, 0, 2]
    write_colmap(tmp_path / "m", cams[order], names, binary=binary)
    loaded = load_trajectory(tmp_path / "m")
    torch.testing.assert_close(loaded.cam2world, cams.cam2world, rtol=0, atol=1e-5)
    torch.testing.assert_close(loaded.K, cams.K, rtol=0, atol=1e-4)
    assert read_colmap(tmp_path / "m").names == [f"img_{k}.jpg" for k in range(5)]


def test_reading_colmap_needs_no_pycolmap_and_writing_says_what_it_needs(cams, tmp_path, monkeypatch):
    import importlib.util
    import sys

    write_colmap(tmp_path / "m", cams, [f"{k}.png" for k in range(5)])
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycolmap" else find_spec(name, *a))
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # an import of it now fails
    torch.testing.assert_close(read_colmap(tmp_path / "m").K, cams.K.numpy().astype(np.float64), rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="writing a COLMAP model needs pycolmap, which is not installed"):
        write_colmap(tmp_path / "n", cams, [f"{k}.png" for k in range(5)])


def test_colmap_distortion_is_refused(cams, tmp_path):
    import pycolmap

    write_colmap(tmp_path / "m", cams, [f"{k}.png" for k in range(5)], binary=False)
    rec = pycolmap.Reconstruction(str(tmp_path / "m"))
    cam = rec.cameras[1]
    rec.cameras[1] = pycolmap.Camera.create_from_model_name(1, "OPENCV", 50.0, cam.width, cam.height)
    rec.cameras[1].params = [50.0, 50.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0]
    rec.write_text(str(tmp_path / "m"))
    with pytest.raises(FileFormatError, match=r"OPENCV\) has lens distortion \[0.1, 0.0, 0.0, 0.0\]"):
        load_trajectory(tmp_path / "m")


def test_written_path_grammar():
    assert parse_path(" Forward 2, turn-left 30 ,up 0.5") == [("forward", 2.0), ("turn-left", 30.0), ("up", 0.5)]
    p = path_poses("forward 2", 3)
    np.testing.assert_allclose(p[:, :3, 3], [[0, 0, 0], [0, 0, 1], [0, 0, 2]], atol=1e-12)
    # a right turn of 90°, then forward 1: the camera looks along +x and walks there (OpenCV axes)
    p = path_poses("turn-right 90, forward 1", 2 + 1)
    np.testing.assert_allclose(p[-1, :3, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(p[-1, :3, 3], [1, 0, 0], atol=1e-12)
    # effort: 90° = π/2 "metres", so the middle frame (half of 1 + π/2) is still turning
    np.testing.assert_allclose(p[1, :3, 3], [0, 0, 0], atol=1e-12)
    assert p[1, 0, 2] == pytest.approx(math.sin(math.radians(90) * (1 + math.pi / 2) / 2 / (math.pi / 2)))
    up = path_poses("up 0.5, look-down 20", 2)
    np.testing.assert_allclose(up[-1, :3, 3], [0, -0.5, 0], atol=1e-12)  # up is −y
    assert up[-1, 1, 2] > 0  # looking down: the forward axis tilts towards +y
    for bad in ("forward", "forward 2, spin 30", "forward -1", "forward 2,, up 1", "look-up 100"):
        with pytest.raises(PathGrammarError) as err:
            path_poses(bad, 5)
        assert "turn-left" in str(err.value) or "89" in str(err.value)
    assert "forward|back|left|right|up|down" in GRAMMAR


def test_written_path_as_trajectory_starts_at_the_scene_start():
    from mirage.world.trajectories import DEFAULT_FRAMES, level_pose

    scene = generate_scene("room", 3)
    cams = load_trajectory("forward 1, turn-left 30", scene=scene, height=32, width=48)
    assert len(cams) == DEFAULT_FRAMES and cams.hw == (32, 48)
    torch.testing.assert_close(cams.cam2world[0], level_pose(scene.center, scene.start_yaw).float())
    assert len(load_trajectory("back 1", frames=9, height=32, width=48)) == 9
    with pytest.raises(PathGrammarError, match="step 2 .*'sideways 3'.*e.g. \"forward 2, turn-left 30"):
        load_trajectory("forward 1, sideways 3", height=32, width=48)
    with pytest.raises(ConfigError, match="a written path"):
        load_trajectory("nonsense-name", height=32, width=48)


def test_generate_rejects_a_bad_written_path_showing_the_grammar(tmp_path, capsys):
    from mirage.cli import main

    assert main(["generate", "--trajectory", "forward 1, spin 30", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'spin 30'" in err and "turn-left|turn-right|look-up|look-down DEGREES" in err
    assert not (tmp_path / "o").exists()
