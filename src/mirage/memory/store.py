"""A fused point store: world points carrying features, written from grids and read by z-buffer.

Both the latent memory (features = VAE latent tokens, grid = latent grid) and the RGB baseline
(features = colours, grid = pixels) are this store; they differ only in what they write.

Fusion (``fusion="voxel"``, docs/design.md §3.4): each new grid cell is compared with the memory point that wins
that cell in its frame's camera, and *replaces* it (same frustum voxel: the point keeps its
position and takes the new token), *carves* it (it floats in front of the surface now seen) or
is *appended*; so revisiting a seen place replaces points instead of adding them, and the store
grows with the observed surface, not with time. The rule, its fast kernel and its slow
reference twin live in :mod:`mirage.memory.fusion`. ``fusion="append"`` keeps every valid cell
forever, as the reference implementation does.

Every point also carries the *confidence* of the write it came from (point, token, frame id,
confidence). A new cell never replaces, carves or hides a point of higher confidence:
the cell is dropped. The pipeline writes the given first frame at a higher confidence than the
generated frames, so a generated revisit cannot overwrite what the input image showed. Equal
confidences (the default, 1) give the rule above unchanged.

Points carry a unique, increasing ``uid``; it is the z-buffer's tie-break priority, so reads do
not depend on storage order. They also carry a display colour (3 bytes, the mean colour of the
pixels of their cell), which the method never reads: it is for 3D views and PLY exports. The
attributes are one table, :data:`mirage.memory.attributes.POINT_ATTRIBUTES`.

The points live in world-space blocks (:mod:`mirage.memory.blocks`, edge ``block_size``). Every
projection of the memory into views (the read, the fusion's splat of a write's frames, the
trusted-view test and what the written frames see for retrieval) takes only the points of the
blocks whose bounds meet a view's frustum: the cost per chunk follows the points in view, not
the points in memory. Culling is conservative, so every result equals projecting every point
(``cull = False``, the slow reference; tested).

Each write records what its frames see after it, for retrieval (:mod:`mirage.memory.covisibility`);
far cells go to :mod:`mirage.memory.far_field`; the file format is :mod:`mirage.memory.format`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from mirage.errors import ConfigError, ShapeError
from mirage.geometry import Camera, backproject_depth, rescale_intrinsics, rigid_inverse
from mirage.memory.attributes import GREY, POINT_ATTRIBUTES, column_specs
from mirage.memory.blocks import DEFAULT_BLOCK_SIZE, BlockedPoints
from mirage.memory.checks import check_confidence, check_hw, check_reference_args
from mirage.memory.covisibility import FrameIndex, Reference
from mirage.memory.far_field import FarField
from mirage.memory.frame_table import FrameTable
from mirage.memory.fusion import DEPTH_BAND, MAX_CARVE_ROUNDS, fuse_write, hides_trusted
from mirage.memory.splat import DEFAULT_NEAR, cell_offsets, splat_zbuffer

__all__ = ["MemoryRead", "Reference", "PointStore", "FUSION_MODES", "DEPTH_BAND", "REFERENCE_VOXEL"]

FUSION_MODES = ("voxel", "append")
REFERENCE_VOXEL = 0.1  # docs/design.md §3.5: the voxel edge of reference retrieval, in world units


class MemoryRead(NamedTuple):
    """What a memory returns for V target views at grid size (h, w).

    features: (V, C, h, w), zeros where the view sees no memory point.
    mask: (V, h, w) bool, True where a memory point landed.
    depth: (V, h, w) z-depth of the winning point in the target view, +inf where empty.
    offset: (V, 2, h, w) float32, where the winning point projects relative to its cell's
        centre, (x − col, y − row) in cells, each in [−0.5, 0.5]; zeros where empty. It says how
        far a nearest-cell read is misaligned (0 when the target sees the point exactly where a
        source cell centre was). None when the read did not compute it.
    index: (V, h, w) long, the winning point's row in the store's attributes (``points``,
        ``features``, ...) until the next write, −1 where empty.
    far: (V, h, w) bool, where the far field filled a cell no point covers (then ``mask`` is
        True, ``depth`` +inf, ``index`` −1 and ``offset`` is where the written ray projects).
    """

    features: Tensor
    mask: Tensor
    depth: Tensor
    offset: Tensor | None = None
    index: Tensor | None = None
    far: Tensor | None = None


def _column(name: str) -> property:
    return property(lambda self: self.blocks.column(name),
                    doc=f"(N, ...) the points' ``{name}`` (a copy, in the store's row order).")


class PointStore(FrameTable):
    """Storage, fusion and reading shared by the memories; subclasses say what they write.

    Subclasses set ``format_kind`` (the file's kind), write through :meth:`write_grid` and
    rebuild themselves from a saved config in :meth:`from_config`. The per-point attributes
    (``points``, ``features``, ``frame_ids``, ``uids``, ``confidences``, ``colors``) are
    read-only copies; :meth:`set_points` replaces them all.
    """

    format_kind = "points"
    kinds: dict[str, type] = {}  # format_kind → class, for loading a file of any kind
    # The fusion kernel; tests swap in mirage.memory.fusion.fuse_write_reference.
    fusion_kernel = staticmethod(fuse_write)
    # Project only the blocks in view (True), or every point (False: the slow reference).
    cull = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        PointStore.kinds[cls.format_kind] = cls

    def __init__(
        self,
        channels: int,
        *,
        fusion: str = "voxel",
        voxel_scale: float = 1.0,
        reference_voxel: float = REFERENCE_VOXEL,
        far_field: bool = False,
        block_size: float = DEFAULT_BLOCK_SIZE,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise ConfigError(f"`channels` must be a positive int but is {channels!r}")
        if fusion not in FUSION_MODES:
            raise ConfigError(f"`fusion` must be one of {FUSION_MODES} but is {fusion!r}")
        for name, value in (("voxel_scale", voxel_scale), ("reference_voxel", reference_voxel),
                            ("block_size", block_size)):
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"`{name}` must be a finite number > 0 but is {value!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ConfigError(f"`dtype` must be a floating torch dtype but is {dtype!r}")
        if not isinstance(far_field, bool):
            raise ConfigError(f"`far_field` must be a bool but is {far_field!r}")
        self.channels = channels
        self.fusion = fusion
        self.far_field = far_field  # keep content without depth by direction (mirage.memory.far_field)
        self.far: FarField | None = None  # the map, made by the first far write
        self.voxel_scale = float(voxel_scale)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.next_uid = 0
        self.blocks = BlockedPoints(column_specs(channels, dtype), block_size, self.device)
        self.grid_hw: tuple[int, int] | None = None
        self._init_frame_table()  # every written frame's grid camera (mirage.memory.frame_table)
        self._trusted_limits: dict = {}  # hides_trusted's cache (mirage.memory.fusion)
        self.covisibility = FrameIndex(reference_voxel, self.device)

    points, features, frame_ids = _column("points"), _column("features"), _column("frame_ids")
    uids, confidences, colors = _column("uids"), _column("confidences"), _column("colors")

    @property
    def block_size(self) -> float:
        return self.blocks.block_size

    def config(self) -> dict:
        """What :meth:`from_config` needs to build an empty memory like this one."""
        return {"channels": self.channels, "fusion": self.fusion, "voxel_scale": self.voxel_scale,
                "reference_voxel": self.covisibility.voxel_size, "far_field": self.far_field,
                "block_size": self.block_size, "dtype": str(self.dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict, *, dtype: torch.dtype, device=None) -> "PointStore":
        return cls(config["channels"], fusion=config["fusion"], voxel_scale=config["voxel_scale"],
                   reference_voxel=config["reference_voxel"], far_field=config["far_field"],
                   block_size=config.get("block_size", DEFAULT_BLOCK_SIZE), dtype=dtype, device=device)

    def set_points(self, values: dict[str, Tensor]) -> None:
        """Replace every point by ``values``: name → (N, ...) for every per-point attribute."""
        self.blocks.reset({a.name: values[a.name].to(self.device) for a in POINT_ATTRIBUTES})

    # -- size -----------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return self.blocks.num_points

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache: every per-point attribute the method reads, the frame table
        and the covisibility index. The display colours are not counted (the method never reads
        them): see :attr:`display_nbytes`. Spare rows the blocks keep for growth are not
        counted either (see :mod:`mirage.memory.blocks`)."""
        per_point = sum(math.prod(shape) * dtype.itemsize
                        for a in POINT_ATTRIBUTES if a.cached
                        for shape, dtype in [column_specs(self.channels, self.dtype)[a.name]])
        tables = (self.table_ids, self.table_K, self.table_cam2world, self.table_confidence)
        far = self.far.nbytes if self.far is not None else 0
        return (self.num_points * per_point + sum(t.numel() * t.element_size() for t in tables)
                + self.covisibility.nbytes + far)

    @property
    def display_nbytes(self) -> int:
        return 3 * self.num_points + (self.far.display_nbytes if self.far is not None else 0)

    @property
    def frames(self) -> list[int]:
        """Ids of the frames written so far, in the order they were first written."""
        return self.table_ids.tolist()

    def __len__(self) -> int:
        return self.num_points

    def _rows_in_views(self, K: Tensor, world2cam: Tensor, hw: tuple[int, int]) -> Tensor:
        """Rows of the points that may land in the views (all of them without ``cull``)."""
        if self.cull:
            return self.blocks.rows_in_views(K, world2cam, hw, DEFAULT_NEAR)
        return self.blocks.live_rows()

    def _gather(self, name: str, rows: Tensor) -> Tensor:
        return self.blocks.storage[name].index_select(0, rows)

    # -- writing --------------------------------------------------------------------------
    def write_grid(
        self,
        features: Tensor,  # (T, C, h, w)
        depth: Tensor,  # (T, h, w) z-depth on the grid, already reduced
        valid: Tensor,  # (T, h, w) bool
        K: Tensor,  # (T, 3, 3) intrinsics at the grid size (h, w)
        cam2world: Tensor,  # (T, 4, 4)
        frame_ids: Sequence[int] | None = None,
        confidence=1.0,  # float, or T floats: one per frame
        colors: Tensor | None = None,  # (T, 3, h, w) uint8 display colours; None: grey
        far: Tensor | None = None,  # (T, h, w) bool cells without depth, for the far field
    ) -> int:
        """Fuse the valid cells in, frame by frame, and the ``far`` ones into the far field (module
        docstring); subclasses call this with their input on a grid. Returns the valid cells."""
        T, C, h, w = features.shape
        frame_confidence = check_confidence(confidence, T).to(self.device)
        if self.grid_hw not in (None, (h, w)):
            raise ShapeError(
                f"this memory holds frames of grid size {self.grid_hw} but a write has {(h, w)}"
            )
        frame_ids = self._resolve_frame_ids(frame_ids, T)
        self.grid_hw = (h, w)
        # Raw tensors, not Camera objects: the cameras were validated when built.
        K = K.to(device=self.device, dtype=torch.float32)
        cam2world = cam2world.to(device=self.device, dtype=torch.float32)
        depth = depth.to(device=self.device, dtype=torch.float32)
        valid = valid.to(self.device)
        features = features.to(device=self.device, dtype=self.dtype)
        if colors is None:
            colors = torch.full((T, 3, h, w), GREY, dtype=torch.uint8, device=self.device)
        points_world = backproject_depth(depth.masked_fill(~valid, 1), K, cam2world)  # (T, h, w, 3)
        cells = valid.reshape(-1).nonzero().squeeze(1)  # (M,) into (T·h·w,), frame by frame
        new_frame = cells // (h * w)  # (M,) ascending
        world2cam = rigid_inverse(cam2world)
        if self.fusion == "voxel" and self.table_ids.numel():
            keep = ~hides_trusted(
                points_world.reshape(-1, 3).index_select(0, cells), frame_confidence.index_select(0, new_frame),
                self.blocks.storage["points"], self.blocks.storage["confidences"], self.table_K,
                self.table_cam2world, self.table_confidence, (h, w), band=self.voxel_scale * DEPTH_BAND,
                far=self.far, cache=self._trusted_limits, candidates_in=self._rows_in_views)
            cells, new_frame = cells[keep], new_frame[keep]
        new = {
            "points": points_world.reshape(-1, 3).index_select(0, cells),
            "features": features.reshape(T, C, h * w).transpose(1, 2).reshape(-1, C).index_select(0, cells),
            "frame_ids": torch.tensor(frame_ids, dtype=torch.long, device=self.device).index_select(0, new_frame),
            "uids": torch.arange(self.next_uid, self.next_uid + cells.shape[0], device=self.device),
            "confidences": frame_confidence.index_select(0, new_frame),
            "colors": colors.to(self.device).reshape(T, 3, h * w).transpose(1, 2).reshape(-1, 3).index_select(0, cells),
        }
        self.next_uid += cells.shape[0]
        if self.fusion == "voxel":
            seen_points = self._fuse(new, K, world2cam, (h, w), new_frame, cells - new_frame * (h * w),
                                     depth.reshape(-1).index_select(0, cells))
        else:
            self.blocks.append(new)
            rows = self._rows_in_views(K, world2cam, (h, w))
            seen_points = self._gather("points", rows)
            seen_points = splat_zbuffer(seen_points, K, world2cam, (h, w),
                                        priority=self._gather("uids", rows)).index, seen_points
        index, candidates = seen_points
        visible = index.reshape(T, h * w)
        seen = visible >= 0
        self._register_frames(frame_ids, K, cam2world, frame_confidence)
        top = float(frame_confidence.max())  # trust levels this write may have changed: recompute
        self._trusted_limits = {k: v for k, v in self._trusted_limits.items() if k[0] > top}
        frame_of = torch.arange(T, device=self.device)[:, None].expand(T, h * w)[seen]
        self.covisibility.add(frame_ids, candidates.index_select(0, visible[seen]), frame_of)
        if self.far_field and far is not None:
            if self.far is None and bool(far.any()):
                self.far = FarField(C, FarField.resolution_for(K), dtype=self.dtype, device=self.device)
            if self.far is not None:
                self.far.write_grid(features, colors, far.to(self.device), K, cam2world, frame_ids,
                                    frame_confidence)
        return int(cells.shape[0])

    def _fuse(self, new: dict[str, Tensor], K, world2cam, hw, new_frame, new_cells, new_z):
        """Fuse the ``new`` points (name → (M, ...)) in, frame by frame (mirage.memory.fusion),
        against the points that may land in the write's views. Returns what the frames see after
        the write: (index (T, h, w) into ``points``, −1 where empty; ``points`` (P, 3))."""
        rows = self._rows_in_views(K, world2cam, hw)  # the candidates: only they can be touched
        old_points = self._gather("points", rows)
        n = rows.shape[0]
        plan = self.fusion_kernel(
            old_points, self._gather("uids", rows), K, world2cam, hw, new["points"], new_frame, new_cells,
            new_z, new["uids"], voxel_scale=self.voxel_scale, max_rounds=MAX_CARVE_ROUNDS,
            confidence=self._gather("confidences", rows), new_confidence=new["confidences"])
        # A replaced point keeps its anchor position (so it keeps covering the cells of the
        # earlier views it was written from) and takes its carrier's token, frame, uid,
        # confidence and colour; a carrier may itself be a new point of an earlier frame.
        carried = (plan.carrier >= 0).nonzero().squeeze(1)
        by = plan.carrier.index_select(0, carried)
        old, young = carried[carried < n], carried[carried >= n] - n
        by_old, by_young = by[carried < n], by[carried >= n]
        storage = self.blocks.storage
        for name, values in new.items():
            if name == "points":
                continue
            carried = values.index_select(0, by_old).to(storage[name].dtype)
            storage[name].index_copy_(0, rows.index_select(0, old), carried)
            new[name] = values.index_copy(0, young, values.index_select(0, by_young))
        seen = (torch.cat([old_points, new["points"]]), plan.visible)
        self.blocks.remove(rows[~plan.keep[:n]])
        appended = plan.keep[n:].nonzero().squeeze(1)
        self.blocks.append({name: values.index_select(0, appended) for name, values in new.items()})
        return seen[1], seen[0]

    # -- reading --------------------------------------------------------------------------
    def read(self, cameras: Camera, hw: tuple[int, int], *, offsets: bool = True) -> MemoryRead:
        """Z-buffered read of V target views at grid size ``hw``.

        Intrinsics are rescaled from the cameras' (height, width) to ``hw``. Returns features
        (V, C, h, w) (zeros where empty), mask (V, h, w), depth (V, h, w) (+inf where empty),
        the winners' sub-cell offsets (V, 2, h, w) when ``offsets`` and their rows (V, h, w)
        (see :class:`MemoryRead`). Deterministic; batched over views; linear in the points of
        the blocks in view.
        """
        h, w = check_hw(hw)
        K = rescale_intrinsics(cameras.K, cameras.hw, (h, w)).to(device=self.device, dtype=torch.float32)
        world2cam = rigid_inverse(cameras.cam2world.to(device=self.device, dtype=torch.float32))
        rows = self._rows_in_views(K, world2cam, (h, w))
        points = self._gather("points", rows)
        splat = splat_zbuffer(points, K, world2cam, (h, w), priority=self._gather("uids", rows))
        V = len(cameras)
        mask = splat.index >= 0  # (V, h, w)
        # Every cell gathers a row (empty cells the first candidate), then empty cells are
        # zeroed: a plain gather, cheaper than a masked assignment at latent size.
        if rows.numel():
            winners = rows.index_select(0, splat.index.reshape(-1).clamp_min(0))  # (V·h·w,) storage rows
            gathered = self._gather("features", winners).view(V, h, w, self.channels).masked_fill_(~mask[..., None], 0)
        else:
            gathered = torch.zeros(V, h, w, self.channels, dtype=self.dtype, device=self.device)
        offset = None
        if offsets:
            offset = torch.zeros(V, h, w, 2, dtype=torch.float32, device=self.device)
            offset[mask] = cell_offsets(points[splat.index[mask]], K, world2cam, mask)
        far = torch.zeros_like(mask)  # the far field behind every point: cells no point covers
        if self.far is not None:
            far = self.far.fill(gathered, mask, offset, K, world2cam)
        if offsets:
            offset = offset.permute(0, 3, 1, 2)
        index = torch.full_like(splat.index, -1)
        if rows.numel():
            index[mask] = self.blocks.positions(rows.index_select(0, splat.index[mask]))
        return MemoryRead(gathered.permute(0, 3, 1, 2), mask | far, splat.depth, offset, index, far)

    # -- reference retrieval (mirage.memory.covisibility) ----------------------------------
    def references(self, read: MemoryRead, *, k: int = 4, min_iou: float = 0.04,
                   exclude_frames: Sequence[int] = ()) -> list[Reference]:
        """Top-``k`` written frames by voxel IoU with what ``read``'s views see, ``min_iou`` or
        more, never one of ``exclude_frames``. ``read`` must be at the written grid size.

        The target set is the voxels of the points the views see; a frame's set, the voxels of
        the points it saw when it was written. Sorted by IoU, descending; ties go to the more
        recent frame id. Cost: the target's points and the frames that saw their voxels.
        """
        check_reference_args(k, min_iou)
        if read.index is None:
            raise ConfigError("`read` lacks the winners' rows (`index`): pass a read of this memory")
        if self.num_points == 0 or k == 0:
            return []
        if tuple(read.index.shape[1:]) != self.grid_hw:
            raise ShapeError(f"`read` must be at the written grid size {self.grid_hw} but is "
                             f"{tuple(read.index.shape[1:])}")
        winners = self.blocks.rows_at(read.index[read.index >= 0].unique())
        return self.covisibility.references(self._gather("points", winners), k, min_iou, exclude_frames)

    def retrieve_references(self, target_cameras: Camera, k: int = 4, min_iou: float = 0.04,
                            exclude_frames: Sequence[int] = ()) -> list[Reference]:
        """:meth:`references` of a read of ``target_cameras`` at the written grid size."""
        if self.grid_hw is None:
            return []
        return self.references(self.read(target_cameras, self.grid_hw, offsets=False), k=k,
                               min_iou=min_iou, exclude_frames=exclude_frames)

    # -- persistence (mirage.memory.format) -----------------------------------------------
    def save(self, path) -> None:
        """Write the memory to a safetensors file with JSON metadata (no pickle), atomically."""
        from mirage.memory.format import save_memory

        save_memory(path, self)

    @classmethod
    def load(cls, path, *, device=None):
        """Load a memory written by :meth:`save`; refuses truncated, foreign, tampered or newer
        files with :class:`~mirage.errors.MemoryFormatError`."""
        from mirage.memory.format import load_memory

        return load_memory(path, cls, device=device)
