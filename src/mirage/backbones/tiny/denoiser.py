"""The tiny memory-conditioned denoiser: a small transformer over every frame of a chunk.

Tokens are patches of ``patch``×``patch`` latent cells. A chunk is a list of frame *slots*:

- target frames (noisy, with their own noise level t), each with the memory read and its mask
  concatenated channel-wise (and, with ``config.memory_offsets``, the sub-cell offset of each
  covered cell's memory point: 0 where the read is exactly aligned);
- clean context frames at t = 0: the first frame, the preceding frames and the references.

Each slot carries a frame embedding (noise level, slot type, camera pose relative to the first
frame) that modulates every block (adaLN, as in DiT). Absent slots are masked out of attention.
The network predicts the clean latent x₀. The prediction is a residual on top of the memory read
where the mask is set: copying what memory saw is the default, and the network learns where and
how to correct it (reprojection misalignment, newly visible content).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mirage.backbones.tiny.config import TinyConfig

__all__ = ["TinyDenoiser", "SLOT_TARGET", "SLOT_FIRST", "SLOT_PRECEDING", "SLOT_REFERENCE",
           "POSE_DIM"]

SLOT_TARGET, SLOT_FIRST, SLOT_PRECEDING, SLOT_REFERENCE = 0, 1, 2, 3
POSE_DIM = 12  # rotation (9) and translation (3) of the slot's camera in the first frame's camera


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """(…,) in [0, 1] → (…, dim) sinusoidal features of 1000·t."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t[..., None].float() * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def spatial_embedding(h: int, w: int, dim: int, device=None) -> Tensor:
    """(h·w, dim) fixed 2D sinusoidal position features (half for rows, half for columns)."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    rows = torch.arange(h, dtype=torch.float32, device=device)[:, None] * freqs  # (h, d/4)
    cols = torch.arange(w, dtype=torch.float32, device=device)[:, None] * freqs
    r = torch.cat([rows.sin(), rows.cos()], -1)[:, None].expand(h, w, 2 * quarter)
    c = torch.cat([cols.sin(), cols.cos()], -1)[None].expand(h, w, 2 * quarter)
    return torch.cat([r, c], -1).reshape(h * w, 4 * quarter)


class Block(nn.Module):
    """Pre-norm transformer block with per-token adaLN shift/scale/gate."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: Tensor, cond: Tensor, attn_mask: Tensor | None) -> Tensor:
        # x (B, S·n, D) with n tokens per frame; cond (B, S, D) per frame; attn_mask (B, 1, 1, L)
        B, L, D = x.shape
        S = cond.shape[1]
        mod = self.ada(F.silu(cond))  # (B, S, 6D): computed per frame, then spread over tokens
        mod = mod[:, :, None].expand(B, S, L // S, 6 * D).reshape(B, L, 6 * D)
        s1, b1, g1, s2, b2, g2 = mod.chunk(6, dim=-1)
        y = self.norm1(x) * (1 + s1) + b1
        q, k, v = self.qkv(y).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, L, D/heads)
        x = x + (1 + g1) * self.proj(y.transpose(1, 2).reshape(B, L, D))
        y = self.norm2(x) * (1 + s2) + b2
        return x + (1 + g2) * self.mlp(y)


class TinyDenoiser(nn.Module):
    """x₀-predicting transformer over S frame slots of (C, h, w) latents."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        C, D, p = config.latent_channels, config.dim, config.patch
        self.config = config
        self.inp = nn.Linear(p * p * (2 * C + 1 + (2 if config.memory_offsets else 0)), D)
        self.time = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.pose = nn.Sequential(nn.Linear(POSE_DIM, D), nn.SiLU(), nn.Linear(D, D))
        self.slot = nn.Embedding(4, D)
        self.blocks = nn.ModuleList(Block(D, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(D, elementwise_affine=False)
        self.out = nn.Linear(D, p * p * C)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        x: Tensor,  # (B, S, C, h, w) noisy targets / clean context latents
        memory: Tensor,  # (B, S, C, h, w) memory read (zeros for context slots)
        mask: Tensor,  # (B, S, h, w) bool memory coverage
        t: Tensor,  # (B, S) noise level in [0, 1]; 0 for clean slots
        pose: Tensor,  # (B, S, 12) camera relative to the first frame
        slot: Tensor,  # (B, S) long slot type
        valid: Tensor,  # (B, S) bool, False = padding slot
        offset: Tensor | None = None,  # (B, S, 2, h, w) sub-cell offsets (config.memory_offsets)
    ) -> Tensor:  # (B, S, C, h, w) predicted clean latents
        B, S, C, h, w = x.shape
        D, p = self.config.dim, self.config.patch
        hp, wp = h // p, w // p
        m = mask.to(x.dtype)[:, :, None]  # (B, S, 1, h, w)
        parts = [x, memory * m, m]
        if self.config.memory_offsets:
            parts.append(torch.zeros_like(x[:, :, :2]) if offset is None else offset.to(x.dtype) * m)
        tokens = torch.cat(parts, dim=2)  # (B, S, 2C+1(+2), h, w)
        K = tokens.shape[2]
        tokens = tokens.reshape(B, S, K, hp, p, wp, p).permute(0, 1, 3, 5, 4, 6, 2)
        tokens = tokens.reshape(B, S * hp * wp, p * p * K)  # (B, L, p²(2C+1))
        tokens = self.inp(tokens) + spatial_embedding(hp, wp, D, x.device).repeat(S, 1)  # (B, L, D)
        frame = self.time(timestep_embedding(t, D)) + self.pose(pose) + self.slot(slot)  # (B, S, D)
        tokens = tokens + frame[:, :, None].expand(B, S, hp * wp, D).reshape(B, S * hp * wp, D)
        attn_mask = None
        if not bool(valid.all()):
            attn_mask = valid[:, :, None].expand(B, S, hp * wp).reshape(B, 1, 1, S * hp * wp)
        for block in self.blocks:
            tokens = block(tokens, frame, attn_mask)
        out = self.out(self.norm(tokens))  # (B, L, p²C)
        out = out.reshape(B, S, hp, wp, p, p, C).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, S, C, h, w)
        return out + memory * m  # residual on the memory read
