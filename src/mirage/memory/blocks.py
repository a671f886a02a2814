"""World-space blocks: per-point attributes stored grouped by block, and frustum culling of blocks.

Large-scene maps (voxblox, InfiniTAM, nvblox) cut space into fixed-size cubes addressed by
integer coordinates; each frame first finds the blocks its frustum touches, then works only
inside them. :class:`BlockedPoints` does this for the point store:

- a point belongs to the cube ``floor(p / block_size)`` (its key, :func:`~mirage.memory.covisibility.voxel_keys`);
- every attribute of every point (its named *columns*) lives in one storage tensor per name,
  and each block owns a contiguous range of rows ``[start, start + capacity)`` of which the
  first ``count`` are its points: the block → slice table. Gathering the points of some blocks
  is a concatenation of ranges, O(their points + the blocks), never O(all points);
- each block keeps the bounding box of the points it has held (exact float32 bounds of real
  points, so a point on a cube's border is inside its block's box whatever ``floor`` said);
- appending fills a block's spare rows; a full block moves to a range twice as large at the end
  of the storage; removing swaps the block's last points into the holes. Both cost O(rows
  touched). Abandoned ranges are reclaimed by one compaction when they outnumber the points, so
  the work per point stays amortised O(1).

Rows are storage positions and change when points move. The *compact order* (blocks in storage
order, each block's points in row order) names each point by its position in :meth:`live_rows`;
:meth:`positions` and :meth:`rows_at` convert in O(k log B).

:func:`blocks_in_views` is the conservative frustum test: a block is dropped only when no point
of its box can land in any view under the splat's pixel rule (:mod:`mirage.memory.splat`), with
a margin far above float32 rounding. The slow reference is to project every point.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from mirage.memory.covisibility import voxel_keys

__all__ = ["BlockedPoints", "blocks_in_views", "ranges", "DEFAULT_BLOCK_SIZE"]

DEFAULT_BLOCK_SIZE = 4.0  # world units; measured by benchmarks/world_scale.py --block-sizes
MIN_CAPACITY = 16  # rows a block reserves when it first moves
_MARGIN = 2e-6  # relative slack of the frustum test, ~30x float32's unit roundoff (6e-8)


def ranges(starts: Tensor, counts: Tensor) -> Tensor:  # (B,), (B,) → (Σ counts,)
    """The rows ``start .. start + count − 1`` of every range, concatenated in order."""
    total = int(counts.sum()) if counts.numel() else 0
    if total == 0:
        return starts.new_zeros(0)
    shift = torch.repeat_interleave(starts - (counts.cumsum(0) - counts), counts)
    return shift + torch.arange(total, device=starts.device)


def blocks_in_views(
    lo: Tensor,  # (B, 3) float32 box minima
    hi: Tensor,  # (B, 3) box maxima
    K: Tensor,  # (V, 3, 3) intrinsics at hw
    world2cam: Tensor,  # (V, 4, 4)
    hw: tuple[int, int],
    near: float,
) -> Tensor:  # (B,) bool
    """Which boxes may hold a point that lands in at least one of the V views.

    A point lands when z > ``near`` and its pixel ``floor(u + 0.5), floor(v + 0.5)`` is inside
    the (h, w) image, i.e. u ∈ [−0.5, w − 0.5) and v ∈ [−0.5, h − 0.5). In homogeneous pixel
    coordinates (U, V, Z) = P·(p, 1), linear in the world point p, that implies the five
    half-spaces Z ≥ near, U + 1.5·Z ≥ 0, (w + 0.5)·Z − U ≥ 0 and the same for V and h (one cell
    of slack on each side). A box is dropped when the maximum over the box of one of them is
    below −tol, with tol a relative margin on the magnitudes involved, many times the float32
    rounding of the kernel's projection (float64 throughout).
    Empty boxes (lo > hi) are dropped.
    """
    h, w = hw
    B = lo.shape[0]
    if B == 0 or K.shape[0] == 0:
        return torch.zeros(B, dtype=torch.bool, device=lo.device)
    P = K.double() @ world2cam.double()[:, :3, :]  # (V, 3, 4)
    U, Vr, Z = P.unbind(1)  # (V, 4) each
    planes = torch.stack([Z, U + 1.5 * Z, (w + 0.5) * Z - U, Vr + 1.5 * Z, (h + 0.5) * Z - Vr], 1)
    planes[:, 0, 3] -= near  # (V, 5, 4): a·p + b ≥ 0 for every landing point
    V = planes.shape[0]
    a, b = planes[..., :3].reshape(V * 5, 3), planes[..., 3].reshape(V * 5)
    empty = ~(lo <= hi).all(dim=1)
    lo64, hi64 = lo.double().masked_fill(empty[:, None], 0), hi.double().masked_fill(empty[:, None], 0)
    centre, half = (lo64 + hi64) / 2, (hi64 - lo64) / 2
    best = centre @ a.T + half @ a.abs().T + b  # (B, V·5): max over the box of a·p + b
    # float32 rounding of the kernel's U, V and Z is a few ulps of |P|·|(p, 1)| per row; the
    # right and bottom planes weigh Z by w + 0.5 and h + 0.5
    size = torch.cat([torch.maximum(lo64.abs(), hi64.abs()), lo64.new_ones(B, 1)], dim=1)  # (B, 4)
    rows = P.abs()  # (V, 3, 4)
    weight = rows[:, 0] + rows[:, 1] + (w + h + 2) * rows[:, 2]  # (V, 4)
    tol = _MARGIN * (size @ weight.T)  # (B, V)
    inside = (best.view(B, V, 5) >= -tol[..., None]).all(dim=2)  # (B, V)
    return inside.any(dim=1) & ~empty


class BlockedPoints:
    """Named per-point columns stored grouped by world block (module docstring).

    Args:
        columns: name → (trailing shape, dtype) of each per-point attribute; must hold
            ``"points"`` (3,) float32, the world positions that decide the blocks.
        block_size: the cube edge in world units.
        device: where the storage lives.
    """

    def __init__(self, columns: Mapping[str, tuple[tuple[int, ...], torch.dtype]], block_size: float,
                 device) -> None:
        self.block_size = float(block_size)
        self.device = torch.device(device)
        self.specs = dict(columns)
        self.storage = {name: torch.empty(0, *shape, dtype=dtype, device=self.device)
                        for name, (shape, dtype) in self.specs.items()}
        self.end = 0  # first storage row no block has claimed
        long = torch.zeros(0, dtype=torch.long, device=self.device)
        self.keys, self.start, self.count, self.capacity = long, long, long, long  # (B,) each
        self.lo = torch.zeros(0, 3, dtype=torch.float32, device=self.device)  # (B, 3) bounds
        self.hi = torch.zeros(0, 3, dtype=torch.float32, device=self.device)
        self._sorted_keys, self._sorted_ids = long, long  # for key lookups
        self.num_points = 0

    @property
    def num_blocks(self) -> int:
        return int(self.keys.shape[0])

    # -- reading ------------------------------------------------------------------------
    def rows_of(self, blocks: Tensor) -> Tensor:  # (b,) block ids → their rows
        return ranges(self.start.index_select(0, blocks), self.count.index_select(0, blocks))

    def rows_in_views(self, K: Tensor, world2cam: Tensor, hw: tuple[int, int], near: float) -> Tensor:
        """Rows of the points of every block whose box may be seen by a view (conservative)."""
        seen = blocks_in_views(self.lo, self.hi, K, world2cam, hw, near) & (self.count > 0)
        return self.rows_of(seen.nonzero().squeeze(1))

    def _by_start(self) -> Tensor:
        """Block ids by storage position; a block without rows sorts before the block that
        starts where it does, so the owner of a row is the last block starting at or before it."""
        return torch.argsort(2 * self.start + (self.capacity > 0))

    def live_rows(self) -> Tensor:
        """Every point's row, in the compact order (blocks by storage position)."""
        return self.rows_of(self._by_start())

    def block_of(self, rows: Tensor) -> Tensor:  # (k,) rows of live points → their blocks (k,)
        order = self._by_start()
        return order.index_select(0, torch.searchsorted(self.start.index_select(0, order), rows, right=True) - 1)

    def positions(self, rows: Tensor) -> Tensor:  # (k,) rows → (k,) compact positions
        order = self._by_start()
        offset = torch.empty_like(self.count)
        counts = self.count.index_select(0, order)
        offset[order] = counts.cumsum(0) - counts
        block = self.block_of(rows)
        return offset.index_select(0, block) + rows - self.start.index_select(0, block)

    def rows_at(self, positions: Tensor) -> Tensor:  # (k,) compact positions → (k,) rows
        order = self._by_start()
        counts = self.count.index_select(0, order)
        ends = counts.cumsum(0)
        i = torch.searchsorted(ends, positions, right=True)  # the block (in start order) holding each
        return self.start.index_select(0, order).index_select(0, i) + positions - (ends - counts).index_select(0, i)

    def column(self, name: str) -> Tensor:
        """One attribute of every point, in the compact order (a copy: O(all points))."""
        return self.storage[name].index_select(0, self.live_rows())

    # -- writing ------------------------------------------------------------------------
    def reset(self, values: Mapping[str, Tensor]) -> None:
        """Drop every point, then hold ``values`` (name → (N, ...)) in their order."""
        self.__init__(self.specs, self.block_size, self.device)
        self.append(values)

    def append(self, values: Mapping[str, Tensor]) -> Tensor:  # → (M,) their rows, in input order
        """Add M points (every column's (M, ...) values)."""
        points = values["points"]
        M = points.shape[0]
        if M == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        keys, point_block = voxel_keys(points, self.block_size).unique(return_inverse=True)
        blocks = self._lookup_or_add(keys)  # (b,) block ids of the touched blocks
        incoming = torch.bincount(point_block, minlength=keys.shape[0])  # (b,)
        # blocks in the order they first appear in the input, so that appending a store's points
        # in its compact order (a file) gives back that order
        first = torch.full_like(keys, M).scatter_reduce_(0, point_block, torch.arange(M, device=self.device),
                                                         reduce="amin")
        by_appearance = torch.argsort(first)
        for _ in range(2):  # a compaction changes every block's range: decide again once
            count = self.count.index_select(0, blocks)
            full = by_appearance[(count + incoming > self.capacity.index_select(0, blocks))[by_appearance]]
            grown = torch.clamp_min(2 * (count + incoming).index_select(0, full), MIN_CAPACITY)
            if self._reserve(int(grown.sum())):
                break
        self._move(blocks.index_select(0, full), grown)
        # each new point's row: its block's first free row plus its rank among its block's arrivals
        order = torch.argsort(point_block, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(M, device=self.device) - (incoming.cumsum(0) - incoming).index_select(
            0, point_block.index_select(0, order))
        rows = (self.start + self.count).index_select(0, blocks).index_select(0, point_block) + rank
        for name, column in self.storage.items():
            column.index_copy_(0, rows, values[name].to(column.dtype))
        self.count.index_add_(0, blocks, incoming)
        lo = torch.full((keys.shape[0], 3), torch.inf, device=self.device)
        hi = torch.full((keys.shape[0], 3), -torch.inf, device=self.device)
        index = point_block[:, None].expand(M, 3)
        lo.scatter_reduce_(0, index, points.float(), reduce="amin")
        hi.scatter_reduce_(0, index, points.float(), reduce="amax")
        self.lo[blocks] = torch.minimum(self.lo.index_select(0, blocks), lo)
        self.hi[blocks] = torch.maximum(self.hi.index_select(0, blocks), hi)
        self.num_points += M
        return rows

    def remove(self, rows: Tensor) -> None:
        """Remove the points at ``rows`` (distinct): each block's last points fill its holes."""
        if rows.numel() == 0:
            return
        rows = rows.sort().values
        block = self.block_of(rows)
        gone = torch.bincount(block, minlength=self.num_blocks)
        left = self.count - gone
        touched = (gone > 0).nonzero().squeeze(1)
        touched = touched.index_select(0, torch.argsort(self.start.index_select(0, touched)))
        # the tail of each touched block, as many rows as it loses, in row order
        tail = ranges((self.start + left).index_select(0, touched), gone.index_select(0, touched))
        movers = tail[~torch.isin(tail, rows)]
        holes = rows[rows - self.start.index_select(0, block) < left.index_select(0, block)]
        # holes and movers are in row order; each block has as many of each, and blocks are
        # disjoint ranges, so the k-th hole and the k-th mover are in the same block
        for column in self.storage.values():
            column.index_copy_(0, holes, column.index_select(0, movers))
        self.count = left
        self.num_points -= int(rows.shape[0])

    def _lookup_or_add(self, keys: Tensor) -> Tensor:  # (b,) sorted distinct keys → block ids
        at = torch.searchsorted(self._sorted_keys, keys).clamp_max(max(self.num_blocks - 1, 0))
        if self.num_blocks:
            found = self._sorted_keys.index_select(0, at) == keys
            ids = torch.where(found, self._sorted_ids.index_select(0, at), -1)
        else:
            found, ids = torch.zeros_like(keys, dtype=torch.bool), torch.full_like(keys, -1)
        new = (~found).nonzero().squeeze(1)
        if new.numel():
            B, n = self.num_blocks, new.shape[0]
            ids[new] = torch.arange(B, B + n, device=self.device)
            zeros = torch.zeros(n, dtype=torch.long, device=self.device)
            self.keys = torch.cat([self.keys, keys.index_select(0, new)])
            self.start = torch.cat([self.start, zeros + self.end])
            self.count, self.capacity = torch.cat([self.count, zeros]), torch.cat([self.capacity, zeros])
            self.lo = torch.cat([self.lo, torch.full((n, 3), torch.inf, device=self.device)])
            self.hi = torch.cat([self.hi, torch.full((n, 3), -torch.inf, device=self.device)])
            self._sorted_keys, order = self.keys.sort()
            self._sorted_ids = order
        return ids

    def _reserve(self, rows: int) -> bool:
        """Make room for ``rows`` more rows at the end: compact when abandoned rows outnumber
        the points (then return False: the block ranges changed), else grow the storage."""
        size = next(iter(self.storage.values())).shape[0]
        if self.end + rows <= size:
            return True
        if self.end - self.num_points > max(self.num_points, MIN_CAPACITY):
            self._compact()
            return False
        size = max(2 * size, self.end + rows, 4 * MIN_CAPACITY)
        for name, column in self.storage.items():
            grown = column.new_zeros(size, *column.shape[1:])  # spare rows hold zeros, not garbage
            grown[:self.end] = column[:self.end]
            self.storage[name] = grown
        return True

    def _compact(self) -> None:
        """Pack every block's points, in the compact order, into the first rows."""
        order = self._by_start()
        rows = self.rows_of(order)
        for name, column in self.storage.items():
            self.storage[name] = column.index_select(0, rows)  # tight; _reserve grows it
        counts = self.count.index_select(0, order)
        self.start[order] = counts.cumsum(0) - counts
        self.capacity = self.count.clone()
        self.end = self.num_points

    def _move(self, blocks: Tensor, capacity: Tensor) -> None:
        """Move ``blocks`` to fresh ranges of ``capacity`` rows at the end of the storage."""
        if blocks.numel() == 0:
            return
        start = self.end + capacity.cumsum(0) - capacity
        count = self.count.index_select(0, blocks)
        src, dst = ranges(self.start.index_select(0, blocks), count), ranges(start, count)
        for column in self.storage.values():
            column.index_copy_(0, dst, column.index_select(0, src))
        self.start[blocks] = start
        self.capacity[blocks] = capacity
        self.end += int(capacity.sum())
