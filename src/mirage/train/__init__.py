"""Training: a generic resumable loop with safetensors checkpoints, and the tiny model recipe."""

from mirage.train.loop import LoopConfig, train_loop

__all__ = ["LoopConfig", "train_loop"]
