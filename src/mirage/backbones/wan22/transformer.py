"""The Wan2.2 DiT with the memory-control branch and per-frame timesteps (docs/design.md §4.3).

:class:`MemoryWanTransformer` is diffusers' ``WanVACETransformer3DModel`` (a subclass, so
``save_pretrained``/``from_pretrained``, peft and accelerate keep working) with two changes:

- **Per-frame timesteps.** ``timestep`` may be (B, T), one noise level per latent frame: clean
  frames (first, preceding, references) sit at t = 0 while targets are denoised. It is expanded
  to one level per token, the Wan2.2 TI2V "expand_timesteps" convention, and used by the main
  blocks, the memory-branch blocks and the output norm. The stock VACE forward accepts only one
  timestep per sample.
- **The memory branch** sits on every second layer (0, 2, …, 28 of 30). Its blocks start as
  copies of the base blocks they attach to (ControlNet/VACE practice) and their ``proj_out``
  starts at zero, so at init the output equals the base model's. :meth:`from_base` builds it
  around a loaded ``WanTransformer3DModel`` without touching the base weights.

The branch input ``control`` is (B, 96, T, h, w): 48 channels of memory-read latent (zeros
where the memory is empty) and 48 channels carrying the coverage mask.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from diffusers import WanTransformer3DModel, WanVACETransformer3DModel
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformerBlock
from diffusers.utils import apply_lora_scale
from torch import Tensor

from mirage.backbones.wan22.config import CONTROL_CHANNELS
from mirage.errors import ConfigError, MemoryFormatError, ShapeError

__all__ = ["MemoryWanTransformer", "MemoryBranchBlock", "memory_branch_layers", "BRANCH_PREFIXES",
           "BRANCH_FORMAT", "BRANCH_VERSION", "branch_state_dict", "load_branch_state_dict",
           "frame_to_token_timesteps"]

BRANCH_PREFIXES = ("vace_patch_embedding.", "vace_blocks.")
BRANCH_FORMAT = "mirage.wan22.memory-branch"
BRANCH_VERSION = 1


def memory_branch_layers(num_layers: int) -> list[int]:
    """The base layers that get a branch block: every second one, 0, 2, … (30 → 15 blocks)."""
    return list(range(0, num_layers, 2))


def frame_to_token_timesteps(timestep: Tensor, tokens_per_frame: int) -> Tensor:
    """(B, T) per-frame noise levels → (B, T·tokens_per_frame) per token, frame-major order."""
    return timestep.repeat_interleave(tokens_per_frame, dim=1)


def _modulation(table: Tensor, temb: Tensor) -> list[Tensor]:
    """The six adaLN terms of a block from its table (1, 6, D) and temb (B, 6, D) or (B, L, 6, D)."""
    if temb.ndim == 4:  # per token: (B, L, 6, D) → six (B, L, D)
        return [m.squeeze(2) for m in (table.unsqueeze(0).to(temb.device) + temb.float()).chunk(6, dim=2)]
    return list((table.to(temb.device) + temb.float()).chunk(6, dim=1))  # six (B, 1, D)


class MemoryBranchBlock(WanVACETransformerBlock):
    """diffusers' VACE block whose adaLN modulation also accepts per-token temb (B, L, 6, D).

    Same parameters and state-dict keys as the parent; only ``forward`` differs.
    """

    def forward(self, hidden_states, encoder_hidden_states, control_hidden_states, temb, rotary_emb):
        if self.proj_in is not None:
            control_hidden_states = self.proj_in(control_hidden_states) + hidden_states
        shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = _modulation(
            self.scale_shift_table, temb)
        x = control_hidden_states
        norm = (self.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
        x = (x.float() + self.attn1(norm, None, None, rotary_emb) * gate_msa).type_as(x)
        norm = self.norm2(x.float()).type_as(x)
        x = x + self.attn2(norm, encoder_hidden_states, None, None)
        norm = (self.norm3(x.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(x)
        x = (x.float() + self.ffn(norm).float() * c_gate_msa).type_as(x)
        hint = self.proj_out(x) if self.proj_out is not None else None
        return hint, x


class MemoryWanTransformer(WanVACETransformer3DModel):
    """``WanVACETransformer3DModel`` with per-frame timesteps; see the module docstring.

    Construct with :meth:`from_base` (around base weights) or diffusers' ``from_pretrained`` /
    ``from_config`` (a VACE config with ``vace_in_channels`` = 96).
    """

    # diffusers reads the config keys from this signature, so it repeats the parent's.
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        vace_layers: list[int] = tuple(range(0, 30, 2)),
        vace_in_channels: int = CONTROL_CHANNELS,
    ) -> None:
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim, in_channels=in_channels, out_channels=out_channels,
            text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=num_layers,
            cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps, image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len, vace_layers=list(vace_layers),
            vace_in_channels=vace_in_channels)
        # The stock VACE block cannot take per-token temb; the subclass adds no state, so the
        # modules, keys and peft targets stay exactly those of the diffusers model.
        for block in self.vace_blocks:
            block.__class__ = MemoryBranchBlock

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_base(cls, base: WanTransformer3DModel, vace_layers: list[int] | None = None,
                  seed: int = 0) -> "MemoryWanTransformer":
        """Wrap a loaded base transformer: base weights shared as they are, the branch new.

        Branch blocks copy the base blocks they attach to; ``proj_out`` is zero, ``proj_in`` and
        the branch patch embedding get their default init from a ``seed``-ed generator. The base
        weights are assigned, not copied (``base`` should not be used afterwards).
        """
        from accelerate import init_empty_weights

        cfg = {k: v for k, v in base.config.items() if not k.startswith("_")}
        layers = memory_branch_layers(cfg["num_layers"]) if vace_layers is None else list(vace_layers)
        with init_empty_weights():
            model = cls.from_config({**cfg, "vace_layers": layers, "vace_in_channels": CONTROL_CHANNELS})
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False, assign=True)
        bad = [k for k in missing if not k.startswith(BRANCH_PREFIXES)]
        if bad or unexpected:
            raise ConfigError(
                f"the base transformer does not match the memory transformer: missing {bad[:5]}, "
                f"unexpected {list(unexpected)[:5]}")
        device = base.proj_out.weight.device
        model.vace_patch_embedding.to_empty(device=device)
        model.vace_blocks.to_empty(device=device)
        model.rope.to(device)
        model.init_memory_branch(seed)
        return model

    @torch.no_grad()
    def init_memory_branch(self, seed: int = 0) -> None:
        """Re-initialise the branch: blocks copy their base layers, ``proj_out`` = 0."""
        dtype = self.proj_out.weight.dtype
        fork = [self.proj_out.weight.device] if self.proj_out.weight.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(seed)
            self.vace_patch_embedding.float().reset_parameters()
            for block, layer in zip(self.vace_blocks, self.config.vace_layers):
                base = self.blocks[layer]
                for name, param in block.named_parameters():
                    src = base.get_parameter(name) if not name.startswith(("proj_in.", "proj_out.")) else None
                    if src is not None:
                        param.data = src.detach().clone()
                block.proj_out.float()
                torch.nn.init.zeros_(block.proj_out.weight)
                torch.nn.init.zeros_(block.proj_out.bias)
                if block.proj_in is not None:
                    block.proj_in.float().reset_parameters()
        self.vace_patch_embedding.to(dtype)
        for block in self.vace_blocks:
            block.proj_out.to(dtype)
            if block.proj_in is not None:
                block.proj_in.to(dtype)

    # -- forward --------------------------------------------------------------------------
    @apply_lora_scale("attention_kwargs")  # attention_kwargs={"scale": s} scales the LoRA, as upstream
    def forward(
        self,
        hidden_states: Tensor,  # (B, C, T, h, w)
        timestep: Tensor,  # (B,) or (B, T) per frame
        encoder_hidden_states: Tensor,  # (B, L, text_dim)
        encoder_hidden_states_image: Tensor | None = None,
        control_hidden_states: Tensor | None = None,  # (B, 96, T, h, w)
        control_hidden_states_scale: Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ):
        """Velocity (B, C_out, T, h, w) of latents (B, C, T, h, w) at ``timestep``.

        ``timestep`` is (B,) (one level per sample, as diffusers) or (B, T) (one per latent
        frame; t = 0 for clean frames), in [0, 1000]. ``control`` defaults to zeros.
        """
        B, _, T, h, w = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        ppf, pph, ppw = T // p_t, h // p_h, w // p_w
        layers = self.config.vace_layers
        if control_hidden_states is None:
            control_hidden_states = hidden_states.new_zeros(B, self.config.vace_in_channels, T, h, w)
        if control_hidden_states.shape[2:] != hidden_states.shape[2:]:
            raise ShapeError(f"`control` must cover the latents' (T, h, w) = {(T, h, w)} but has "
                             f"shape {tuple(control_hidden_states.shape)}")
        scales = (control_hidden_states.new_ones(len(layers)) if control_hidden_states_scale is None
                  else control_hidden_states_scale).unbind()
        if timestep.ndim == 2 and timestep.shape != (B, ppf):
            raise ShapeError(f"`timesteps` must have shape ({B},) or ({B}, {ppf}) but has {tuple(timestep.shape)}")

        rotary_emb = self.rope(hidden_states)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # (B, L, D)
        c = self.vace_patch_embedding(control_hidden_states).flatten(2).transpose(1, 2)  # (B, L, D)

        if timestep.ndim == 2:  # one embedding per frame, then per token (the same values)
            temb, proj, context, context_img = self.condition_embedder(
                timestep.flatten(), encoder_hidden_states, encoder_hidden_states_image, timestep_seq_len=ppf)
            temb = frame_to_token_timesteps(temb, pph * ppw)  # (B, L, D)
            proj = frame_to_token_timesteps(proj, pph * ppw).unflatten(2, (6, -1))  # (B, L, 6, D)
        else:
            temb, proj, context, context_img = self.condition_embedder(
                timestep, encoder_hidden_states, encoder_hidden_states_image)
            proj = proj.unflatten(1, (6, -1))  # (B, 6, D)
        if context_img is not None:
            context = torch.concat([context_img, context], dim=1)

        checkpoint = torch.is_grad_enabled() and self.gradient_checkpointing
        hints = []
        for block in self.vace_blocks:
            args = (x, context, c, proj, rotary_emb)
            hint, c = self._gradient_checkpointing_func(block, *args) if checkpoint else block(*args)
            hints.append(hint)
        k = 0
        for i, block in enumerate(self.blocks):
            args = (x, context, proj, rotary_emb)
            x = self._gradient_checkpointing_func(block, *args) if checkpoint else block(*args)
            if i in layers:
                x = x + hints[k].to(x.device) * scales[k]
                k += 1

        if temb.ndim == 3:  # (B, L, D)
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        x = self.proj_out(x).reshape(B, ppf, pph, ppw, p_t, p_h, p_w, -1)
        out = x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    # -- the branch's weights -------------------------------------------------------------
    def branch_parameters(self) -> list[torch.nn.Parameter]:
        """The memory branch's parameters (``vace_patch_embedding`` and ``vace_blocks``)."""
        return [p for n, p in self.named_parameters() if n.startswith(BRANCH_PREFIXES)]


def branch_state_dict(model: MemoryWanTransformer) -> tuple[dict, dict]:
    """(tensors, metadata) of the memory branch, for a safetensors file."""
    tensors = {k: v for k, v in model.state_dict().items() if k.startswith(BRANCH_PREFIXES)}
    meta = {"format": BRANCH_FORMAT, "version": str(BRANCH_VERSION), "kind": "memory_branch",
            "vace_layers": json.dumps(list(model.config.vace_layers)),
            "vace_in_channels": str(model.config.vace_in_channels),
            "inner_dim": str(model.config.num_attention_heads * model.config.attention_head_dim)}
    return tensors, meta


def load_branch_state_dict(model: MemoryWanTransformer, tensors: dict, meta: dict, path: str) -> None:
    """Load branch ``tensors`` into ``model`` strictly; other weights are untouched."""
    if meta.get("format") != BRANCH_FORMAT or meta.get("version") != str(BRANCH_VERSION):
        raise MemoryFormatError(
            f"{path!r} is not a memory-branch file of version {BRANCH_VERSION} (format "
            f"{meta.get('format')!r}, version {meta.get('version')!r})")
    layers = json.loads(meta.get("vace_layers", "null"))
    if layers != list(model.config.vace_layers):
        raise ConfigError(f"memory branch {path!r} has layers {layers} but the transformer has "
                          f"{list(model.config.vace_layers)}")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(BRANCH_PREFIXES)}
    if set(own) != set(tensors):
        raise MemoryFormatError(
            f"memory branch {path!r} does not fit this transformer: missing "
            f"{sorted(set(own) - set(tensors))[:3]}, unexpected {sorted(set(tensors) - set(own))[:3]}")
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise MemoryFormatError(f"memory branch {path!r}: `{key}` has shape {tuple(value.shape)} "
                                    f"but the transformer needs {tuple(own[key].shape)}")
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value)
