"""Relative depth in the memory update: each generated frame is aligned to the memory.

A relative depth model (Depth Anything, DPT) predicts an affine *inverse* depth, ``1/z =
a·pred + b`` with an unknown ``(a, b)`` per image. Written as it is, every chunk would land in
its own scale and the memory would tear. So before a chunk is written, each of its latent-aligned
frames is fitted to the memory's own depth in that view (the read the chunk was conditioned on,
taken before the chunk is written): the anchors are the points the memory shows in that view,
where each one projects (:func:`anchor_points`), the prediction is read there bilinearly
(:func:`sample_bilinear`), and the fit is :func:`mirage.inverse_depth.fit_inverse_depth_samples`
(robust, in inverse depth). The chunk's frames are aligned and written in order (:func:`write_relative`), so a frame that has turned away from
what the memory held before the chunk is anchored by the frames just written. A frame that
cannot be aligned is not written at all: a wrong scale would corrupt the memory for every later
read.

Thresholds (:data:`ALIGN`, :data:`MIN_COVERAGE`, :data:`MIN_INLIER_SHARE`, :data:`MAX_UNEXPLAINED`):
a frame is aligned when the memory covers at least 10% of its latent cells with points
(far-field sky is no anchor), at least 8 anchors carry a prediction, the RANSAC fit keeps at
least half of them as inliers (relative depth error ≤ 5%), the median relative depth error over
all anchors is at most 10%, and it is at most half that of the best single depth for all the
anchors (otherwise the prediction does not explain the view's depth: it is noise, or the view shows
one depth, where a scale cannot be told from a shift). Otherwise the frame is skipped and the
chunk's record says why.

The first frame sets the scene's scale. With a given depth (``--depth``, or a scene's exact
depth) the trajectory's units are that depth's units. A relative model alone has no scale, so
:func:`normalise_first` takes frame 0's prediction as proportional to inverse depth (shift 0)
and scales it so that frame 0's median depth is 1 unit: the trajectory's units are then "the
median depth of the first view".
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mirage.inverse_depth import AlignConfig, fit_inverse_depth_samples
from mirage.memory.depth_grid import valid_depth

__all__ = ["ALIGN", "MIN_COVERAGE", "MIN_INLIER_SHARE", "MAX_UNEXPLAINED", "MAX_ANCHORS", "anchor_points",
           "sample_bilinear", "align_frames", "normalise_first", "apply_base", "write_relative", "write_chunk"]

ALIGN = AlignConfig(min_points=8, inlier_tol=0.05, max_residual=0.1, iterations=200)
MIN_COVERAGE = 0.1  # share of a frame's latent cells that must hold a memory point
MIN_INLIER_SHARE = 0.5  # share of the anchors the fit must keep as inliers
MAX_UNEXPLAINED = 0.5  # the fit's median error over that of the best constant depth
MAX_ANCHORS = 16384  # a pixel-resolution read (rgb) is thinned to at most this many, evenly


def anchor_points(depth: Tensor, offset: Tensor | None, hw: tuple[int, int]) -> np.ndarray:
    """The memory's points in one view as fitting anchors.

    depth: (hd, wd) the memory read's z-depth on its grid (+inf where no point). offset:
    (2, hd, wd) where each winning point projects relative to its cell centre, in cells (x, y),
    or None (a pixel-resolution read, aligned by construction). hw: the frame's (H, W).
    Returns (N, 3) rows (u, v, z): the pixel where the point projects (the centre of grid cell
    (i, j) is pixel ((j + 0.5)·W/wd − 0.5, (i + 0.5)·H/hd − 0.5)) and its z-depth.
    """
    H, W = hw
    hd, wd = depth.shape
    d = depth.detach().double().cpu()
    rows, cols = torch.nonzero(torch.isfinite(d) & (d > 0), as_tuple=True)
    x, y = cols.double(), rows.double()
    if offset is not None:
        off = offset.detach().double().cpu()
        x, y = x + off[0, rows, cols], y + off[1, rows, cols]
    u = (x + 0.5) * (W / wd) - 0.5
    v = (y + 0.5) * (H / hd) - 0.5
    return torch.stack([u, v, d[rows, cols]], dim=1).numpy()


def _depth_from_inverse(inverse: Tensor, valid: Tensor, scale: float, shift: float) -> tuple[Tensor, Tensor]:
    """z = 1 / (scale·inverse + shift) where that is finite and > 0 and ``valid``; +inf elsewhere."""
    inv = scale * inverse.double() + shift
    ok = valid.bool() & torch.isfinite(inv) & (inv > 0)
    depth = torch.where(ok, 1.0 / inv.clamp_min(1e-12), torch.full_like(inv, math.inf))
    ok = ok & torch.isfinite(depth)
    return torch.where(ok, depth, torch.full_like(depth, math.inf)).float(), ok


def normalise_first(inverse: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Frame 0 from a relative model alone (module docstring): inverse (H, W), valid (H, W) →
    depth (H, W) with median 1 unit over the valid pixels, valid, and the map (scale, 0)."""
    x = inverse[valid.bool() & torch.isfinite(inverse) & (inverse > 0)]
    if x.numel() == 0:
        from mirage.errors import ConfigError

        raise ConfigError("the relative depth model predicts no positive inverse depth on the first frame, "
                          "so its scale cannot be set; give its depth with `--depth`")
    scale = 1.0 / float(x.double().median())  # median inverse depth 1 ⇔ median depth 1
    depth, ok = _depth_from_inverse(inverse, valid, scale, 0.0)
    return depth, ok, (scale, 0.0)


def apply_base(inverse: Tensor, valid: Tensor, base: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Without alignment (an ablation): every frame through the first frame's map ``base``
    (identity when frame 0's depth was given). inverse, valid (T, H, W) → depth, valid."""
    return _depth_from_inverse(inverse, valid, *base)


def align_frames(inverse: Tensor, valid: Tensor, memory_depth: Tensor, memory_offset: Tensor | None,
                 frame_ids: list[int]) -> tuple[Tensor, Tensor, list[bool], list[dict]]:
    """Align each frame's affine inverse depth to the memory in its view.

    inverse, valid: (T, H, W) the model's output and where it has one. memory_depth: (T, hd, wd)
    the memory read's z-depth (+inf where empty); memory_offset: (T, 2, hd, wd) or None. frame_ids:
    the T pixel frame indices (the records' labels and the RANSAC seeds). Returns depth (T, H, W)
    (+inf where invalid), valid (T, H, W), keep (T bools: aligned, so written) and one record per
    frame: frame, status ("aligned" | "skipped"), scale and shift (inverse depth = scale·pred +
    shift), residual (median relative depth error over the anchors), points (anchors with a
    prediction), inliers, coverage (share of latent cells with a memory point), span (how much of
    the frame's predicted range, 5th–95th percentile, the anchors cover: below 1 the fit
    extrapolates) and reason (why it was skipped, else "").
    """
    T, H, W = inverse.shape
    depths, valids, keep, records = [], [], [], []
    for t in range(T):
        d = memory_depth[t]
        coverage = float((torch.isfinite(d) & (d > 0)).float().mean())
        anchors = anchor_points(d, None if memory_offset is None else memory_offset[t], (H, W))
        anchors = anchors[::-(-len(anchors) // MAX_ANCHORS)] if len(anchors) > MAX_ANCHORS else anchors
        pred = torch.where(valid[t].bool(), inverse[t].double(), torch.full_like(inverse[t].double(), math.nan))
        x = sample_bilinear(pred, anchors[:, :2])
        fit = fit_inverse_depth_samples(x, anchors[:, 2], ALIGN, seed=int(frame_ids[t]))
        span = _span(x, pred)
        reason = fit.reason
        if fit.ok and coverage < MIN_COVERAGE:
            reason = f"the memory covers {coverage:.1%} of the view, at least {MIN_COVERAGE:.0%} needed"
        elif fit.ok and fit.inliers < MIN_INLIER_SHARE * fit.points:
            reason = f"the fit keeps {fit.inliers} of {fit.points} anchors, at least {MIN_INLIER_SHARE:.0%} needed"
        elif fit.ok and not fit.residual <= ALIGN.max_residual:
            reason = f"median relative depth error {fit.residual:.3f} > {ALIGN.max_residual}"
        elif fit.ok and not fit.residual <= MAX_UNEXPLAINED * (flat := _constant_residual(anchors[:, 2])):
            reason = (f"the prediction does not explain the view's depth: median relative depth error {fit.residual:.4f}, "
                      f"one depth for the whole view {flat:.4f} (more than {MAX_UNEXPLAINED:.0%} of it)")
        ok = fit.ok and not reason
        records.append({"frame": int(frame_ids[t]), "status": "aligned" if ok else "skipped",
                        "scale": _num(fit.scale), "shift": _num(fit.shift), "residual": _num(fit.residual),
                        "points": fit.points, "inliers": fit.inliers, "coverage": round(coverage, 4),
                        "span": round(span, 4), "reason": reason})
        keep.append(ok)
        if ok:
            z, v = _depth_from_inverse(inverse[t], valid[t], fit.scale, fit.shift)
        else:
            z = torch.full((H, W), math.inf, device=inverse.device)
            v = torch.zeros(H, W, dtype=torch.bool, device=inverse.device)
        depths.append(z)
        valids.append(v)
    return torch.stack(depths), torch.stack(valids), keep, records


def write_relative(inverse: Tensor, valid: Tensor, read, frame_ids: list[int], *, align: bool,
                   base: tuple[float, float], depth_read: Callable, write: Callable) -> tuple[Tensor, dict]:
    """Write one chunk's relative depth, aligned frame by frame, and say how it went.

    inverse, valid: (T, H, W) the estimator's output. read: the chunk's memory read
    (``read.depth``, ``read.offset``, taken before anything of the chunk was written).
    ``depth_read(t)`` → (depth, offset) of the memory in view t *now*; ``write(indices, depth,
    valid)`` writes those frames. Frames are aligned and written in order, so a frame that turns
    away from what the memory held is anchored by the chunk's frames before it; a frame that
    cannot be aligned is not written. With ``align`` False (ablation) or no memory, every frame
    goes through ``base`` and is written. Returns the validity used (T, H, W; all False for a
    skipped frame) and the record {"status", "frames"}: status "aligned" (every frame written),
    "partial", "skipped" (none), "unaligned" or "no memory".
    """
    T = len(frame_ids)
    if not align or read.depth is None:
        depth, ok = apply_base(inverse, valid, base)
        write(list(range(T)), depth, ok)
        return ok, {"status": "unaligned" if not align else "no memory", "frames": []}
    valids, frames, written = [], [], False
    for t in range(T):
        if written:
            memory_depth, memory_offset = depth_read(t)
        else:  # nothing written since the chunk's read: it is still the memory's view
            memory_depth = read.depth[t:t + 1]
            memory_offset = None if read.offset is None else read.offset[t:t + 1]
        if tuple(memory_depth.shape[-2:]) == tuple(inverse.shape[-2:]):
            memory_offset = None  # a pixel-resolution read: each point sits on its pixel
        depth, ok, keep, record = align_frames(inverse[t:t + 1], valid[t:t + 1], memory_depth, memory_offset,
                                               frame_ids[t:t + 1])
        if keep[0]:
            write([t], depth, ok)
            written = True
        valids.append(ok[0])
        frames += record
    kept = [f["status"] == "aligned" for f in frames]
    status = "aligned" if all(kept) else ("partial" if any(kept) else "skipped")
    return torch.stack(valids), {"status": status, "frames": frames}


def sample_bilinear(image: Tensor, uv: np.ndarray) -> np.ndarray:
    """``image`` (H, W) read bilinearly at points ``uv`` (N, 2) in pixels (pixel centres at
    integer coordinates): an anchor projects between pixel centres, and on a slanted surface the
    nearest pixel's value is off by up to half a pixel's change. NaN outside the image (beyond
    its outer pixels' half) and where a neighbour is NaN."""
    H, W = image.shape
    u, v = torch.from_numpy(uv[:, 0]), torch.from_numpy(uv[:, 1])
    inside = (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
    u, v = u.clamp(0, W - 1), v.clamp(0, H - 1)
    u0, v0 = u.floor().long().clamp(max=W - 2 if W > 1 else 0), v.floor().long().clamp(max=H - 2 if H > 1 else 0)
    fu, fv = u - u0, v - v0
    u1, v1 = (u0 + 1).clamp(max=W - 1), (v0 + 1).clamp(max=H - 1)
    img = image.double()
    value = ((1 - fv) * ((1 - fu) * img[v0, u0] + fu * img[v0, u1]) + fv * ((1 - fu) * img[v1, u0] + fu * img[v1, u1]))
    return torch.where(inside, value, torch.full_like(value, math.nan)).numpy()


def _span(x: np.ndarray, pred: Tensor) -> float:
    """How much of the frame's predicted range (5th–95th percentile) the anchors' span."""
    x = x[np.isfinite(x)]
    p = pred[torch.isfinite(pred)].numpy()
    if len(x) < 2 or len(p) < 2:
        return 0.0
    whole = np.percentile(p, 95) - np.percentile(p, 5)
    return float((np.percentile(x, 95) - np.percentile(x, 5)) / whole) if whole > 0 else 1.0


def write_chunk(mode, latents: Tensor, frames: Tensor, depth: Tensor, valid: Tensor, flagged: Tensor,
                cameras, frame_ids: list[int], pixel_ids: list[int], read, *, kind: str, align: bool,
                base: tuple[float, float], confidence: float, chunk: int = 0) -> tuple[Tensor, dict | None]:
    """The memory update of one chunk's T latent-aligned frames through ``mode.write``.

    latents (T, C, h, w), frames (T, 3, H, W), cameras (T) and frame_ids (latent) / pixel_ids
    (pixel frames) as the session has them; depth, valid (T, H, W) the estimator's output of
    ``kind`` "metric" (z-depth, written as it is) or "relative" (:func:`write_relative`); flagged
    (T, H, W) the masker's never-write pixels. Returns the validity used and the alignment
    record {"chunk", "status", "frames"} (None for metric depth). The validity is on ``flagged``'s
    device; the relative fit runs on the host (a RANSAC in numpy), so relative depth goes there."""
    h, w = latents.shape[-2:]
    device = flagged.device

    def write(index: list[int], depth: Tensor, valid: Tensor) -> Tensor:
        depth, valid = depth.to(device), valid.to(device)
        valid = valid.bool() & valid_depth(depth)
        depth = torch.where(valid, depth, torch.full_like(depth, math.inf))  # no depth: never a point
        mode.write(latents[index], frames[index], depth, cameras[index], flagged[index] & valid,
                   [frame_ids[i] for i in index], confidence=confidence)
        return valid

    if kind == "metric":
        return write(list(range(len(frame_ids))), depth, valid), None
    valid, record = write_relative(depth.cpu(), valid.cpu(), read, pixel_ids, align=align, base=base, write=write,
                                   depth_read=lambda i: mode.depth_read(cameras[[i]], (h, w)))
    return valid.to(device), {"chunk": chunk, **record}


def _constant_residual(z: np.ndarray) -> float:
    """Median relative depth error of the best single inverse depth (the median one) for ``z``."""
    z = z[np.isfinite(z) & (z > 0)]
    c = float(np.median(1.0 / z))
    return float(np.median(np.abs(1.0 / (c * z) - 1.0)))


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
