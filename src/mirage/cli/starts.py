"""What a CLI run starts from when the world is involved: a world scene (its exact frame-0
depth, masks and ground truth), or the camera path of a run from an image (a world preset around
the image's camera, or a trajectory file).

These live with the CLI, not the pipeline, because they need :mod:`mirage.world`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mirage.geometry import Camera
from mirage.pipeline.inputs import StartFrame

__all__ = ["ImageAnchor", "image_trajectory", "scene_start"]


@dataclass(frozen=True)
class ImageAnchor:
    """Stands in for a scene when a preset path starts from an image: the camera starts at the
    origin looking along +z (identity pose), and paths use a free radius of 1 unit."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    free_radius: float = 1.0
    start_yaw: float = 0.0
    seed: int = 0


def image_trajectory(spec: str, frames: int, size: tuple[int, int], K: Tensor) -> Camera:
    """Cameras for a run from an image: a preset around :class:`ImageAnchor`, or a file
    (poses as stored; frame 0 is the image's camera). Intrinsics ``K`` replace a preset's."""
    from mirage.world import PRESETS, load_trajectory, make_trajectory
    from mirage.world.path_grammar import is_written_path, path_poses

    if spec in PRESETS:
        cams = make_trajectory(spec, ImageAnchor(), frames, size[0], size[1])
        return Camera(K.expand(len(cams), 3, 3).clone(), cams.cam2world, size[0], size[1])
    if is_written_path(spec):  # "forward 2, turn-left 30": from the image's camera, `frames` long
        cam2world = torch.from_numpy(path_poses(spec, frames)).to(K.dtype)
        return Camera(K.expand(frames, 3, 3).clone(), cam2world, size[0], size[1])
    return load_trajectory(spec, frames=None, height=size[0], width=size[1])


def scene_start(family: str, seed: int, trajectory: str, frames: int, size: tuple[int, int],
                fps: float = 16.0) -> StartFrame:
    """A world scene: its exact frame-0 depth and masks, and the ground truth of every frame."""
    from mirage.world import generate_scene, load_trajectory, render

    scene = generate_scene(family, seed)
    cams = load_trajectory(trajectory, scene=scene, frames=frames, height=size[0], width=size[1])
    out = render(scene, cams, torch.arange(len(cams), dtype=torch.float64) / fps)
    depth0 = torch.where(out.sky[0], torch.full_like(out.depth[0], float("inf")), out.depth[0])
    return StartFrame(out.rgb[0], depth0, out.dynamic[0] | out.sky[0], cams, out.rgb, scene, fps)
