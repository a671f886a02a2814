"""The far field (docs/design.md §3.6): content without finite depth, stored by world ray direction.

What has no finite depth (the sky) looks the same from every position: it is a function of
direction only. So it cannot be a point, and it does not need to be one. :class:`FarField` is a
fixed-size latent map indexed by world direction, a **cube map**: six square faces of R×R
cells. A cube map rather than an equirectangular grid because its cells stay within a bounded
factor of each other (a cell at a face's edge spans half the angle of one at its centre, about
5× less solid angle at a corner), where an equirectangular grid squeezes whole rows into single
points at the poles, and straight up is where sky is seen most; and a cell is found with one
division, no trigonometry. R is chosen from the written grid's angular resolution, so a map cell is about a
latent cell at the image centre: ``R = ceil(2·fx)`` with fx the grid's focal length in cells
(a face spans tan ∈ [−1, 1] and a grid cell ≈ 1/fx of tan at the centre).

**Write.** A written frame's cells that are far (every pixel without depth, none excluded) go
to the map cell of their centre's ray. The rule follows the point memory's: the more confident
write keeps a map cell (the given first frame outranks generated frames); at equal confidence
the later frame replaces; among cells of one frame that share a map cell, the one whose ray is
closest to the map cell's centre wins (ties: the first). Each map cell keeps the token, the ray
it was written from, the frame id, the confidence and a display colour.

**Read.** Each target cell looks up the map cell of its centre's ray. The read's offset, as for
points, is where the written ray projects in the target view relative to the cell centre (a
point at infinity): 0 when the target looks exactly along a written ray. The store composites
the far field *behind* every point: a point always wins its cell.

Only written cells are stored, sorted by cell (a lookup is a binary search), so the map's bytes
follow the sky seen; it never exceeds 6·R² cells, whose R is fixed by the first far write. The slow twin is
:func:`far_field_write_reference` / :func:`far_field_lookup_reference` (Python loops).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["FarField", "cube_cells", "far_field_write_reference", "far_field_lookup_reference"]

MAX_RESOLUTION = 1024
# Face f = 2·axis + (direction negative); its (u, v) are the other two axes, in this order.
_FACE_AXES = ((1, 2), (2, 0), (0, 1))


def cube_cells(directions: Tensor, resolution: int) -> Tensor:  # (M, 3) → (M,) long
    """The cube-map cell of each direction (need not be unit): face·R² + row·R + col.

    Computed in float64 whatever the input's dtype: in float32 a direction within ~1e-7 of a cell
    border can round into the neighbouring cell (of 2·10⁶ random directions, 118 at R = 1024 and
    5 at R = 28); in float64 it would have to lie within ~1e-16, and the cells are the Python
    twin's."""
    R = resolution
    directions = directions.double()
    axis = directions.abs().argmax(dim=1)  # the major axis (the first of equal magnitudes)
    major = directions.gather(1, axis[:, None])  # (M, 1)
    # Every coordinate over |major| is in [−1, 1]: its cell index along the face. Column a of
    # ``in_face`` is row·R + col on the face of major axis a, whose (u, v) axes weigh 1 and R
    # (the major axis weighs 0); integers under 2²⁰, exact in float.
    ij = ((directions / major.abs() + 1) * (R / 2)).floor_().clamp_(0, R - 1)
    weights = torch.tensor([[0, R, 1], [1, 0, R], [R, 1, 0]], dtype=ij.dtype, device=ij.device)
    in_face = (ij @ weights).gather(1, axis[:, None])[:, 0].long()
    return (2 * axis + (major[:, 0] < 0)) * (R * R) + in_face


def cell_directions(resolution: int, device=None) -> Tensor:  # → (6·R², 3) unit
    """The direction through the centre of every cube-map cell, in cell order."""
    R = resolution
    c = (torch.arange(R, dtype=torch.float64, device=device) + 0.5) * (2 / R) - 1
    v, u = torch.meshgrid(c, c, indexing="ij")  # row, col
    out = []
    for face in range(6):
        axis, negative = divmod(face, 2)
        d = torch.zeros(R, R, 3, dtype=torch.float64, device=device)
        d[..., axis] = -1.0 if negative else 1.0
        d[..., _FACE_AXES[axis][0]] = u
        d[..., _FACE_AXES[axis][1]] = v
        out.append(d.reshape(-1, 3))
    d = torch.cat(out)
    return (d / d.norm(dim=1, keepdim=True)).float()


@lru_cache(maxsize=4)
def _shared_cell_directions(resolution: int, device: torch.device) -> Tensor:
    """:func:`cell_directions`, one read-only table per resolution shared by every map (a
    constant, like a lookup table: not part of any memory's bytes)."""
    return cell_directions(resolution, device)


class FarField:
    """A cube map of latent tokens by world direction, holding only its written cells (module
    docstring). Slot s holds map cell ``cells[s]`` (ascending) and its token, source ray,
    confidence, frame id and display colour."""

    _SLOTS = ("features", "directions", "confidences", "frame_ids", "colors")

    def __init__(self, channels: int, resolution: int, *, dtype=torch.float32, device=None) -> None:
        self.channels, self.resolution = channels, resolution
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cells = torch.zeros(0, dtype=torch.long, device=self.device)  # (S,) ascending
        self.features = torch.zeros(0, channels, dtype=dtype, device=self.device)  # (S, C)
        self.directions = torch.zeros(0, 3, dtype=torch.float32, device=self.device)  # source rays
        self.confidences = torch.zeros(0, dtype=torch.float32, device=self.device)
        self.frame_ids = torch.zeros(0, dtype=torch.long, device=self.device)
        self.colors = torch.zeros(0, 3, dtype=torch.uint8, device=self.device)

    @staticmethod
    def resolution_for(K_grid: Tensor) -> int:
        """R from a grid camera's focal length in cells (module docstring), at most
        ``MAX_RESOLUTION`` (a pixel-size RGB map at 704×1280 would otherwise hold 29 M cells)."""
        return min(MAX_RESOLUTION, max(1, math.ceil(2 * float(K_grid.reshape(-1, 3, 3)[0, 0, 0]))))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (self.cells, self.features, self.directions, self.confidences, self.frame_ids))

    @property
    def display_nbytes(self) -> int:
        return self.colors.numel()

    @property
    def num_written(self) -> int:
        return int(self.cells.shape[0])

    def _centre(self, cell: Tensor) -> Tensor:  # (M,) cells → (M, 3) unit centre directions
        return _shared_cell_directions(self.resolution, self.device).index_select(0, cell)

    def write(self, features: Tensor, directions: Tensor, confidence: Tensor, priority: Tensor,
              frame_ids: Tensor, colors: Tensor) -> None:
        """Write M far cells: tokens (M, C), unit rays (M, 3), confidences (M,), priorities (M,)
        int ≥ 0, frame ids (M,), colours (M, 3) uint8.

        Among the candidates of one map cell the highest priority wins, then the ray closest to
        the cell centre, then the lowest index; the winner replaces the stored cell when its
        confidence is at least the stored one. :meth:`write_grid` ranks its frames by
        (confidence, position in the write) into the priority."""
        M = directions.shape[0]
        if M == 0:
            return
        cell = cube_cells(directions, self.resolution)
        closeness = (directions.float() * self._centre(cell)).sum(dim=1)  # cos, > 0.5
        # Per map cell, the candidate with the highest (priority, closeness, −index): the
        # priority and the closeness's float bits (ordered as the non-negative floats are) make
        # one int64 key, sorted descending and stably (equal keys keep the lower index first),
        # then stably by cell: the first of each cell's run wins.
        key = (priority.long() << 31) | closeness.clamp_min(0).view(torch.int32).long()
        ranked = torch.argsort(key, descending=True, stable=True)
        ranked = ranked.index_select(0, torch.argsort(cell.index_select(0, ranked), stable=True))
        cell = cell.index_select(0, ranked)
        first = torch.ones(M, dtype=torch.bool, device=self.device)
        first[1:] = cell[1:] != cell[:-1]
        slot, written = self.lookup_cells(cell)
        stored = self.confidences.index_select(0, slot) if self.num_written else confidence.new_zeros(M)
        first &= ~written | (confidence.index_select(0, ranked) >= stored)
        win, target, old = ranked[first], cell[first], written[first]
        values = {"features": features, "directions": directions, "confidences": confidence,
                  "frame_ids": frame_ids, "colors": colors}
        at = slot[first][old]  # cells written before: replaced in place
        for name in self._SLOTS:
            column = getattr(self, name)
            column[at] = values[name].index_select(0, win[old]).to(column.dtype)
        fresh = ~old  # cells never written: inserted, keeping the cells sorted
        if bool(fresh.any()):
            cells = torch.cat([self.cells, target[fresh]])
            order = torch.argsort(cells)
            self.cells = cells.index_select(0, order)
            for name in self._SLOTS:
                column = getattr(self, name)
                added = values[name].index_select(0, win[fresh]).to(column.dtype)
                setattr(self, name, torch.cat([column, added]).index_select(0, order))

    def write_grid(self, features: Tensor, colors: Tensor, far: Tensor, K: Tensor, cam2world: Tensor,
                   frame_ids: list[int], confidence: Tensor) -> None:
        """Write the ``far`` cells (T, h, w) of a grid write (features (T, C, h, w), colours
        (T, 3, h, w) uint8, K (T, 3, 3) at the grid, cam2world (T, 4, 4), per-frame confidence
        (T,)) by their centre rays; frames later in the write replace earlier ones."""
        T, h, w = far.shape
        index = far.reshape(-1).nonzero()[:, 0]  # (M,) flat (frame, row, col)
        if index.numel() == 0:
            return
        t = index // (h * w)
        rays = cell_rays(K, cam2world[:, :3, :3], (h, w), unit=False).reshape(-1, 3)[index]
        rays = rays / rays.norm(dim=1, keepdim=True)
        ids = torch.tensor(frame_ids, dtype=torch.long, device=self.device)
        rank = torch.empty(T, dtype=torch.long, device=self.device)  # by (confidence, position)
        rank[torch.argsort(confidence, stable=True)] = torch.arange(T, device=self.device)
        self.write(features.movedim(1, -1).reshape(-1, self.channels)[index], rays, confidence[t], rank[t],
                   ids[t], colors.movedim(1, -1).reshape(-1, 3)[index])

    def fill(self, features: Tensor, mask: Tensor, offset: Tensor | None, K: Tensor,
             world2cam: Tensor) -> Tensor:
        """Fill the cells of a point read that no point covers, in place: ``features``
        (V, h, w, C) with the map's tokens and ``offset`` (V, h, w, 2) (if given) with where the
        written ray projects, a point at infinity; both contiguous; mask (V, h, w) bool, K
        (V, 3, 3) at the grid, world2cam (V, 4, 4). Returns the cells filled (V, h, w) bool."""
        V, h, w = mask.shape
        rays = cell_rays(K, world2cam[:, :3, :3].transpose(1, 2), (h, w), unit=False).reshape(-1, 3)
        cell, written = self.lookup(rays)  # every cell's: cheaper than selecting the empty ones first
        far = written & ~mask.reshape(-1)
        hit = far.nonzero()[:, 0]  # (M,) flat (view, row, col)
        if hit.numel() == 0:
            return far.view(V, h, w)
        cell = cell.index_select(0, hit)
        features.view(-1, features.shape[-1]).index_copy_(0, hit, self.features.index_select(0, cell))
        if offset is not None:  # the written rays projected into each view (no translation)
            project = K @ world2cam[:, :3, :3]  # (V, 3, 3)
            uvz = (project.index_select(0, hit // (h * w))
                   @ self.directions.index_select(0, cell)[:, :, None])[:, :, 0]  # (M, 3)
            centres = _cell_centres(h, w, uvz.dtype, uvz.device).index_select(0, hit % (h * w))[:, :2]
            uv = uvz[:, :2] / uvz[:, 2:].clamp_min(1e-12) - centres
            offset.view(-1, 2).index_copy_(0, hit, uv.clamp_(-0.5, 0.5).to(offset.dtype))
        return far.view(V, h, w)

    def lookup_cells(self, cell: Tensor) -> tuple[Tensor, Tensor]:  # (M,) → slot (M,), written (M,)
        """The slot of each map cell (0 where it was never written) and whether it was."""
        if not self.num_written:
            return torch.zeros_like(cell), torch.zeros_like(cell, dtype=torch.bool)
        slot = torch.searchsorted(self.cells, cell).clamp_max(self.num_written - 1)
        written = self.cells.index_select(0, slot) == cell
        return slot.masked_fill(~written, 0), written

    def lookup(self, directions: Tensor) -> tuple[Tensor, Tensor]:  # (M, 3) → slot (M,), written (M,)
        """The slot of the map cell of each direction (index into ``features``, ``confidences``,
        ...; 0 where it was never written) and whether that cell was written."""
        return self.lookup_cells(cube_cells(directions, self.resolution))

    def state(self) -> dict[str, Tensor]:
        return {"far_cells": self.cells} | {f"far_{name}": getattr(self, name) for name in self._SLOTS}

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], channels: int, resolution: int, *, dtype,
                   device=None) -> "FarField":
        """The inverse of :meth:`state` (cells ascending and distinct); the caller has checked
        shapes and dtypes."""
        far = cls(channels, resolution, dtype=dtype, device=device)
        far.cells = tensors["far_cells"].to(far.device)
        for name in cls._SLOTS:
            setattr(far, name, tensors[f"far_{name}"].to(device=far.device, dtype=getattr(far, name).dtype))
        return far


def far_field_write_reference(state: dict, resolution: int, writes: list[tuple]) -> dict:
    """Slow twin of :meth:`FarField.write`: ``state`` maps cell → (token, confidence); each
    write is (tokens, directions, confidences, priorities) of its cells; every cell decided by a
    Python loop over the candidates: max (priority, closeness, −index), then kept against the
    stored one when its confidence is at least the stored confidence."""
    centres = cell_directions(resolution).double()
    for tokens, directions, confidences, priorities in writes:
        best: dict[int, tuple] = {}
        for m, d in enumerate(directions.double().tolist()):
            cell = _cube_cell_python(d, resolution)
            closeness = sum(a * b for a, b in zip(directions[m].tolist(), centres[cell].float().tolist()))
            key = (int(priorities[m]), closeness, -m)
            if cell not in best or key > best[cell][0]:
                best[cell] = (key, m)
        for cell, (key, m) in best.items():
            if cell not in state or float(confidences[m]) >= state[cell][1]:
                state[cell] = (tokens[m].clone(), float(confidences[m]))
    return state


def far_field_lookup_reference(state: dict, resolution: int, directions: Tensor) -> list:
    """Slow twin of :meth:`FarField.lookup` + gather: per direction the stored token or None."""
    return [state[c][0] if (c := _cube_cell_python(d, resolution)) in state else None
            for d in directions.double().tolist()]


def _cube_cell_python(d: list[float], R: int) -> int:
    axis = max(range(3), key=lambda i: (abs(d[i]), -i))  # the first of equal magnitudes
    major = d[axis]
    face = 2 * axis + (1 if major < 0 else 0)
    b, c = _FACE_AXES[axis]
    i = min(max(math.floor((d[c] / abs(major) + 1) * R / 2), 0), R - 1)
    j = min(max(math.floor((d[b] / abs(major) + 1) * R / 2), 0), R - 1)
    return face * R * R + i * R + j


def cell_rays(K: Tensor, rotation: Tensor, hw: tuple[int, int], *, unit: bool = True) -> Tensor:
    """World-space rays through the centres of a (h, w) grid's cells, (V, h, w, 3): R·K⁻¹ (j, i, 1)
    for cell (i, j), K (V, 3, 3) at the grid size, ``rotation`` (V, 3, 3) camera to world
    (``cam2world[:, :3, :3]``); unit length with ``unit``, else with camera z = 1."""
    h, w = hw
    to_world = torch.linalg.solve_triangular(K, rotation, upper=True, left=False)  # R·K⁻¹ (K upper triangular)
    rays = _cell_centres(h, w, K.dtype, K.device) @ to_world.transpose(1, 2)
    if unit:
        rays = rays / rays.norm(dim=-1, keepdim=True)
    return rays.view(-1, h, w, 3)


@lru_cache(maxsize=16)
def _cell_centres(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:  # (h·w, 3)
    """(j, i, 1) for every cell (i, j) of an (h, w) grid, row by row (read only: it is shared)."""
    i, j = torch.meshgrid(torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device),
                          indexing="ij")
    return torch.stack([j, i, torch.ones_like(j)], dim=-1).reshape(h * w, 3)
