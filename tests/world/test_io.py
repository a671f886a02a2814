import json
import math

import numpy as np
import pytest
import torch

from mirage.errors import ConfigError, FileFormatError
from mirage.geometry import Camera, project_points
from mirage.cameras import (
    load_geometry_npz,
    load_transforms_json,
    load_trajectory_json,
    save_geometry_npz,
    save_transforms_json,
    save_trajectory_json,
)
from mirage.world import load_trajectory, make_trajectory
from mirage.world.io import load_scene, save_scene


def test_trajectory_json_round_trips_exactly(room, tmp_path):
    cams = make_trajectory("random-walk", room, 12, 40, 56)
    save_trajectory_json(tmp_path / "t.json", cams, fps=16)
    back = load_trajectory_json(tmp_path / "t.json")
    assert torch.equal(back.K, cams.K) and torch.equal(back.cam2world, cams.cam2world)
    assert back.hw == cams.hw


def test_transforms_json_round_trips(room, tmp_path):
    cams = make_trajectory("orbit", room, 9, 30, 50)
    save_transforms_json(tmp_path / "transforms.json", cams)
    back = load_transforms_json(tmp_path / "transforms.json")
    torch.testing.assert_close(back.K, cams.K, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.cam2world, cams.cam2world, atol=1e-6, rtol=0)
    # Per-frame intrinsics are kept too.
    K = cams.K.clone()
    K[3, 0, 0] *= 1.5
    varied = Camera(K, cams.cam2world, 30, 50)
    save_transforms_json(tmp_path / "t2.json", varied)
    torch.testing.assert_close(load_transforms_json(tmp_path / "t2.json").K, K, atol=1e-5, rtol=0)


def test_nerf_axes_are_converted_on_a_known_example(tmp_path):
    # An OpenGL camera at (1, 2, 3) with identity rotation looks down world -z, with +y up.
    data = {
        "camera_angle_x": 2 * math.atan(0.5),  # fx = 0.5·w / tan(angle/2) = w
        "w": 40, "h": 30,
        "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    cam = load_transforms_json(tmp_path / "transforms.json")
    expected = torch.tensor([[1.0, 0, 0, 1], [0, -1, 0, 2], [0, 0, -1, 3], [0, 0, 0, 1]])
    assert torch.equal(cam.cam2world[0], expected)
    assert cam.K[0, 0, 0].item() == pytest.approx(40.0) and cam.K[0, 1, 1].item() == pytest.approx(40.0)
    assert cam.K[0, 0, 2].item() == 19.5 and cam.K[0, 1, 2].item() == 14.5  # pixel-edge → centre
    # A point 5 m in front projects to the principal point at z-depth 5; one 1 m higher
    # (world +y in OpenGL) lands above it (smaller v), one 1 m right lands right (larger u).
    pts = torch.tensor([[1.0, 2.0, -2.0], [1.0, 3.0, -2.0], [2.0, 2.0, -2.0]])
    uv, z = project_points(pts, cam.K, cam.world2cam)
    torch.testing.assert_close(z[0], torch.full((3,), 5.0))
    torch.testing.assert_close(uv[0, 0], torch.tensor([19.5, 14.5]))
    assert uv[0, 1, 1] < 14.5 and uv[0, 1, 0] == pytest.approx(19.5)
    assert uv[0, 2, 0] == pytest.approx(19.5 + 8.0) and uv[0, 2, 1] == pytest.approx(14.5)


def test_geometry_npz_round_trips(room, tmp_path):
    cams = make_trajectory("loop", room, 4, 6, 10)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 6, 10, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 5, (4, 6, 10)).astype(np.float32)
    depths[0, 0, 0] = np.inf
    masks = rng.random((4, 6, 10)) < 0.2
    save_geometry_npz(tmp_path / "g.npz", frames, depths, cams, masks=masks, times=np.arange(4) / 16)
    back = load_geometry_npz(tmp_path / "g.npz")
    assert np.array_equal(back.frames, frames) and np.array_equal(back.depths, depths)
    assert np.array_equal(back.masks, masks) and back.masks.dtype == bool
    assert torch.equal(back.cameras.K, cams.K) and torch.equal(back.cameras.cam2world, cams.cam2world)
    assert back.sky_masks is None and back.object_ids is None
    with np.load(tmp_path / "g.npz") as npz:  # the reference layout, key for key
        assert {"frames", "depths", "intrinsics", "poses_c2w", "masks"} <= set(npz.files)
        assert npz["frames"].dtype == np.uint8 and npz["poses_c2w"].shape == (4, 4, 4)
    save_geometry_npz(tmp_path / "nomask.npz", frames, depths, cams)
    assert load_geometry_npz(tmp_path / "nomask.npz").masks is None


def test_scene_file_round_trips(room, tmp_path):
    save_scene(tmp_path / "scene.json", room)
    assert load_scene(tmp_path / "scene.json") == room


def test_load_trajectory_accepts_presets_and_every_file_format(room, tmp_path):
    cams = make_trajectory("pan-return", room, 5, 20, 30)
    assert torch.equal(load_trajectory("pan-return", scene=room, frames=5, height=20, width=30).cam2world, cams.cam2world)
    save_trajectory_json(tmp_path / "ours.json", cams)
    save_transforms_json(tmp_path / "transforms.json", cams)
    save_geometry_npz(tmp_path / "geometry.npz", np.zeros((5, 20, 30, 3), np.uint8), np.ones((5, 20, 30)), cams)
    for name in ("ours.json", "transforms.json", "geometry.npz"):
        back = load_trajectory(tmp_path / name)
        torch.testing.assert_close(back.cam2world, cams.cam2world, atol=1e-6, rtol=0)
    # A different size rescales the intrinsics (docs/design.md §2.3).
    half = load_trajectory(tmp_path / "ours.json", height=10, width=15)
    assert half.hw == (10, 15) and half.K[0, 0, 2].item() == pytest.approx((14.5 + 0.5) / 2 - 0.5)
    with pytest.raises(ConfigError, match="frames"):
        load_trajectory(tmp_path / "ours.json", frames=3)


@pytest.mark.parametrize(
    "name,content",
    [
        ("a.json", "{not json"),
        ("b.json", json.dumps({"format": "mirage-trajectory", "version": 1, "height": 4, "width": 4, "frames": []})),
        ("c.json", json.dumps({"format": "mirage-trajectory", "version": 1, "height": 4, "width": 4,
                               "frames": [{"K": [[1, 0, 0], [0, 1, 0]], "cam2world": np.eye(4).tolist()}]})),
        ("d.json", json.dumps({"format": "mirage-trajectory", "version": 1, "height": 4, "width": 4,
                               "frames": [{"K": np.eye(3).tolist(), "cam2world": (2 * np.eye(4)).tolist()}]})),
        ("e.json", json.dumps({"w": 4, "h": 4, "frames": [{"transform_matrix": np.eye(4).tolist()}]})),
        ("f.json", json.dumps({"w": 4, "h": 4, "camera_angle_x": 1.0, "frames": [{"file_path": "x"}]})),
        ("g.json", json.dumps([1, 2, 3])),
        ("h.npz", "not a zip"),
        ("i.txt", "hello"),
    ],
)
def test_malformed_trajectory_files_raise_file_format_errors(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(FileFormatError):
        load_trajectory(tmp_path / name)


def test_geometry_npz_missing_keys_is_named(tmp_path):
    np.savez(tmp_path / "g.npz", frames=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(FileFormatError, match="depths"):
        load_geometry_npz(tmp_path / "g.npz")


def test_missing_trajectory_file_names_the_presets(tmp_path):
    with pytest.raises(ConfigError, match="pan-return"):
        load_trajectory(tmp_path / "nope.json")
