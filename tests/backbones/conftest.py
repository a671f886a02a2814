"""Tiny random backbones shared by the backbone, pipeline and training tests."""

from __future__ import annotations

import pytest
import torch

from mirage.backbones.tiny import TinyBackbone, TinyConfig

# τ = 4 pinned (the shipped model's and Wan2.2's temporal stride), so the tests exercise keyframe
# latents, in-between frames and the τ·k+1 frame-count rule whatever the config defaults are.
SMALL = TinyConfig(height=32, width=32, latent_channels=4, vae_widths=(8, 8, 16, 16), dim=32, spatial_stride=8, patch=1,
                   layers=1, heads=2, depth_widths=(8, 8, 8, 8), steps=2, temporal_stride=4, max_frames=17)


def small_backbone(seed: int = 0) -> TinyBackbone:
    torch.manual_seed(seed)
    model = TinyBackbone(SMALL)
    # The output layer starts at zero (a pure memory copy); give it weights so samples vary.
    torch.nn.init.normal_(model.denoiser.out.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="session")
def backbone() -> TinyBackbone:
    return small_backbone()
