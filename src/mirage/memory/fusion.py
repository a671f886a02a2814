"""Voxel fusion of new frames into a point memory: which points are replaced, carved, added.

The rule (see :mod:`mirage.memory.store` for why): each new grid cell, with its z-depth
``z_new``, is compared with the memory point that wins that cell in the frame's camera, i.e.
the nearest point, exact depth ties going to the smallest priority. With
``band = voxel_scale · DEPTH_BAND · z_new``:

- the memory point has a higher *confidence* than the new cell (e.g. it comes from the given
  first frame and the cell from a generated one): the point is kept as it is and the new cell
  is *dropped*, whatever their depths (a less trusted write never overrides a more trusted one);
- ``|z_mem − z_new| ≤ band``: the same voxel; the memory point is *replaced* by the new cell
  (it takes the cell's token, priority and confidence, and keeps its position);
- ``z_mem < z_new − band``: the memory point floats in front of the surface now seen; it is
  *carved* (removed) and the cell is decided again against the point now winning it, at most
  ``max_rounds`` times in all;
- otherwise (empty cell, or the winner lies behind the new surface, or ``max_rounds`` carves):
  the new cell is *appended*.

With equal confidences everywhere (the default) the first rule never applies.

A write fuses its T frames in order: frame t sees the memory as frames < t left it (their
appended points included, their carved points gone). Implementations with one contract:

- :func:`voxel_fusion_reference` is the plain loop for one frame: z-buffer splat of the live
  points, decide, carve, splat again, replaced points taking their new priorities as it goes;
  :func:`fuse_write_reference` runs it frame after frame.
- :func:`fuse_write` projects the memory and every new point of the write into all T views
  once, then, frame by frame, orders each cell's live candidates front to back by
  (z, priority): round r of the loop is rank r within a cell, so every round is decided at
  once. This is exact because a point lands in at most one cell of a view: carving a cell's
  winner only changes that cell, and a replaced point's new priority only matters in a cell
  that is already decided. New points are projected before it is known which of them will be
  appended; the ones that are not stay dead and never take part.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from mirage.geometry import rigid_inverse
from mirage.memory.far_field import cell_rays
from mirage.memory.splat import project_to_cells, splat_zbuffer, splat_zbuffer_reference, zbuffer_pairs

__all__ = ["FusionPlan", "WritePlan", "fuse_write", "fuse_write_reference",
           "voxel_fusion_reference", "hides_trusted", "DEPTH_BAND", "MAX_CARVE_ROUNDS"]

DEPTH_BAND = 0.05  # relative depth half-extent of a frustum voxel at voxel_scale = 1
MAX_CARVE_ROUNDS = 4  # carve, then look again behind the carved point, at most this often


class FusionPlan(NamedTuple):
    """What fusing one frame does to a memory of N points with M new cells.

    replaced: (R,) long, memory points whose token (and priority) the new cells replace.
    replaced_by: (R,) long, the new cell (index into the M new cells) replacing each one.
    carved: (Q,) long, memory points to remove.
    append: (M,) bool, new cells that become new points (False for replacing and dropped cells).
    """

    replaced: Tensor
    replaced_by: Tensor
    carved: Tensor
    append: Tensor


class WritePlan(NamedTuple):
    """What fusing the frames of one write does, over N old points followed by M new points.

    keep: (N + M,) bool, the points in the memory after the write, each at its own position.
    carrier: (N + M,) long, the new point whose token, priority, frame and confidence each point
        carries after the write; −1 for an old point that keeps its own.
    visible: (T, h, w) long, the z-buffer of the memory after the write in each frame's camera:
        per cell the winning point (an index into the N + M points, ``keep`` true), −1 where
        empty. It is what each written frame sees, for reference retrieval.
    """

    keep: Tensor
    carrier: Tensor
    visible: Tensor


def _initial_state(N: int, priority: Tensor, new_priority: Tensor):
    M, device = new_priority.shape[0], new_priority.device
    alive = torch.cat([torch.ones(N, dtype=torch.bool, device=device),
                       torch.zeros(M, dtype=torch.bool, device=device)])
    carrier = torch.cat([torch.full((N,), -1, dtype=torch.long, device=device),
                         torch.arange(M, device=device)])
    return alive, carrier, torch.cat([priority, new_priority])


def _confidences(confidence: Tensor | None, N: int, new_confidence: Tensor | None, M: int,
                 device) -> tuple[Tensor, Tensor]:
    """(N + M,) confidences of the old then new points, and the (M,) new ones; default 0."""
    old = torch.zeros(N, device=device) if confidence is None else confidence.to(device, torch.float32)
    new = torch.zeros(M, device=device) if new_confidence is None else new_confidence.to(device, torch.float32)
    return torch.cat([old, new]), new


def fuse_write(
    points_world: Tensor,  # (N, 3) memory points before the write
    priority: Tensor,  # (N,) long, unique: the z-buffer tie-break
    K: Tensor,  # (T, 3, 3) the frames' cameras at the grid size hw
    world2cam: Tensor,  # (T, 4, 4)
    hw: tuple[int, int],
    new_points: Tensor,  # (M, 3) world points of the new cells, frame by frame
    new_frame: Tensor,  # (M,) long, the frame 0..T−1 of each new cell, ascending
    new_cells: Tensor,  # (M,) long, flat cell row·w + col, distinct within a frame
    new_z: Tensor,  # (M,) z-depth of each new cell in its frame's camera
    new_priority: Tensor,  # (M,) long, unique and above every ``priority``
    *,
    voxel_scale: float = 1.0,
    max_rounds: int = MAX_CARVE_ROUNDS,
    confidence: Tensor | None = None,  # (N,) float; default all equal
    new_confidence: Tensor | None = None,  # (M,) float; default all equal
) -> WritePlan:
    """Fast fusion of one write's frames, in order (module contract): one projection. The same
    plan as :func:`fuse_write_reference` (tested)."""
    h, w = hw
    T, N, M = K.shape[0], points_world.shape[0], new_points.shape[0]
    device = new_priority.device
    alive, carrier, prio = _initial_state(N, priority, new_priority)
    conf, new_conf = _confidences(confidence, N, new_confidence, M, device)
    # Every (view, point) that lands, for old and new points alike: the decisions use the pairs
    # in cells that receive a new point, the visibility after the write uses them all.
    cell, z, gid = project_to_cells(torch.cat([points_world, new_points]), K, world2cam, hw)
    if M and (N == 0 and T == 1 or max_rounds < 1):  # nothing to fuse against
        alive[N:] = True
    elif M:
        _decide_frames(new_frame, new_cells, new_z, voxel_scale, max_rounds, T, hw,
                       (cell, z, gid), (alive, carrier, prio, conf, new_priority, new_conf))
    live = alive.index_select(0, gid).nonzero().squeeze(1)
    visible = zbuffer_pairs(cell.index_select(0, live), z.index_select(0, live),
                            gid.index_select(0, live), T * h * w, priority=prio).index
    return WritePlan(alive, carrier, visible.view(T, h, w))


def _decide_frames(new_frame, new_cells, new_z, voxel_scale, max_rounds, T, hw, projected,
                   state) -> None:
    """The decisions of :func:`fuse_write`, frame by frame, updating ``state`` (alive, carrier,
    prio, conf, new_priority, new_conf) in place, from the ``projected`` (cell, z, point) pairs
    of the old and new points in the T views."""
    h, w = hw
    alive, carrier, prio, conf, new_priority, new_conf = state
    N, M, device = alive.shape[0] - new_z.shape[0], new_z.shape[0], alive.device
    ends = torch.bincount(new_frame, minlength=T).cumsum(0).tolist()  # per frame
    bounds = list(zip([0] + ends[:-1], ends))  # frame t's new points: [m0, m1)
    # Keep the pairs whose cell receives a new point of that view's frame, grouped by that new
    # point (a view's pairs are then one contiguous run, since new points are ordered by frame).
    cell, z, gid = projected
    slot = torch.full((T * h * w,), -1, dtype=torch.long, device=device)
    slot[new_frame * (h * w) + new_cells] = torch.arange(M, device=device)
    s = slot.index_select(0, cell)
    hit = (s >= 0).nonzero().squeeze(1)
    s, z, gid = s.index_select(0, hit), z.index_select(0, hit), gid.index_select(0, hit)
    order = torch.argsort(s, stable=True)
    s, z, gid = s.index_select(0, order), z.index_select(0, order), gid.index_select(0, order)
    # What does not change as the frames are fused: each pair against its new cell's depth.
    zn = new_z.index_select(0, s)
    band = voxel_scale * DEPTH_BAND * zn
    near = (z - zn).abs() <= band  # the same voxel
    in_front = z < zn - band  # contradicted by the free space in front of the new surface
    pair_conf = new_conf.index_select(0, s)
    runs = torch.searchsorted(s, torch.tensor([0] + ends, device=device)).tolist()
    pairs = (s, z, gid, near, in_front, pair_conf)
    sizes = [b - a for a, b in zip(runs[:-1], runs[1:])]
    per_frame = zip(*(x.split(sizes) for x in pairs))
    for (m0, m1), (rs, rz, rg, r_near, r_in_front, r_conf) in zip(bounds, per_frame):
        new_alive = alive[N + m0:N + m1]  # this frame's new points, none in memory yet
        live = alive.index_select(0, rg).nonzero().squeeze(1)  # candidates in memory right now
        if not live.numel():
            new_alive.fill_(True)
            continue
        # Each cell's candidates front to back, by (cell, z, priority): stable sorts, least
        # significant key first. Priorities are unique, so the order is total.
        o = live.index_select(0, torch.argsort(prio.index_select(0, rg.index_select(0, live)), stable=True))
        o = o.index_select(0, torch.argsort(rz.index_select(0, o), stable=True))
        o = o.index_select(0, torch.argsort(rs.index_select(0, o), stable=True))
        ts = rs.index_select(0, o) - m0  # the new point of each cell, within the frame
        tg = rg.index_select(0, o)
        trusted = conf.index_select(0, tg) > r_conf.index_select(0, o)
        same = r_near.index_select(0, o) & ~trusted
        carve = r_in_front.index_select(0, o) & ~trusted
        counts = torch.bincount(ts, minlength=m1 - m0)
        rank = torch.arange(ts.shape[0], device=device) - (counts.cumsum(0) - counts).index_select(0, ts)
        # The round that decides a cell: its first candidate not carved, if the loop looks
        # that deep (rank < max_rounds); else max_rounds. A carved candidate proposes
        # max_rounds, which changes no minimum.
        first = torch.full((m1 - m0,), max_rounds, dtype=torch.long, device=device)
        first.scatter_reduce_(0, ts, rank.masked_fill(carve, max_rounds), reduce="amin")
        first = first.index_select(0, ts)
        decided = (rank == first) & (rank < max_rounds)
        replace = decided & same
        by, replaced = ts[replace] + m0, tg[replace]
        carrier[replaced] = by
        prio[replaced] = new_priority.index_select(0, by)
        conf[replaced] = new_conf.index_select(0, by)
        alive[tg[rank < first]] = False
        # A cell is not appended when it replaced a point, or a more trusted point keeps it.
        new_alive.fill_(True)
        new_alive[ts[decided & (same | trusted)]] = False


def fuse_write_reference(
    points_world: Tensor,  # (N, 3)
    priority: Tensor,  # (N,)
    K: Tensor,  # (T, 3, 3)
    world2cam: Tensor,  # (T, 4, 4)
    hw: tuple[int, int],
    new_points: Tensor,  # (M, 3)
    new_frame: Tensor,  # (M,)
    new_cells: Tensor,  # (M,)
    new_z: Tensor,  # (M,)
    new_priority: Tensor,  # (M,)
    *,
    voxel_scale: float = 1.0,
    max_rounds: int = MAX_CARVE_ROUNDS,
    confidence: Tensor | None = None,  # (N,)
    new_confidence: Tensor | None = None,  # (M,)
) -> WritePlan:
    """Slow twin of :func:`fuse_write`: :func:`voxel_fusion_reference` frame after frame, each
    on the points alive at that moment. For tests."""
    N = points_world.shape[0]
    alive, carrier, prio = _initial_state(N, priority, new_priority)
    conf, new_conf = _confidences(confidence, N, new_confidence, new_priority.shape[0], new_priority.device)
    everything = torch.cat([points_world, new_points])
    for t in range(K.shape[0]):
        js = (new_frame == t).nonzero().squeeze(1)  # this frame's new points
        live = alive.nonzero().squeeze(1)
        plan = voxel_fusion_reference(everything[live], prio[live], K[t:t + 1], world2cam[t:t + 1],
                                      hw, new_cells[js], new_z[js], new_priority[js],
                                      voxel_scale=voxel_scale, max_rounds=max_rounds,
                                      confidence=conf[live], new_confidence=new_conf[js])
        g, by = live[plan.replaced], js[plan.replaced_by]
        carrier[g], prio[g], conf[g] = by, new_priority[by], new_conf[by]
        alive[live[plan.carved]] = False
        alive[N + js[plan.append]] = True
    T, (h, w) = K.shape[0], hw
    live = alive.nonzero().squeeze(1)
    seen = splat_zbuffer_reference(everything[live], K, world2cam, hw, priority=prio[live]).index
    visible = torch.where(seen >= 0, live[seen.clamp_min(0)], -1)
    return WritePlan(alive, carrier, visible.view(T, h, w))


def voxel_fusion_reference(
    points_world: Tensor,  # (N, 3)
    priority: Tensor,  # (N,) long, unique
    K: Tensor,  # (1, 3, 3)
    world2cam: Tensor,  # (1, 4, 4)
    hw: tuple[int, int],
    cells: Tensor,  # (M,) long, distinct
    z_new: Tensor,  # (M,)
    new_priority: Tensor | None = None,  # (M,) priorities the replacing cells bring
    *,
    voxel_scale: float = 1.0,
    max_rounds: int = MAX_CARVE_ROUNDS,
    confidence: Tensor | None = None,  # (N,) float; default all equal
    new_confidence: Tensor | None = None,  # (M,) float; default all equal
) -> FusionPlan:
    """The fusion rule for one frame (module contract), as the round-by-round loop: one full
    z-buffer splat of the live points per round. ``cells`` must be distinct.

    For tests. Replaced points take ``new_priority`` and the cell's confidence before the next
    round (default priority: above every priority), as the store's uids do.
    """
    M, device = cells.shape[0], cells.device
    N = points_world.shape[0]
    if new_priority is None:
        new_priority = torch.arange(M, device=device) + (int(priority.max()) + 1 if N else 0)
    conf, new_conf = _confidences(confidence, N, new_confidence, M, device)
    conf = conf[:N].clone()
    alive = torch.ones(N, dtype=torch.bool, device=device)
    prio = priority.clone()
    append = torch.ones(M, dtype=torch.bool, device=device)
    replaced, replaced_by, carved = [], [], []
    pending = torch.arange(M, device=device)  # new cells still to be decided
    for _ in range(max_rounds):
        live = alive.nonzero().squeeze(1)
        if live.numel() == 0 or pending.numel() == 0:
            break
        splat = splat_zbuffer(points_world[live], K, world2cam, hw, priority=prio[live])
        index = splat.index.flatten()[cells[pending]]
        owner = torch.where(index >= 0, live[index.clamp_min(0)], -1)  # memory point per cell
        z_mem = splat.depth.flatten()[cells[pending]]
        z = z_new[pending]
        band = voxel_scale * DEPTH_BAND * z
        trusted = (owner >= 0) & (conf[owner.clamp_min(0)] > new_conf[pending])
        same = (owner >= 0) & ((z_mem - z).abs() <= band) & ~trusted
        carve = (owner >= 0) & (z_mem < z - band) & ~trusted
        replaced.append(owner[same]), replaced_by.append(pending[same])
        prio[owner[same]] = new_priority[pending[same]]
        conf[owner[same]] = new_conf[pending[same]]
        append[pending[same]] = False
        append[pending[trusted]] = False  # a more trusted point keeps the cell: dropped
        if not carve.any():
            break
        alive[owner[carve]] = False
        carved.append(owner[carve])
        pending = pending[carve]  # look again behind the carved points

    def cat(parts):
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=device)

    return FusionPlan(cat(replaced), cat(replaced_by), cat(carved), append)


def hides_trusted(
    points: Tensor,  # (M, 3) new points
    confidence: Tensor,  # (M,)
    memory_points: Tensor,  # (N, 3)
    memory_confidence: Tensor,  # (N,)
    table_K: Tensor,  # (F, 3, 3) written frames' grid cameras
    table_cam2world: Tensor,  # (F, 4, 4)
    table_confidence: Tensor,  # (F,) each frame's write confidence
    hw: tuple[int, int],
    *,
    band: float = DEPTH_BAND,
    far=None,  # the memory's FarField, if any
    cache: dict | None = None,  # (level, views) → limits, kept by the caller (see below)
    candidates_in=None,  # (K, world2cam, hw) → rows of the memory that may land in those views; None: all
) -> Tensor:  # (M,) bool
    """Which new points would hide, in the view of a more trusted written frame, what that
    frame saw: a point landing in one of its cells in front of (or within the relative depth
    ``band`` of) its trusted point there, or anywhere in a cell where it saw trusted far field.

    The fusion rule judges a cell in the writing frame's view only; this extends "a less trusted
    write never hides a more trusted point" to the trusted frames' own views, so that returning
    to the given first frame's pose shows what it showed. The trusted frames are the few written
    at a higher confidence (the first frame), so the cost does not grow with the walk. A point
    is trusted in a frame's view when its confidence is at least that frame's.

    ``cache`` keeps each trusted view set's per-cell limits between calls. They change only
    when points or far cells of that confidence or more are written (a less trusted write never
    replaces or carves them): the caller drops the entries of levels up to a write's confidence.
    ``candidates_in`` lets the caller hand over only the memory points that may be seen (a conservative
    cull, :mod:`mirage.memory.blocks`); the memory tensors may then hold other, unused rows.
    """
    hide = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    if not points.shape[0]:
        return hide
    rows = (table_confidence > confidence.min()).nonzero().squeeze(1)
    for level in table_confidence[rows].unique().tolist():
        views = rows[table_confidence[rows] == level]
        K, cam2world = table_K[views], table_cam2world[views]
        world2cam = rigid_inverse(cam2world)
        key = (level, tuple(views.tolist()))
        limit = cache.get(key) if cache is not None else None
        if limit is None:
            candidates = candidates_in(K, world2cam, hw) if candidates_in is not None else None
            if candidates is None:
                candidates = torch.arange(memory_points.shape[0], device=memory_points.device)
            trusted = candidates[memory_confidence.index_select(0, candidates) >= level]
            depth = splat_zbuffer(memory_points[trusted], K, world2cam, hw).depth.reshape(-1)
            # the depth up to which a new point hides the cell: −inf where the view saw nothing
            # trusted, +inf where it saw trusted far field
            limit = torch.where(torch.isinf(depth), -torch.inf, depth * (1 + band))
            if far is not None:
                cell, written = far.lookup(cell_rays(K, cam2world[:, :3, :3], hw, unit=False).reshape(-1, 3))
                sky = written & (far.confidences[cell] >= level) & torch.isinf(depth)
                limit = torch.where(sky, torch.inf, limit)
            if cache is not None:
                cache[key] = limit
        cell, z, point = project_to_cells(points, K, world2cam, hw)
        drop = (confidence.index_select(0, point) < level) & (z <= limit.index_select(0, cell))
        hide[point[drop]] = True
    return hide
