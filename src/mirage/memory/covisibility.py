"""Reference retrieval by covisibility (docs/design.md §3.5), at a cost that does not grow with history.

A written frame's *set* is the voxels (edge ``voxel_size`` world units) of the memory points it
sees right after the write that wrote it: the z-buffer of the memory in its grid camera, which
the fusion kernel computes anyway (:attr:`mirage.memory.fusion.WritePlan.visible`). The target
set is the voxels of the points the target views see (their read). A frame's score is the IoU
of the two sets.

This differs from scoring every frame by what it would see *now* (a splat of the whole memory
into every written camera per chunk, O(points × frames): quadratic in the length of a walk) in
one way: a frame's set is fixed when it is written. Points fused later in front of, or into, an
old frame's view do not change its set. Replacements keep their positions, so they change no
set; on revisits the two definitions agree closely (``benchmarks/long_horizon.py`` measures how
often the chosen references are the same).

:class:`FrameIndex` keeps the (voxel, frame) pairs sorted by voxel in a few runs of geometric
sizes (a log-structured merge): adding a write is amortised O(log P) per pair, and scoring a
target set of Q voxels costs O(Q log P + the pairs that match), i.e. the frames that saw those
voxels, never all frames. :func:`frame_ious_reference` is the slow twin on Python sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from mirage.errors import ConfigError

__all__ = ["FrameIndex", "Reference", "voxel_keys", "frame_ious_reference", "KEY_BITS"]

KEY_BITS = 21  # bits per axis of a voxel key: ±2²⁰ voxels (±105 km at 0.1) around the origin
_OFFSET = 1 << (KEY_BITS - 1)


@dataclass(frozen=True)
class Reference:
    """A past frame retrieved by covisibility: its id and voxel IoU with the target views."""

    frame_id: int
    iou: float


def voxel_keys(points_world: Tensor, voxel_size: float) -> Tensor:  # (P, 3) → (P,) long
    """One int64 per point naming its voxel ``floor(p / voxel_size)``, packed 21 bits per axis.

    Voxel coordinates beyond ±2²⁰ are clamped to the outermost voxel (points that far away only
    share voxels with each other).
    """
    v = torch.floor(points_world / voxel_size).long().clamp_(-_OFFSET, _OFFSET - 1) + _OFFSET
    return (v[:, 0] << (2 * KEY_BITS)) | (v[:, 1] << KEY_BITS) | v[:, 2]


class FrameIndex:
    """(voxel, frame) pairs of every written frame, sorted by voxel for lookups.

    A frame written again (the overlap frame of two chunks) gets a new *slot*; its old slot is
    marked stale and ignored. Slots hold: the frame id, the number of distinct voxels, liveness.
    """

    def __init__(self, voxel_size: float, device=None) -> None:
        if not voxel_size > 0:
            raise ConfigError(f"`voxel_size` must be > 0 but is {voxel_size!r}")
        self.voxel_size = float(voxel_size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        self.runs: list[tuple[Tensor, Tensor]] = []  # (keys (P,) ascending, slots (P,) int32)
        self.slot_frame = empty  # (S,) frame id of each slot
        self.slot_size = empty  # (S,) distinct voxels the slot's frame saw
        self.slot_live = torch.zeros(0, dtype=torch.bool, device=self.device)  # (S,)
        self._slot_of: dict[int, int] = {}  # frame id → its live slot

    @property
    def num_pairs(self) -> int:
        return sum(int(keys.shape[0]) for keys, _ in self.runs)

    @property
    def nbytes(self) -> int:
        tensors = [t for run in self.runs for t in run] + [self.slot_frame, self.slot_size, self.slot_live]
        return sum(t.numel() * t.element_size() for t in tensors)

    def add(self, frame_ids: Sequence[int], points_world: Tensor, frame_of: Tensor) -> None:
        """Record what frames ``frame_ids`` (T ids) see: the points (P, 3), each seen by frame
        ``frame_of`` (P,) in 0..T−1. A frame id listed twice keeps its last occurrence."""
        T, S0 = len(frame_ids), self.slot_frame.shape[0]
        keys = voxel_keys(points_world.to(self.device), self.voxel_size)
        slots = frame_of.to(self.device) + S0
        # Distinct (voxel, slot) pairs sorted by voxel: sort by slot, then stably by voxel.
        order = torch.argsort(slots, stable=True)
        keys, slots = keys[order], slots[order]
        order = torch.argsort(keys, stable=True)
        keys, slots = keys[order], slots[order]
        first = torch.ones_like(keys, dtype=torch.bool)
        first[1:] = (keys[1:] != keys[:-1]) | (slots[1:] != slots[:-1])
        keys, slots = keys[first], slots[first]
        ids = torch.tensor([int(f) for f in frame_ids], dtype=torch.long, device=self.device)
        live = torch.ones(T, dtype=torch.bool, device=self.device)
        for t, f in enumerate(ids.tolist()):
            old = self._slot_of.get(f)
            if old is not None:
                if old >= S0:
                    live[old - S0] = False
                else:
                    self.slot_live[old] = False
            self._slot_of[f] = S0 + t
        self.slot_frame = torch.cat([self.slot_frame, ids])
        self.slot_size = torch.cat([self.slot_size, torch.bincount(slots - S0, minlength=T)])
        self.slot_live = torch.cat([self.slot_live, live])
        if keys.numel():
            self._push(keys, slots.to(torch.int32))  # a slot per written frame: int32 is plenty

    def _push(self, keys: Tensor, slots: Tensor) -> None:
        """Append a sorted run, merging while the run before is not more than twice its size:
        the runs stay of geometric sizes, so there are O(log P) of them."""
        self.runs.append((keys, slots))
        while len(self.runs) > 1 and self.runs[-2][0].shape[0] <= 2 * self.runs[-1][0].shape[0]:
            (k1, s1), (k0, s0) = self.runs.pop(), self.runs.pop()
            keys, slots = torch.cat([k0, k1]), torch.cat([s0, s1])
            order = torch.argsort(keys, stable=True)
            self.runs.append((keys[order], slots[order]))

    def ious(self, target_keys: Tensor) -> tuple[Tensor, Tensor]:  # (Q,) → frame ids (F',), iou (F',)
        """The frames whose set meets the target set ``target_keys`` (distinct voxel keys), and
        their IoU (float64). Frames that share no voxel with it are not listed (their IoU is 0)."""
        Q = int(target_keys.shape[0])
        found = []
        for keys, slots in self.runs:
            lo = torch.searchsorted(keys, target_keys)
            n = torch.searchsorted(keys, target_keys, right=True) - lo  # (Q,) matches per voxel
            total = int(n.sum())
            if total:
                # positions lo[q] .. lo[q] + n[q] − 1 of every target voxel q, flattened
                start = torch.repeat_interleave(lo - (n.cumsum(0) - n), n)
                found.append(slots[start + torch.arange(total, device=self.device)])
        if not found:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return empty, empty.double()
        seen = torch.cat(found).long()
        seen = seen[self.slot_live[seen]]
        slot, inter = torch.unique(seen, return_counts=True)
        inter = inter.double()
        union = self.slot_size[slot].double() + Q - inter
        return self.slot_frame[slot], inter / union

    def references(self, target_points: Tensor, k: int, min_iou: float,
                   exclude_frames: Sequence[int] = ()) -> list[Reference]:
        """Top-``k`` frames by IoU with the voxels of ``target_points`` (P, 3), ``min_iou`` or
        more, none of ``exclude_frames``; by IoU descending, ties to the more recent frame id."""
        frames, iou = self.ious(voxel_keys(target_points.to(self.device), self.voxel_size).unique())
        excluded = set(int(f) for f in exclude_frames)
        candidates = [Reference(f, s) for f, s in zip(frames.tolist(), iou.tolist())
                      if s >= min_iou and f not in excluded]
        candidates.sort(key=lambda r: (-r.iou, -r.frame_id))
        return candidates[:k]

    # -- persistence: one merged run ----------------------------------------------------
    def to_tensors(self) -> dict[str, Tensor]:
        keys = torch.cat([k for k, _ in self.runs]) if self.runs else self.slot_frame.new_zeros(0)
        slots = torch.cat([s for _, s in self.runs]) if self.runs else self.slot_frame.new_zeros(0, dtype=torch.int32)
        order = torch.argsort(keys, stable=True)
        return {"index_keys": keys[order], "index_slots": slots[order], "slot_frame": self.slot_frame,
                "slot_size": self.slot_size, "slot_live": self.slot_live}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], voxel_size: float, device=None) -> "FrameIndex":
        """The inverse of :meth:`to_tensors`; the caller has validated the tensors."""
        index = cls(voxel_size, device)
        index.slot_frame = tensors["slot_frame"].to(index.device, torch.long)
        index.slot_size = tensors["slot_size"].to(index.device, torch.long)
        index.slot_live = tensors["slot_live"].to(index.device, torch.bool)
        keys = tensors["index_keys"].to(index.device, torch.long)
        if keys.numel():
            index.runs = [(keys, tensors["index_slots"].to(index.device, torch.int32))]
        live = index.slot_live.nonzero().squeeze(1).tolist()
        index._slot_of = dict(zip(index.slot_frame[live].tolist(), live))
        return index


def frame_ious_reference(frame_sets: dict[int, set], target: set) -> dict[int, float]:
    """Slow twin of :meth:`FrameIndex.ious`: IoU of each frame's set of voxel keys with the
    target set, Python sets; frames sharing no voxel are left out."""
    out = {}
    for frame, voxels in frame_sets.items():
        inter = len(voxels & target)
        if inter:
            out[frame] = inter / len(voxels | target)
    return out
