"""Rectified flow with an x₀-predicting network (Liu et al. 2022; Lipman et al. 2023).

x_t = (1 − t)·x₀ + t·ε, so the velocity is v = ε − x₀ = (x_t − x₀)/t. The network predicts x₀;
the Euler step from t to t' is x_{t'} = x_t + (t' − t)·(x_t − x̂₀)/t, and the last step (t' = 0)
lands exactly on x̂₀.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["sampling_times", "sample_euler", "add_noise"]


def sampling_times(steps: int, shift: float = 1.0) -> Tensor:
    """(steps + 1,) noise levels from 1 to 0 on the host (the loop reads them as numbers);
    ``shift`` > 1 spends more steps at high noise."""
    s = torch.linspace(1.0, 0.0, steps + 1, device="cpu")
    return shift * s / (1.0 + (shift - 1.0) * s)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 − t)·x₀ + t·ε, with ``t`` broadcast from the left (shape (B, S) for (B, S, …))."""
    t = t.reshape(*t.shape, *([1] * (x0.ndim - t.ndim)))
    return (1.0 - t) * x0 + t * noise


def sample_euler(denoise: Callable[[Tensor, float], Tensor], x: Tensor, times: Tensor,
                 callback: Callable[[int, int], None] | None = None, *,
                 inject: Callable[[Tensor, float], Tensor] | None = None) -> Tensor:
    """Euler sampler for rectified flow: ``denoise(x_t, t) → x̂₀``; ``x`` is the noise at t=times[0].

    ``inject(x_t, t) → x_t``, when given, is applied to x_t right before each model call
    (:class:`mirage.backbones.inject.Injector`).
    """
    steps = len(times) - 1
    for i, (t, t_next) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
        if inject is not None:
            x = inject(x, t)
        x0 = denoise(x, t)
        x = x0 if t_next == 0.0 else x + (t_next - t) * (x - x0) / t
        if callback is not None:
            callback(i + 1, steps)
    return x
