"""`load_wan22`: a diffusers-format Wan2.2-TI2V-5B directory → :class:`Wan22Backbone`.

The directory holds ``transformer/`` (the base ``WanTransformer3DModel``, or an already merged
memory transformer whose config has ``vace_layers``) and ``vae/`` (``AutoencoderKLWan``), and
optionally ``text_encoder/`` + ``tokenizer/`` (umT5) and ``scheduler/``. The memory branch and
the LoRA come from separate safetensors files. Nothing is downloaded: a missing directory or
file raises :class:`~mirage.errors.ConfigError` naming what must be there.
"""

from __future__ import annotations

import json
from pathlib import Path

from mirage.backbones.wan22.config import Wan22Config, resolve_device, resolve_dtype
from mirage.errors import ConfigError

__all__ = ["load_wan22", "check_weights_dir", "LAYOUT"]

LAYOUT = ("a diffusers-format Wan2.2-TI2V-5B directory with transformer/ and vae/ (each a "
          "config.json + *.safetensors), and optionally text_encoder/, tokenizer/ and scheduler/ "
          "(e.g. a local copy of Wan-AI/Wan2.2-TI2V-5B-Diffusers)")


def check_weights_dir(weights_dir) -> Path:
    """The weights directory as a Path, or a ConfigError naming what is missing."""
    if weights_dir is None:
        raise ConfigError(f"`--weights` is required for the wan22 backbone: it must name {LAYOUT}")
    root = Path(weights_dir)
    if not root.is_dir():
        raise ConfigError(f"`--weights` {str(root)!r} is not a directory: it must be {LAYOUT}")
    for sub in ("transformer", "vae"):
        if not (root / sub / "config.json").is_file():
            raise ConfigError(f"`--weights` {str(root)!r} has no {sub}/config.json: it must be {LAYOUT}")
    return root


def _load_transformer(path: Path, dtype):
    from diffusers import WanTransformer3DModel

    from mirage.backbones.wan22.transformer import MemoryWanTransformer

    cfg = json.loads((path / "config.json").read_text())
    if "vace_layers" in cfg:  # a merged memory transformer saved with save_pretrained
        return MemoryWanTransformer.from_pretrained(path, torch_dtype=dtype), "merged"
    base = WanTransformer3DModel.from_pretrained(path, torch_dtype=dtype)
    return MemoryWanTransformer.from_base(base), "base + zero-init branch"


def load_wan22(weights_dir, memory_branch=None, lora=None, device=None, dtype=None, offload=None,
               vae_tiling: bool = False, **options):
    """Load Wan2.2-TI2V-5B from ``weights_dir`` with the memory branch (and LoRA) → Wan22Backbone.

    memory_branch / lora: safetensors files (None: a zero-init branch, no LoRA).
    device: "cpu" | "cuda" | … (None: cuda when available); dtype: "float32" | "bfloat16" |
    "float16" (None: bf16 on GPU, fp32 on CPU). offload: None | "none" | "model".
    ``options`` are further :class:`Wan22Config` fields (sampler, shift, guidance, steps, …).
    Without ``text_encoder/`` + ``tokenizer/`` the context is zeros and a warning says so.
    """
    import torch

    from mirage.backbones.wan22.backbone import Wan22Backbone

    root = check_weights_dir(weights_dir)
    for flag, value in (("--memory-branch", memory_branch), ("--lora", lora)):
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"`{flag}` {str(value)!r} does not exist: it must be a .safetensors file "
                              f"written by `save_{'memory_branch' if flag == '--memory-branch' else 'lora'}`")
    config = Wan22Config(device=None if device is None else str(device), dtype=dtype,
                         offload=offload or "none", vae_tiling=vae_tiling, **options)
    torch_dtype = resolve_dtype(config.dtype, resolve_device(config.device))

    from diffusers import AutoencoderKLWan

    transformer, source = _load_transformer(root / "transformer", torch_dtype)
    vae = AutoencoderKLWan.from_pretrained(root / "vae", torch_dtype=torch.float32)
    text_encoder = tokenizer = None
    if (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir():
        try:
            from transformers import AutoTokenizer, UMT5EncoderModel
        except ImportError:
            raise ConfigError(f"{str(root / 'text_encoder')!r} needs the `transformers` package "
                              f"(pip install transformers), or remove text_encoder/ to run without text") from None

        text_encoder = UMT5EncoderModel.from_pretrained(root / "text_encoder", torch_dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    scheduler_config = None
    if (root / "scheduler" / "scheduler_config.json").is_file():
        scheduler_config = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    backbone = Wan22Backbone(transformer, vae, text_encoder, tokenizer, config=config,
                             scheduler_config=scheduler_config,
                             info={"weights": str(root), "transformer": source, "memory_branch": None,
                                   "lora": None})
    if memory_branch is not None:
        backbone.load_memory_branch(memory_branch)
    if lora is not None:
        backbone.load_lora(lora)
    backbone.warn_without_text()
    return backbone
