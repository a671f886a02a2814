"""Fidelity against ground truth (docs/design.md §7): PSNR, SSIM, revisits, closed loops, read error.

Frames are (3, H, W) or videos (F, 3, H, W) with values in [−1, 1] (``data_range`` 2).

- **PSNR** ``10·log10(range² / MSE)`` over every pixel and channel (inf when equal).
- **SSIM** (Wang et al. 2004) on the frames mapped to [0, 1] (SSIM is not shift-invariant; [0, 1]
  is the usual convention): an 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03
  (data range 1), population (co)variances, the mean over the *valid* windows (no padding) and
  the channels. This is scikit-image's ``structural_similarity(..., gaussian_weights=True,
  use_sample_covariance=False, data_range=1)`` on [0, 1] images.
- A frame k is a **revisit** when it lies after the first chunk and its camera is *back* at the
  start view: its viewing direction within ``max_angle_deg`` of frame 0's and its centre within
  ``max_distance`` of frame 0's, and some earlier frame was outside those bounds (the camera had
  left). So the set does not depend on the model's chunk length: the frames that follow a short
  first chunk while the camera is still leaving the start view do not count. On a pan-return
  path these are the last frames of the return swing; on closed loops and orbits, the frames
  around closure.
- **Closed loop**: the last generated frame against the first, on paths whose last pose equals
  the first (a consistent model reproduces the start view). Its PSNR is capped at
  ``PSNR_8BIT`` = 10·log10(12·255²) ≈ 58.9 dB, the PSNR of rounding to 8 bits: above it the two
  frames agree within the precision of the videos written, and a memory that gives the start
  view back exactly (identical frames, an infinite PSNR) must not drop out of a mean.
- **Exact return**: on paths whose last pose *equals* the first bit for bit (closed presets copy
  the first pose into the last frame), the PSNR of the last generated frame against the ground
  truth (``return``) and of generated frame 0 against ground-truth frame 0 (``decoded first``:
  the decoded encoding of the given first frame, the ceiling of any return). Against the return
  PSNR of the same (scene, path, seed) without memory (``none``), the **gap closed** is
  ``(return − none) / (decoded first − none)``: 1 when the return is as good as the first frame,
  0 when memory adds nothing (so ``none`` itself closes 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ShapeError
from mirage.geometry import Camera

__all__ = ["psnr", "frame_psnr", "ssim", "frame_ssim", "revisit_frames", "frame_segments",
           "closed_loop", "exact_return", "gap_closed", "read_latent_error", "PSNR_8BIT", "SSIM_WINDOW",
           "SSIM_SIGMA"]

PSNR_8BIT = 10 * math.log10(12 * 255**2)  # rounding to 8 bits: uniform error of ±½ level
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"the two images must have the same shape but have {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of ``a`` against ``b`` (same shape, values spanning ``data_range``)."""
    _same_shape(a, b)
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def frame_psnr(video: Tensor, reference: Tensor, data_range: float = 2.0) -> list[float]:
    """Per-frame PSNR of (F, 3, H, W) videos in [−1, 1]: F floats."""
    _same_shape(video, reference)
    return [psnr(v, r, data_range) for v, r in zip(video, reference)]


def _gaussian_1d(size: int, sigma: float) -> Tensor:  # (size,), sums to 1
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def frame_ssim(video: Tensor, reference: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> list[float]:
    """Per-frame SSIM of (F, C, H, W) videos with values in ``value_range`` (see the module
    doc): F floats in [−1, 1]. H and W must be ≥ 11 (the window).
    """
    _same_shape(video, reference)
    if video.ndim != 4:
        raise ShapeError(f"`video` must have shape (F, C, H, W) but has {tuple(video.shape)}")
    Fr, C, H, W = video.shape
    if min(H, W) < SSIM_WINDOW:
        raise ShapeError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} but they are {H}x{W}")
    low, high = value_range
    x = ((video.double() - low) / (high - low)).reshape(Fr * C, 1, H, W)  # [0, 1]
    y = ((reference.double() - low) / (high - low)).reshape(Fr * C, 1, H, W)
    g = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA)

    def blur(t: Tensor) -> Tensor:  # (N, 1, H−10, W−10): valid windows only; separable Gaussian
        return F.conv2d(F.conv2d(t, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(Fr, -1).mean(dim=1).tolist()


def ssim(a: Tensor, b: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """SSIM of two (C, H, W) images with values in ``value_range`` (see the module doc)."""
    return frame_ssim(a[None], b[None], value_range)[0]


def revisit_frames(cameras: Camera, first_chunk_end: int, max_angle_deg: float = 30.0,
                   max_distance: float = 0.3) -> list[int]:
    """Indices k > ``first_chunk_end`` whose camera has come back to frame 0's view (module doc).

    ``cameras``: F cameras (cam2world in world units). Returns ascending frame indices.
    """
    c2w = cameras.cam2world.double()
    forward = c2w[:, :3, 2]
    cos = (forward * forward[:1]).sum(-1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))
    dist = (c2w[:, :3, 3] - c2w[:1, :3, 3]).norm(dim=-1)
    ok = (angle <= max_angle_deg) & (dist <= max_distance)
    away = (~ok).long()
    left_before = (torch.cumsum(away, 0) - away) > 0  # some frame j < k was outside the bounds
    back = ok & left_before
    return [k for k in range(first_chunk_end + 1, len(cameras)) if bool(back[k])]


def frame_segments(frames: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive indices as inclusive (first, last) pairs: [3, 4, 5, 9] → [(3, 5), (9, 9)]."""
    segments: list[tuple[int, int]] = []
    for k in sorted(frames):
        if segments and k == segments[-1][1] + 1:
            segments[-1] = (segments[-1][0], k)
        else:
            segments.append((k, k))
    return segments


def closed_loop(video: Tensor, cameras: Camera, tol: float = 1e-4) -> dict | None:
    """Closed-loop fidelity: PSNR and SSIM of the last frame of ``video`` (F, 3, H, W) against
    its first, or None when the path does not return (last cam2world ≠ first within ``tol``).
    The PSNR is at most ``PSNR_8BIT`` (module doc)."""
    c2w = cameras.cam2world
    if len(cameras) < 2 or (c2w[-1] - c2w[0]).abs().max().item() > tol:
        return None
    return {"psnr": min(psnr(video[-1], video[0]), PSNR_8BIT), "ssim": ssim(video[-1], video[0])}


def exact_return(psnrs: list[float], cameras: Camera) -> dict | None:
    """The exact-return PSNRs of a generated video (module doc), or None when the path's last
    cam2world is not exactly its first (or it has fewer than 2 frames).

    psnrs: the F per-frame PSNRs against ground truth (:func:`frame_psnr`); cameras: the F
    cameras. Returns ``{"frame": F − 1, "return_psnr", "decoded_first_psnr", "return_loss_db"}``
    with ``return_loss_db`` = decoded first − return.
    """
    if len(psnrs) != len(cameras):
        raise ShapeError(f"`psnrs` must have one value per camera ({len(cameras)}) but has {len(psnrs)}")
    c2w = cameras.cam2world
    if len(cameras) < 2 or not torch.equal(c2w[-1], c2w[0]):
        return None
    first, last = float(psnrs[0]), float(psnrs[-1])
    return {"frame": len(psnrs) - 1, "return_psnr": last, "decoded_first_psnr": first,
            "return_loss_db": first - last}


def gap_closed(return_psnr: float, none_psnr: float, first_psnr: float) -> float | None:
    """``(return − none) / (decoded first − none)`` (module doc); None where the gap is not
    positive or a value is not finite (no memory already reaches the decoded first frame)."""
    gap = first_psnr - none_psnr
    if not (math.isfinite(return_psnr) and math.isfinite(none_psnr) and math.isfinite(first_psnr)) or gap <= 0:
        return None
    return (return_psnr - none_psnr) / gap


def read_latent_error(read: Tensor, mask: Tensor, target: Tensor) -> dict | None:
    """Error of a memory read against the encoded ground truth, on the covered cells.

    read, target: (C, T, h, w) latents; mask: (T, h, w) bool. Returns ``rmse`` (root mean square
    difference over covered cells and channels) and ``relative`` (rmse over the RMS of the
    target on the same cells), or None when nothing is covered.
    """
    if read.shape != target.shape:
        raise ShapeError(f"`read` and `target` must have the same shape but have {tuple(read.shape)} and {tuple(target.shape)}")
    if tuple(mask.shape) != (read.shape[1], *read.shape[2:]):
        raise ShapeError(f"`mask` must have shape {(read.shape[1], *read.shape[2:])} but has {tuple(mask.shape)}")
    m = mask.bool()[None].expand_as(read)
    if not m.any():
        return None
    diff = (read.double() - target.double())[m]
    ref = target.double()[m]
    rmse = diff.pow(2).mean().sqrt().item()
    rms = ref.pow(2).mean().sqrt().item()
    return {"rmse": rmse, "relative": rmse / rms if rms > 0 else float("inf")}

