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

How the read reaches the model is :data:`mirage.backbones.base.MEMORY_INPUTS`: ``branch`` (a
trained branch reads it, no injection), ``inject`` (the model is given an empty read; injection
only) or ``both``; the settings are :class:`mirage.backbones.base.Injection`. This module holds
the kernel, imported by the sampler loops only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirage.backbones.base import Injection

__all__ = ["inject_read", "Injector"]


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


