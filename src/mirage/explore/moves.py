"""Key presses → the next chunk's cameras: a pure function of the current pose and a move.

World axes as everywhere (docs/design.md §2.1): OpenCV cameras, world y down. A move walks ``forward``
and ``right`` along the camera's level heading (its axes with the vertical part removed), rises
``up`` against gravity (−y), and turns by ``yaw`` degrees about the world vertical (positive:
to the right, the preset convention where yaw ψ looks along (sin ψ, 0, cos ψ)). The n new
cameras interpolate linearly from the current pose (excluded) to the moved pose (included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mirage.errors import ConfigError
from mirage.geometry import Camera, yaw_rotation

__all__ = ["WalkBounds", "move_cameras", "yaw_matrix"]


@dataclass(frozen=True)
class WalkBounds:
    """Where the camera may stand: a horizontal disc of ``radius`` around ``center`` and
    ``center.y ± rise`` vertically (a procedural scene's free disc keeps walls out of the lens)."""

    center: tuple[float, float, float]
    radius: float
    rise: float

    def clamp(self, position: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(3,) float64 position → the nearest allowed position, and whether it moved."""
        c = torch.tensor(self.center, dtype=torch.float64)
        p = position.clone()
        horizontal = p[[0, 2]] - c[[0, 2]]
        r = float(torch.linalg.vector_norm(horizontal))
        clamped = False
        if r > self.radius:
            p[[0, 2]] = c[[0, 2]] + horizontal * (self.radius / r)
            clamped = True
        low, high = self.center[1] - self.rise, self.center[1] + self.rise
        if not low <= float(p[1]) <= high:
            p[1] = min(max(float(p[1]), low), high)
            clamped = True
        return p, clamped


yaw_matrix = yaw_rotation  # (3, 3) float64: turns a heading ψ into ψ + angle


def _level(v: torch.Tensor) -> torch.Tensor:
    v = v.clone()
    v[1] = 0.0
    n = float(torch.linalg.vector_norm(v))
    return v / n if n > 1e-9 else v


def move_cameras(current: Camera, n: int, *, forward: float = 0.0, right: float = 0.0,
                 up: float = 0.0, yaw_deg: float = 0.0,
                 bounds: WalkBounds | None = None) -> tuple[Camera, bool]:
    """The ``n`` cameras of one step from ``current`` (a camera of length 1), with its
    intrinsics and image size; and whether ``bounds`` stopped the move short."""
    if len(current) != 1:
        raise ConfigError(f"`current` must be one camera but holds {len(current)}")
    if n < 1:
        raise ConfigError(f"`n` must be ≥ 1 but is {n}")
    pose = current.cam2world[0].double()  # (4, 4)
    R, p = pose[:3, :3], pose[:3, 3]
    delta = (forward * _level(R[:, 2]) + right * _level(R[:, 0])
             + torch.tensor([0.0, -up, 0.0], dtype=torch.float64))
    target = p + delta
    clamped = False
    if bounds is not None:
        target, clamped = bounds.clamp(target)
    poses = []
    for j in range(1, n + 1):
        s = j / n
        step = torch.eye(4, dtype=torch.float64)
        step[:3, :3] = yaw_matrix(math.radians(yaw_deg) * s) @ R
        step[:3, 3] = p + s * (target - p)
        poses.append(step)
    cam2world = torch.stack(poses).to(current.cam2world.dtype)  # (n, 4, 4)
    K = current.K.expand(n, 3, 3).clone()
    return Camera(K, cam2world, current.height, current.width), clamped
