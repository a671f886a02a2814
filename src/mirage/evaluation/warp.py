"""Geometric consistency (docs/design.md §7): warp frame t into t′ with ground-truth depth and poses.

Every pixel of frame t with a valid ground-truth depth (finite, > 0, and not excluded) is
back-projected to the world and projected into camera t′ (docs/design.md §2). It counts
when it lands inside t′ in front of the camera and passes the **occlusion test**: its z-depth in
t′ is within ``rel_tol`` (relative) of t′'s ground-truth depth at the nearest pixel, i.e. it is
the surface t′ actually sees. The error is the mean absolute colour difference between frame
t's pixel and frame t′ sampled bilinearly at the landing point, over the counted pixels and the
3 channels, in [0, 1] units (|Δ| / 2 for frames in [−1, 1]).

On ground-truth frames the error is only resampling noise (close to 0); on frames that do not
follow the cameras (a shuffled video) it is large.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ShapeError, expect_shape
from mirage.geometry import Camera, backproject_depth, project_points

__all__ = ["warp_error", "video_warp_error", "warp_pairs", "WARP_REL_TOL"]

WARP_REL_TOL = 0.03  # occlusion test: |z − depth_t′| ≤ 3% of depth_t′
_NEAR = 1e-3


def warp_error(
    frame_src: Tensor,  # (3, H, W) in [-1, 1], frame t
    frame_dst: Tensor,  # (3, H, W) in [-1, 1], frame t'
    depth_src: Tensor,  # (H, W) ground-truth z-depth of t (inf / <= 0 = invalid)
    depth_dst: Tensor,  # (H, W) ground-truth z-depth of t'
    camera_src: Camera,  # 1 camera at (H, W)
    camera_dst: Camera,  # 1 camera at (H, W)
    *,
    exclude_src: Tensor | None = None,  # (H, W) bool, pixels of t never counted (sky, dynamic)
    rel_tol: float = WARP_REL_TOL,
) -> tuple[float, int]:
    """(mean absolute error in [0, 1] units, number of counted pixels) of warping t into t′.

    The error is NaN when no pixel is counted. See the module doc for the exact rule.
    """
    expect_shape("frame_src", frame_src, (3, None, None))
    H, W = frame_src.shape[1:]
    expect_shape("frame_dst", frame_dst, (3, H, W))
    expect_shape("depth_src", depth_src, (H, W))
    expect_shape("depth_dst", depth_dst, (H, W))
    for name, cam in (("camera_src", camera_src), ("camera_dst", camera_dst)):
        if len(cam) != 1 or cam.hw != (H, W):
            raise ShapeError(f"`{name}` must be 1 camera at {H}x{W} but is {len(cam)} at {cam.hw[0]}x{cam.hw[1]}")
    d_src = depth_src.double()
    valid = torch.isfinite(d_src) & (d_src > 0)
    if exclude_src is not None:
        expect_shape("exclude_src", exclude_src, (H, W))
        valid &= ~exclude_src.bool()
    d_safe = torch.where(valid, d_src, torch.ones_like(d_src))
    src_cam, dst_cam = camera_src.to(dtype=torch.float64), camera_dst.to(dtype=torch.float64)
    points = backproject_depth(d_safe[None], src_cam.K, src_cam.cam2world)  # (1, H, W, 3) world
    uv, z = project_points(points.reshape(1, H * W, 3), dst_cam.K, dst_cam.world2cam)
    uv, z = uv[0], z[0]  # (HW, 2), (HW,)
    col = torch.floor(uv[:, 0] + 0.5).long()
    row = torch.floor(uv[:, 1] + 0.5).long()
    inside = (z > _NEAR) & (col >= 0) & (col < W) & (row >= 0) & (row < H) & valid.reshape(-1)
    d_dst = depth_dst.double().reshape(-1)[(row.clamp(0, H - 1) * W + col.clamp(0, W - 1))]
    visible = inside & torch.isfinite(d_dst) & (d_dst > 0) & ((z - d_dst).abs() <= rel_tol * d_dst)
    count = int(visible.sum())
    if count == 0:
        return float("nan"), 0
    # bilinear colour of t′ at the landing point; pixel centres sit at integer coordinates
    grid = torch.stack([2 * uv[:, 0] / max(W - 1, 1) - 1, 2 * uv[:, 1] / max(H - 1, 1) - 1], -1)
    sampled = F.grid_sample(frame_dst.double()[None], grid[None, None], mode="bilinear",
                            padding_mode="border", align_corners=True)[0, :, 0]  # (3, HW)
    src = frame_src.double().reshape(3, -1)
    err = (sampled - src).abs()[:, visible].mean().item() / 2.0
    return err, count


def warp_pairs(frames: int, gap: int) -> list[tuple[int, int]]:
    """The pairs (t, t + gap) for t = 0 … F − 1 − gap."""
    return [(t, t + gap) for t in range(0, frames - gap)]


def video_warp_error(
    video: Tensor,  # (F, 3, H, W) in [-1, 1]
    depth: Tensor,  # (F, H, W) ground-truth z-depth
    cameras: Camera,  # F cameras at (H, W)
    *,
    gap: int = 4,
    exclude: Tensor | None = None,  # (F, H, W) bool
    rel_tol: float = WARP_REL_TOL,
) -> float:
    """Pixel-weighted mean :func:`warp_error` over the pairs (t, t + ``gap``); NaN if none count."""
    expect_shape("video", video, (None, 3, None, None))
    Fr = video.shape[0]
    expect_shape("depth", depth, (Fr, *video.shape[2:]))
    if len(cameras) != Fr:
        raise ShapeError(f"`cameras` must hold {Fr} cameras (one per frame) but holds {len(cameras)}")
    total, count = 0.0, 0
    for t, u in warp_pairs(Fr, gap):
        err, n = warp_error(video[t], video[u], depth[t], depth[u], cameras[t], cameras[u],
                            exclude_src=None if exclude is None else exclude[t], rel_tol=rel_tol)
        if n:
            total += err * n
            count += n
    return total / count if count else float("nan")
