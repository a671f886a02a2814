"""A fused point store: world points carrying features, written from grids and read by z-buffer.

Both the latent memory (features = VAE latent tokens, grid = latent grid) and the RGB baseline
(features = colours, grid = pixels) are this store; they differ only in what they write.

Fusion (``fusion="voxel"``, DESIGN §3.4). A memory point owns a *frustum voxel*: laterally, the
grid cell it was seen in, which is exactly the cell's footprint at that depth; in depth, a band
of ±``voxel_scale``·``DEPTH_BAND`` relative to its z. Before frame t is written, the memory is
splatted into frame t's grid camera, and each new cell is compared with the memory point that
wins that cell:

- same voxel (|z_mem − z_new| ≤ band): the new token *replaces* the memory point's token (and
  its frame id); the point keeps its anchor position, within a cell of the new observation;
- the memory point sits in front of the surface now observed (z_mem < z_new − band): it is
  contradicted by free space, so it is removed (carved), and the cell is decided again against
  the point now winning it (up to ``MAX_CARVE_ROUNDS`` times);
- otherwise (empty cell, or the memory point lies behind a new surface): the new point is
  appended.

So revisiting a seen place replaces points instead of adding them, and the store grows with
the observed surface, not with time. Unlike a world-aligned voxel grid at the footprint size,
this never merges two cells of one view (no holes in the read) and it tolerates depth jitter on
a revisit up to the band. ``fusion="append"`` keeps every valid cell forever, as the reference
implementation does. The rule, its fast kernel (all frames of a write in one projection) and
its slow reference twin live in :mod:`mirage.memory.fusion`.

Every point also carries the *confidence* of the write it came from (DESIGN §3.1: point, token,
frame id, confidence). A new cell never replaces, carves or hides a point of higher confidence:
the cell is dropped. The pipeline writes the given first frame at a higher confidence than the
generated frames, so a generated revisit cannot overwrite what the input image showed. Equal
confidences (the default, 1) give the rule above unchanged.

Points carry a unique, increasing ``uid``; it is the z-buffer's tie-break priority, so reads do
not depend on storage order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from mirage.errors import ConfigError, MemoryFormatError, ShapeError, expect_shape
from mirage.files import load_safetensors, save_safetensors
from mirage.geometry import (Camera, backproject_depth, on_numpy, project_points, rescale_intrinsics,
                             rigid_inverse)
from mirage.memory.fusion import DEPTH_BAND, MAX_CARVE_ROUNDS, fuse_write
from mirage.memory.splat import Splat, splat_zbuffer

__all__ = ["MemoryRead", "Reference", "PointStore", "FUSION_MODES", "DEPTH_BAND"]

FUSION_MODES = ("voxel", "append")
FORMAT_VERSION = 2  # 2 added per-point confidences; version 1 files load with confidence 1
READABLE_VERSIONS = ("1", "2")


class MemoryRead(NamedTuple):
    """What a memory returns for V target views at grid size (h, w).

    features: (V, C, h, w), zeros where the view sees no memory point.
    mask: (V, h, w) bool, True where a memory point landed.
    depth: (V, h, w) z-depth of the winning point in the target view, +inf where empty.
    offset: (V, 2, h, w) float32, where the winning point projects relative to its cell's
        centre, (x − col, y − row) in cells, each in [−0.5, 0.5]; zeros where empty. It says how
        far a nearest-cell read is misaligned (0 when the target sees the point exactly where a
        source cell centre was). None when the read did not compute it.
    """

    features: Tensor
    mask: Tensor
    depth: Tensor
    offset: Tensor | None = None


@dataclass(frozen=True)
class Reference:
    """A past frame retrieved by covisibility: its id and voxel IoU with the target views."""

    frame_id: int
    iou: float


class PointStore:
    """Storage, fusion, reading, retrieval and persistence shared by the memories."""

    format_kind = "points"  # overridden by subclasses; guards against loading the wrong kind
    # The fusion kernel; tests swap in mirage.memory.fusion.fuse_write_reference.
    _fusion_kernel = staticmethod(fuse_write)

    def __init__(
        self,
        channels: int,
        *,
        fusion: str = "voxel",
        voxel_scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> None:
        if not isinstance(channels, int) or channels <= 0:
            raise ConfigError(f"`channels` must be a positive int but is {channels!r}")
        if fusion not in FUSION_MODES:
            raise ConfigError(f"`fusion` must be one of {FUSION_MODES} but is {fusion!r}")
        if not voxel_scale > 0:
            raise ConfigError(f"`voxel_scale` must be > 0 but is {voxel_scale!r}")
        if not dtype.is_floating_point:
            raise ConfigError(f"`dtype` must be a floating dtype but is {dtype}")
        self.channels = channels
        self.fusion = fusion
        self.voxel_scale = float(voxel_scale)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._next_uid = 0
        self.points = torch.zeros(0, 3, dtype=torch.float32, device=self.device)  # (N, 3) world
        self.features = torch.zeros(0, channels, dtype=dtype, device=self.device)  # (N, C)
        self.frame_ids = torch.zeros(0, dtype=torch.long, device=self.device)  # (N,)
        self.uids = torch.zeros(0, dtype=torch.long, device=self.device)  # (N,)
        self.confidences = torch.zeros(0, dtype=torch.float32, device=self.device)  # (N,)
        # Frame table: every written frame's grid camera, for per-frame visibility.
        self.grid_hw: tuple[int, int] | None = None
        self.table_ids = torch.zeros(0, dtype=torch.long, device=self.device)  # (F,)
        self.table_K = torch.zeros(0, 3, 3, dtype=torch.float32, device=self.device)  # (F, 3, 3)
        self.table_cam2world = torch.zeros(0, 4, 4, dtype=torch.float32, device=self.device)

    # -- size -----------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache: every per-point tensor plus the frame table."""
        tensors = (self.points, self.features, self.frame_ids, self.uids, self.confidences,
                   self.table_ids, self.table_K, self.table_cam2world)
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def frames(self) -> list[int]:
        """Ids of the frames written so far, in the order they were first written."""
        return self.table_ids.tolist()

    def __len__(self) -> int:
        return self.num_points

    # -- writing --------------------------------------------------------------------------
    def _write_grid(
        self,
        features: Tensor,  # (T, C, h, w)
        depth: Tensor,  # (T, h, w) z-depth on the grid, already reduced
        valid: Tensor,  # (T, h, w) bool
        K: Tensor,  # (T, 3, 3) intrinsics at the grid size (h, w)
        cam2world: Tensor,  # (T, 4, 4)
        frame_ids: Sequence[int] | None,
        confidence=1.0,  # float, or T floats: one per frame
    ) -> int:
        T, C, h, w = features.shape
        frame_confidence = _check_confidence(confidence, T).to(self.device)
        if self.grid_hw not in (None, (h, w)):
            raise ShapeError(
                f"this memory holds frames of grid size {self.grid_hw} but a write has {(h, w)}"
            )
        frame_ids = self._resolve_frame_ids(frame_ids, T)
        self.grid_hw = (h, w)
        # Raw tensors, not Camera objects: the cameras were validated when built, and building
        # (and validating) one per frame costs more than the fusion itself at latent size.
        K = K.to(device=self.device, dtype=torch.float32)
        cam2world = cam2world.to(device=self.device, dtype=torch.float32)
        depth = depth.to(device=self.device, dtype=torch.float32)
        valid = valid.to(self.device)
        features = features.to(device=self.device, dtype=self.dtype)
        ops = _array_ops(features, depth, K, cam2world, frame_confidence)
        a = ops.array
        safe_depth = a(depth).copy() if ops is _NUMPY_OPS else depth.clone()
        safe_depth[~a(valid)] = 1  # any positive depth: these cells are not written
        points_world = backproject_depth(ops.tensor(safe_depth), K, cam2world)  # (T, h, w, 3)
        cells = ops.nonzero(a(valid).reshape(-1))  # (M,) into (T·h·w,), frame by frame
        new_frame = cells // (h * w)  # (M,) ascending
        new_cells = cells - new_frame * (h * w)  # (M,) the cell within its frame
        take = ops.take
        new_points = take(a(points_world).reshape(-1, 3), cells)
        cell_features = a(features).reshape(T, C, h * w).swapaxes(1, 2).reshape(-1, C)  # (T·h·w, C)
        new_features = take(cell_features, cells)  # (M, C)
        new_frame_ids = take(a(torch.tensor(frame_ids, dtype=torch.long, device=self.device)), new_frame)
        new_confidences = take(a(frame_confidence), new_frame)
        M = int(cells.shape[0])
        uids = ops.arange(self._next_uid, self._next_uid + M)
        self._next_uid += M
        old = [a(t) for t in (self.points, self.features, self.frame_ids, self.uids, self.confidences)]
        if self.fusion == "voxel":
            # Frames in order (a later frame may replace an earlier one's points), all in one
            # kernel call: see mirage.memory.fusion.
            N = self.num_points
            t = ops.tensor
            plan = self._fusion_kernel(
                self.points, self.uids, K, rigid_inverse(cam2world), (h, w), t(new_points),
                t(new_frame), t(new_cells), t(a(depth).reshape(-1)[cells]), t(uids),
                voxel_scale=self.voxel_scale, max_rounds=MAX_CARVE_ROUNDS,
                confidence=self.confidences, new_confidence=t(new_confidences),
            )
            keep, carrier = a(plan.keep), a(plan.carrier)
            hit = ops.nonzero(carrier[:N] >= 0)
            if hit.shape[0]:
                # The token is replaced; the anchor position is kept, so the point keeps
                # covering the cells of the earlier views it was written from.
                by = take(carrier, hit)
                for values, new in zip(old[1:], (new_features, new_frame_ids, uids, new_confidences)):
                    values[hit] = take(new, by)
            if not bool(keep[:N].all()):  # carved points leave
                stay = ops.nonzero(keep[:N])
                old = [take(values, stay) for values in old]
            # Appended points carry their own token unless a later frame of this write replaced it.
            kept = ops.nonzero(keep[N:])
            by = take(carrier[N:], kept)
            new_points = take(new_points, kept)
            new_features, new_frame_ids, uids, new_confidences = (
                take(x, by) for x in (new_features, new_frame_ids, uids, new_confidences))
        new = (new_points, new_features, new_frame_ids, uids, new_confidences)
        (self.points, self.features, self.frame_ids, self.uids,
         self.confidences) = (ops.tensor(ops.cat([o, n])) for o, n in zip(old, new))
        self._register_frames(frame_ids, K, cam2world)
        return M

    def _resolve_frame_ids(self, frame_ids, T: int) -> list[int]:
        if frame_ids is None:
            start = int(self.table_ids.max()) + 1 if self.table_ids.numel() else 0
            return list(range(start, start + T))
        frame_ids = [int(f) for f in frame_ids]
        if len(frame_ids) != T:
            raise ShapeError(f"`frame_ids` must hold {T} ids but holds {len(frame_ids)}")
        return frame_ids

    def _register_frames(self, frame_ids: list[int], K: Tensor, cam2world: Tensor) -> None:
        """Record each written frame's grid camera, K (T, 3, 3) and cam2world (T, 4, 4), in
        order: a frame written again (the overlap frame of two chunks) keeps its row in the
        table and takes the newer pose; a new frame is appended."""
        ops = _array_ops(K, cam2world)
        a = ops.array
        row = {f: i for i, f in enumerate(self.table_ids.tolist())}
        latest: dict[int, int] = {}  # frame id → the last t that writes it
        for t, f in enumerate(frame_ids):
            latest[f] = t
        again = [(row[f], t) for f, t in latest.items() if f in row]
        if again:
            rows, ts = (list(x) for x in zip(*again))
            a(self.table_K)[rows] = a(K)[ts]
            a(self.table_cam2world)[rows] = a(cam2world)[ts]
        new = [(f, t) for f, t in latest.items() if f not in row]  # in order of first write
        if new:
            ids, ts = zip(*new)
            ts = list(ts)
            ids = a(torch.tensor(ids, dtype=torch.long, device=self.device))
            self.table_ids = ops.tensor(ops.cat([a(self.table_ids), ids]))
            self.table_K = ops.tensor(ops.cat([a(self.table_K), a(K)[ts]]))
            self.table_cam2world = ops.tensor(ops.cat([a(self.table_cam2world), a(cam2world)[ts]]))

    # -- reading --------------------------------------------------------------------------
    def _splat(self, K: Tensor, world2cam: Tensor, hw: tuple[int, int]) -> Splat:
        return splat_zbuffer(self.points, K, world2cam, hw, priority=self.uids)

    def _camera_tensors(self, cameras: Camera, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """K (V, 3, 3) rescaled to ``hw`` and world2cam (V, 4, 4), float32 on this device.

        The same values as ``cameras.scaled(*hw).to(...)``, without building (and validating
        again) Camera objects.
        """
        K = rescale_intrinsics(cameras.K, cameras.hw, hw)
        K = K.to(device=self.device, dtype=torch.float32)
        return K, rigid_inverse(cameras.cam2world.to(device=self.device, dtype=torch.float32))

    def _read(self, cameras: Camera, hw: tuple[int, int], *, offsets: bool = False) -> MemoryRead:
        h, w = _check_hw(hw)
        K, world2cam = self._camera_tensors(cameras, (h, w))
        return self._gather(self._splat(K, world2cam, (h, w)), K, world2cam, offsets=offsets)

    def _gather(self, splat: Splat, K: Tensor, world2cam: Tensor, *, offsets: bool) -> MemoryRead:
        """The read of V views from their splat (V, h, w), with K and world2cam at (h, w)."""
        if _array_ops(self.features, K, world2cam) is _NUMPY_OPS:
            return _gather_numpy(self.features.numpy(), self.points.numpy(), splat, K, world2cam,
                                 offsets=offsets)
        V, h, w = splat.index.shape
        mask = splat.index >= 0  # (V, h, w)
        if self.num_points:
            # Every cell gathers a row (empty cells row 0), then empty cells are zeroed: a
            # plain gather, cheaper than a masked assignment at latent size.
            rows = self.features.index_select(0, splat.index.reshape(-1).clamp_min(0))
            gathered = rows.view(V, h, w, self.channels).masked_fill_(~mask[..., None], 0)
        else:
            gathered = self.features.new_zeros(V, h, w, self.channels)
        offset = None
        if offsets:
            winners = splat.index[mask]  # (M,) in (view, row, col) order
            offset = torch.zeros(V, h, w, 2, dtype=torch.float32, device=self.device)
            offset[mask] = _cell_offsets(self.points[winners], K, world2cam, mask)
            offset = offset.permute(0, 3, 1, 2)
        return MemoryRead(gathered.permute(0, 3, 1, 2), mask, splat.depth, offset)

    def _read_with_references(self, cameras: Camera, hw: tuple[int, int], *, offsets: bool, k: int,
                              min_iou: float, voxel_size: float,
                              exclude_frames: Sequence[int]) -> tuple[MemoryRead, list[Reference]]:
        """``_read(cameras, hw)`` and ``retrieve_references(cameras, ...)`` from one splat, when
        ``hw`` is the grid size of the written frames (the views' splat serves both)."""
        h, w = _check_hw(hw)
        _check_reference_args(k, voxel_size)
        if self.grid_hw != (h, w) or self.num_points == 0 or k == 0:
            refs = self.retrieve_references(cameras, k, min_iou, voxel_size, exclude_frames)
            return self._read(cameras, (h, w), offsets=offsets), refs
        V = len(cameras)
        K, world2cam = self._camera_tensors(cameras, (h, w))
        rows = self._candidate_rows(exclude_frames)
        both = self._splat_with_frames(K, world2cam, rows)
        views = Splat(both.index[:V], both.depth[:V])
        read = self._gather(views, K, world2cam, offsets=offsets)
        return read, self._references(views.index, both.index[V:], rows, k, min_iou, voxel_size)

    def _candidate_rows(self, exclude_frames: Sequence[int]) -> list[int]:
        """Rows of the frame table whose frame may be a reference (not in ``exclude_frames``)."""
        excluded = set(int(f) for f in exclude_frames)
        return [i for i, f in enumerate(self.table_ids.tolist()) if f not in excluded]

    def _splat_with_frames(self, K: Tensor, world2cam: Tensor, rows: list[int]) -> Splat:
        """One splat at the grid size into V views (K, world2cam) followed by the grid cameras
        of the frame-table ``rows``: rows V.. are those rows of :meth:`frame_visibility` (views
        are independent)."""
        return self._splat(torch.cat([K, self.table_K[rows]]),
                           torch.cat([world2cam, rigid_inverse(self.table_cam2world[rows])]),
                           self.grid_hw)

    # -- per-frame visibility and reference retrieval (DESIGN §3.5) -----------------------
    def frame_visibility(self) -> Splat:
        """(F, h, w) splat of the current memory into every written frame's grid camera.

        Row f lists, per cell, the memory point frame ``frames[f]`` sees there now.
        """
        if self.grid_hw is None:
            return Splat(torch.zeros(0, 0, 0, dtype=torch.long), torch.zeros(0, 0, 0))
        return self._splat(self.table_K, rigid_inverse(self.table_cam2world), self.grid_hw)

    def retrieve_references(
        self,
        target_cameras: Camera,
        k: int = 4,
        min_iou: float = 0.04,
        voxel_size: float = 0.1,
        exclude_frames: Sequence[int] = (),
    ) -> list[Reference]:
        """Top-``k`` past frames by voxel IoU with what the target views see, above ``min_iou``.

        A frame's set is the voxels (edge ``voxel_size`` world units) of the memory points it
        sees; the target set is the union over the target views of the voxels of the memory
        points they see. Sorted by IoU, descending; ties go to the more recent frame id.
        """
        _check_reference_args(k, voxel_size)
        if self.num_points == 0 or k == 0:
            return []
        V = len(target_cameras)
        rows = self._candidate_rows(exclude_frames)
        both = self._splat_with_frames(*self._camera_tensors(target_cameras, self.grid_hw), rows).index
        return self._references(both[:V], both[V:], rows, k, min_iou, voxel_size)

    def _references(self, target: Tensor, past: Tensor, rows: list[int], k: int, min_iou: float,
                    voxel_size: float) -> list[Reference]:
        """:meth:`retrieve_references` from the splat indices of the target views (V, h, w) and
        of the candidate frames (F', h, w), frame-table ``rows`` in order. A frame's IoU depends
        on its own set and the target's only, so leaving the excluded frames out of the splat
        changes no IoU."""
        if on_numpy(self.points):
            iou = _frame_ious_numpy(self.points.numpy(), target.numpy(), past.numpy(), voxel_size)
        else:
            iou = self._frame_ious(target, past, voxel_size)
        ids = self.table_ids.tolist()
        candidates = [Reference(ids[r], float(s)) for r, s in zip(rows, iou) if s >= min_iou]
        candidates.sort(key=lambda r: (-r.iou, -r.frame_id))
        return candidates[:k]

    def _frame_ious(self, target: Tensor, past: Tensor, voxel_size: float) -> list[float]:
        """Voxel IoU of each written frame's visible points (past, (F, h, w) splat indices)
        with the union over the target views' (target, (V, h, w)), in frame-table order."""
        F = past.shape[0]
        # Pairs (set id, point): set F is the target union, sets 0..F-1 the past frames.
        set_ids = torch.cat([
            torch.arange(F, device=self.device)[:, None, None].expand_as(past)[past >= 0],
            torch.full((int((target >= 0).sum()),), F, device=self.device, dtype=torch.long),
        ])
        point_ids = torch.cat([past[past >= 0], target[target >= 0]])
        keys = torch.floor(self.points[point_ids] / voxel_size).long()  # (P, 3)
        voxel = _voxel_rank(keys)  # (P,)
        num_voxels = int(voxel.max()) + 1 if voxel.numel() else 0
        pairs = torch.unique(set_ids * num_voxels + voxel)  # distinct (set, voxel)
        pair_set, pair_voxel = pairs // num_voxels, pairs % num_voxels
        in_target = torch.zeros(num_voxels, dtype=torch.bool, device=self.device)
        in_target[pair_voxel[pair_set == F]] = True
        size = torch.bincount(pair_set, minlength=F + 1).double()  # (F+1,)
        inter = torch.bincount(pair_set[in_target[pair_voxel]], minlength=F + 1).double()
        union = size[:F] + size[F] - inter[:F]
        iou = torch.where(union > 0, inter[:F] / union.clamp_min(1), torch.zeros_like(union))
        return iou.tolist()

    # -- persistence ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the memory to a safetensors file with JSON metadata (no pickle)."""
        metadata = {
            "format": "mirage.memory",
            "kind": self.format_kind,
            "version": str(FORMAT_VERSION),
            "config": json.dumps({
                "channels": self.channels,
                "fusion": self.fusion,
                "voxel_scale": self.voxel_scale,
                "dtype": str(self.dtype).removeprefix("torch."),
                "next_uid": self._next_uid,
                "grid_hw": list(self.grid_hw) if self.grid_hw else None,
            }),
        }
        tensors = {
            "points": self.points, "features": self.features, "frame_ids": self.frame_ids,
            "uids": self.uids, "confidences": self.confidences,
            "table_ids": self.table_ids, "table_K": self.table_K,
            "table_cam2world": self.table_cam2world,
        }
        save_safetensors(path, tensors, metadata)  # atomic: never a half-written memory

    @classmethod
    def load(cls, path, *, device=None):
        """Load a memory written by :meth:`save`. Refuses truncated, foreign or newer files."""
        path = Path(path)
        tensors, metadata = load_safetensors(path, "memory file")
        if metadata.get("format") != "mirage.memory":
            raise MemoryFormatError(
                f"{str(path)!r} is not a mirage memory file (format metadata is "
                f"{metadata.get('format')!r}, expected 'mirage.memory')"
            )
        if metadata.get("kind") != cls.format_kind:
            raise MemoryFormatError(
                f"{str(path)!r} holds a {metadata.get('kind')!r} memory but "
                f"{cls.__name__}.load expects {cls.format_kind!r}"
            )
        if metadata.get("version") not in READABLE_VERSIONS:
            raise MemoryFormatError(
                f"{str(path)!r} has memory format version {metadata.get('version')!r}; this "
                f"mirage reads versions {', '.join(READABLE_VERSIONS)}"
            )
        config = json.loads(metadata["config"])
        memory = cls._from_config(config, device)
        names = ("points", "features", "frame_ids", "uids", "table_ids", "table_K",
                 "table_cam2world") + (("confidences",) if metadata["version"] != "1" else ())
        missing = [n for n in names if n not in tensors]
        if missing:
            raise MemoryFormatError(f"{str(path)!r} lacks tensors {missing}")
        for name in names:
            setattr(memory, name, tensors[name].to(memory.device))
        memory.features = memory.features.to(memory.dtype)
        memory._next_uid = int(config["next_uid"])
        memory.grid_hw = tuple(config["grid_hw"]) if config["grid_hw"] else None
        N = memory.points.shape[0]
        if "confidences" not in names:  # version 1: every point equally trusted
            memory.confidences = torch.ones(N, device=memory.device)
        memory.confidences = memory.confidences.float()
        for name, shape in (("features", (N, memory.channels)), ("frame_ids", (N,)),
                            ("uids", (N,)), ("confidences", (N,))):
            if tuple(getattr(memory, name).shape) != shape:
                raise MemoryFormatError(
                    f"{str(path)!r}: tensor {name!r} has shape "
                    f"{tuple(getattr(memory, name).shape)}, expected {shape}"
                )
        return memory

    @classmethod
    def _from_config(cls, config: dict, device):
        raise NotImplementedError


class _ArrayOps(NamedTuple):
    """The few array operations of a write's bookkeeping (gathers, scatters, concatenations),
    on torch tensors or on NumPy views of CPU tensors. They only move values, so both give the
    same store; at latent size a NumPy operation costs a fraction of a torch one."""

    array: Callable  # Tensor → the array the bookkeeping works on
    tensor: Callable  # that array → Tensor
    nonzero: Callable  # 1-d bool → int64 indices
    cat: Callable  # list of arrays → array
    arange: Callable  # (start, stop) → int64 indices
    take: Callable  # (array, int64 indices) → its rows at those indices


_NUMPY_OPS = _ArrayOps(Tensor.numpy, torch.from_numpy, np.flatnonzero, np.concatenate,
                       lambda start, stop: np.arange(start, stop, dtype=np.int64),
                       lambda x, i: np.take(x, i, axis=0))


def _torch_ops(device: torch.device) -> _ArrayOps:
    return _ArrayOps(lambda t: t, lambda t: t, lambda x: x.nonzero(as_tuple=True)[0], torch.cat,
                     lambda start, stop: torch.arange(start, stop, device=device),
                     lambda x, i: x.index_select(0, i))


def _array_ops(*tensors: Tensor) -> _ArrayOps:
    """NumPy when the float ``tensors`` of a step (the store's dtype among them) allow it
    (:func:`mirage.geometry.on_numpy`), torch on their device otherwise."""
    return _NUMPY_OPS if on_numpy(*tensors) else _torch_ops(tensors[0].device)


def _check_confidence(confidence, T: int) -> Tensor:  # float or T floats → (T,) float32
    """Per-frame write confidences: finite numbers, one for all frames or one per frame."""
    if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) and math.isfinite(confidence):
        return torch.full((T,), float(confidence), dtype=torch.float32)
    try:
        values = torch.as_tensor(confidence, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"`confidence` must be a number or {T} numbers but is {confidence!r}") from error
    if values.numel() == 1:
        values = values.expand(T)
    if values.numel() != T or not bool(torch.isfinite(values).all()):
        raise ConfigError(f"`confidence` must be a finite number or {T} finite numbers (one per "
                          f"frame) but is {confidence!r}")
    return values.clone()


def _check_reference_args(k: int, voxel_size: float) -> None:
    if k < 0 or not voxel_size > 0:
        raise ConfigError(f"`k` must be ≥ 0 and `voxel_size` > 0 but are {k} and {voxel_size}")


def _voxel_rank(keys: Tensor) -> Tensor:  # (P, 3) long → (P,) long
    """Rank of each row among the distinct rows, in lexicographic order: the inverse of
    ``torch.unique(keys, dim=0)``, computed on one int64 per row (row-major linear index in the
    keys' bounding box), which is several times faster than a row-wise unique."""
    if keys.shape[0] == 0:
        return keys.new_zeros(0)
    lo = keys.amin(dim=0)
    span = (keys.amax(dim=0) - lo + 1).tolist()
    if span[0] * span[1] * span[2] >= 2 ** 62:  # cannot linearise exactly: row-wise unique
        return torch.unique(keys, dim=0, return_inverse=True)[1]
    k = keys - lo
    linear = (k[:, 0] * span[1] + k[:, 1]) * span[2] + k[:, 2]
    return torch.unique(linear, return_inverse=True)[1]


def _frame_ious_numpy(points: np.ndarray, target: np.ndarray, past: np.ndarray,
                      voxel_size: float) -> list[float]:
    """:meth:`PointStore._frame_ious` step for step in NumPy (CPU): the same voxels, sets and
    float64 ratios, at a fraction of the per-operation cost at latent size."""
    F = past.shape[0]
    seen_past, seen_target = past >= 0, target >= 0
    set_ids = np.concatenate([np.broadcast_to(np.arange(F)[:, None, None], past.shape)[seen_past],
                              np.full(int(seen_target.sum()), F)])
    point_ids = np.concatenate([past[seen_past], target[seen_target]])
    keys = np.floor(points[point_ids] / np.float32(voxel_size)).astype(np.int64)  # (P, 3)
    voxel = _voxel_rank_numpy(keys)
    num_voxels = int(voxel.max()) + 1 if voxel.size else 0
    pairs = np.sort(set_ids * num_voxels + voxel)
    if pairs.size:
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # distinct (set, voxel), ascending
    pair_set, pair_voxel = pairs // max(num_voxels, 1), pairs % max(num_voxels, 1)
    in_target = np.zeros(num_voxels, dtype=bool)
    in_target[pair_voxel[pair_set == F]] = True
    size = np.bincount(pair_set, minlength=F + 1).astype(np.float64)
    inter = np.bincount(pair_set[in_target[pair_voxel]], minlength=F + 1).astype(np.float64)
    union = size[:F] + size[F] - inter[:F]
    return np.where(union > 0, inter[:F] / np.maximum(union, 1), 0.0).tolist()


def _voxel_rank_numpy(keys: np.ndarray) -> np.ndarray:  # (P, 3) int64 → (P,) int64
    """:func:`_voxel_rank` in NumPy (ranks in lexicographic order of the rows)."""
    if keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    lo = keys.min(axis=0)
    span = (keys.max(axis=0) - lo + 1).tolist()
    if span[0] * span[1] * span[2] >= 2 ** 62:
        return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    k = keys - lo
    linear = (k[:, 0] * span[1] + k[:, 1]) * span[2] + k[:, 2]
    # np.unique(linear, return_inverse=True)[1] by one sort (NumPy 2's hashed unique is several
    # times slower at these sizes): the rank of each value among the distinct sorted values.
    order = np.argsort(linear)  # any order of equal values gives the same ranks
    ordered = linear[order]
    rank = np.empty_like(linear)
    rank[order] = np.cumsum(np.r_[False, ordered[1:] != ordered[:-1]])
    return rank


def _cell_offsets(points_world: Tensor, K: Tensor, world2cam: Tensor, mask: Tensor) -> Tensor:
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


def _gather_numpy(features: np.ndarray, points: np.ndarray, splat: Splat, K: Tensor,
                  world2cam: Tensor, *, offsets: bool) -> MemoryRead:
    """:meth:`PointStore._gather` on CPU, in NumPy, from the store's features (N, C) and points
    (N, 3): the same read, in the same layout (tested equal)."""
    index = splat.index.numpy()
    V, h, w = index.shape
    mask = index >= 0  # (V, h, w)
    if features.shape[0]:
        flat = index.reshape(-1)
        gathered = np.take(features, flat.clip(0), axis=0)  # every cell a row (empty cells row 0)
        gathered[np.flatnonzero(flat < 0)] = 0  # then empty cells zeroed
        gathered = gathered.reshape(V, h, w, features.shape[1])
    else:
        gathered = np.zeros((V, h, w, features.shape[1]), dtype=features.dtype)
    offset = None
    if offsets:
        offset = np.zeros((V, h, w, 2), dtype=np.float32)
        offset[mask] = _cell_offsets_numpy(points[index[mask]], K.numpy(), world2cam.numpy(), mask)
        offset = torch.from_numpy(offset).permute(0, 3, 1, 2)
    return MemoryRead(torch.from_numpy(gathered).permute(0, 3, 1, 2), torch.from_numpy(mask),
                      splat.depth, offset)


def _cell_offsets_numpy(points_world: np.ndarray, K: np.ndarray, world2cam: np.ndarray,
                        mask: np.ndarray) -> np.ndarray:
    """:func:`_cell_offsets` in NumPy: the same float64 operations in the same order, so the
    same offsets bit for bit (tested). torch multiplies each point by its view's rotation with
    a plain loop at this size (a 1x3 by 3x3 product per point): a sum from 0, term by term."""
    view, row, col = np.nonzero(mask)
    R = world2cam.astype(np.float64)[view]  # (M, 4, 4)
    p = points_world.astype(np.float64)
    cam = 0.0 + p[:, 0:1] * R[:, :3, 0]  # (M, 3) points in their views' cameras
    cam += p[:, 1:2] * R[:, :3, 1]
    cam += p[:, 2:3] * R[:, :3, 2]
    cam += R[:, :3, 3]
    z = cam[:, 2]
    z = np.where(np.abs(z) > 1e-12, z, 1e-12)
    xn, yn = cam[:, 0] / z, cam[:, 1] / z
    Kv = K.astype(np.float64)[view]  # (M, 3, 3)
    u = Kv[:, 0, 0] * xn + Kv[:, 0, 1] * yn + Kv[:, 0, 2]
    v = Kv[:, 1, 1] * yn + Kv[:, 1, 2]
    return np.clip(np.stack([u - col, v - row], axis=1), -0.5, 0.5).astype(np.float32)


def _check_hw(hw) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in hw)
    except (TypeError, ValueError):
        raise ShapeError(f"`hw` must be a pair of ints (h, w) but is {hw!r}") from None
    if h <= 0 or w <= 0:
        raise ShapeError(f"`hw` must be positive but is {(h, w)}")
    return h, w


def check_write_inputs(name: str, values: Tensor, depths: Tensor, cameras: Camera, exclude) -> None:
    """Shared shape checks of ``write``: values (T, C, h, w), depths and cameras at (H, W)."""
    expect_shape(name, values, (None, None, None, None))
    T = values.shape[0]
    expect_shape("depths", depths, (T, None, None))
    if not isinstance(cameras, Camera):
        raise ShapeError(f"`cameras` must be a mirage.geometry.Camera but is {type(cameras).__name__}")
    if len(cameras) != T:
        raise ShapeError(f"`cameras` must hold {T} cameras (one per frame) but holds {len(cameras)}")
    if tuple(depths.shape[1:]) != cameras.hw:
        raise ShapeError(
            f"`depths` must be at the cameras' size {cameras.hw} but is {tuple(depths.shape[1:])}"
        )
    if exclude is not None:
        expect_shape("exclude", exclude, tuple(depths.shape))
