"""Revisit fidelity (DESIGN §7): PSNR on the frames where the camera has come back.

A frame k is a **revisit** when it lies after the first chunk and its camera is back at the start
view: its viewing direction is within ``max_angle_deg`` of frame 0's and its centre within
``max_distance`` of frame 0's. On a pan-return path these are the last frames of the return
swing; on closed loops and orbits, the frames around closure.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mirage.geometry import Camera

__all__ = ["psnr", "revisit_frames", "frame_psnr"]


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of ``a`` against ``b`` (same shape, values in a range of ``data_range``)."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def frame_psnr(video: Tensor, reference: Tensor) -> list[float]:
    """Per-frame PSNR of (F, 3, H, W) videos in [−1, 1]."""
    return [psnr(v, r) for v, r in zip(video, reference)]


def revisit_frames(cameras: Camera, first_chunk_end: int, max_angle_deg: float = 30.0,
                   max_distance: float = 0.3) -> list[int]:
    """Indices k > ``first_chunk_end`` whose camera is back at frame 0's view (see module doc)."""
    c2w = cameras.cam2world.double()
    forward = c2w[:, :3, 2]
    cos = (forward * forward[:1]).sum(-1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))
    dist = (c2w[:, :3, 3] - c2w[:1, :3, 3]).norm(dim=-1)
    ok = (angle <= max_angle_deg) & (dist <= max_distance)
    return [k for k in range(first_chunk_end + 1, len(cameras)) if bool(ok[k])]
