"""Training-free memory input: the memory read injected into x_t during sampling.

The memory holds the backbone's own latent tokens, so its read m can condition a flow-matching
sampler directly, with no trained branch. At each sampling step whose noise level t is at least
``until``, the covered target cells of x_t are set to the read noised to that level with the
chunk's own noise ε (the noise the chunk started from):

    x_t ← w·((1 − t)·m + t·ε) + (1 − w)·x_t,   w = 1 on covered cells, 0 elsewhere.

This is the replacement of RePaint (Lugmayr et al. 2022) and SDEdit (Meng et al. 2022) with the
known content taken from the memory instead of an encoded render, as training-free view
synthesis with warped latents does (docs/design.md §3.8). Because x_t on a covered cell is then
exactly what the forward process would give for the read, the model's uncovered cells are
denoised in agreement with it; below ``until`` the model refines the covered cells too.

How the read reaches the model is :data:`MEMORY_INPUTS`: ``branch`` (a trained branch reads it,
no injection), ``inject`` (the model is given an empty read; injection only) or ``both``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from mirage.errors import ConfigError

__all__ = ["MEMORY_INPUTS", "Injection", "inject_read", "Injector", "model_read"]

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


def inject_read(x_t: Tensor, level: float, read: Tensor, weight: Tensor, noise: Tensor) -> Tensor:
    """x_t with the read noised to ``level`` blended in by ``weight``.

    x_t, read, noise: the same shape (…); weight: broadcastable to it, in [0, 1] (0 leaves x_t).
    Returns w·((1 − t)·m + t·ε) + (1 − w)·x_t.
    """
    target = (1.0 - level) * read + level * noise
    return torch.lerp(x_t, target, weight)


class Injector:
    """``injector(x_t, level) → x_t`` for a sampler loop: :func:`inject_read` at levels ≥
    ``injection.until``, x_t unchanged below. ``read``, ``weight`` and ``noise`` are already in
    the loop's layout (``weight`` broadcastable to ``read``); ``levels`` records each level it
    injected at (tests, run records)."""

    def __init__(self, injection: Injection, read: Tensor, weight: Tensor, noise: Tensor) -> None:
        self.until = float(injection.until)
        self.read, self.weight, self.noise = read, weight, noise
        self.levels: list[float] = []

    def __call__(self, x_t: Tensor, level: float) -> Tensor:
        level = float(level)
        if level < self.until or level <= 0.0:
            return x_t
        self.levels.append(level)
        return inject_read(x_t, level, self.read.to(x_t.dtype), self.weight.to(x_t.dtype), self.noise.to(x_t.dtype))


def model_read(memory_input: str, features: Tensor, mask: Tensor,
               offset: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """What the model itself is given of the read: all of it for ``branch`` and ``both``, an
    empty read (zeros, nothing covered) for ``inject``."""
    if memory_input == "inject":
        return (torch.zeros_like(features), torch.zeros_like(mask),
                None if offset is None else torch.zeros_like(offset))
    return features, mask, offset


InjectFn = Callable[[Tensor, float], Tensor]
