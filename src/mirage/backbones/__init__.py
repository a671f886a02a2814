"""Video backbones behind one protocol (docs/design.md §4): ``tiny`` (embedded) and ``wan22`` (diffusers)."""

from __future__ import annotations

from mirage.backbones.base import Backbone, ChunkConditioning
from mirage.errors import ConfigError

__all__ = ["Backbone", "ChunkConditioning", "BACKBONES", "load_backbone"]

BACKBONES = ("tiny", "wan22")


def load_backbone(name: str = "tiny", weights=None, *, device=None, **options) -> Backbone:
    """The backbone ``name`` with weights from ``weights`` (a file or folder; default: shipped).

    ``wan22`` needs ``weights`` (a diffusers-format Wan2.2-TI2V-5B directory); ``options`` go to
    :func:`mirage.backbones.wan22.load_wan22` (memory_branch, lora, dtype, offload, …).
    """
    if name == "tiny":
        from mirage.backbones.tiny import TinyBackbone

        if options:
            raise ConfigError(f"options {sorted(options)} need `backbone` 'wan22', not 'tiny'")
        return TinyBackbone.load(weights, device=device)
    if name == "wan22":
        from mirage.extras import require_extra

        require_extra("wan", ("diffusers",) + (("peft",) if options.get("lora") else ()), "the wan22 backbone")
        from mirage.backbones.wan22 import load_wan22

        return load_wan22(weights, device=device, **options)
    raise ConfigError(f"`backbone` must be one of {BACKBONES} but is {name!r}")
