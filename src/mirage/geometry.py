"""Pinhole cameras and the pure functions that move points between pixels and the world.

Conventions (docs/design.md §2, binding for every module):

- OpenCV camera axes: x right, y down, z forward. ``cam2world`` is a rigid 4x4 transform that
  maps camera coordinates to world coordinates; ``world2cam`` is its inverse.
- ``K`` is in pixels for the image size ``(height, width)`` it is stated with.
- Pixel centres sit at integer coordinates: pixel (row i, column j) is the point (u=j, v=i).
  A projected point (u, v) lands in pixel (floor(v + 0.5), floor(u + 0.5)).
- Depth is z-depth (distance along the optical axis), not ray length.
- Rescaling intrinsics from (H, W) to (h, w): fx' = fx·w/W, fy' = fy·h/H,
  cx' = (cx + 0.5)·w/W − 0.5, cy' = (cy + 0.5)·h/H − 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from mirage.errors import CameraError, NonFiniteError, ShapeError, expect_shape

__all__ = [
    "Camera",
    "rigid_inverse",
    "rescale_intrinsics",
    "pixel_grid",
    "pixel_rays",
    "backproject_depth",
    "transform_points",
    "project_points",
    "pixel_index",
    "check_finite",
    "look_at",
    "yaw_rotation",
]

RIGID_TOLERANCE = 1e-3  # max |R^T R - I| entry accepted as orthonormal (float32 round-off)


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise :class:`NonFiniteError` if ``tensor`` holds NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(
            f"`{name}` must be finite but has {bad} NaN/inf value(s) out of {tensor.numel()}"
        )


def _as_float(tensor, name: str) -> Tensor:
    tensor = torch.as_tensor(tensor)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


@dataclass(frozen=True)
class Camera:
    """A batch of T pinhole cameras sharing one image size.

    Attributes:
        K: (T, 3, 3) intrinsics in pixels for an image of ``(height, width)``.
        cam2world: (T, 4, 4) rigid transforms, camera (OpenCV axes) → world.
        height: image height H in pixels.
        width: image width W in pixels.

    Validated when built: finite values, fx > 0 and fy > 0, K's last row (0, 0, 1), and a rigid
    ``cam2world`` (orthonormal rotation with det +1 within ``RIGID_TOLERANCE``, last row
    (0, 0, 0, 1)). Indexing with an int keeps the batch dimension (a camera of length 1).
    """

    K: Tensor
    cam2world: Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        K = _as_float(self.K, "K")
        cam2world = _as_float(self.cam2world, "cam2world").to(K.dtype)
        if K.ndim == 2:
            K = K[None]
        if cam2world.ndim == 2:
            cam2world = cam2world[None]
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "cam2world", cam2world)
        if not (isinstance(self.height, int) and isinstance(self.width, int)):
            raise CameraError(
                f"`height` and `width` must be ints but are {self.height!r} and {self.width!r}"
            )
        if self.height <= 0 or self.width <= 0:
            raise CameraError(
                f"`height` and `width` must be positive but are {self.height} and {self.width}"
            )
        expect_shape("K", K, (None, 3, 3))
        expect_shape("cam2world", cam2world, (None, 4, 4))
        if K.shape[0] != cam2world.shape[0]:
            raise ShapeError(
                f"`K` and `cam2world` must hold the same number of cameras but hold "
                f"{K.shape[0]} and {cam2world.shape[0]}"
            )
        check_finite("K", K)
        check_finite("cam2world", cam2world)
        fx, fy = K[:, 0, 0], K[:, 1, 1]
        if (fx <= 0).any() or (fy <= 0).any():
            raise CameraError(
                f"`K` must have fx > 0 and fy > 0 but has fx={fx.tolist()} fy={fy.tolist()}"
            )
        last = K[:, 2, :]
        if not torch.allclose(last, last.new_tensor([0.0, 0.0, 1.0]).expand_as(last)):
            raise CameraError(f"`K` must have last row (0, 0, 1) but has {last.tolist()}")
        R = cam2world[:, :3, :3]
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        err = (R.transpose(-1, -2) @ R - eye).abs().amax(dim=(-1, -2))
        det = torch.linalg.det(R.double() if R.device.type == "cpu" else R)
        if (err > RIGID_TOLERANCE).any() or (det <= 0).any():
            raise CameraError(
                "`cam2world` must be rigid (rotation orthonormal with det +1 within "
                f"{RIGID_TOLERANCE}) but has max |RᵀR − I| = {err.max().item():.3g} and "
                f"det = {det.min().item():.3g}"
            )
        bottom = cam2world[:, 3, :]
        if not torch.allclose(bottom, bottom.new_tensor([0.0, 0.0, 0.0, 1.0]).expand_as(bottom)):
            raise CameraError(
                f"`cam2world` must have last row (0, 0, 0, 1) but has {bottom.tolist()}"
            )

    # -- batch protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index) -> "Camera":
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"camera index {index} out of range for {len(self)} cameras")
            index = slice(index, index + 1 if index != -1 else None)
        K, cam2world = self.K[index], self.cam2world[index]
        if K.ndim != 3:  # an index that does not select along the batch axis
            raise IndexError(f"camera index {index!r} must select cameras along the batch axis")
        # A selection of validated cameras is valid: skip the checks (they cost more than the
        # memory read at latent size, and the pipeline slices cameras for every chunk).
        camera = object.__new__(Camera)
        for name, value in (("K", K), ("cam2world", cam2world), ("height", self.height),
                            ("width", self.width)):
            object.__setattr__(camera, name, value)
        return camera

    @staticmethod
    def cat(cameras: Sequence["Camera"]) -> "Camera":
        """Concatenate camera batches that share one image size."""
        if not cameras:
            raise ShapeError("`cameras` must hold at least one Camera but is empty")
        sizes = {(c.height, c.width) for c in cameras}
        if len(sizes) != 1:
            raise ShapeError(f"`cameras` must share one (height, width) but have {sorted(sizes)}")
        first = cameras[0]
        return Camera(
            torch.cat([c.K for c in cameras]),
            torch.cat([c.cam2world for c in cameras]),
            first.height,
            first.width,
        )

    # -- derived views --------------------------------------------------------------------
    @property
    def world2cam(self) -> Tensor:
        """(T, 4, 4) world → camera transforms (closed-form rigid inverse)."""
        return rigid_inverse(self.cam2world)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def device(self) -> torch.device:
        return self.K.device

    def scaled(self, height: int, width: int) -> "Camera":
        """The same cameras for an image of ``(height, width)`` (docs/design.md §2.3 rescaling rule)."""
        K = rescale_intrinsics(self.K, (self.height, self.width), (height, width))
        return Camera(K, self.cam2world, height, width)

    def to(self, device=None, dtype=None) -> "Camera":
        return Camera(
            self.K.to(device=device, dtype=dtype),
            self.cam2world.to(device=device, dtype=dtype),
            self.height,
            self.width,
        )

    @staticmethod
    def from_fov(
        cam2world: Tensor, height: int, width: int, fov_x_deg: float = 60.0
    ) -> "Camera":
        """Cameras with a horizontal field of view, square pixels and a centred principal point."""
        cam2world = _as_float(cam2world, "cam2world")
        if cam2world.ndim == 2:
            cam2world = cam2world[None]
        if not 0.0 < fov_x_deg < 180.0:
            raise CameraError(f"`fov_x_deg` must be in (0, 180) but is {fov_x_deg}")
        f = 0.5 * width / torch.tan(torch.deg2rad(torch.tensor(fov_x_deg / 2, dtype=torch.float64)))
        K = torch.tensor(
            [[float(f), 0.0, (width - 1) / 2], [0.0, float(f), (height - 1) / 2], [0.0, 0.0, 1.0]],
            dtype=cam2world.dtype,
            device=cam2world.device,
        )
        return Camera(K.expand(cam2world.shape[0], 3, 3).clone(), cam2world, height, width)


def rigid_inverse(cam2world: Tensor) -> Tensor:  # (T, 4, 4) → (T, 4, 4)
    """Closed-form inverse [Rᵀ | −Rᵀt] of rigid transforms: cam2world → world2cam, no checks."""
    Rt = cam2world[:, :3, :3].transpose(-1, -2)
    top = torch.cat([Rt, -Rt @ cam2world[:, :3, 3:]], dim=2)  # (T, 3, 4)
    bottom = cam2world.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(cam2world.shape[0], 1, 4)
    return torch.cat([top, bottom], dim=1)


def rescale_intrinsics(
    K: Tensor,  # (*, 3, 3)
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
) -> Tensor:  # (*, 3, 3)
    """Rescale pixel intrinsics from image size ``src_hw`` to ``dst_hw`` (pixel centres kept).

    fx' = fx·sx, fy' = fy·sy, cx' = (cx + 0.5)·sx − 0.5, cy' = (cy + 0.5)·sy − 0.5, with
    sx = w/W and sy = h/H. A latent cell (i, j) of a stride-s VAE then has its centre at (j, i).
    """
    (H, W), (h, w) = src_hw, dst_hw
    if min(H, W, h, w) <= 0:
        raise ShapeError(f"image sizes must be positive but are {src_hw} → {dst_hw}")
    sx, sy = w / W, h / H
    # (K + shift) · scale − shift, elementwise: row 0 scaled by sx, row 1 (past its first entry)
    # by sy, the principal point shifted by the half pixel; every other entry passes through
    # exactly (+0, ·1, −0). Three tensor operations instead of one assignment per entry.
    scale = K.new_tensor([[sx, sx, sx], [1.0, sy, sy], [1.0, 1.0, 1.0]])
    shift = K.new_tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    return (K + shift).mul_(scale).sub_(shift)


def pixel_grid(height: int, width: int, *, dtype=torch.float32, device=None) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (u, v) = (j, i)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def transform_points(
    transform: Tensor,  # (*, 4, 4)
    points: Tensor,  # (*, N, 3)
) -> Tensor:  # (*, N, 3)
    """Apply rigid 4x4 transforms to points: ``R @ p + t`` batched over the leading dims."""
    R = transform[..., :3, :3]
    t = transform[..., :3, 3]
    return points @ R.transpose(-1, -2) + t.unsqueeze(-2)


def pixel_rays(
    K: Tensor,  # (T, 3, 3) pixel intrinsics for (height, width)
    height: int,
    width: int,
) -> Tensor:  # (T, H, W, 3) rays in camera coordinates, z = 1
    """The camera-space ray through every pixel centre (u=j, v=i), scaled to z = 1: the inverse
    of the pinhole projection, skew included: y = (v − cy)/fy and x = (u − cx − skew·y)/fx.

    Computed in ``K``'s dtype. Every unprojection in mirage (depth back-projection, the ray
    caster, the benchmark room) goes through this one function.
    """
    expect_shape("K", K, (None, 3, 3))
    T = K.shape[0]
    # Pixel centres as a column of rows v (H, 1) and a row of columns u (W,): broadcasting gives
    # every pixel the same operations, in the same order, as a full (H, W) grid would.
    v = torch.arange(height, dtype=K.dtype, device=K.device)[:, None]
    u = torch.arange(width, dtype=K.dtype, device=K.device)
    fx, skew, cx, _, fy, cy, _, _, _ = K.reshape(T, 9, 1, 1).unbind(1)  # (T, 1, 1) each
    y = (v - cy) / fy  # (T, H, 1)
    x = (u - cx - skew * y) / fx  # (T, H, W)
    return torch.stack([x, y.expand_as(x), torch.ones_like(x)], dim=-1)


def backproject_depth(
    depth: Tensor,  # (T, H, W) z-depth
    K: Tensor,  # (T, 3, 3) pixel intrinsics for (H, W)
    cam2world: Tensor,  # (T, 4, 4)
) -> Tensor:  # (T, H, W, 3) points_world
    """Back-project every pixel centre (u=j, v=i) with its z-depth to a world point.

    Invalid depths are not filtered here: the caller masks them (the output is then NaN/inf or
    behind the camera there).
    """
    expect_shape("depth", depth, (None, None, None))
    T, H, W = depth.shape
    expect_shape("K", K, (T, 3, 3))
    expect_shape("cam2world", cam2world, (T, 4, 4))
    rays = pixel_rays(K.to(torch.promote_types(K.dtype, depth.dtype)), H, W)  # (T, H, W, 3), z = 1
    points_cam = torch.cat([rays[..., :2] * depth[..., None], depth[..., None]], dim=-1)  # (T, H, W, 3)
    points_world = transform_points(cam2world, points_cam.reshape(T, H * W, 3))
    return points_world.reshape(T, H, W, 3)


def project_points(
    points_world: Tensor,  # (N, 3) or (V, N, 3)
    K: Tensor,  # (V, 3, 3)
    world2cam: Tensor,  # (V, 4, 4)
) -> tuple[Tensor, Tensor]:  # uv (V, N, 2), z (V, N)
    """Project world points into V views. Returns pixel coordinates (u, v) and z-depth.

    Points with z ≤ 0 get meaningless (u, v); callers test ``z > near`` before using them.
    """
    if points_world.ndim == 2:
        points_world = points_world.unsqueeze(0)
    points_cam = transform_points(world2cam, points_world)  # (V, N, 3)
    z = points_cam[..., 2]
    z_safe = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    xn, yn = points_cam[..., 0] / z_safe, points_cam[..., 1] / z_safe
    u = K[:, 0, 0, None] * xn + K[:, 0, 1, None] * yn + K[:, 0, 2, None]
    v = K[:, 1, 1, None] * yn + K[:, 1, 2, None]
    return torch.stack([u, v], dim=-1), z


def pixel_index(uv: Tensor) -> tuple[Tensor, Tensor]:
    """(row, col) long tensors of the pixels that coordinates ``uv`` (..., 2) land in."""
    col = torch.floor(uv[..., 0] + 0.5).long()
    row = torch.floor(uv[..., 1] + 0.5).long()
    return row, col


def look_at(
    eye: Tensor,  # (*, 3)
    target: Tensor,  # (*, 3)
    up: Sequence[float] = (0.0, -1.0, 0.0),
) -> Tensor:  # (*, 4, 4) cam2world
    """OpenCV cam2world that sits at ``eye`` and looks at ``target``.

    ``up`` is the world direction that should appear up in the image; with the default
    (0, −1, 0) the world is y-down like the camera, so a level camera has identity rotation.
    """
    eye = _as_float(eye, "eye")
    target = _as_float(target, "target").to(eye.dtype)
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x = torch.linalg.cross(-up_t, z)  # camera x = (down × forward)
    if (x.norm(dim=-1) < 1e-8).any():
        raise CameraError("`look_at` got a view direction parallel to `up`")
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    out = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    out[..., :3, 0], out[..., :3, 1], out[..., :3, 2], out[..., :3, 3] = x, y, z, eye
    out[..., 3, 3] = 1.0
    return out


def yaw_rotation(yaw: float) -> Tensor:  # (3, 3) float64
    """The rotation of a level camera with heading ``yaw`` (radians) about the world vertical
    (y, down): yaw 0 looks along +z and yaw π/2 along +x. Its columns are the camera's right
    (cos ψ, 0, −sin ψ), down (0, 1, 0) and forward (sin ψ, 0, cos ψ); applied to a heading ψ it
    gives ψ + yaw."""
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
