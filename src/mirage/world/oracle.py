"""The procedural world's exact depth and masks as a depth estimator and a dynamic masker
(docs/design.md §5): the ``oracle`` implementations of the pipeline's
:class:`~mirage.pipeline.depth.DepthEstimator` and :class:`~mirage.pipeline.masks.DynamicMasker`.

They live with the world, not the pipeline, because they render the scene: the pipeline only
sees the protocols. Oracle *update* depth is an ablation and is labelled as such in every
report, because it hands the model the true geometry of content it may not have generated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirage.geometry import Camera
from mirage.world.raycast import render

__all__ = ["OracleDepthEstimator", "OracleMasker"]


class OracleDepthEstimator:
    """The world's exact z-depth at the given cameras and frame times (ablation).

    ``(images (T, 3, H, W), T cameras, pixel frame indices) → depth (T, H, W) with +inf where
    there is no surface (sky), valid (T, H, W)``; the images are not looked at.
    """

    name = "oracle"

    def __init__(self, scene, fps: float) -> None:
        self.scene, self.fps = scene, fps

    def __call__(self, images: Tensor, cameras: Camera, frame_indices: list[int]) -> tuple[Tensor, Tensor]:
        times = torch.tensor(frame_indices, dtype=torch.float64) / self.fps
        out = render(self.scene, cameras, times)
        valid = ~out.sky & torch.isfinite(out.depth) & (out.depth > 0)
        return torch.where(valid, out.depth, torch.full_like(out.depth, float("inf"))), valid


class OracleMasker:
    """The world's exact dynamic and sky masks at the given cameras and frame times:
    exclude (T, H, W) bool."""

    name = "oracle"

    def __init__(self, scene, fps: float) -> None:
        self.scene, self.fps = scene, fps

    def __call__(self, frames, latents, read_features, read_mask, cameras: Camera,
                 frame_indices: list[int]) -> Tensor:
        times = torch.tensor(frame_indices, dtype=torch.float64) / self.fps
        out = render(self.scene, cameras, times)
        return out.dynamic | out.sky
