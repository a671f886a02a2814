"""The temporal-stride rule, once: latent frame k holds pixel frame τ·k.

A clip of T latent frames therefore has F = τ·(T − 1) + 1 pixel frames, and a pixel frame count
is valid when it has that form (33 pixel frames are 9 latent frames at τ = 4).
"""

from __future__ import annotations

__all__ = ["pixel_frames", "is_frame_count", "whole_latent_frames", "valid_frame_counts"]


def pixel_frames(latents: int, temporal_stride: int) -> int:
    """The pixel frames F = τ·(T − 1) + 1 of ``latents`` latent frames T."""
    return temporal_stride * (latents - 1) + 1


def is_frame_count(frames, temporal_stride: int, min_latents: int = 2) -> bool:
    """True when ``frames`` is an int F = τ·k + 1 with at least ``min_latents`` latent frames (k + 1)."""
    return (not isinstance(frames, bool) and isinstance(frames, int)
            and frames >= pixel_frames(min_latents, temporal_stride) and (frames - 1) % temporal_stride == 0)


def whole_latent_frames(frames: int, temporal_stride: int) -> int:
    """The largest valid frame count ≤ ``frames``: trailing frames short of a latent frame dropped."""
    return (frames - 1) // temporal_stride * temporal_stride + 1


def valid_frame_counts(temporal_stride: int, limit: int = 8) -> list[int]:
    """The first ``limit`` valid frame counts τ·k + 1 (k ≥ 1)."""
    return [pixel_frames(k + 1, temporal_stride) for k in range(1, limit + 1)]
