"""The z-buffered point splat: project N world points into V views and keep the nearest.

Contract (the same for the fast kernel and its reference twin):

- A point lands in view v at pixel (row, col) = (floor(y + 0.5), floor(x + 0.5)) of its
  projection, when that pixel is inside the (h, w) image and its z-depth exceeds ``near``.
- Each pixel keeps the point with the smallest z-depth. Exact depth ties are broken by the
  smallest ``priority`` (by default the point's index), so the result never depends on the order
  of scatter writes. With a ``priority`` that travels with the points, the result does not depend
  on the storage order of the points either.
- Empty pixels hold index −1 and depth +inf.

The fast kernel is linear in N·V: one 3x4 matrix per view projects every point into every view,
then one scatter-min on depth, one scatter-min on priority among depth winners, and an assignment
whose target indices are unique. No per-view sort.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from mirage.errors import ShapeError, expect_shape
from mirage.geometry import project_points

__all__ = ["Splat", "splat_zbuffer", "splat_zbuffer_reference", "project_to_cells", "zbuffer_pairs",
           "cell_offsets", "DEFAULT_NEAR"]

DEFAULT_NEAR = 1e-3  # points at z ≤ near (behind or on the camera plane) never land


class Splat(NamedTuple):
    """Result of a z-buffered splat.

    index: (V, h, w) long, the winning point per pixel, −1 where empty.
    depth: (V, h, w) z-depth of the winner in that view, +inf where empty.
    """

    index: Tensor
    depth: Tensor


def _check_inputs(points_world: Tensor, K: Tensor, world2cam: Tensor, hw, priority) -> None:
    expect_shape("points_world", points_world, (None, 3))
    expect_shape("K", K, (None, 3, 3))
    expect_shape("world2cam", world2cam, (K.shape[0], 4, 4))
    h, w = hw
    if h <= 0 or w <= 0:
        raise ShapeError(f"`hw` must be positive but is {tuple(hw)}")
    if priority is not None:
        expect_shape("priority", priority, (points_world.shape[0],))


def project_to_cells(
    points_world: Tensor,  # (N, 3)
    K: Tensor,  # (V, 3, 3) intrinsics for an image of hw
    world2cam: Tensor,  # (V, 4, 4)
    hw: tuple[int, int],
    *,
    near: float = DEFAULT_NEAR,
    block_entries: int = 1 << 20,
) -> tuple[Tensor, Tensor, Tensor]:  # cell (M,), z (M,), point (M,)
    """Every (view, point) pair that lands, as flat cells ``view·h·w + row·w + col``.

    Returns (cell, z, point): M landed pairs with the pixel rule of the module contract, the
    point's z-depth in that view (input dtype) and its index. No z-buffering: one cell may hold
    many points, and a point lands in at most one cell per view. Inputs are not validated
    (internal: :func:`splat_zbuffer` and the store's fusion, which validated them already).
    The set of pairs does not depend on ``block_entries`` (see :func:`_project_blocks`).
    """
    blocks = list(_project_blocks(points_world, K, world2cam, hw, near, block_entries))
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        empty = torch.zeros(0, dtype=torch.long, device=points_world.device)
        return empty, points_world.new_zeros(0), empty
    cells, depths, point_ids = zip(*blocks)
    return torch.cat(cells), torch.cat(depths), torch.cat(point_ids)


def _project_blocks(points_world, K, world2cam, hw, near, block_entries):
    """Yield (cell, z, point) of the landed pairs, block by block of about ``block_entries``
    (view, point) pairs, so that the temporaries stay in cache. (No gradients: it writes into
    buffers.)"""
    h, w = hw
    V, N = K.shape[0], points_world.shape[0]
    device, dtype = points_world.device, points_world.dtype
    # One 3x4 matrix per view maps homogeneous world points to homogeneous pixels (u·z, v·z, z).
    P = K.to(dtype) @ world2cam.to(dtype)[:, :3, :]  # (V, 3, 4)
    P = [[P[:, k, j, None] for j in range(4)] for k in range(3)]  # (V, 1) columns
    step = max(1, block_entries // max(V, 1))
    buffers = torch.empty(4, V, min(step, N), dtype=dtype, device=device)  # reused per block
    for n0 in range(0, N, step):
        x, y, zw = points_world[n0:n0 + step].unbind(dim=1)  # (n,) each
        n = x.shape[0]
        u, v, z, tmp = buffers[:, :, :n].unbind(0)  # (V, n) each

        # Elementwise products and sums, not a matrix product (nor a fused multiply-add): BLAS
        # may round a point differently depending on where it sits in the array, and then
        # storage order would decide depth ties.
        def homogeneous(k: int, out: Tensor) -> Tensor:  # (V, n): P[:, k] · (x, y, z, 1)
            torch.mul(P[k][0], x, out=out)
            out.add_(torch.mul(P[k][1], y, out=tmp))
            out.add_(torch.mul(P[k][2], zw, out=tmp))
            return out.add_(P[k][3])

        homogeneous(2, z)
        col = homogeneous(0, u).div_(z).add_(0.5).floor_()
        row = homogeneous(1, v).div_(z).add_(0.5).floor_()
        landed = (z > near) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        row.mul_(w).add_(col)  # the cell within its view, exact in float for any real image
        flat = landed.view(-1).nonzero().squeeze(1)  # (m,) into (V·n,)
        view_id = flat // n
        yield (row.reshape(-1).index_select(0, flat).long() + view_id * (h * w),
               z.reshape(-1).index_select(0, flat), flat - view_id * n + n0)


def splat_zbuffer(
    points_world: Tensor,  # (N, 3)
    K: Tensor,  # (V, 3, 3) intrinsics for an image of hw
    world2cam: Tensor,  # (V, 4, 4)
    hw: tuple[int, int],
    *,
    priority: Tensor | None = None,  # (N,) long, unique per point; default arange(N)
    near: float = DEFAULT_NEAR,
    block_entries: int = 1 << 20,
) -> Splat:
    """Fast, deterministic z-buffer splat of N points into V views (see module contract).

    Points are projected in blocks of about ``block_entries`` (view, point) pairs so that the
    temporaries stay in cache; the depth minimum is a scatter-min across blocks, so the result
    does not depend on the block size.
    """
    _check_inputs(points_world, K, world2cam, hw, priority)
    h, w = hw
    V, N = K.shape[0], points_world.shape[0]
    device, dtype = points_world.device, points_world.dtype
    index = torch.full((V * h * w,), -1, dtype=torch.long, device=device)
    depth = torch.full((V * h * w,), float("inf"), dtype=dtype, device=device)
    if N == 0 or V == 0:
        return Splat(index.view(V, h, w), depth.view(V, h, w))
    # 1) project block by block; keep landed (cell, z, point) triples; scatter-min the depth
    # per block (one scatter over all blocks at once is many times slower on a multi-threaded
    # CPU at millions of points)
    blocks = _project_blocks(points_world, K, world2cam, hw, near, block_entries)
    cells, depths, point_ids = [], [], []
    for cell, z, point_id in blocks:
        depth.scatter_reduce_(0, cell, z, reduce="amin")  # order-independent minimum
        cells.append(cell), depths.append(z), point_ids.append(point_id)
    cell, z, point_id = torch.cat(cells), torch.cat(depths), torch.cat(point_ids)

    # 2) among the points at their cell's minimum depth, the smallest priority wins
    _pick_winners(index, depth, cell, z, point_id, priority)
    return Splat(index.view(V, h, w), depth.view(V, h, w))


def zbuffer_pairs(
    cell: Tensor,  # (M,) long flat cells, from project_to_cells
    z: Tensor,  # (M,)
    point_id: Tensor,  # (M,) long
    size: int,  # number of flat cells
    *,
    priority: Tensor | None = None,  # indexed by point_id; default the point id
) -> Splat:  # index (size,), depth (size,)
    """The z-buffer of landed (cell, z, point) pairs, with the module contract's rule: per cell
    the smallest z, exact ties to the smallest priority; index −1 and depth +inf where empty."""
    index = torch.full((size,), -1, dtype=torch.long, device=cell.device)
    depth = torch.full((size,), float("inf"), dtype=z.dtype, device=cell.device)
    depth.scatter_reduce_(0, cell, z, reduce="amin")
    _pick_winners(index, depth, cell, z, point_id, priority)
    return Splat(index, depth)


def _pick_winners(index, depth, cell, z, point_id, priority) -> None:
    """Fill ``index`` (flat) with each cell's winner among the pairs at the cell's ``depth``."""
    nearest = (z == depth.index_select(0, cell)).nonzero().squeeze(1)
    cell, point_id = cell.index_select(0, nearest), point_id.index_select(0, nearest)
    prio = point_id if priority is None else priority.to(cell.device).index_select(0, point_id)
    best = torch.full(index.shape, torch.iinfo(torch.long).max, dtype=torch.long, device=cell.device)
    best.scatter_reduce_(0, cell, prio, reduce="amin")
    wins = prio == best.index_select(0, cell)
    # Priorities are unique, so each cell has exactly one winner and this write is well-defined.
    index[cell[wins]] = point_id[wins]


def splat_zbuffer_reference(
    points_world: Tensor,  # (N, 3)
    K: Tensor,  # (V, 3, 3)
    world2cam: Tensor,  # (V, 4, 4)
    hw: tuple[int, int],
    *,
    priority: Tensor | None = None,  # (N,)
    near: float = DEFAULT_NEAR,
) -> Splat:
    """Slow, obviously correct twin of :func:`splat_zbuffer`: Python loops over views and points.

    For tests only. Every point is transformed and projected on its own in float64 Python
    arithmetic (independent of the fast kernel's tensor code), and each pixel keeps the
    lexicographically smallest (z, priority). Depths are reported in the input dtype.
    """
    _check_inputs(points_world, K, world2cam, hw, priority)
    h, w = hw
    V, N = K.shape[0], points_world.shape[0]
    pts = points_world.double().cpu().tolist()
    Ks = K.double().cpu().tolist()
    Ms = world2cam.double().cpu().tolist()
    prio = list(range(N)) if priority is None else priority.cpu().tolist()
    index = torch.full((V, h, w), -1, dtype=torch.long)
    depth = torch.full((V, h, w), float("inf"), dtype=torch.float64)
    for v in range(V):
        (fx, s, cx), (_, fy, cy), _ = Ks[v]
        M = Ms[v]
        best: dict[tuple[int, int], tuple[float, int, int]] = {}
        for n, (px, py, pz) in enumerate(pts):
            x = M[0][0] * px + M[0][1] * py + M[0][2] * pz + M[0][3]
            y = M[1][0] * px + M[1][1] * py + M[1][2] * pz + M[1][3]
            z = M[2][0] * px + M[2][1] * py + M[2][2] * pz + M[2][3]
            if not (near < z < math.inf):
                continue
            u = fx * x / z + s * y / z + cx
            vv = fy * y / z + cy
            col, row = math.floor(u + 0.5), math.floor(vv + 0.5)
            if not (0 <= row < h and 0 <= col < w):
                continue
            key = (z, prio[n], n)
            if key < best.get((row, col), (math.inf, 0, 0)):
                best[(row, col)] = key
        for (row, col), (z, _, n) in best.items():
            index[v, row, col] = n
            depth[v, row, col] = z
    device = points_world.device
    return Splat(index.to(device), depth.to(device=device, dtype=points_world.dtype))


def cell_offsets(points_world: Tensor, K: Tensor, world2cam: Tensor, mask: Tensor) -> Tensor:
    """(M, 2) (x − col, y − row) of M winning points (M, 3) in the cells where ``mask`` (V, h, w)
    is set, in ``mask.nonzero()`` order; K (V, 3, 3) and world2cam (V, 4, 4) at the grid size.

    Clamped to [−0.5, 0.5]: the splat rounds with its own arithmetic, so a point on a cell border
    may come out a rounding error beyond it.
    """
    view, row, col = mask.nonzero(as_tuple=True)
    # Each winner in its own view: M views of one point (in float64, so the offset is exact).
    uv, _ = project_points(points_world.double()[:, None], K.double()[view], world2cam.double()[view])
    cells = torch.stack([col, row], dim=1).to(uv.dtype)
    return (uv[:, 0] - cells).clamp(-0.5, 0.5).float()
