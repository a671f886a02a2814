"""Depth estimators for the memory update (docs/design.md §5): ``tiny`` (the backbone's) and ``oracle``
(the world's exact depth, :class:`mirage.world.oracle.OracleDepthEstimator`: it renders the
scene, so it lives with the world).

A :class:`DepthEstimator` maps images (T, 3, H, W) in [−1, 1] at known cameras to z-depth
(T, H, W) and a validity mask (T, H, W); invalid depth is +inf and never written to memory.
The ``oracle`` hands the pipeline the world's exact depth; it is an ablation and is labelled as
such in every report, because it gives the model the true geometry of content it may not have
generated.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from mirage.errors import ConfigError
from mirage.geometry import Camera

__all__ = ["DepthEstimator", "TinyDepthEstimator", "DEPTH_ESTIMATORS"]

DEPTH_ESTIMATORS = ("tiny", "oracle")


class DepthEstimator(Protocol):
    name: str

    def __call__(self, images: Tensor, cameras: Camera, frame_indices: list[int]) -> tuple[Tensor, Tensor]:
        """images (T, 3, H, W), T cameras, pixel frame indices → depth (T, H, W), valid (T, H, W)."""
        ...


class TinyDepthEstimator:
    """The depth network shipped with the tiny backbone (``backbone.estimate_depth``)."""

    name = "tiny"

    def __init__(self, backbone) -> None:
        if not hasattr(backbone, "estimate_depth"):
            raise ConfigError(
                f"depth estimator 'tiny' needs a backbone with `estimate_depth`, but "
                f"{type(backbone).__name__} has none"
            )
        self.backbone = backbone

    def __call__(self, images, cameras, frame_indices):
        return self.backbone.estimate_depth(images)
