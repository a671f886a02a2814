"""Reduce a pixel-resolution depth map to the latent grid without inventing flying points.

A plain bilinear resize averages the two sides of a depth edge and puts points in mid-air
(docs/design.md §3.1). The rule used here, for a latent cell covering an sy×sx block of pixels:

1. The cell is invalid if any pixel in its block has invalid depth (≤ 0, NaN, inf) or is
   excluded (dynamic object, sky, user mask). Cells that touch the sky never become points.
2. The cell is dropped if its block is not one surface. Inverse depth 1/z is an affine function
   of (u, v) on any plane, so we fit that affine function to the block by least squares (one
   fixed projection matrix for every block) and drop the cell if the largest residual exceeds
   ``planarity_tol`` times the block's mean inverse depth. Depth edges fail this test; planes
   and gently curved surfaces pass it.
3. The cell's depth is the fitted inverse depth at the cell centre. The centre is the centroid
   of the block, so that is the harmonic mean of the block's depths: exact for a planar patch.

With ``min_valid_fraction`` < 1, rule 1 is relaxed for pixels with *no depth* (sky, holes): a
cell that excludes no pixel but has some without depth is kept when at least that fraction of
its pixels have depth and their inverse depths span at most ``planarity_tol`` times their mean
(a single surface in front of the sky, e.g. a skyline cell); its depth is the harmonic mean of
those pixels. Its token then shows that surface and the sky beside it, which is what the view
saw. Excluded pixels (dynamic objects, user masks) still drop their cell.

With ``keep_edges``, a cell that has enough depth (every pixel, or ``min_valid_fraction`` of
them) but is not one surface is kept instead of dropped, at the **nearest** depth among its
pixels: a depth edge belongs to its foreground. The point lies on a real surface, never in
mid-air between the two sides, and its token is what the view saw across the edge: exactly
right from that view and from views near it, where a dropped cell would leave a hole that only
later, less trusted frames can fill. Cells with too little depth (mostly sky) are for the far
field (``return_far``), so with both every non-excluded cell of a write is stored somewhere.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from mirage.errors import ShapeError, expect_shape

__all__ = ["valid_depth", "reduce_depth_to_grid", "PLANARITY_TOL"]

PLANARITY_TOL = 0.05


def valid_depth(depth: Tensor) -> Tensor:
    """Bool mask of usable z-depths: finite and > 0."""
    return torch.isfinite(depth) & (depth > 0)


@lru_cache(maxsize=16)
def _affine_residual_projector(sy: int, sx: int, dtype, device) -> Tensor:
    """(sy·sx, sy·sx) matrix I − A(AᵀA)⁻¹Aᵀ with A = [u, v, 1] over the block's pixels.

    Cached: it depends only on the block size, and a pseudo-inverse per write is a measurable
    part of a latent-size update. Callers must not modify it.
    """
    host = dict(dtype=torch.float64, device="cpu")  # made once in float64 on the host, then moved
    v, u = torch.meshgrid(torch.arange(sy, **host), torch.arange(sx, **host), indexing="ij")
    A = torch.stack([u.flatten(), v.flatten(), torch.ones(sy * sx, **host)], dim=1)
    P = A @ torch.linalg.pinv(A)
    return (torch.eye(sy * sx, **host) - P).to(dtype=dtype, device=device)


def reduce_depth_to_grid(
    depths: Tensor,  # (T, H, W) z-depth
    hw: tuple[int, int],
    *,
    exclude: Tensor | None = None,  # (T, H, W) bool
    planarity_tol: float = PLANARITY_TOL,
    min_valid_fraction: float = 1.0,
    keep_edges: bool = False,
    return_far: bool = False,
) -> tuple[Tensor, ...]:  # depth (T, h, w), valid (T, h, w)[, far (T, h, w)]
    """Depth and validity on an (h, w) grid whose cells tile (H, W) in integer blocks.

    When (H, W) == (h, w) nothing is resampled: the depth is returned as it is, and valid marks
    finite positive, non-excluded pixels. Invalid cells carry depth +inf. ``min_valid_fraction``
    in (0, 1] (default 1: every pixel needs depth) keeps cells partly without depth, and
    ``keep_edges`` cells across a depth edge at their nearest depth (module docstring).

    With ``return_far``, also the cells for the far field (:mod:`mirage.memory.far_field`): those
    without an excluded pixel whose pixels with depth are fewer than ``min_valid_fraction`` of
    them, exactly the non-excluded cells left without a point for lack of depth.
    """
    expect_shape("depths", depths, (None, None, None))
    T, H, W = depths.shape
    h, w = hw
    if exclude is not None:
        expect_shape("exclude", exclude, (T, H, W))
    if not 0.0 < min_valid_fraction <= 1.0:
        raise ShapeError(f"`min_valid_fraction` must be in (0, 1] but is {min_valid_fraction}")
    if h <= 0 or w <= 0 or H % h or W % w:
        raise ShapeError(
            f"the depth size (H, W) = {(H, W)} must be an integer multiple of the grid size "
            f"(h, w) = {(h, w)}"
        )
    sy, sx = H // h, W // w
    if (sy, sx) == (1, 1):
        has_depth = valid_depth(depths)
        ok = has_depth if exclude is None else has_depth & ~exclude.bool()
        out = (torch.where(ok, depths, torch.full_like(depths, float("inf"))), ok)
        if return_far:
            out += (~has_depth if exclude is None else ~has_depth & ~exclude.bool(),)
        return out

    # Everything below works on (T, h, w, sy·sx) blocks of pixels. An excluded pixel drops its
    # cell under either rule, so the inverse depths need only "has depth", not "not excluded".
    def blocks(x: Tensor) -> Tensor:
        return x.reshape(T, h, sy, w, sx).permute(0, 1, 3, 2, 4).reshape(T, h, w, sy * sx)

    d = blocks(depths)
    has_depth = valid_depth(d)
    count = has_depth.sum(dim=-1)  # pixels with depth per cell
    excluded = blocks(exclude.bool()).any(dim=-1) if exclude is not None else None
    ok_cell = count == sy * sx if excluded is None else (count == sy * sx) & ~excluded
    inv = torch.where(has_depth, 1.0 / d, 0.0)
    total_inv = inv.sum(dim=-1)
    mean_inv = total_inv / (sy * sx)  # what inv.mean(dim=-1) computes on CPU, bit for bit
    residual = inv @ _affine_residual_projector(sy, sx, depths.dtype, depths.device)
    planar = residual.abs().amax(dim=-1) <= planarity_tol * mean_inv
    valid = ok_cell & planar & (mean_inv > 0)
    depth = torch.where(valid, 1.0 / mean_inv.clamp_min(1e-30), float("inf"))
    enough = ok_cell  # cells with enough depth for rule 1 (or its relaxation below)
    if min_valid_fraction < 1.0:
        partial = ~ok_cell & (count >= min_valid_fraction * sy * sx)
        if excluded is not None:
            partial &= ~excluded
        enough = ok_cell | partial
        if bool(partial.any()):  # else (e.g. no sky in view) nothing to add
            mean_partial = total_inv / count.clamp_min(1)  # inv is 0 where there is no depth
            span = (torch.where(has_depth, inv, -float("inf")).amax(dim=-1)
                    - torch.where(has_depth, inv, float("inf")).amin(dim=-1))
            partial &= (span <= planarity_tol * mean_partial) & (mean_partial > 0)
            depth = torch.where(partial, 1.0 / mean_partial.clamp_min(1e-30), depth)
            valid = valid | partial
    edge = enough & ~valid if keep_edges else None
    if edge is not None and bool(edge.any()):
        nearest = torch.where(has_depth, d, float("inf")).amin(dim=-1)
        depth = torch.where(edge, nearest, depth)
        valid = valid | edge
    if not return_far:
        return depth, valid
    far = count < min_valid_fraction * sy * sx
    return depth, valid, far if excluded is None else far & ~excluded
