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

from mirage.errors import ConfigError, ShapeError, expect_shape
from mirage.geometry import Camera

__all__ = ["Backbone", "ChunkConditioning", "MEMORY_INPUTS", "Injection"]

# How the memory read reaches the model (docs/design.md §3.8; the kernel is mirage.backbones.inject).
MEMORY_INPUTS = ("branch", "inject", "both")


@dataclass(frozen=True)
class Injection:
    """How the read is injected (the variants measured in ``benchmarks/inject_variants.py``).

    until: inject at every step whose noise level t ≥ ``until`` (t in [0, 1]; 1 = pure noise).
    max_offset: skip covered cells whose read is off its cell centre by more than this many
        cells (``MemoryRead.offset``); None injects every covered cell.
    feather: 0 for a hard mask; k > 0 weights each covered cell by the covered share of the
        (2k+1)² cells around it, so the border of a covered region is held less firmly.
    """

    until: float = 0.0
    max_offset: float | None = None
    feather: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.until, bool) or not isinstance(self.until, (int, float)) or not 0.0 <= self.until <= 1.0:
            raise ConfigError(f"`inject_until` must be a number in [0, 1] but is {self.until!r}")
        if self.max_offset is not None and (isinstance(self.max_offset, bool)
                                            or not isinstance(self.max_offset, (int, float))
                                            or not 0.0 <= self.max_offset):
            raise ConfigError(f"`inject_max_offset` must be None or a number ≥ 0 but is {self.max_offset!r}")
        if isinstance(self.feather, bool) or not isinstance(self.feather, int) or self.feather < 0:
            raise ConfigError(f"`inject_feather` must be an int ≥ 0 but is {self.feather!r}")

    def weight(self, mask: Tensor, offset: Tensor | None) -> Tensor:
        """(n, h, w) float weight in [0, 1] of each target cell from the read's ``mask`` (n, h, w)
        and ``offset`` (n, 2, h, w) or None."""
        keep = mask.bool()
        if self.max_offset is not None and offset is not None:
            keep = keep & (offset.abs().amax(dim=1) <= self.max_offset)
        w = keep.float()
        if self.feather:
            k = 2 * self.feather + 1
            share = torch.nn.functional.avg_pool2d(w[:, None], k, stride=1, padding=self.feather,
                                                   count_include_pad=False)[:, 0]
            w = w * share
        return w


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
        memory_input: how the read reaches the model (:mod:`mirage.backbones.inject`):
            "branch" (the model's memory branch reads it), "inject" (the model is given an empty
            read; the covered cells of x_t are set to the noised read while sampling) or "both".
        injection: the :class:`~mirage.backbones.inject.Injection` settings for "inject" and
            "both" (None: its defaults).
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
    memory_input: str = "branch"
    injection: Injection | None = None

    def __post_init__(self) -> None:
        if self.memory_input not in MEMORY_INPUTS:
            raise ConfigError(f"`memory_input` must be one of {MEMORY_INPUTS} but is {self.memory_input!r}")
        if self.injection is not None and not isinstance(self.injection, Injection):
            raise ConfigError(f"`injection` must be None or an Injection but is {type(self.injection).__name__}")
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

    def model_read(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """(features, mask, offset) of the read as the model itself is given it: the read for
        "branch" and "both", an empty one for "inject"."""
        if self.memory_input == "inject":
            offset = None if self.memory_offset is None else torch.zeros_like(self.memory_offset)
            return torch.zeros_like(self.memory_features), torch.zeros_like(self.memory_mask), offset
        return self.memory_features, self.memory_mask, self.memory_offset

    def injector(self, noise: Tensor, layout: str, device=None):
        """The sampler's ``inject(x_t, level)`` hook, a :class:`mirage.backbones.inject.Injector`,
        for "inject" and "both" (None for "branch").

        noise: the chunk's starting noise in the sampler's layout, "ntchw" (1, n, C, h, w) or
        "bcthw" (1, C, n, h, w); the read and its weight are put in the same layout on ``device``.
        """
        from mirage.backbones.inject import Injector

        if self.memory_input == "branch":
            return None
        injection = self.injection or Injection()
        weight = injection.weight(self.memory_mask, self.memory_offset)  # (n, h, w)
        read = self.memory_features.float()  # (n, C, h, w)
        if layout == "ntchw":
            read, weight = read[None], weight[None, :, None]
        elif layout == "bcthw":
            read, weight = read.permute(1, 0, 2, 3)[None], weight[None, None]
        else:
            raise ValueError(f"unknown layout {layout!r}")
        device = noise.device if device is None else device
        return Injector(injection, read.to(device), weight.to(device), noise)


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
