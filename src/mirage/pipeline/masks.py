"""Dynamic maskers (docs/design.md §5): which pixels of a generated frame must not enter the memory.

- ``oracle``: the world's dynamic-object and sky masks (:class:`mirage.world.oracle.OracleMasker`:
  it renders the scene, so it lives with the world).
- :class:`LatentDisagreementMasker` (built in, training-free): a latent cell is excluded where
  the memory read was confident (covered) and the generated latent disagrees with it by more
  than ``threshold`` (mean squared difference per channel, in the backbone's normalised latent
  units). A static scene reproduces what memory saw; a large disagreement means the content
  moved (or the model contradicted memory), and writing it would overwrite the static record.
  The depth estimator's invalid mask (sky) is added by the pipeline.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ConfigError
from mirage.geometry import Camera

__all__ = ["DynamicMasker", "LatentDisagreementMasker", "MASKERS"]

MASKERS = ("builtin", "oracle")


class DynamicMasker(Protocol):
    name: str

    def __call__(self, frames: Tensor, latents: Tensor, read_features: Tensor, read_mask: Tensor,
                 cameras: Camera, frame_indices: list[int]) -> Tensor:
        """frames (T, 3, H, W), latents (T, C, h, w), the memory read for them ((T, C, h, w),
        (T, h, w)), T cameras, pixel frame indices → exclude (T, H, W) bool."""
        ...


class LatentDisagreementMasker:
    """Exclude cells whose generated latent departs from a covered memory read."""

    name = "builtin"

    def __init__(self, threshold: float = 1.0) -> None:
        if not threshold > 0:
            raise ConfigError(f"`threshold` must be > 0 but is {threshold}")
        self.threshold = threshold

    def __call__(self, frames, latents, read_features, read_mask, cameras, frame_indices):
        H, W = frames.shape[-2:]
        diff = (latents.float() - read_features.float()).pow(2).mean(dim=1)  # (T, h, w)
        cells = read_mask.bool() & (diff > self.threshold)
        return F.interpolate(cells[:, None].float(), size=(H, W), mode="nearest")[:, 0].bool()
