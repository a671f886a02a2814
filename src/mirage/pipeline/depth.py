"""Depth estimators for the memory update (docs/design.md §5): ``tiny`` (the backbone's), ``oracle`` (the world's
exact depth, :class:`mirage.world.oracle.OracleDepthEstimator`: it renders the scene, so it lives
with the world, as does its ``oracle-relative`` ablation) and a local transformers depth model
(:class:`HFDepthEstimator`, ``--depth-model DIR``).

A :class:`DepthEstimator` maps images (T, 3, H, W) in [−1, 1] at known cameras to z-depth
(T, H, W) and a validity mask (T, H, W); invalid depth is +inf and never written to memory.
The ``oracle`` hands the pipeline the world's exact depth; it is an ablation and is labelled as
such in every report, because it gives the model the true geometry of content it may not have
generated.

An estimator's ``kind`` says what it returns: ``"metric"`` (the default when absent) is z-depth
used as it is; ``"relative"`` is an affine *inverse* depth (T, H, W) with its validity mask, which
the session aligns to the memory frame by frame before writing (:mod:`mirage.pipeline.depth_align`).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from mirage.errors import ConfigError
from mirage.geometry import Camera

__all__ = ["DepthEstimator", "TinyDepthEstimator", "HFDepthEstimator", "DEPTH_ESTIMATORS", "DEPTH_KINDS",
           "depth_kind"]

DEPTH_ESTIMATORS = ("tiny", "oracle", "oracle-relative")
DEPTH_KINDS = ("metric", "relative")


def depth_kind(estimator) -> str:
    """``estimator.kind`` ("metric" when it has none); anything else is an error."""
    kind = getattr(estimator, "kind", "metric")
    if kind not in DEPTH_KINDS:
        raise ConfigError(f"a depth estimator's `kind` must be one of {DEPTH_KINDS} but "
                          f"{type(estimator).__name__}'s is {kind!r}")
    return kind


class DepthEstimator(Protocol):
    name: str
    kind: str  # optional: "metric" (default) or "relative" (module docstring)

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


class HFDepthEstimator:
    """A local transformers depth model (:class:`mirage.depth_model.HFDepthModel`) as the
    update's estimator. A relative model (Depth Anything V2, DPT) returns its affine inverse depth
    (``kind = "relative"``: aligned to the memory per frame); a metric one returns z-depth
    (``kind = "metric"``: used as it is). ``path`` must be a folder with a ``config.json``."""

    def __init__(self, path, *, device=None, batch_size: int = 8) -> None:
        from mirage.depth_model import HFDepthModel

        self.model = HFDepthModel(path, device=device, batch_size=batch_size)
        self.kind = "metric" if self.model.metric else "relative"
        self.name = f"model:{self.model.name}"

    def __call__(self, images, cameras, frame_indices):
        import torch

        from mirage.video import to_uint8

        frames = to_uint8(images.float()).permute(0, 2, 3, 1).cpu().numpy()  # (T, H, W, 3)
        inverse = torch.from_numpy(self.model(frames)).double()  # (T, H, W)
        valid = torch.isfinite(inverse)
        if self.kind == "relative":
            return inverse.float(), valid
        valid = valid & (inverse > 0)  # a metric model's output came back inverted: undo it
        depth = torch.where(valid, 1.0 / inverse.clamp_min(1e-12), torch.full_like(inverse, float("inf")))
        return depth.float(), valid
