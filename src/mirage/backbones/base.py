"""The backbone protocol (docs/design.md §4.1) and the per-chunk conditioning it samples from.

The pipeline talks to a backbone only through :class:`Backbone`: strides, channels, the chunk
size, ``encode``/``decode`` and ``sample``. Everything a backbone needs to generate one chunk
travels in a :class:`ChunkConditioning`, so the tiny model and Wan2.2 are interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from mirage.errors import ShapeError, expect_shape
from mirage.geometry import Camera

__all__ = ["Backbone", "ChunkConditioning"]


@dataclass(frozen=True)
class ChunkConditioning:
    """Everything one chunk is generated from. Latents are (C, ·, h, w), one batch element.

    Attributes:
        first_latent: (C, h, w) clean latent of the chunk's first frame (the previous chunk's
            last latent frame, or the encoded input image for the first chunk).
        memory_features: (T−1, C, h, w) memory read for the target latent frames (zeros where
            empty); latent frames 1..T−1 of the chunk are the targets.
        memory_mask: (T−1, h, w) bool, True where the memory covers a cell.
        preceding: (P, C, h, w) clean latents of the frames just before the first frame
            (oldest first); P may be 0.
        references: (R, C, h, w) clean latents of covisible past frames; R may be 0.
        first_camera: 1 camera of the first frame, at pixel size (H, W).
        target_cameras: T−1 cameras of the target latent frames, at pixel size (H, W).
        preceding_cameras: P cameras, or None when P = 0.
        reference_cameras: R cameras, or None when R = 0.
        steps: sampling steps.
        text: optional prompt (ignored by backbones without a text encoder).
        memory_offset: optional (T−1, 2, h, w) sub-cell offset of each covered cell's memory
            point, (x − col, y − row) in cells (:class:`mirage.memory.MemoryRead`); None = not
            known. Backbones trained without it ignore it.
    """

    first_latent: Tensor
    memory_features: Tensor
    memory_mask: Tensor
    preceding: Tensor
    references: Tensor
    first_camera: Camera
    target_cameras: Camera
    preceding_cameras: Camera | None = None
    reference_cameras: Camera | None = None
    steps: int = 6
    text: str | None = None
    memory_offset: Tensor | None = None

    def __post_init__(self) -> None:
        expect_shape("first_latent", self.first_latent, (None, None, None))
        C, h, w = self.first_latent.shape
        expect_shape("memory_features", self.memory_features, (None, C, h, w))
        n = self.memory_features.shape[0]
        expect_shape("memory_mask", self.memory_mask, (n, h, w))
        if self.memory_offset is not None:
            expect_shape("memory_offset", self.memory_offset, (n, 2, h, w))
        expect_shape("preceding", self.preceding, (None, C, h, w))
        expect_shape("references", self.references, (None, C, h, w))
        if len(self.target_cameras) != n:
            raise ShapeError(
                f"`target_cameras` must hold {n} cameras (one per target latent frame) but "
                f"holds {len(self.target_cameras)}"
            )
        for name, latents, cams in (
            ("preceding", self.preceding, self.preceding_cameras),
            ("references", self.references, self.reference_cameras),
        ):
            count = 0 if cams is None else len(cams)
            if latents.shape[0] != count:
                raise ShapeError(
                    f"`{name}` holds {latents.shape[0]} latent frames but `{name}_cameras` "
                    f"holds {count} cameras"
                )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ShapeError(f"`steps` must be an int ≥ 1 but is {self.steps!r}")

    @property
    def num_targets(self) -> int:
        """T − 1, the number of latent frames to generate."""
        return self.memory_features.shape[0]


@runtime_checkable
class Backbone(Protocol):
    """What the pipeline needs from a video backbone (docs/design.md §4.1).

    - ``spatial_stride`` s and ``temporal_stride`` τ: latent frame k covers pixel frame τ·k
      (and the τ−1 frames before it); latent cell (i, j) covers pixels [s·i, s·i+s) × [s·j, s·j+s).
    - ``latent_channels`` C and ``max_frames``, the most pixel frames one chunk may hold
      (of the form τ·k+1).
    """

    spatial_stride: int
    temporal_stride: int
    latent_channels: int
    max_frames: int

    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, F, H, W) in [−1, 1], F = τ·(T−1)+1 → latents (B, C, T, h, w)."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """(B, C, T, h, w) → video (B, 3, τ·(T−1)+1, H, W) in [−1, 1]."""
        ...

    def sample(self, cond: ChunkConditioning, generator: torch.Generator, callback=None) -> Tensor:
        """Generate one chunk: latents (1, C, T, h, w); latent 0 is ``cond.first_latent``.

        ``callback(step, steps)``, when given, is called after each denoising step (progress).
        """
        ...
