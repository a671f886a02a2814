"""`LatentSpatialMemory`: VAE latent tokens stored at world points, read at latent resolution."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from mirage.errors import ShapeError, expect_shape
from mirage.geometry import Camera, check_finite, rescale_intrinsics
from mirage.memory.depth_grid import PLANARITY_TOL, reduce_depth_to_grid
from mirage.memory.checks import check_write_inputs
from mirage.memory.store import PointStore
from mirage.video import to_uint8

__all__ = ["LatentSpatialMemory", "cell_colors"]


class LatentSpatialMemory(PointStore):
    """The Mirage memory: every point is a world position carrying a C-dim latent token.

    Args:
        channels: C, the latent channels of the backbone's VAE (48 for Wan2.2).
        fusion: ``"voxel"`` (default) fuses revisits so the memory grows with observed surface;
            ``"append"`` keeps every valid cell as a point, as the reference implementation does.
        voxel_scale: scales the depth extent of a fusion voxel (see :mod:`mirage.memory.store`).
        reference_voxel: the voxel edge of reference retrieval in world units
            (:mod:`mirage.memory.covisibility`; docs/design.md §3.5: 0.1).
        far_field: also keep cells without depth (sky) by direction, composited behind the
            points (:mod:`mirage.memory.far_field`; docs/design.md §3.6).
        block_size: edge of the world-space blocks the points are kept in, in world units
            (:mod:`mirage.memory.blocks`); culling by block changes no result, only the cost.
        dtype: dtype of the stored tokens (float32, float16 or bfloat16; float16 halves their
            bytes). Positions are always float32; reads return this dtype.
        device: where the points live (default CPU).
    """

    format_kind = "latent"

    def write(
        self,
        latents: Tensor,  # (T, C, h, w)
        depths: Tensor,  # (T, H, W) z-depth
        cameras: Camera,  # T cameras at (H, W)
        exclude: Tensor | None = None,  # (T, H, W) bool, True = never write
        frame_ids: Sequence[int] | None = None,
        *,
        planarity_tol: float = PLANARITY_TOL,
        min_valid_fraction: float = 1.0,
        keep_edges: bool = False,
        confidence=1.0,  # float, or T floats (one per frame); see mirage.memory.store
        images: Tensor | None = None,  # (T, 3, H, W) in [−1, 1]: display colours only
    ) -> int:
        """Back-project latent cell centres with their depth and store the tokens there.

        If (H, W) == (h, w) cell (i, j) is back-projected from pixel (u=j, v=i) with
        ``depths[t, i, j]``. Otherwise depth is reduced to the latent grid by
        :func:`mirage.memory.depth_grid.reduce_depth_to_grid` with ``planarity_tol`` (cells
        straddling a depth edge, invalid depth or an excluded pixel are dropped; with
        ``min_valid_fraction`` < 1, a cell partly without depth, such as sky, is kept from its
        pixels with depth; with ``keep_edges`` a cell across a depth edge is kept at its nearest
        depth). Frames are
        fused in order, each at its ``confidence``: a cell never overrides a point of higher
        confidence (:mod:`mirage.memory.fusion`).

        With ``far_field``, cells where fewer than ``min_valid_fraction`` of the pixels have
        depth (with the default 1, cells with any pixel of sky) and none is excluded go to the far
        field: exactly the cells left without a point for lack of depth. ``images`` give each
        point a display colour, the mean colour of its cell's pixels (grey without them); the
        method never reads it.

        Returns the number of valid cells written (added, replaced or dropped by fusion).
        """
        check_write_inputs("latents", latents, depths, cameras, exclude)
        T, C, h, w = latents.shape
        if C != self.channels:
            raise ShapeError(
                f"`latents` must have {self.channels} channels (this memory's C) but has {C}"
            )
        check_finite("latents", latents)
        depth_grid, valid, far = reduce_depth_to_grid(depths, (h, w), exclude=exclude,
                                                      planarity_tol=planarity_tol,
                                                      min_valid_fraction=min_valid_fraction,
                                                      keep_edges=keep_edges, return_far=True)
        K = rescale_intrinsics(cameras.K, cameras.hw, (h, w))  # the cameras at the latent grid
        colors = None
        if images is not None:
            expect_shape("images", images, (T, 3, *cameras.hw))
            colors = cell_colors(images, (h, w))
        return self.write_grid(latents, depth_grid, valid, K, cameras.cam2world, frame_ids,
                               confidence, colors, far if self.far_field else None)


def cell_colors(images: Tensor, hw: tuple[int, int]) -> Tensor:  # (T, 3, H, W) → (T, 3, h, w) uint8
    """The mean colour of each grid cell's pixels, as 0..255 bytes, from images in [−1, 1]."""
    T, _, H, W = images.shape
    h, w = hw
    mean = images.float().reshape(T, 3, h, H // h, w, W // w).mean(dim=(3, 5))
    return to_uint8(mean)
