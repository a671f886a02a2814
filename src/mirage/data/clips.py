"""Training clips on disk: find them, read them, and say why a bad one cannot be used.

A clip is a folder holding a ``geometry.npz`` in the reference layout (see
:mod:`mirage.cameras.geometry_npz`): frames, z-depths, intrinsics, ``poses_c2w`` and optional dynamic / sky
masks. That is what external estimators produce and what ``mirage world dataset`` writes. An
optional ``caption.txt`` beside it, or an entry in ``<clips>/captions.json`` (``{clip name:
caption}``), gives the clip's caption.

:func:`read_clip` validates everything a sample build needs and raises :class:`ClipError` with
a one-line reason (missing depth, non-finite poses, too short, ...) so a build can log the reason
and move on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mirage.cameras.geometry_npz import read_geometry_arrays
from mirage.errors import ConfigError, MirageError
from mirage.frames import whole_latent_frames
from mirage.geometry import Camera

__all__ = ["ClipError", "Clip", "find_clips", "read_clip", "load_captions"]


class ClipError(MirageError):
    """A clip cannot be turned into samples; the message is the reason."""


@dataclass(frozen=True)
class Clip:
    """One validated clip.

    video: (F, 3, H, W) float32 in [−1, 1]. depths: (F, H, W) z-depth, +inf where invalid.
    exclude: (F, H, W) bool, True = never write to memory (invalid depth, dynamic, sky).
    cameras: F cameras at (H, W) (OpenCV axes). caption: the clip's text or None.
    F has the form τ·k+1 (trailing frames beyond the last whole latent frame are dropped).
    """

    name: str
    video: Tensor
    depths: Tensor
    exclude: Tensor
    cameras: Camera
    caption: str | None = None

    @property
    def num_frames(self) -> int:
        return self.video.shape[0]


def find_clips(clips_dir) -> list[Path]:
    """Every folder under ``clips_dir`` holding a ``geometry.npz``, sorted by relative path."""
    root = Path(clips_dir)
    if not root.is_dir():
        raise ConfigError(f"`--clips` must be a folder of clips (each with a geometry.npz) but "
                          f"{str(root)!r} is not a folder")
    found = sorted({p.parent for p in root.rglob("geometry.npz")}, key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise ConfigError(f"`--clips` {str(root)!r} holds no clip: put one folder per clip there, each "
                          f"with a geometry.npz (frames, depths, intrinsics, poses_c2w)")
    return found


def load_captions(clips_dir) -> dict[str, str]:
    """``<clips_dir>/captions.json`` ({clip name: caption}) or an empty dict."""
    path = Path(clips_dir) / "captions.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{str(path)!r} must be a JSON object {{clip name: caption}}: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{str(path)!r} must be a JSON object {{clip name: caption}}")
    return data


def read_clip(
    folder,
    *,
    temporal_stride: int,
    spatial_stride: int,
    min_frames: int,
    caption: str | None = None,
) -> Clip:
    """Read and validate the clip in ``folder``; raises :class:`ClipError` with the reason.

    Checks: the archive is readable and holds frames, depths, intrinsics and poses; poses and
    intrinsics are finite and valid cameras; depth is not NaN (inf, 0 and negative mean invalid)
    and frame 0 has valid depth somewhere; H and W are divisible by ``spatial_stride``; and the
    clip has at least ``min_frames`` frames. The frame count is cut to the largest τ·k+1.
    """
    folder = Path(folder)
    path = folder / "geometry.npz"
    try:
        data = read_geometry_arrays(path)
    except MirageError as err:
        raise ClipError(f"unreadable geometry.npz ({err})") from None
    if "depths" not in data:
        raise ClipError("missing depth: geometry.npz has no `depths`")
    missing = [k for k in ("frames", "intrinsics", "poses_c2w") if k not in data]
    if missing:
        raise ClipError(f"geometry.npz lacks {missing}")
    frames = data["frames"]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ClipError(f"`frames` must be uint8 (F, H, W, 3) but is {frames.dtype} {frames.shape}")
    F, H, W, _ = frames.shape
    for key, shape in (("depths", (F, H, W)), ("intrinsics", (F, 3, 3)), ("poses_c2w", (F, 4, 4))):
        if data[key].shape != shape:
            raise ClipError(f"`{key}` must have shape {shape} but has {data[key].shape}")
    for key in ("poses_c2w", "intrinsics"):
        bad = np.flatnonzero(~np.isfinite(data[key]).reshape(F, -1).all(axis=1))
        if bad.size:
            raise ClipError(f"non-finite (NaN/inf) `{key}` in frame(s) {bad[:8].tolist()}")
    depths = data["depths"].astype(np.float32)
    nan = np.flatnonzero(np.isnan(depths).reshape(F, -1).any(axis=1))
    if nan.size:
        raise ClipError(f"NaN depth in frame(s) {nan[:8].tolist()} (mark invalid depth with 0 or inf)")
    if F < min_frames:
        raise ClipError(f"too short: {F} frames, at least {min_frames} needed")
    if H % spatial_stride or W % spatial_stride:
        raise ClipError(f"frame size {H}x{W} is not divisible by the spatial stride {spatial_stride}")
    F = whole_latent_frames(F, temporal_stride)
    try:
        cameras = Camera(torch.from_numpy(data["intrinsics"][:F]).float(),
                         torch.from_numpy(data["poses_c2w"][:F]).float(), int(H), int(W))
    except MirageError as err:
        raise ClipError(f"invalid cameras: {err}") from None
    depth = torch.from_numpy(depths[:F])
    exclude = ~(torch.isfinite(depth) & (depth > 0))
    for key in ("masks", "sky_masks"):  # dynamic objects and sky are never written
        if key in data:
            if data[key].shape != (len(frames), H, W):
                raise ClipError(f"`{key}` must have shape {(len(frames), H, W)} but has {data[key].shape}")
            exclude |= torch.from_numpy(data[key][:F].astype(bool))
    if exclude[0].all():
        raise ClipError("frame 0 has no valid depth (every pixel is invalid, dynamic or sky)")
    depth = torch.where(exclude, torch.full_like(depth, float("inf")), depth)
    video = torch.from_numpy(frames[:F]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W)
    if caption is None and (folder / "caption.txt").is_file():
        caption = (folder / "caption.txt").read_text().strip() or None
    return Clip(folder.name, video, depth, exclude, cameras, caption)
