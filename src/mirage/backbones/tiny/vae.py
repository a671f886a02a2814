"""The tiny VAE: spatial stride 4 or 8, temporal stride τ with *keyframe* latents.

Latent frame k is an encoding of pixel frame τk alone (its keyframe; latent 0 = frame 0), and
has the keyframe's pose. The decoder turns the pair (latent k−1, latent k) into pixel frames
τk−τ+1..τk: the in-between frames are interpolated from the two keyframes around them. A video's
keyframe τk itself is decoded from latent k alone (:meth:`TinyVAE.decode_video`).

Why not stack the τ frames into the encoder (as a plain Wan-style grouping would)? Then a latent
also encodes the direction of motion through its group, and a memory token re-read on a revisit
(which often moves the other way, e.g. the return swing of a pan) decodes to wrong in-between
frames. A keyframe latent is a picture of one pose, which is exactly what a memory indexed by
that pose can store and give back.

It is a deterministic autoencoder with a small latent penalty and noise injection while training
(so the decoder tolerates imperfect generated latents). ``latent_mean``/``latent_std`` normalise
latents to unit scale for the denoiser; they are fitted after training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mirage.backbones.tiny.config import TinyConfig

__all__ = ["TinyVAE", "ResBlock"]


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm2 = nn.GroupNorm(min(8, channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(y)))


class TinyVAE(nn.Module):
    """Frames ↔ latents: keyframes (N, 3, H, W) → (N, C, H/s, W/s); latent pairs → τ frames."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        tau, C = config.temporal_stride, config.latent_channels
        w = config.vae_widths
        # Stride-2 convs straight from the input: the full-resolution level is the costly one
        # on a CPU, so it only holds the decoder's last two convolutions.
        n = {4: 2, 8: 3}[config.spatial_stride]  # stride-2 stages
        enc: list[nn.Module] = [nn.Conv2d(3, w[1], 4, stride=2, padding=1), ResBlock(w[1])]
        for i in range(1, n):
            enc += [nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1), ResBlock(w[i + 1])]
        enc += [ResBlock(w[n]) for _ in range(config.vae_blocks - 1)]
        enc += [nn.GroupNorm(8, w[n]), nn.SiLU(), nn.Conv2d(w[n], C, 1)]
        self.enc = nn.Sequential(*enc)
        self.dec_in = nn.Conv2d(2 * C, w[n], 3, padding=1)
        # Dilations 1, 2, 4, … at the latent level widen the receptive field cheaply: an
        # in-between frame is the two keyframes' content moved by up to several latent cells.
        dec: list[nn.Module] = [ResBlock(w[n], dilation=2 ** (b % 3)) for b in range(config.vae_blocks)]
        for i in range(n, 1, -1):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[i], w[i - 1], 3, padding=1),
                    ResBlock(w[i - 1])]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[1], w[0], 3, padding=1)]
        if config.vae_full_res_block:
            dec.append(ResBlock(w[0]))
        dec += [nn.GroupNorm(min(8, w[0]), w[0]), nn.SiLU(), nn.Conv2d(w[0], 3 * tau, 3, padding=1)]
        self.dec = nn.Sequential(*dec)
        self.register_buffer("latent_mean", torch.zeros(C))
        self.register_buffer("latent_std", torch.ones(C))

    # -- raw (unnormalised) groups --------------------------------------------------------
    def encode_keyframes(self, frames: Tensor) -> Tensor:  # (N, 3, H, W) → (N, C, h, w)
        return self.enc(frames)

    def decode_groups(self, prev: Tensor, cur: Tensor) -> Tensor:  # 2 × (N, C, h, w) → (N, 3τ, H, W)
        return self.dec(self.dec_in(torch.cat([prev, cur], dim=1)))

    def normalize(self, z: Tensor) -> Tensor:  # (..., C, h, w) along dim −3
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, z: Tensor) -> Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    # -- videos ---------------------------------------------------------------------------
    def encode_video(self, video: Tensor) -> Tensor:  # (B, 3, F, H, W) → (B, C, T, h, w)
        B, _, Fr, H, W = video.shape
        keyframes = video[:, :, :: self.config.temporal_stride]  # (B, 3, T, H, W)
        T = keyframes.shape[2]
        z = self.normalize(self.encode_keyframes(keyframes.permute(0, 2, 1, 3, 4).reshape(B * T, 3, H, W)))
        return z.reshape(B, T, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_video(self, latents: Tensor) -> Tensor:  # (B, C, T, h, w) → (B, 3, F, H, W)
        """Latent frames → pixel frames. The in-between frames of group k come from the pair
        (latent k−1, latent k); keyframe τk comes from latent k alone, decoded as frame 0 always
        is (its latent as its own predecessor): a keyframe latent encodes that frame alone, so
        the same latent gives the same picture wherever it sits in a video. That is what lets
        a memory that gives back a latent exactly (an exact return) give back its frame. It also
        decodes held-out keyframes better, 0.53 dB PSNR on average over 32 ground-truth paths
        and better on each (benchmarks/results/keyframe-decode)."""
        B, C, T, h, w = latents.shape
        tau = self.config.temporal_stride
        z = self.denormalize(latents.permute(0, 2, 1, 3, 4))  # (B, T, C, h, w)
        prev = torch.cat([z[:, :1], z[:, :-1]], dim=1).reshape(B * T, C, h, w)  # latent 0 is its own
        z = z.reshape(B * T, C, h, w)
        # one batch: the pairs (for the in-between frames), then each latent alone (keyframes)
        out = self.decode_groups(torch.cat([prev, z]), torch.cat([z, z]))
        H, W = out.shape[-2:]
        pairs, alone = out.reshape(2, B, T, tau, 3, H, W).unbind(0)  # (B, T, τ, 3, H, W) each
        groups = torch.cat([pairs[:, :, :-1], alone[:, :, -1:]], dim=2)
        frames = torch.cat([groups[:, 0, -1:], groups[:, 1:].reshape(B, (T - 1) * tau, 3, H, W)], dim=1)
        return frames.permute(0, 2, 1, 3, 4)  # (B, 3, F, H, W)
