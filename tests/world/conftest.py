"""Shared helpers for the procedural-world tests."""

from __future__ import annotations

import math

import pytest
import torch

from mirage.geometry import Camera
from mirage.world.textures import Material

FLAT = Material("checker", (0.8, 0.2, 0.2), (0.1, 0.1, 0.6), scale=2.0)


def level_camera(position, yaw: float, height: int, width: int, fov: float = 60.0) -> Camera:
    from mirage.world.trajectories import level_pose

    return Camera.from_fov(level_pose(position, yaw)[None].float(), height, width, fov)


@pytest.fixture(scope="session")
def room():
    from mirage.world import generate_scene

    return generate_scene("room", 3)


@pytest.fixture(scope="session")
def courtyard():
    from mirage.world import generate_scene

    return generate_scene("courtyard", 5)


def yaw_of(cam2world: torch.Tensor) -> torch.Tensor:  # (T, 4, 4) -> (T,) heading
    f = cam2world[:, :3, 2].double()
    return torch.atan2(f[:, 0], f[:, 2])


__all__ = ["FLAT", "level_camera", "yaw_of", "math"]
