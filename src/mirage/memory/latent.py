"""`LatentSpatialMemory`: VAE latent tokens stored at world points, read at latent resolution."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mirage.errors import ShapeError
from mirage.geometry import Camera, check_finite, rescale_intrinsics
from mirage.memory.depth_grid import PLANARITY_TOL, reduce_depth_to_grid
from mirage.memory.store import MemoryRead, PointStore, check_write_inputs

__all__ = ["LatentSpatialMemory"]


class LatentSpatialMemory(PointStore):
    """The Mirage memory: every point is a world position carrying a C-dim latent token.

    Args:
        channels: C, the latent channels of the backbone's VAE (48 for Wan2.2).
        fusion: ``"voxel"`` (default) fuses revisits so the memory grows with observed surface;
            ``"append"`` keeps every valid cell as a point, as the reference implementation does.
        voxel_scale: scales the depth extent of a fusion voxel (see :mod:`mirage.memory.store`).
        dtype: dtype of the stored tokens. Positions are always float32.
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
        confidence=1.0,  # float, or T floats (one per frame); see mirage.memory.store
    ) -> int:
        """Back-project latent cell centres with their depth and store the tokens there.

        If (H, W) == (h, w) cell (i, j) is back-projected from pixel (u=j, v=i) with
        ``depths[t, i, j]``. Otherwise depth is reduced to the latent grid by
        :func:`mirage.memory.depth_grid.reduce_depth_to_grid` with ``planarity_tol`` (cells
        straddling a depth edge, invalid depth or an excluded pixel are dropped; with
        ``min_valid_fraction`` < 1, a cell partly without depth, such as sky, is kept from its
        pixels with depth). Frames are
        fused in order, each at its ``confidence``: a cell never overrides a point of higher
        confidence (:mod:`mirage.memory.fusion`).

        Returns the number of valid cells written (added, replaced or dropped by fusion).
        """
        check_write_inputs("latents", latents, depths, cameras, exclude)
        T, C, h, w = latents.shape
        if C != self.channels:
            raise ShapeError(
                f"`latents` must have {self.channels} channels (this memory's C) but has {C}"
            )
        check_finite("latents", latents)
        depth_grid, valid = reduce_depth_to_grid(depths, (h, w), exclude=exclude,
                                                 planarity_tol=planarity_tol,
                                                 min_valid_fraction=min_valid_fraction)
        K = rescale_intrinsics(cameras.K, cameras.hw, (h, w))  # the cameras at the latent grid
        return self._write_grid(latents, depth_grid, valid, K, cameras.cam2world, frame_ids, confidence)

    def read(self, cameras: Camera, hw: tuple[int, int]) -> MemoryRead:
        """Z-buffered read of V target views at grid size ``hw``.

        Intrinsics are rescaled from the cameras' (height, width) to ``hw``. Returns features
        (V, C, h, w) (zeros where empty), mask (V, h, w), depth (V, h, w) (+inf where empty) and
        the winners' sub-cell offsets (V, 2, h, w) (see :class:`MemoryRead`). Deterministic;
        linear in the number of points; batched over views.
        """
        return self._read(cameras, hw, offsets=True)

    def read_with_references(self, cameras: Camera, hw: tuple[int, int], *, k: int = 4,
                             min_iou: float = 0.04, voxel_size: float = 0.1,
                             exclude_frames: Sequence[int] = ()) -> tuple[MemoryRead, list]:
        """``(read(cameras, hw), retrieve_references(cameras, k, ...))``, the same values from
        one splat when ``hw`` is the written grid size (what the pipeline asks for every chunk):
        the target views' splat is both the read and the target side of the covisibility."""
        return self._read_with_references(cameras, hw, offsets=True, k=k, min_iou=min_iou,
                                          voxel_size=voxel_size, exclude_frames=exclude_frames)

    @classmethod
    def _from_config(cls, config: dict, device):
        return cls(
            config["channels"],
            fusion=config["fusion"],
            voxel_scale=config["voxel_scale"],
            dtype=getattr(torch, config["dtype"]),
            device=device,
        )

