"""`TinyBackbone`: the embedded world model (VAE + memory-conditioned denoiser + depth).

It implements :class:`mirage.backbones.base.Backbone`. Weights live in one safetensors file
with the config and a format version in its metadata (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from mirage.backbones.base import ChunkConditioning
from mirage.backbones.tiny.config import TinyConfig
from mirage.backbones.tiny.denoiser import (
    SLOT_FIRST, SLOT_PRECEDING, SLOT_REFERENCE, SLOT_TARGET, TinyDenoiser,
)
from mirage.backbones.tiny.depth import TinyDepthNet
from mirage.backbones.tiny.flow import sample_euler, sampling_times
from mirage.backbones.tiny.vae import TinyVAE
from mirage.errors import ConfigError, MemoryFormatError, ShapeError
from mirage.files import load_safetensors, save_safetensors
from mirage.frames import is_frame_count

__all__ = ["TinyBackbone", "relative_pose", "WEIGHTS_FORMAT", "WEIGHTS_VERSION", "SHIPPED_WEIGHTS"]

WEIGHTS_FORMAT = "mirage.tiny"
WEIGHTS_VERSION = 1
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "tiny.safetensors"


def relative_pose(first_cam2world: Tensor, cam2world: Tensor) -> Tensor:
    """(S, 12) features of S cameras (S, 4, 4) in the camera frame of ``first_cam2world`` (4, 4).

    Rotation (row-major 3×3) then translation: the identity pose gives (1,0,0,0,1,0,0,0,1,0,0,0).
    """
    # A general inverse, not geometry.rigid_inverse: the closed form differs in the last bits
    # (~1e-7 after the float cast), which changes every output of the pipeline.
    rel = torch.linalg.inv(first_cam2world.double())[None] @ cam2world.double()  # (S, 4, 4)
    return torch.cat([rel[:, :3, :3].reshape(-1, 9), rel[:, :3, 3]], dim=1).float()


class TinyBackbone(nn.Module):
    """The tiny backbone. Build with random weights for tests, or ``TinyBackbone.load()``."""

    def __init__(self, config: TinyConfig | None = None) -> None:
        super().__init__()
        self.config = config or TinyConfig()
        self.vae = TinyVAE(self.config)
        self.denoiser = TinyDenoiser(self.config)
        self.depth = TinyDepthNet(self.config)
        self.metadata: dict = {}
        self.eval()

    # -- protocol -------------------------------------------------------------------------
    @property
    def spatial_stride(self) -> int:
        return self.config.spatial_stride

    @property
    def temporal_stride(self) -> int:
        return self.config.temporal_stride

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def max_frames(self) -> int:
        return self.config.max_frames

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_video(self, video: Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ShapeError(f"`video` must have shape (B, 3, F, H, W) but has {tuple(video.shape)}")
        Fr, H, W = video.shape[2:]
        tau = self.temporal_stride
        if not is_frame_count(Fr, tau, min_latents=1):
            raise ShapeError(f"`video` must have F = {tau}·k+1 frames but has {Fr}")
        m = self.spatial_stride * self.config.patch
        if H % m or W % m:
            raise ShapeError(f"`video` height and width must be divisible by {m} but are {H} and {W}")

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, F, H, W) in [−1, 1] → normalised latents (B, C, T, H/s, W/s), s = spatial_stride."""
        self._check_video(video)
        return self.vae.encode_video(video.to(self.device, torch.float32))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(B, C, T, h, w) → video (B, 3, τ(T−1)+1, s·h, s·w), clamped to [−1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ShapeError(
                f"`latents` must have shape (B, {self.latent_channels}, T, h, w) but has "
                f"{tuple(latents.shape)}"
            )
        return self.vae.decode_video(latents.to(self.device, torch.float32)).clamp(-1.0, 1.0)

    # The tiny model's denoiser was trained with its memory branch, so it reads the memory there
    # by default (mirage.backbones.inject for the other memory inputs).
    default_memory_input = "branch"

    @torch.no_grad()
    def sample(self, cond: ChunkConditioning, generator: torch.Generator, callback=None) -> Tensor:
        """Generate the chunk's target latents with ``cond.steps`` Euler steps.

        ``cond.memory_input`` says how the memory read reaches the model: through the trained
        branch, by injection into x_t (:mod:`mirage.backbones.inject`), or both.

        ``callback(step, steps)``, if given, is called after every denoising step.

        Returns (1, C, T, h, w): latent 0 is ``cond.first_latent``, 1..T−1 are generated.
        The noise is drawn on the CPU from ``generator``, so a seed gives the same chunk on any
        device.
        """
        dev = self.device
        C, h, w = cond.first_latent.shape
        n, P, R = cond.num_targets, cond.preceding.shape[0], cond.references.shape[0]
        slots = torch.tensor([SLOT_FIRST] + [SLOT_PRECEDING] * P + [SLOT_REFERENCE] * R
                             + [SLOT_TARGET] * n, device=dev)[None]
        context = torch.cat([cond.first_latent[None], cond.preceding, cond.references]).to(dev)
        cams = [cond.first_camera.cam2world]
        if P:
            cams.append(cond.preceding_cameras.cam2world)
        if R:
            cams.append(cond.reference_cameras.cam2world)
        cams.append(cond.target_cameras.cam2world)
        pose = relative_pose(cond.first_camera.cam2world[0], torch.cat(cams).cpu())[None].to(dev)
        S = 1 + P + R + n
        read_features, read_mask, read_offset = cond.model_read()  # empty for "inject"
        memory = torch.zeros(1, S, C, h, w, device=dev)
        memory[0, S - n:] = read_features.to(dev, torch.float32)
        mask = torch.zeros(1, S, h, w, dtype=torch.bool, device=dev)
        mask[0, S - n:] = read_mask.to(dev)
        offset = None
        if self.config.memory_offsets:
            offset = torch.zeros(1, S, 2, h, w, device=dev)
            if read_offset is not None:
                offset[0, S - n:] = read_offset.to(dev, torch.float32)
        valid = torch.ones(1, S, dtype=torch.bool, device=dev)
        noise = torch.randn(1, n, C, h, w, generator=generator, dtype=torch.float32, device=generator.device).to(dev)

        def denoise(x_t: Tensor, t: float) -> Tensor:
            x = torch.cat([context[None], x_t], dim=1)  # (1, S, C, h, w)
            tt = torch.zeros(1, S, device=dev)
            tt[0, S - n:] = t
            return self.denoiser(x, memory, mask, tt, pose, slots, valid, offset)[:, S - n:]

        times = sampling_times(cond.steps, self.config.schedule_shift)
        inject = cond.injector(noise, "ntchw")  # None for "branch"
        targets = sample_euler(denoise, noise, times, callback, inject=inject)  # (1, n, C, h, w)
        out = torch.cat([cond.first_latent.to(dev)[None, None], targets], dim=1)
        return out.permute(0, 2, 1, 3, 4)  # (1, C, T, h, w)

    # -- depth ----------------------------------------------------------------------------
    @torch.no_grad()
    def estimate_depth(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images (T, 3, H, W) in [−1, 1] → z-depth (T, H, W) (+inf invalid) and valid (T, H, W) on
        the model's device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"`images` must have shape (T, 3, H, W) but has {tuple(images.shape)}")
        return self.depth.predict(images.to(self.device, torch.float32))

    # -- persistence ----------------------------------------------------------------------
    def save(self, path, metadata: dict | None = None) -> None:
        """Write every weight and buffer as a safetensors file (atomic)."""
        meta = {
            "format": WEIGHTS_FORMAT,
            "version": str(WEIGHTS_VERSION),
            "config": self.config.to_json(),
            "info": json.dumps(metadata or self.metadata),
        }
        save_safetensors(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path=None, *, device=None) -> "TinyBackbone":
        """Load weights written by :meth:`save` (default: the weights shipped in the package)."""
        path = Path(path) if path is not None else SHIPPED_WEIGHTS
        if path.is_dir():
            path = path / "tiny.safetensors"
        if not path.is_file():
            raise ConfigError(
                f"tiny backbone weights {str(path)!r} do not exist (train them with "
                f"`mirage train tiny --install`)"
            )
        tensors, meta = load_safetensors(path, "tiny backbone weights")
        if meta.get("format") != WEIGHTS_FORMAT or meta.get("version") != str(WEIGHTS_VERSION):
            raise MemoryFormatError(
                f"{str(path)!r} is not tiny-backbone weights of version {WEIGHTS_VERSION} "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
            )
        model = cls(TinyConfig.from_json(meta["config"]))
        model.load_state_dict(tensors)
        model.metadata = json.loads(meta.get("info", "{}"))
        return model.to(device) if device is not None else model
