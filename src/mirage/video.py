"""Writing videos: ``write_mp4`` (H.264, yuv420p) through imageio-ffmpeg, atomically;
``to_uint8``, the one conversion of frames in [−1, 1] to bytes; ``tint_uncovered``, how a decoded
memory read shows the cells it did not cover (magenta, as on the explorer's page); and
``labelled_panels``, videos side by side under their names."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from mirage.errors import ConfigError, ShapeError
from mirage.files import atomic_path

__all__ = ["write_mp4", "to_uint8", "tint_uncovered", "labelled_panels"]

PANEL_MIN_WIDTH = 128  # narrower panels are enlarged (nearest) so that a label fits above them
LABEL_HEIGHT = 14  # pixels of the label strip above the panels


def to_uint8(frames: Tensor) -> Tensor:  # any shape in [−1, 1] → uint8 0..255, same shape
    """Frames (or colours) in [−1, 1] as bytes: clamped, scaled by 127.5 and rounded."""
    return ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def tint_uncovered(reads: Tensor, mask: Tensor | None) -> Tensor:
    """Decoded memory reads (F, 3, H, W) in [−1, 1] with the cells the memory did not cover
    darkened towards magenta, so the read shows its coverage. ``mask``: (F, h, w) bool, True =
    covered, upsampled by nearest to (H, W); None = all covered."""
    if mask is None:
        return reads
    F, _, H, W = reads.shape
    m = torch.nn.functional.interpolate(mask.to(reads.device).float()[:, None], size=(H, W), mode="nearest")  # (F, 1, H, W)
    magenta = torch.tensor([0.55, -0.8, 0.55], device=reads.device).view(1, 3, 1, 1)
    return m * reads + (1 - m) * (0.25 * reads.float() + 0.75 * magenta)


def labelled_panels(panels, labels) -> np.ndarray:
    """Videos side by side, each under its label: ``panels`` is a list of (F, H, W, 3) uint8
    arrays of one shape, ``labels`` one string each → (F, LABEL_HEIGHT + k·H, n·k·W, 3) uint8.

    Panels narrower than ``PANEL_MIN_WIDTH`` are enlarged k times by repeating pixels (no
    smoothing), so a label fits and a 64×64 frame can be seen. The labels are drawn with Pillow's
    built-in bitmap font (no font file), in white on a dark strip: the same bytes on every
    machine with the same Pillow.
    """
    from PIL import Image, ImageDraw, ImageFont

    if len(panels) != len(labels) or not panels:
        raise ShapeError(f"`panels` and `labels` must be non-empty and of one length but have "
                         f"{len(panels)} and {len(labels)}")
    shape = np.asarray(panels[0]).shape
    for panel in panels:
        if np.asarray(panel).shape != shape or np.asarray(panel).dtype != np.uint8 or len(shape) != 4:
            raise ShapeError(f"`panels` must be uint8 arrays of one shape (F, H, W, 3) but have "
                             f"{[np.asarray(p).shape for p in panels]}")
    F, H, W, _ = shape
    k = max(1, -(-PANEL_MIN_WIDTH // W))
    grid = np.concatenate([np.asarray(p).repeat(k, axis=1).repeat(k, axis=2) for p in panels], axis=2)
    strip = Image.new("RGB", (grid.shape[2], LABEL_HEIGHT), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()  # bitmap font
    for i, label in enumerate(labels):
        draw.text((i * k * W + 3, 1), label, fill=(255, 255, 255), font=font)
    header = np.broadcast_to(np.asarray(strip)[None], (F, LABEL_HEIGHT, grid.shape[2], 3))
    return np.concatenate([header, grid], axis=1)


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
