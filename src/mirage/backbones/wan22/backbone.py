"""`Wan22Backbone`: Wan2.2-TI2V-5B with the memory branch behind the backbone protocol.

Components: diffusers ``AutoencoderKLWan`` (z = 48, strides 16×16×4; always float32),
:class:`~mirage.backbones.wan22.transformer.MemoryWanTransformer`, an optional umT5 text
encoder, and a flow-matching scheduler. Latents are normalised with the VAE config's
``latents_mean``/``latents_std`` exactly as diffusers' Wan pipelines do:
z_norm = (z − mean) / std, and decoding inverts it. Encoding takes the posterior mode.

Depth for the memory update (``estimate_depth``) comes from the depth network shipped with the
tiny backbone, run at 64 pixels high (aspect kept) and resized back (nearest). It was trained
on the procedural world only; run.json labels it.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.backbones.base import ChunkConditioning
from mirage.backbones.wan22.config import TEMPORAL_STRIDE, Wan22Config, resolve_device, resolve_dtype
from mirage.backbones.wan22.sequence import ChunkInputs, assemble_chunk
from mirage.backbones.wan22.text import TextEncoder
from mirage.errors import ConfigError, ShapeError
from mirage.frames import is_frame_count

__all__ = ["Wan22Backbone", "DEPTH_LABEL"]

DEPTH_LABEL = "tiny (the tiny backbone's depth network, run at 64 px high and resized)"


class Wan22Backbone:
    """Wan2.2 behind :class:`mirage.backbones.base.Backbone`. Build with ``load_wan22``.

    transformer: a ``MemoryWanTransformer``; vae: an ``AutoencoderKLWan``; text_encoder and
    tokenizer: umT5 and its tokenizer, or None; scheduler_config: the weights'
    ``scheduler_config.json`` dict or None; info: labels for run.json.
    """

    temporal_stride = TEMPORAL_STRIDE

    def __init__(self, transformer, vae, text_encoder=None, tokenizer=None, *,
                 config: Wan22Config | None = None, scheduler_config: dict | None = None,
                 info: dict | None = None) -> None:
        self.config = config or Wan22Config()
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_dtype(self.config.dtype, self.device)
        offload = self.config.offload == "model"
        if transformer.proj_out.weight.dtype != self.dtype:  # loaders pass it in the right dtype
            transformer = transformer.to(dtype=self.dtype)
        self.transformer = transformer.to(self.device).eval().requires_grad_(False)
        if vae.dtype != torch.float32:
            vae = vae.float()
        self.vae = vae.to("cpu" if offload else self.device).eval().requires_grad_(False)
        if self.config.vae_tiling:
            self.vae.enable_tiling()
        self.text = TextEncoder(text_encoder, tokenizer, self.text_dim, self.config.text_len,
                                self.device, self.dtype, offload=offload)
        self.scheduler_config = scheduler_config
        self.info = dict(info or {})
        self._depth_net = None
        vae_cfg = self.vae.config
        if vae_cfg.z_dim != transformer.config.in_channels:
            raise ConfigError(f"the VAE has z_dim {vae_cfg.z_dim} but the transformer takes "
                              f"{transformer.config.in_channels} input channels")
        self.spatial_stride = int(vae_cfg.scale_factor_spatial)
        self.temporal_stride = int(vae_cfg.scale_factor_temporal)
        mean = torch.tensor(vae_cfg.latents_mean, dtype=torch.float32)
        std = torch.tensor(vae_cfg.latents_std, dtype=torch.float32)
        self._mean = mean.view(1, -1, 1, 1, 1).to(self.device)
        self._std = std.view(1, -1, 1, 1, 1).to(self.device)

    # The memory's tokens in half precision (PipelineConfig.memory_dtype): half the bytes of
    # float32, and under 0.0002 dB of revisit PSNR on the tiny model's quick suite
    # (benchmarks/results/memory-dtype).
    default_memory_dtype = "float16"

    @property
    def has_memory_branch(self) -> bool:
        """True once trained memory-branch weights are loaded (:meth:`load_memory_branch`); the
        zero-initialised branch leaves the output equal to the base model's."""
        return self.info.get("memory_branch") is not None

    @property
    def default_memory_input(self) -> str:
        """"both" with a trained memory branch, "inject" without one: an untrained branch ignores
        the read, so only injection can use the memory (:mod:`mirage.backbones.inject`)."""
        return "both" if self.has_memory_branch else "inject"

    # -- protocol -------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def max_frames(self) -> int:
        return self.config.max_frames

    @property
    def text_dim(self) -> int:
        return int(self.transformer.config.text_dim)

    @property
    def size_multiple(self) -> int:
        """Frame sizes must be divisible by this: VAE stride × transformer patch (16·2 = 32)."""
        return self.spatial_stride * int(self.transformer.config.patch_size[1])

    @contextlib.contextmanager
    def _vae_on_device(self):
        if self.config.offload == "model":
            self.vae.to(self.device)
            try:
                yield self.vae
            finally:
                self.vae.to("cpu")
        else:
            yield self.vae

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, F, H, W) in [−1, 1], F = 4k+1 → normalised latents (B, 48, k+1, H/16, W/16) on the
        backbone's device."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ShapeError(f"`video` must have shape (B, 3, F, H, W) but has {tuple(video.shape)}")
        Fr, H, W = video.shape[2:]
        tau, s = self.temporal_stride, self.spatial_stride
        if not is_frame_count(Fr, tau, min_latents=1):
            raise ShapeError(f"`video` must have F = {tau}·k+1 frames but has {Fr}")
        if H % s or W % s:
            raise ShapeError(f"`video` height and width must be divisible by {s} but are {H} and {W}")
        with self._vae_on_device() as vae:
            z = vae.encode(video.to(self.device, torch.float32)).latent_dist.mode().float()
        return (z - self._mean) / self._std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents (B, 48, T, h, w) → video (B, 3, 4(T−1)+1, 16h, 16w) in [−1, 1] on the
        backbone's device."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ShapeError(f"`latents` must have shape (B, {self.latent_channels}, T, h, w) but has "
                             f"{tuple(latents.shape)}")
        z = latents.to(self.device, torch.float32) * self._std + self._mean
        with self._vae_on_device() as vae:
            video = vae.decode(z).sample.float()
        return video.clamp(-1.0, 1.0)

    def encode_text(self, prompts: list[str] | None, batch: int = 1) -> Tensor:
        """Prompts → context (B, L, text_dim) on the backbone's device; zeros without an encoder.

        ``None`` (no prompt) encodes the empty prompt "" when an encoder is loaded.
        """
        return self.text(prompts, batch)

    def assemble(self, cond: ChunkConditioning) -> ChunkInputs:
        """The chunk's sequence: clean latents, 96-channel control, frame layout (see ``sequence``)."""
        return assemble_chunk(cond, device=self.device, dtype=torch.float32)

    def predict(self, latents: Tensor, timesteps: Tensor, control: Tensor, context: Tensor) -> Tensor:
        """Flow-matching velocity (B, C, T, h, w) (float32) of latents (B, C, T, h, w).

        timesteps: (B, T) noise level per latent frame in [0, 1000] (0 = clean);
        control: (B, 96, T, h, w); context: (B, L, text_dim). Gradients flow when enabled.
        """
        if latents.ndim != 5 or timesteps.shape != (latents.shape[0], latents.shape[2]):
            raise ShapeError(f"`timesteps` must have shape (B, T) = {(latents.shape[0], latents.shape[2])} "
                             f"for latents {tuple(latents.shape)} but has {tuple(timesteps.shape)}")
        out = self.transformer(
            hidden_states=latents.to(self.device, self.dtype),
            timestep=timesteps.to(self.device, torch.float32),
            encoder_hidden_states=context.to(self.device, self.dtype),
            control_hidden_states=control.to(self.device, self.dtype),
            return_dict=False,
        )[0]
        return out.float()

    @torch.no_grad()
    def sample(self, cond: ChunkConditioning, generator: torch.Generator, callback=None) -> Tensor:
        """Generate the chunk: latents (1, 48, T, h, w) on the backbone's device; latent 0 is
        ``cond.first_latent``.

        Noise (1, 48, T−1, h, w) is drawn on the CPU from ``generator``. Clean frames get t = 0;
        only targets are updated. CFG with ``config.negative_prompt`` runs when
        ``config.cfg_scale`` > 1, a text encoder is loaded and ``cond.text`` is a prompt.
        With ``config.sampler`` "few-step" the chunk takes ``config.timesteps`` (one model
        evaluation each, fresh re-noising from ``generator``) and ``cond.steps`` is not used.
        """
        from mirage.backbones.wan22.sampler import make_scheduler, sample_flow

        inputs = self.assemble(cond)
        C, h, w = cond.first_latent.shape
        n = inputs.num_targets
        noise = torch.randn(1, C, n, h, w, generator=generator, dtype=torch.float32,
                            device=generator.device).to(self.device)
        context = self.encode_text([cond.text] if cond.text else None)  # None: "" or zeros
        use_cfg = self.text.available and self.config.cfg_scale > 1.0 and bool(cond.text)
        negative = self.encode_text([self.config.negative_prompt]) if use_cfg else None

        def velocity_with(ctx):
            def velocity(x_t: Tensor, t: Tensor) -> Tensor:
                v = self.predict(inputs.with_targets(x_t), inputs.timesteps(t), inputs.control, ctx)
                return v[:, :, inputs.first_target:]  # targets only
            return velocity

        uncond = velocity_with(negative) if use_cfg else None
        inject = cond.injector(noise, "bcthw")  # None for memory_input "branch"
        if self.config.sampler == "few-step":  # its own timesteps; cond.steps does not apply
            from mirage.backbones.wan22.sampler import sample_few_step

            targets = sample_few_step(velocity_with(context), noise, self.config.timesteps, generator=generator,
                                      uncond_velocity=uncond, guidance=self.config.cfg_scale,
                                      callback=callback, inject=inject)
        else:
            scheduler = make_scheduler(self.config.sampler, self.config.shift, self.scheduler_config)
            targets = sample_flow(velocity_with(context), noise, scheduler, cond.steps,
                                  uncond_velocity=uncond, guidance=self.config.cfg_scale, callback=callback,
                                  inject=inject)
        out = torch.cat([cond.first_latent.to(self.device, torch.float32)[:, None], targets[0]], dim=1)  # (C, T, h, w)
        return out[None]

    # -- memory branch and LoRA -----------------------------------------------------------
    def memory_branch_parameters(self) -> list[torch.nn.Parameter]:
        """The memory branch's parameters (``vace_patch_embedding``, ``vace_blocks``)."""
        return self.transformer.branch_parameters()

    def save_memory_branch(self, path) -> None:
        """Write the branch's weights as safetensors with JSON metadata (atomic)."""
        from mirage.backbones.wan22.transformer import branch_state_dict
        from mirage.files import save_safetensors

        tensors, meta = branch_state_dict(self.transformer)
        save_safetensors(path, tensors, meta)

    def load_memory_branch(self, path) -> None:
        """Load branch weights written by :meth:`save_memory_branch`; the base is untouched."""
        from pathlib import Path

        from mirage.backbones.wan22.transformer import load_branch_state_dict
        from mirage.files import load_safetensors

        if not Path(path).is_file():
            raise ConfigError(f"`--memory-branch` {str(path)!r} does not exist: it must be a memory-branch "
                              f".safetensors file written by `save_memory_branch`")
        tensors, meta = load_safetensors(path, "memory-branch file")
        load_branch_state_dict(self.transformer, tensors, meta, str(path))
        self.info["memory_branch"] = str(path)

    def add_lora(self, rank: int = 64, alpha: float = 64, target_modules=None) -> None:
        """Add a fresh LoRA (peft) to the base blocks; see :mod:`mirage.backbones.wan22.lora`."""
        from mirage.backbones.wan22.lora import DEFAULT_TARGETS, add_lora

        add_lora(self.transformer, rank, alpha, target_modules or DEFAULT_TARGETS)
        self.transformer.to(self.device)

    def save_lora(self, path) -> None:
        from mirage.backbones.wan22.lora import save_lora_file

        save_lora_file(self.transformer, path)

    def load_lora(self, path) -> None:
        from mirage.backbones.wan22.lora import load_lora_file

        load_lora_file(self.transformer, path)
        self.transformer.to(self.device)
        self.info["lora"] = str(path)

    def unload_lora(self) -> None:
        from mirage.backbones.wan22.lora import unload_lora

        unload_lora(self.transformer)
        self.info.pop("lora", None)

    # -- depth and labels -----------------------------------------------------------------
    @torch.no_grad()
    def estimate_depth(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images (T, 3, H, W) in [−1, 1] → z-depth (T, H, W) (+inf invalid), valid (T, H, W) on the
        backbone's device.

        The tiny backbone's shipped depth network at 64 px high (width by the aspect ratio, a
        multiple of 8), resized back to (H, W) with nearest.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"`images` must have shape (T, 3, H, W) but has {tuple(images.shape)}")
        if self._depth_net is None:
            from mirage.backbones.tiny import TinyBackbone

            self._depth_net = TinyBackbone.load(device=self.device).depth.eval()
        H, W = images.shape[-2:]
        h = 64
        w = max(8, int(round(W * h / H / 8)) * 8)
        small = images.to(self.device, torch.float32)
        if (H, W) != (h, w):
            small = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        depth, valid = self._depth_net.predict(small)
        if (H, W) != (h, w):
            depth = F.interpolate(depth[:, None], size=(H, W), mode="nearest")[:, 0]
            valid = F.interpolate(valid[:, None].float(), size=(H, W), mode="nearest")[:, 0] > 0.5
        return depth, valid

    def run_info(self) -> dict:
        """Labels for run.json: weights, branch, LoRA, device, dtype, sampler, text, depth."""
        from mirage.backbones.wan22.sampler import few_step_name, make_scheduler, scheduler_name

        if self.config.sampler == "few-step":
            sampler = few_step_name(self.config.timesteps)
        else:
            sampler = scheduler_name(make_scheduler(self.config.sampler, self.config.shift, self.scheduler_config))
        return {**self.info, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "sampler": sampler,
                "guidance": self.config.cfg_scale if self.text.available else None,
                "text_encoder": self.text.available, "offload": self.config.offload,
                "vae_tiling": self.config.vae_tiling, "depth_network": DEPTH_LABEL}

    def warn_without_text(self) -> None:
        if not self.text.available:
            warnings.warn(
                f"no text encoder (text_encoder/ and tokenizer/ in the weights directory): the "
                f"text context is a zero embedding of shape (B, {self.config.text_len}, {self.text_dim}) "
                f"and prompts are ignored", stacklevel=3)
