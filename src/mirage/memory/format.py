"""The memory file: safetensors tensors + JSON metadata, versioned, no pickle.

Metadata: ``format`` = "mirage.memory", ``kind`` (the store's ``format_kind``), ``version`` and
``config`` (JSON: channels, fusion, voxel_scale, reference_voxel, dtype, next_uid, grid_hw).
Tensors (N points, F frames, S covisibility slots, P pairs):

- points float32 (N, 3), features (N, C) of ``dtype``, frame_ids int32 (N,), uids int64 (N,),
  confidences float32 (N,), colors uint8 (N, 3);
- table_ids int64 (F,), table_K float32 (F, 3, 3), table_cam2world float32 (F, 4, 4),
  table_confidence float32 (F,) (each frame's write confidence; 0 in files of versions 1-2);
- index_keys int64 (P,) ascending, index_slots int32 (P,) (int64 before version 4), slot_frame int64 (S,),
  slot_size int64 (S,), slot_live bool (S,): :class:`~mirage.memory.covisibility.FrameIndex`.

- with a far field (config ``far_resolution`` R), its S written cells: far_cells int64 (S,)
  ascending in [0, 6R²), far_features (S, C), far_directions float32 (S, 3), far_confidences
  float32 (S,), far_frame_ids int64 (S,), far_colors uint8 (S, 3):
  :class:`~mirage.memory.far_field.FarField`.

Versions: 1 had no confidences (loaded as 1), 2 added them, 3 added colours (older files load
grey), the covisibility index (older files rebuild it from what each written frame sees in the
loaded memory) and the far field (older files have none); 4 stores only the far field's written
cells (version 3 stored every cell with a ``far_written`` mask: loaded as its written cells),
frame ids as int32 (int64 before) and the block size in the config (older files: the default). Everything read from a file is checked before use: any malformed, foreign,
tampered or newer file raises :class:`~mirage.errors.MemoryFormatError` and nothing else. Names
read from a file are looked up in explicit tables, never resolved as attributes.
"""

from __future__ import annotations

import json
import math

import torch
from torch import Tensor

from mirage.errors import MemoryFormatError, MirageError
from mirage.files import load_safetensors, save_safetensors
from mirage.geometry import rigid_inverse
from mirage.memory.covisibility import FrameIndex
from mirage.memory.far_field import MAX_RESOLUTION, FarField
from mirage.memory.splat import splat_zbuffer
from mirage.memory.attributes import POINT_ATTRIBUTES, column_specs
from mirage.memory.blocks import DEFAULT_BLOCK_SIZE
from mirage.memory.store import FUSION_MODES, REFERENCE_VOXEL, PointStore

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "memory_to_tensors", "memory_from_tensors",
           "save_memory", "load_memory"]

FORMAT_VERSION = 4
READABLE_VERSIONS = ("1", "2", "3", "4")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
_POINT_TENSORS = tuple(a.name for a in POINT_ATTRIBUTES)
_TABLE_TENSORS = ("table_ids", "table_K", "table_cam2world", "table_confidence")
_INDEX_TENSORS = ("index_keys", "index_slots", "slot_frame", "slot_size", "slot_live")
_FAR_SLOTS = ("far_features", "far_directions", "far_confidences", "far_frame_ids", "far_colors")
_FAR_TENSORS = {"3": _FAR_SLOTS + ("far_written",), "4": ("far_cells",) + _FAR_SLOTS}


def memory_to_tensors(memory: PointStore) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of ``memory`` in the file layout (module docstring), for embedding a
    memory in another safetensors file; :func:`memory_from_tensors` reverses it."""
    config = memory.config() | {"next_uid": memory.next_uid,
                                "grid_hw": list(memory.grid_hw) if memory.grid_hw else None,
                                "far_resolution": memory.far.resolution if memory.far is not None else None}
    metadata = {"format": "mirage.memory", "kind": memory.format_kind,
                "version": str(FORMAT_VERSION), "config": json.dumps(config)}
    tensors = {name: getattr(memory, name) for name in _POINT_TENSORS + _TABLE_TENSORS}
    far = memory.far.state() if memory.far is not None else {}
    return tensors | memory.covisibility.to_tensors() | far, metadata


def save_memory(path, memory: PointStore) -> None:
    """Write ``memory`` to ``path`` atomically: never a half-written file."""
    save_safetensors(path, *memory_to_tensors(memory))


def load_memory(path, cls: type | None = None, *, device=None) -> PointStore:
    """The memory in ``path`` (of class ``cls``, or of the kind the file names)."""
    tensors, metadata = load_safetensors(path, "memory file")
    return memory_from_tensors(tensors, metadata, cls, device=device, source=repr(str(path)))


def memory_from_tensors(tensors: dict[str, Tensor], metadata: dict, cls: type | None = None, *,
                        device=None, source: str = "memory") -> PointStore:
    """The memory held by ``tensors`` and ``metadata`` (as :func:`memory_to_tensors` makes
    them), checked throughout; ``cls`` (a :class:`PointStore` subclass) must match its kind."""
    def fail(message: str):
        raise MemoryFormatError(f"{source}: {message}")

    if not isinstance(metadata, dict) or metadata.get("format") != "mirage.memory":
        fail(f"not a mirage memory (format metadata is {_get(metadata, 'format')!r}, expected 'mirage.memory')")
    kind, version = metadata.get("kind"), metadata.get("version")
    if version not in READABLE_VERSIONS:
        fail(f"memory format version {version!r}; this mirage reads versions {', '.join(READABLE_VERSIONS)}")
    kinds = PointStore.kinds
    if kind not in kinds or (cls is not None and kind != cls.format_kind):
        want = repr(cls.format_kind) if cls is not None else f"one of {sorted(kinds)}"
        fail(f"holds a {kind!r} memory, expected {want}")
    config = _config(metadata.get("config"), fail)
    try:
        memory = kinds[kind].from_config(config, dtype=DTYPES[config["dtype"]], device=device)
    except MirageError as error:
        fail(f"its config is invalid: {error}")
    R = config["far_resolution"]
    far_names = _FAR_TENSORS.get(version, ()) if R is not None else ()
    names = _POINT_TENSORS + _TABLE_TENSORS + ((_INDEX_TENSORS + far_names) if version >= "3" else ())
    absent = {a.name for a in POINT_ATTRIBUTES if a.since > int(version)}
    if version in ("1", "2"):
        absent.add("table_confidence")
    names = tuple(n for n in names if n not in absent)
    missing = [n for n in names if n not in tensors]
    unknown = sorted(set(tensors) - set(names))
    if missing or unknown:
        fail(f"tensors {missing} are missing" if missing else f"holds unexpected tensors {unknown}")
    t = {name: tensors[name] for name in names}
    if version < "4":  # int64 frame ids before version 4
        t["frame_ids"] = _as_int32(t["frame_ids"])
    N, F = t["points"].shape[0] if t["points"].ndim == 2 else -1, t["table_ids"].shape[0]
    specs = column_specs(memory.channels, memory.dtype)
    for a in POINT_ATTRIBUTES:  # attributes newer than the file: their default value
        if a.name not in t:
            shape, dtype = specs[a.name]
            t[a.name] = torch.full((max(N, 0), *shape), a.default, dtype=dtype, device=t["points"].device)
    t.setdefault("table_confidence", t["table_K"].new_zeros(F))  # versions 1-2: no frame is more trusted
    expected = {name: ((N, *shape), dtype) for name, (shape, dtype) in specs.items()} | {
        "table_ids": ((F,), torch.int64), "table_K": ((F, 3, 3), torch.float32),
        "table_cam2world": ((F, 4, 4), torch.float32), "table_confidence": ((F,), torch.float32),
    }
    if version >= "3":
        P, S = t["index_keys"].shape[0], t["slot_frame"].shape[0]
        if version == "3":  # int64 slots before version 4
            t["index_slots"] = _as_int32(t["index_slots"])
        expected |= {"index_keys": ((P,), torch.int64), "index_slots": ((P,), torch.int32),
                     "slot_frame": ((S,), torch.int64), "slot_size": ((S,), torch.int64),
                     "slot_live": ((S,), torch.bool)}
        if R is not None:  # version 3: every cell of the map; 4: the written cells
            n = 6 * R * R if version == "3" else t["far_cells"].shape[0]
            expected |= {"far_features": ((n, memory.channels), memory.dtype),
                         "far_directions": ((n, 3), torch.float32), "far_confidences": ((n,), torch.float32),
                         "far_frame_ids": ((n,), torch.int64), "far_colors": ((n, 3), torch.uint8)}
            expected |= {"far_written": ((n,), torch.bool)} if version == "3" else {"far_cells": ((n,), torch.int64)}
    for name, (shape, dtype) in expected.items():
        if tuple(t[name].shape) != shape or t[name].dtype != dtype:
            fail(f"tensor {name!r} is {t[name].dtype} {tuple(t[name].shape)}, expected {dtype} {shape}")
    if version == "3" and R is not None:  # to the written cells only, as version 4 stores them
        written = t.pop("far_written")
        t["far_cells"] = written.nonzero().squeeze(1)
        t |= {name: t[name][written] for name in _FAR_SLOTS}
    _check_values(t, config, N, version, fail)
    memory.set_points({name: t[name] for name in _POINT_TENSORS})
    for name in _TABLE_TENSORS:
        setattr(memory, name, t[name].to(memory.device))
    memory.next_uid = config["next_uid"]
    memory.grid_hw = tuple(config["grid_hw"]) if config["grid_hw"] else None
    if version >= "3":
        memory.covisibility = FrameIndex.from_tensors(t, memory.covisibility.voxel_size, memory.device)
        if R is not None:
            memory.far = FarField.from_state(t, memory.channels, R, dtype=memory.dtype, device=memory.device)
    else:
        _rebuild_covisibility(memory)
    return memory


def _as_int32(t: Tensor) -> Tensor:
    return t.to(torch.int32) if t.dtype == torch.int64 else t


def _get(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


def _config(text, fail) -> dict:
    """The ``config`` metadata, parsed and type-checked."""
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        config = None
    if not isinstance(config, dict):
        fail("its `config` metadata is not a JSON object")
    config.setdefault("reference_voxel", REFERENCE_VOXEL)  # versions 1-2
    config.setdefault("far_field", False)
    config.setdefault("block_size", DEFAULT_BLOCK_SIZE)  # versions 1-3
    config.setdefault("far_resolution", None)

    def integer(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    def positive(value):
        return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and value > 0)

    checks = {
        "channels": lambda v: integer(v, 1),
        "fusion": lambda v: v in FUSION_MODES,
        "voxel_scale": positive,
        "reference_voxel": positive,
        "block_size": positive,
        "dtype": lambda v: isinstance(v, str) and v in DTYPES,
        "next_uid": lambda v: integer(v, 0),
        "grid_hw": lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                           and all(integer(x, 1) for x in v)),
        "far_field": lambda v: isinstance(v, bool),
        "far_resolution": lambda v: v is None or (integer(v, 1) and v <= MAX_RESOLUTION),
    }
    for key, ok in checks.items():
        if key not in config or not ok(config[key]):
            fail(f"config entry {key!r} is missing or invalid ({config.get(key)!r})")
    return config


def _check_values(t: dict[str, Tensor], config: dict, N: int, version: str, fail) -> None:
    """Values a tampered file could get wrong while shapes and dtypes agree."""
    for name in ("points", "features", "confidences", "table_K", "table_cam2world", "table_confidence"):
        if not bool(torch.isfinite(t[name].float()).all()):
            fail(f"tensor {name!r} holds NaN or inf")
    if (N or t["table_ids"].numel()) and config["grid_hw"] is None:
        fail("it holds points or frames but no grid size (config 'grid_hw')")
    uids, table_ids = t["uids"], t["table_ids"]
    if N and (int(uids.min()) < 0 or int(uids.max()) >= config["next_uid"] or uids.unique().numel() != N):
        fail("point uids must be distinct and in [0, next_uid)")
    if table_ids.unique().numel() != table_ids.numel():
        fail("frame table ids must be distinct")
    if N and not bool(torch.isin(t["frame_ids"], table_ids).all()):
        fail("some points carry a frame id that is not in the frame table")
    bottom = t["table_cam2world"].new_tensor([0.0, 0.0, 0.0, 1.0])
    if table_ids.numel() and not bool((t["table_cam2world"][:, 3] == bottom).all()):
        fail("frame table poses must end in the row (0, 0, 0, 1)")
    if version < "3":
        return
    keys, slots, S = t["index_keys"], t["index_slots"], t["slot_frame"].shape[0]
    if keys.numel() and (bool((keys[1:] < keys[:-1]).any()) or int(slots.min()) < 0 or int(slots.max()) >= S):
        fail("the covisibility index must be sorted by voxel, with slots in range")
    if S and (int(t["slot_size"].min()) < 0 or not bool(torch.isin(t["slot_frame"], table_ids).all())):
        fail("covisibility slots must name frames of the table and hold sizes ≥ 0")
    live = t["slot_frame"][t["slot_live"]]
    if live.unique().numel() != live.numel():
        fail("a frame has more than one live covisibility slot")
    if "far_cells" in t:
        cells, R = t["far_cells"], config["far_resolution"]
        if cells.numel() and (bool((cells[1:] <= cells[:-1]).any()) or int(cells.min()) < 0
                              or int(cells.max()) >= 6 * R * R):
            fail("far-field cells must be distinct, ascending and in the map")
        for name in ("far_features", "far_directions", "far_confidences"):
            if not bool(torch.isfinite(t[name].float()).all()):
                fail(f"tensor {name!r} holds NaN or inf where written")
        norms = t["far_directions"].norm(dim=1)
        if norms.numel() and not bool(((norms - 1).abs() < 1e-3).all()):
            fail("far-field directions must be unit vectors where written")
        if not bool(torch.isin(t["far_frame_ids"], table_ids).all()):
            fail("some far-field cells carry a frame id that is not in the frame table")


def _rebuild_covisibility(memory: PointStore) -> None:
    """For files without an index (versions 1-2): each written frame's set is what it sees in
    the loaded memory, one splat per frame table row."""
    if memory.grid_hw is None or memory.num_points == 0:
        return
    seen = splat_zbuffer(memory.points, memory.table_K, rigid_inverse(memory.table_cam2world),
                         memory.grid_hw, priority=memory.uids).index  # (F, h, w)
    F = seen.shape[0]
    mask = seen >= 0
    frame_of = torch.arange(F, device=memory.device)[:, None, None].expand_as(seen)[mask]
    memory.covisibility.add(memory.table_ids.tolist(), memory.points[seen[mask]], frame_of)
