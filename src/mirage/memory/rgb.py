"""`RGBPointCloudMemory`: the explicit baseline, a coloured point cloud at pixel resolution.

This is what prior systems (GEN3C, VMem, Spatia, Voyager) cache: one point per valid pixel,
rendered at full resolution into the target views and then VAE-encoded by the pipeline. It uses
the same store and z-buffer kernel as the latent memory, so the two differ only in resolution and
in what a point carries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirage.errors import ShapeError
from mirage.geometry import Camera, check_finite
from mirage.memory.depth_grid import reduce_depth_to_grid
from mirage.memory.checks import check_write_inputs
from mirage.memory.store import REFERENCE_VOXEL, MemoryRead, PointStore
from mirage.video import to_uint8

__all__ = ["RGBPointCloudMemory"]


class RGBPointCloudMemory(PointStore):
    """A pixel-resolution RGB point cloud. ``fusion="append"`` (default) as in the peers' caches.

    The peers drop pixels without depth (sky); ``far_field=True`` keeps them in a far-field
    colour map by direction instead, the RGB counterpart of the latent far field, so an A/B can
    show what the latent map adds over an RGB one.
    """

    format_kind = "rgb"

    def __init__(self, *, fusion: str = "append", voxel_scale: float = 1.0,
                 reference_voxel: float = REFERENCE_VOXEL, far_field: bool = False,
                 dtype=torch.float32, device=None) -> None:
        super().__init__(3, fusion=fusion, voxel_scale=voxel_scale, reference_voxel=reference_voxel,
                         far_field=far_field, dtype=dtype, device=device)

    def write(
        self,
        images: Tensor,  # (T, 3, H, W) in [-1, 1]
        depths: Tensor,  # (T, H, W) z-depth
        cameras: Camera,  # T cameras at (H, W)
        exclude: Tensor | None = None,  # (T, H, W) bool
        frame_ids=None,
        *,
        confidence=1.0,  # float, or T floats (one per frame); see mirage.memory.store
    ) -> int:
        """Store one coloured point per valid, non-excluded pixel. Returns the valid pixels written."""
        check_write_inputs("images", images, depths, cameras, exclude)
        if images.shape[1] != 3 or tuple(images.shape[2:]) != tuple(depths.shape[1:]):
            raise ShapeError(
                f"`images` must have shape (T, 3, H, W) = {(len(cameras), 3, *cameras.hw)} "
                f"but has {tuple(images.shape)}"
            )
        check_finite("images", images)
        depth, valid, far = reduce_depth_to_grid(depths, cameras.hw, exclude=exclude, return_far=True)
        return self.write_grid(images, depth, valid, cameras.K, cameras.cam2world, frame_ids,
                               confidence, to_uint8(images), far if self.far_field else None)

    def render(self, cameras: Camera, hw: tuple[int, int]) -> MemoryRead:
        """Z-buffered render of V views at ``hw``: features (V, 3, h, w), mask and depth."""
        return self.read(cameras, hw, offsets=False)

    @classmethod
    def from_config(cls, config: dict, *, dtype: torch.dtype, device=None) -> "RGBPointCloudMemory":
        if config["channels"] != 3:
            raise ShapeError(f"an RGB memory has 3 channels but its config says {config['channels']}")
        return cls(fusion=config["fusion"], voxel_scale=config["voxel_scale"],
                   reference_voxel=config["reference_voxel"], far_field=config["far_field"],
                   dtype=dtype, device=device)
