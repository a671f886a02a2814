"""Writing videos: ``write_mp4`` (H.264, yuv420p) through imageio-ffmpeg, atomically, and
``to_uint8``, the one conversion of frames in [−1, 1] to bytes."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from mirage.errors import ConfigError, ShapeError
from mirage.files import atomic_path

__all__ = ["write_mp4", "to_uint8"]


def to_uint8(frames: Tensor) -> Tensor:  # any shape in [−1, 1] → uint8 0..255, same shape
    """Frames (or colours) in [−1, 1] as bytes: clamped, scaled by 127.5 and rounded."""
    return ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,  # (F, H, W, 3) uint8
    fps: float = 16.0,
    *,
    quality: float = 8.0,
) -> None:
    """Encode ``frames`` as an H.264 MP4 at ``path``.

    yuv420p needs even sizes, so an odd height or width is padded by repeating the last row or
    column (the file is then one pixel larger there). The video is written to a temporary file
    in the same folder and renamed onto ``path`` only once complete, so an interrupted write
    never leaves a truncated ``path``. ``quality`` is imageio's 0–10 scale (10 = best).
    """
    import imageio.v2 as imageio  # imported here: only video writers pay for it

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ShapeError(f"`frames` must have shape (F, H, W, 3) with F ≥ 1 but has shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ShapeError(f"`frames` must be uint8 but is {frames.dtype}")
    if not (fps > 0):
        raise ConfigError(f"`fps` must be > 0 but is {fps}")
    _, H, W, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            quality=quality,
            ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
