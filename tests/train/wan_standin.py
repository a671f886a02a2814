"""A small stand-in for the Wan2.2 backbone: the training contract without diffusers.

It has what ``mirage data build`` and ``mirage train wan`` use: strides, ``encode`` (a fixed
pooling "VAE": pixel frames 0, τ, 2τ, … averaged over s×s cells and mixed to C channels),
``assemble`` (the real :func:`mirage.backbones.wan22.sequence.assemble_chunk`), ``predict``
(a tiny per-frame-timestep model with a frozen base and a trainable memory branch),
``encode_text``, branch and LoRA save/load. Used by the data, training and distribution tests,
and by ``dist_worker.py`` under torchrun.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mirage.backbones.wan22.sequence import assemble_chunk
from mirage.files import load_safetensors, save_safetensors

C, STRIDE, TAU, MAX_FRAMES, TEXT = 4, 8, 4, 9, 8


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.base = nn.Conv3d(C, C, 1)
        self.time = nn.Linear(1, C)
        self.vace_branch = nn.Conv3d(96, C, (1, 3, 3), padding=(0, 1, 1))
        self.text = nn.Linear(TEXT, C)
        for p in self.parameters():
            p.data = 0.3 * torch.randn(p.shape, generator=g)
        self.lora_down: nn.Linear | None = None

    def forward(self, latents, timesteps, control, context):
        t = self.time(timesteps[..., None] / 1000.0)  # (B, T, C)
        x = self.base(latents)
        if self.lora_down is not None:
            x = x + self.lora_up(self.lora_down(latents.movedim(1, -1))).movedim(-1, 1)
        x = x * (1 + t.permute(0, 2, 1)[..., None, None]) + self.vace_branch(control)
        return x + self.text(context).mean(1)[:, :, None, None, None]


class StandInWan:
    temporal_stride, spatial_stride, latent_channels, max_frames, text_dim = TAU, STRIDE, C, MAX_FRAMES, TEXT

    def __init__(self, device="cpu") -> None:
        self.device = torch.device(device)
        self.transformer = _Transformer().to(self.device).requires_grad_(False)
        self.mix = torch.tensor([[1.0, 0.5, -0.5], [0.2, -1.0, 0.3], [-0.4, 0.1, 1.0], [0.6, 0.6, 0.6]])

    # -- "VAE" --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, F, H, W) → (B, C, (F−1)/τ+1, H/s, W/s)."""
        keys = video[:, :, ::TAU].float()
        B, _, T, H, W = keys.shape
        pooled = F.avg_pool2d(keys.transpose(1, 2).reshape(B * T, 3, H, W), STRIDE)  # (B·T, 3, h, w)
        z = torch.einsum("ck,nkhw->nchw", self.mix, pooled)
        return z.reshape(B, T, C, *z.shape[-2:]).transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        B, _, T, h, w = latents.shape
        rgb = torch.einsum("kc,bcthw->bkthw", torch.linalg.pinv(self.mix), latents.float())
        rgb = rgb.repeat_interleave(STRIDE, -1).repeat_interleave(STRIDE, -2)
        frames = torch.cat([rgb[:, :, :1], rgb[:, :, 1:].repeat_interleave(TAU, 2)], dim=2)
        return frames.clamp(-1, 1)

    # -- model ----------------------------------------------------------------------------
    def assemble(self, cond):
        return assemble_chunk(cond, device=self.device)

    def encode_text(self, prompts, batch: int = 1) -> Tensor:
        n = batch if prompts is None else len(prompts)
        return torch.zeros(n, 3, TEXT, device=self.device)

    def predict(self, latents, timesteps, control, context) -> Tensor:
        return self.transformer(latents.to(self.device), timesteps.to(self.device),
                                control.to(self.device), context.to(self.device)).float()

    def memory_branch_parameters(self) -> list[nn.Parameter]:
        return list(self.transformer.vace_branch.parameters())

    def save_memory_branch(self, path) -> None:
        save_safetensors(path, dict(self.transformer.vace_branch.state_dict()), {"kind": "branch"})

    def load_memory_branch(self, path) -> None:
        tensors, _ = load_safetensors(path, "branch")
        self.transformer.vace_branch.load_state_dict(tensors)

    def add_lora(self, rank: int = 64, alpha: float = 64) -> None:
        tr = self.transformer
        tr.lora_down = nn.Linear(C, rank, bias=False).to(self.device)
        tr.lora_up = nn.Linear(rank, C, bias=False).to(self.device)
        nn.init.zeros_(tr.lora_up.weight)

    def save_lora(self, path) -> None:
        tr = self.transformer
        save_safetensors(path, {"down": tr.lora_down.weight, "up": tr.lora_up.weight}, {"kind": "lora"})


def render_clips(root: Path, count: int = 2, frames: int = 17, size: int = 32) -> Path:
    """``count`` procedural-world clips in the geometry.npz layout under ``root``."""
    from mirage.world import generate_scene, make_trajectory
    from mirage.world.dataset import render_clip_arrays
    from mirage.cameras import save_geometry_npz

    for i in range(count):
        scene = generate_scene(("room", "courtyard")[i % 2], 1000 + i)
        cams = make_trajectory("pan-return", scene, frames, size, size, angle_deg=60.0)
        (root / f"clip{i}").mkdir(parents=True, exist_ok=True)
        save_geometry_npz(root / f"clip{i}" / "geometry.npz", cameras=cams,
                          **render_clip_arrays(scene, cams, 16.0))
    return root


def build_data(root: Path) -> Path:
    """Two rendered clips → ``root/shards`` built with the stand-in (8 samples)."""
    from mirage.data import BuildConfig, build_dataset

    render_clips(root / "clips")
    build_dataset(root / "clips", StandInWan(), root / "shards", BuildConfig(), progress=False)
    return root / "shards"


def branch_state(bb: StandInWan) -> dict:
    return {k: v.detach().clone() for k, v in bb.transformer.vace_branch.state_dict().items()}
