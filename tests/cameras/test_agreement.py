"""`generate --trajectory` and `data import` read every camera format through one reader, so
they agree exactly; and the rules that once differed between them (``camera_angle_y``, lens
distortion) now hold for both."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mirage.cameras import save_geometry_npz, save_trajectory_json
from mirage.data.clips import read_clip
from mirage.data.importers import import_clips
from mirage.data.import_sources import find_sources, read_sequence
from mirage.errors import FileFormatError
from mirage.world import load_trajectory
from tests.data.conftest import H, W, render_clip, write_formats


@pytest.fixture(scope="module")
def clip():
    return render_clip()


@pytest.fixture(scope="module")
def formats(clip, tmp_path_factory):
    return write_formats(clip, tmp_path_factory.mktemp("agree"))


def _generate_cameras(path):
    """What `mirage generate --trajectory PATH --size HxW` reads (cli/starts.py)."""
    return load_trajectory(path, frames=None, height=H, width=W)


def _same(a, b):
    assert a.hw == b.hw
    assert torch.equal(a.K, b.K) and torch.equal(a.cam2world, b.cam2world)


CAMERA_FILES = {  # format → (its camera file under the formats root, the frames' folder)
    "realestate10k": ("re10k/cameras/seq.txt", "re10k/frames/seq"),
    "transforms": ("nerf/transforms.json", "nerf"),
    "colmap": ("colmap/sparse/0", "colmap/images"),
    "colmap-text": ("colmap/text/0", "colmap/images"),
}


@pytest.mark.parametrize("fmt", list(CAMERA_FILES))
def test_generate_and_data_import_read_the_same_cameras(formats, clip, tmp_path, fmt):
    root = formats["re10k"].parent
    cams, images = CAMERA_FILES[fmt]
    from_generate = _generate_cameras(root / cams)
    (source,) = find_sources(root / cams, root / images)
    from_import = read_sequence(source).camera()
    _same(from_generate, from_import)
    # and what `data import` writes is those cameras, to the bit
    depth = {"realestate10k": "re10k/depth/seq", "transforms": "nerf/depths"}.get(fmt, "colmap/depth")
    index = import_clips(root / cams, tmp_path / "out", images=root / images, depth_dir=root / depth,
                         progress=False)
    (entry,) = index["clips"]
    written = tmp_path / "out" / entry["name"]
    _same(from_generate, _generate_cameras(written / "geometry.npz"))
    # close to the cameras the files were written from (the formats' own round-off)
    assert float((from_generate.cam2world - clip.cameras.cam2world).abs().max()) < 1e-5
    assert float((from_generate.K - clip.cameras.K).abs().max()) < 1e-4


def test_geometry_npz_and_our_json_read_the_same_through_generate_and_data_build(clip, tmp_path):
    save_geometry_npz(tmp_path / "c" / "geometry.npz", clip.frames, clip.depths, clip.cameras)
    save_trajectory_json(tmp_path / "t.json", clip.cameras)
    from_generate = _generate_cameras(tmp_path / "c" / "geometry.npz")
    from_build = read_clip(tmp_path / "c", temporal_stride=1, spatial_stride=1, min_frames=1).cameras
    _same(from_generate, from_build)
    _same(from_generate, clip.cameras)
    _same(_generate_cameras(tmp_path / "t.json"), clip.cameras)  # `data` reads no trajectory JSON


def _transforms(tmp_path, **header):
    data = {"w": W, "h": H, **header,
            "frames": [{"file_path": "images/frame_00000.png", "transform_matrix": np.eye(4).tolist()}]}
    path = tmp_path / "x" / "transforms.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_camera_angle_y_gives_fy_through_both(formats, tmp_path):
    angle_x, angle_y = 2 * math.atan(0.5), 2 * math.atan(0.25)  # fx = W, fy = 2·H
    path = _transforms(tmp_path, camera_angle_x=angle_x, camera_angle_y=angle_y)
    from_generate = _generate_cameras(path)
    (source,) = find_sources(path, formats["nerf"])
    from_import = read_sequence(source).camera()
    _same(from_generate, from_import)
    assert from_generate.K[0, 0, 0].item() == pytest.approx(W) and from_generate.K[0, 1, 1].item() == pytest.approx(2 * H)
    # without camera_angle_y the pixels are square
    assert _generate_cameras(_transforms(tmp_path, camera_angle_x=angle_x)).K[0, 1, 1].item() == pytest.approx(W)


def test_distortion_is_refused_by_both(formats, tmp_path):
    path = _transforms(tmp_path, fl_x=50.0, k1=0.2)
    with pytest.raises(FileFormatError, match=r"lens distortion \{'k1': 0.2\}"):
        _generate_cameras(path)
    (source,) = find_sources(path, formats["nerf"])
    with pytest.raises(FileFormatError, match=r"lens distortion \{'k1': 0.2\}"):
        read_sequence(source)
    _generate_cameras(_transforms(tmp_path, fl_x=50.0, k1=0.0, p1=None))  # zero or null is no distortion


def test_data_no_longer_imports_the_procedural_world_to_read_cameras():
    import subprocess
    import sys

    code = ("import sys, mirage.data.import_sources as s, mirage.data.importers, mirage.data.clips, mirage.cameras;"
            "print(sorted(m for m in sys.modules if m.startswith('mirage.world')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
