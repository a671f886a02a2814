"""The tiny recipe's settings (`mirage train tiny`), frozen, and its seeded batch generators."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mirage.backbones.tiny import TinyConfig
from mirage.train.tiny_data import DataConfig

__all__ = ["TinyTrainConfig", "DENOISER_FIELDS", "batch_generator"]


@dataclass(frozen=True)
class TinyTrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    # The shipped model conditions its denoiser on the read's sub-cell offsets.
    model: TinyConfig = field(default_factory=lambda: TinyConfig(memory_offsets=True))
    vae_steps: int = 6000
    vae_batch: int = 4  # windows of 5 latent frames (5τ pixel frames)
    depth_steps: int = 900
    depth_batch: int = 16
    denoiser_steps: int = 6000
    denoiser_batch: int = 12
    p_drop_memory: float = 0.15  # memory and references dropped together (memory_mode=none)
    p_drop_references: float = 0.1
    p_drop_preceding: float = 0.1
    seed: int = 0
    threads: int = 2  # torch threads; the recipe's budget assumes the 2 cores to itself
    # Tiny weights whose VAE and depth estimator this run reuses (their stages are skipped):
    # retrain only the denoiser after a change to its conditioning. None = train every stage.
    init_from: str | None = None
    minutes: float = 88.0  # wall-clock budget for the whole run; stages share what is left


# Config fields only the denoiser uses: weights that differ only in these share a VAE and depth.
DENOISER_FIELDS = ("patch", "dim", "layers", "heads", "preceding", "references", "steps",
                   "schedule_shift", "memory_offsets")


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of batch ``step`` of a stage seeded by ``seed``: a resumed run draws the same batches."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


