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

__all__ = ["OracleDepthEstimator", "OracleRelativeDepthEstimator", "OracleMasker", "RELATIVE_SCALES",
           "RELATIVE_SHIFTS"]

# oracle-relative's random affine maps in inverse depth: pred = a·(1/z) + b with a log-uniform in
# RELATIVE_SCALES and b uniform in RELATIVE_SHIFTS (inverse world units; the worlds' visible
# surfaces are about 0.5 to 20 units away, inverse depths 0.05 to 2).
RELATIVE_SCALES = (0.5, 2.0)
RELATIVE_SHIFTS = (0.0, 0.2)


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


class OracleRelativeDepthEstimator:
    """An ablation that stands in for a relative depth model: the world's exact depth, put through
    a random affine map in inverse depth per call (one chunk), ``pred = a·(1/z) + b``
    (:data:`RELATIVE_SCALES`, :data:`RELATIVE_SHIFTS`), so the update must align it to the memory.
    The map is drawn from ``(seed, first pixel frame index of the call)``: deterministic, and
    independent of what ran before. ``kind = "relative"``: returns (pred (T, H, W), valid (T, H, W)),
    0 where there is no surface (sky).
    """

    name = "oracle-relative"
    kind = "relative"

    def __init__(self, scene, fps: float, seed: int = 0) -> None:
        self.oracle = OracleDepthEstimator(scene, fps)
        self.seed = seed

    def affine_map(self, first_frame: int) -> tuple[float, float]:
        """(a, b) of the call whose first pixel frame is ``first_frame``."""
        import numpy as np

        rng = np.random.default_rng([self.seed, int(first_frame)])
        lo, hi = np.log(RELATIVE_SCALES[0]), np.log(RELATIVE_SCALES[1])
        return float(np.exp(rng.uniform(lo, hi))), float(rng.uniform(*RELATIVE_SHIFTS))

    def __call__(self, images: Tensor, cameras: Camera, frame_indices: list[int]) -> tuple[Tensor, Tensor]:
        depth, valid = self.oracle(images, cameras, frame_indices)
        a, b = self.affine_map(frame_indices[0])
        inverse = a / depth.double() + b
        return torch.where(valid, inverse, torch.zeros_like(inverse)).float(), valid


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
