"""The embedded tiny world model: a small VAE, a memory-conditioned flow-matching denoiser and a
small depth estimator, trained on the procedural world (see ``weights/MODEL_CARD.md``)."""

from mirage.backbones.tiny.config import TinyConfig
from mirage.backbones.tiny.model import SHIPPED_WEIGHTS, TinyBackbone, relative_pose

__all__ = ["TinyConfig", "TinyBackbone", "relative_pose", "SHIPPED_WEIGHTS"]
