"""An analytic box room: exact z-depth and a checker texture for any camera, in closed form.

The memory benchmark and the memory tests use it as their static synthetic scene: it has no
dependency on the procedural world, and its depth is exact by construction (a ray-box exit).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mirage.geometry import Camera, look_at, pixel_rays

__all__ = ["BoxRoom", "pan_path"]


class BoxRoom:
    """The inside of an axis-aligned box ``[-half, half]`` (world units), viewed from inside."""

    def __init__(self, half=(4.0, 1.5, 4.0), squares: float = 0.5) -> None:
        self.half = torch.tensor(half, dtype=torch.float64)
        self.squares = squares  # checker square size, world units

    def _hits(self, cameras: Camera) -> tuple[Tensor, Tensor, Tensor]:
        H, W = cameras.hw
        d_cam = pixel_rays(cameras.K.double(), H, W)  # (T, H, W, 3), z_cam = 1
        R = cameras.cam2world[:, :3, :3].double()
        origin = cameras.cam2world[:, :3, 3].double()[:, None, None, :]
        d_world = torch.einsum("tij,thwj->thwi", R, d_cam)
        d_safe = torch.where(d_world.abs() < 1e-12, torch.full_like(d_world, 1e-12), d_world)
        t_axis = torch.maximum((-self.half - origin) / d_safe, (self.half - origin) / d_safe)
        t_exit, axis = t_axis.min(dim=-1)  # z-depth, since d_cam has z = 1
        return t_exit, axis, origin + t_exit[..., None] * d_world

    def depth(self, cameras: Camera) -> Tensor:
        """(T, H, W) exact z-depth of the walls."""
        return self._hits(cameras)[0].float()

    def rgb(self, cameras: Camera) -> Tensor:
        """(T, 3, H, W) in [-1, 1]: a checker whose colours differ per wall."""
        _, axis, p = self._hits(cameras)
        cells = torch.floor(p / self.squares).long().sum(dim=-1) % 2  # (T, H, W)
        side = (p.gather(-1, axis[..., None])[..., 0] > 0).long()
        face = axis * 2 + side  # 0..5
        palette = torch.tensor([
            [0.9, 0.3, 0.2], [0.2, 0.7, 0.3], [0.3, 0.4, 0.9],
            [0.9, 0.8, 0.2], [0.7, 0.3, 0.8], [0.2, 0.8, 0.8],
        ], dtype=torch.float32)
        base = palette[face]  # (T, H, W, 3)
        shade = torch.where(cells.bool(), 1.0, 0.45)[..., None]
        return (base * shade * 2 - 1).permute(0, 3, 1, 2).contiguous()


def pan_path(frames: int, height: int, width: int, *, degrees: float = 120.0,
             passes: int = 1, fov_x_deg: float = 60.0) -> Camera:
    """A camera at (0, 0, −1) that pans ``degrees`` away and back, ``passes`` times.

    Frame 0 and the end of every pass are the start pose exactly.
    """
    s = torch.linspace(0, passes, frames, dtype=torch.float64)
    yaw = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64)) * torch.sin(math.pi * (s % 1.0))
    yaw = torch.where((s % 1.0) == 0, torch.zeros_like(yaw), yaw)
    eye = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand(frames, 3)
    target = eye + torch.stack([torch.sin(yaw), torch.zeros_like(yaw), torch.cos(yaw)], dim=-1)
    return Camera.from_fov(look_at(eye, target).float(), height, width, fov_x_deg)
