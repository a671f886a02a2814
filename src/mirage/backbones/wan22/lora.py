"""LoRA on the Wan2.2 DiT through peft (diffusers' ``PeftAdapterMixin``), saved as safetensors.

The default targets are the base blocks' attention projections and feed-forward layers; the
memory branch (``vace_*``) is trained separately (docs/design.md §4.3, stage 1) and is never a target.
A LoRA file holds the adapter's ``lora_A``/``lora_B`` tensors with JSON metadata (format,
kind, version, rank, alpha, targets). Unloading removes the adapter layers, so the transformer
computes exactly what it did before.
"""

from __future__ import annotations

import json
from pathlib import Path

from mirage.errors import ConfigError, MemoryFormatError

__all__ = ["DEFAULT_TARGETS", "ADAPTER", "LORA_FORMAT", "LORA_VERSION", "add_lora", "lora_state",
           "load_lora_file", "save_lora_file", "unload_lora", "has_lora"]

# peft matches a string target as a full-name regex: base blocks only, never `vace_blocks`.
DEFAULT_TARGETS = r"blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|blocks\.\d+\.ffn\.net\.(0\.proj|2)"
ADAPTER = "mirage"
LORA_FORMAT = "mirage.wan22.lora"
LORA_VERSION = 1


def has_lora(transformer) -> bool:
    return ADAPTER in (getattr(transformer, "peft_config", None) or {})


def add_lora(transformer, rank: int = 64, alpha: float = 64, target_modules=DEFAULT_TARGETS,
             init: bool = True) -> None:
    """Add a rank-``rank`` LoRA (scale alpha/rank) to ``transformer``; B starts at zero."""
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"`rank` must be an int ≥ 1 but is {rank!r}")
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ConfigError(f"`alpha` must be > 0 but is {alpha!r}")
    if has_lora(transformer):
        raise ConfigError("the transformer already has a LoRA; call `unload_lora()` first")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules, init_lora_weights=init)
    try:
        transformer.add_adapter(config, adapter_name=ADAPTER)
    except ValueError as err:  # peft: no module matched
        raise ConfigError(f"`target_modules` {target_modules!r} match no layer of the transformer: {err}") from None


def lora_state(transformer) -> tuple[dict, dict]:
    """(tensors, metadata) of the LoRA, keys without the adapter name (peft's file layout)."""
    from peft import get_peft_model_state_dict

    if not has_lora(transformer):
        raise ConfigError("the transformer has no LoRA (call `add_lora` or `load_lora` first)")
    config = transformer.peft_config[ADAPTER]
    tensors = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    targets = config.target_modules
    meta = {"format": LORA_FORMAT, "version": str(LORA_VERSION), "kind": "lora",
            "rank": str(config.r), "alpha": str(config.lora_alpha),
            "target_modules": json.dumps(targets if isinstance(targets, str) else sorted(targets))}
    return tensors, meta


def save_lora_file(transformer, path) -> None:
    """Write the LoRA as safetensors with JSON metadata (atomic)."""
    from mirage.files import save_safetensors

    tensors, meta = lora_state(transformer)
    save_safetensors(path, tensors, meta)


def load_lora_file(transformer, path) -> None:
    """Add the LoRA stored in ``path`` (written by :func:`save_lora_file`) and load its weights."""
    from peft import set_peft_model_state_dict

    from mirage.files import load_safetensors

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"`--lora` {str(path)!r} does not exist: it must be a LoRA .safetensors "
                          f"file written by `save_lora`")
    tensors, meta = load_safetensors(path, "LoRA file")
    if meta.get("format") != LORA_FORMAT or meta.get("version") != str(LORA_VERSION):
        raise MemoryFormatError(f"{str(path)!r} is not a mirage Wan2.2 LoRA of version {LORA_VERSION} "
                                f"(format {meta.get('format')!r}, version {meta.get('version')!r})")
    targets = json.loads(meta["target_modules"])
    add_lora(transformer, rank=int(meta["rank"]), alpha=float(meta["alpha"]), target_modules=targets)
    result = set_peft_model_state_dict(transformer, tensors, adapter_name=ADAPTER)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or []) if "lora_" in k]
    if unexpected or missing:
        unload_lora(transformer)
        raise MemoryFormatError(f"LoRA {str(path)!r} does not fit this transformer: unexpected "
                                f"{unexpected[:3]}, missing {missing[:3]}")


def unload_lora(transformer) -> None:
    """Remove the LoRA layers (no-op without one): the base weights are as before."""
    if has_lora(transformer) or getattr(transformer, "peft_config", None):
        transformer.unload_lora()
