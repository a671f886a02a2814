"""The tiny depth estimator: a small U-Net from RGB to log z-depth and a sky/invalid logit.

Trained on the procedural world's exact depth. Metric scale is learnt from the world's fixed
camera height and field of view, so it is only meaningful on images like those.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mirage.backbones.tiny.config import TinyConfig
from mirage.backbones.tiny.vae import ResBlock

__all__ = ["TinyDepthNet", "SKY_THRESHOLD"]

SKY_THRESHOLD = 0.0  # logit > 0: sky / invalid


class TinyDepthNet(nn.Module):
    """(N, 3, H, W) in [−1, 1] → log-depth (N, H, W) and sky logit (N, H, W)."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        w = config.depth_widths
        self.stem = nn.Conv2d(3, w[0], 3, padding=1)
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1), ResBlock(w[i + 1]))
            for i in range(3)
        )
        self.up = nn.ModuleList(
            nn.Conv2d(w[i + 1] + w[i], w[i], 3, padding=1) for i in reversed(range(3))
        )
        self.head = nn.Conv2d(w[0], 2, 3, padding=1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        skips = [F.silu(self.stem(images))]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = F.silu(up(torch.cat([x, skip], dim=1)))
        out = self.head(x)
        return out[:, 0], out[:, 1]

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Depth (N, H, W) (+inf where invalid) and valid (N, H, W) bool."""
        log_depth, sky = self(images)
        valid = sky <= SKY_THRESHOLD
        depth = torch.where(valid, log_depth.exp(), torch.full_like(log_depth, float("inf")))
        return depth, valid
