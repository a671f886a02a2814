"""A procedural clip written in the three real camera formats, for the import tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mirage.geometry import Camera

FRAMES, H, W = 9, 48, 64


@dataclass
class Rendered:
    frames: np.ndarray  # (F, H, W, 3) uint8
    depths: np.ndarray  # (F, H, W) float32, finite (a room has no sky)
    cameras: Camera
    timestamps: np.ndarray  # (F,) int64 µs


def render_clip(frames: int = FRAMES, height: int = H, width: int = W, seed: int = 3) -> Rendered:
    from mirage.world import generate_scene, make_trajectory
    from mirage.world.dataset import render_clip_arrays

    scene = generate_scene("room", seed)
    cams = make_trajectory("orbit", scene, frames, height, width, turns=0.25)
    arrays = render_clip_arrays(scene, cams, 16.0)
    assert np.isfinite(arrays["depths"]).all()
    stamps = (np.arange(frames) * 62_500 + 1_000_000).astype(np.int64)  # 16 fps in µs
    return Rendered(arrays["frames"], arrays["depths"].astype(np.float32), cams, stamps)


def save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def sparse_points(clip: Rendered, step: int = 6):
    """World points back-projected from the true depth on a pixel grid, each observed by its frame:
    (points_world (N, 3), per-frame observations (M, 3) rows (u, v, point index))."""
    from mirage.geometry import backproject_depth

    rows, cols = np.meshgrid(np.arange(2, H, step), np.arange(3, W, step), indexing="ij")
    points, obs = [], []
    for k in range(len(clip.cameras)):
        depth = torch.from_numpy(clip.depths[k]).double()
        cam = clip.cameras[k]
        world = backproject_depth(depth[None], cam.K.double(), cam.cam2world.double())[0]  # (H, W, 3)
        sel = world[rows, cols].reshape(-1, 3).numpy()
        base = sum(len(p) for p in points)
        points.append(sel)
        obs.append(np.column_stack([cols.reshape(-1), rows.reshape(-1), base + np.arange(len(sel))]).astype(np.float64))
    return np.concatenate(points), obs


def write_formats(clip: Rendered, root: Path) -> dict:
    """The clip as RealEstate10K (+ frames named by timestamp), transforms.json and COLMAP
    (binary and text, with sparse points from the true depth); plus a --depth-dir per layout."""
    from mirage.cameras import save_transforms_json, write_colmap, write_realestate10k

    re = root / "re10k"
    write_realestate10k(re / "cameras" / "seq.txt", clip.cameras, clip.timestamps)
    for t, f, d in zip(clip.timestamps, clip.frames, clip.depths):
        save_png(re / "frames" / "seq" / f"{t}.png", f)
        (re / "depth" / "seq").mkdir(parents=True, exist_ok=True)
        np.save(re / "depth" / "seq" / f"{t}.npy", d)

    tf = root / "nerf"
    names = [f"images/frame_{k:05d}.png" for k in range(len(clip.frames))]
    tf.mkdir(parents=True)
    save_transforms_json(tf / "transforms.json", clip.cameras, names)
    for n, f, d in zip(names, clip.frames, clip.depths):
        save_png(tf / n, f)
        mm = np.round(d * 1000).astype(np.uint16)  # 16-bit PNG in millimetres
        save_png(tf / "depths" / Path(n).name, mm)

    cm = root / "colmap"
    pts, obs = sparse_points(clip)
    names = [f"frame_{k:05d}.png" for k in range(len(clip.frames))]
    write_colmap(cm / "sparse" / "0", clip.cameras, names, pts, obs, binary=True)
    write_colmap(cm / "text" / "0", clip.cameras, names, pts, obs, binary=False)
    for n, f, d in zip(names, clip.frames, clip.depths):
        save_png(cm / "images" / n, f)
        (cm / "depth").mkdir(exist_ok=True)
        np.save(cm / "depth" / n.replace(".png", ".npy"), d)
    return {"re10k": re, "nerf": tf, "colmap": cm}


@pytest.fixture(scope="session")
def rendered() -> Rendered:
    return render_clip()


@pytest.fixture(scope="session")
def formats(rendered, tmp_path_factory) -> dict:
    return write_formats(rendered, tmp_path_factory.mktemp("formats"))


class StandInRelativeModel:
    """The true inverse depth through an unknown per-frame scale and shift: what a relative depth
    model would ideally predict. Called with a whole clip's frames in order (at any size: the true
    depth is resized by the importer's nearest-pixel-centre rule)."""

    name = "stand-in"

    def __init__(self, clip: Rendered) -> None:
        self.clip = clip
        self.calls = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from mirage.data.importers import _resize_depth

        self.calls += 1
        assert len(frames) == len(self.clip.frames)
        depths = _resize_depth(self.clip.depths, frames.shape[1:3])
        k = np.arange(len(frames))[:, None, None]
        a, b = 3.0 + 0.5 * k, 0.2 - 0.03 * k  # unknown to the importer
        return (a / depths + b).astype(np.float32)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
