"""Moved to :mod:`mirage.evaluation.metrics`; re-exported here for ``from mirage.pipeline import ...``."""

from mirage.evaluation.metrics import frame_psnr, psnr, revisit_frames

__all__ = ["psnr", "revisit_frames", "frame_psnr"]
