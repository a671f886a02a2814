"""The real-scale backbone: Wan2.2-TI2V-5B with the memory-control branch, through diffusers.

- ``config``: :class:`Wan22Config`, run-time options (device, dtype, sampler, CFG, offload).
- ``transformer``: :class:`MemoryWanTransformer`, the VACE DiT with per-frame timesteps.
- ``sequence``: one chunk's latent sequence, control input and noise levels.
- ``sampler``: diffusers' UniPC / Euler flow-matching schedulers driven by our loop, and the
  few-step sampler of distilled checkpoints (x̂₀, then re-noise; ``sample_few_step``).
- ``text``: umT5 context, or zeros. ``lora``: peft LoRA files.
- ``backbone``: :class:`Wan22Backbone` (the protocol); ``loading``: :func:`load_wan22`.
- ``testing``: :func:`save_tiny_wan`, a tiny random directory of the same layout.

Importing this package does not import diffusers; the modules that need it do.
"""

from __future__ import annotations

from mirage.backbones.wan22.backbone import Wan22Backbone
from mirage.backbones.wan22.config import Wan22Config
from mirage.backbones.wan22.loading import load_wan22
from mirage.backbones.wan22.sequence import ChunkInputs

__all__ = ["Wan22Backbone", "Wan22Config", "load_wan22", "ChunkInputs"]
