"""Video backbones behind one protocol (DESIGN §4): ``tiny`` (embedded) and later ``wan22``."""

from __future__ import annotations

from mirage.backbones.base import Backbone, ChunkConditioning
from mirage.errors import ConfigError

__all__ = ["Backbone", "ChunkConditioning", "BACKBONES", "load_backbone"]

BACKBONES = ("tiny",)


def load_backbone(name: str = "tiny", weights=None, *, device=None) -> Backbone:
    """The backbone ``name`` with weights from ``weights`` (a file or folder; default: shipped)."""
    if name == "tiny":
        from mirage.backbones.tiny import TinyBackbone

        return TinyBackbone.load(weights, device=device)
    raise ConfigError(f"`backbone` must be one of {BACKBONES} but is {name!r}")
