"""``mirage data build``: clips with geometry → sharded training samples, resumably.

Layout of ``out``::

    index.json            format, config, the finished shards (name, clips, sample keys), the
                          skipped clips with their reasons, and ``"complete": true`` at the end
    shard-NNNNN.tar       the samples of clips [N·k, (N+1)·k) (k = ``clips_per_shard``)
    build.log             one line per skipped clip, and a summary per run

    records/shard-NNNNN.json   the record of each finished shard (merged into index.json)

Clips are taken in sorted order and grouped ``clips_per_shard`` at a time; a shard is written to
a temporary file and renamed when whole, then its record is written (atomically) and merged into
``index.json``. A rerun with the same config skips the shards that have a record and a tar, so an
interrupted build continues where it stopped. A clip that cannot be used (see
:func:`mirage.data.clips.read_clip`) is skipped and its reason logged; the build never stops on one.

**Many processes** (``torchrun`` / ``accelerate launch``, see :func:`process_group`): shard group g
goes to rank ``g mod world_size``; each rank writes its own shards and records, then rank 0 merges
every record into the one ``index.json`` after a barrier. Shard boundaries depend only on
``clips_per_shard``, so the samples, their keys and the index do not depend on the number of
ranks, and a rerun with any number of ranks resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from mirage.data.clips import find_clips, load_captions, read_clip
from mirage.data.samples import clip_samples
from mirage.data.shards import INDEX_FORMAT, INDEX_VERSION, ShardWriter
from mirage.errors import ConfigError, MirageError
from mirage.files import atomic_path, line_logger

__all__ = ["BuildConfig", "build_dataset", "process_group"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class BuildConfig:
    """How samples are cut from clips.

    preceding / references: context frames per sample, as ``mirage generate --preceding /
    --references`` (default 1 each, the pipeline's defaults).
    stride: a sample starts at every ``stride``-th latent frame (1 = every latent frame).
    clips_per_shard: clips per tar shard (the unit of resume).
    min_frames: shorter clips are skipped; 0 = the backbone's ``max_frames`` (one whole chunk).
    dtype: storage dtype of latents and memory reads.
    depth_model: a local transformers depth model folder whose depth writes the memory's frames
        after the first, as at inference (relative models aligned to the memory per frame,
        :func:`mirage.data.samples.clip_samples`); None = the clips' own depth.
    """

    preceding: int = 1
    references: int = 1
    stride: int = 1
    clips_per_shard: int = 4
    min_frames: int = 0
    dtype: str = "float32"
    depth_model: str | None = None

    def __post_init__(self) -> None:
        if self.depth_model is not None and not Path(self.depth_model).is_dir():
            raise ConfigError(f"`depth_model` must be an existing model folder but {self.depth_model!r} is not a folder")
        for name in ("preceding", "references", "min_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"`{name}` must be an int ≥ 0 but is {v!r}")
        for name in ("stride", "clips_per_shard"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` must be an int ≥ 1 but is {v!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` must be one of {sorted(DTYPES)} but is {self.dtype!r}")


def _key(clip: str, start: int) -> str:
    return f"{clip.replace('.', '_').replace('/', '_')}-s{start:05d}"


def _write_index(path: Path, index: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=1))


def build_dataset(
    clips_dir,
    backbone,
    out,
    config: BuildConfig | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> dict:
    """Build (or resume building) the samples of every clip in ``clips_dir`` into ``out``.

    ``backbone`` provides the VAE (``encode``) and the chunk geometry (strides, ``max_frames``,
    ``latent_channels``). Returns the index (see the module docstring). Raises
    :class:`ConfigError` when ``out`` holds a build with another config.

    ``rank`` / ``world_size`` / ``barrier``: this process's share of a multi-process build (see the
    module docstring and :func:`process_group`); every rank returns the merged index.
    """
    from tqdm.auto import tqdm

    config = config or BuildConfig()
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise ConfigError(f"`rank` must be in [0, world_size) with `world_size` ≥ 1 but they are {rank!r}, {world_size!r}")
    if world_size > 1 and barrier is None:
        raise ConfigError("a build over `world_size` > 1 processes needs a `barrier`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = find_clips(clips_dir)
    captions = load_captions(clips_dir)
    tau, s = backbone.temporal_stride, backbone.spatial_stride
    min_frames = config.min_frames or backbone.max_frames
    settings = {**asdict(config), "min_frames": min_frames,
                "backbone": {"temporal_stride": tau, "spatial_stride": s,
                             "latent_channels": backbone.latent_channels, "max_frames": backbone.max_frames}}
    root = Path(clips_dir)
    names = [f.relative_to(root).as_posix() for f in folders]
    index_path = out / "index.json"
    records = out / "records"
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "config": settings, "clips": names,
             "shards": [], "skipped": [], "complete": False}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("config") != settings or old.get("clips") != names:
            raise ConfigError(
                f"`out` {str(out)!r} holds a build with config {old.get('config')} of "
                f"{len(old.get('clips', []))} clips, but this run asks for {settings} of {len(names)} "
                f"clips; use a fresh folder")
    note = line_logger(out / "build.log", log)

    k = config.clips_per_shard
    groups = [list(range(i, min(i + k, len(folders)))) for i in range(0, len(folders), k)]
    done = _finished(out, len(groups), settings)
    mine = [g for g in range(len(groups)) if g % world_size == rank]
    bar = tqdm(total=sum(len(groups[g]) for g in mine), desc="clips", unit="clip", disable=not progress or rank != 0)
    dtype = DTYPES[config.dtype]
    depth_model = None
    if config.depth_model is not None:
        from mirage.depth_model import HFDepthModel

        depth_model = HFDepthModel(config.depth_model, device=getattr(backbone, "device", None))
    built = skipped = 0
    if rank == 0:  # only rank 0 (or a single process) writes the index
        for tmp in out.glob(".index.json.*"):
            tmp.unlink(missing_ok=True)
    for g in mine:
        members = groups[g]
        _remove_temporaries(out, g)  # a killed run's half-written shard and record (hidden names)
        if g in done:
            bar.update(len(members))
            continue
        name = f"shard-{g:05d}.tar"
        record = {"group": g, "name": name, "clips": [names[i] for i in members], "keys": [], "skipped": [],
                  "config": settings}
        with ShardWriter(out / name) as writer:
            for i in members:
                try:
                    clip = read_clip(folders[i], temporal_stride=tau, spatial_stride=s,
                                     min_frames=min_frames, caption=captions.get(folders[i].name))
                    samples = clip_samples(backbone, clip, preceding=config.preceding,
                                           references=config.references, stride=config.stride, dtype=dtype,
                                           depth_model=depth_model)
                except MirageError as err:  # ClipError, or a clip the backbone refuses (shape, …)
                    record["skipped"].append({"clip": names[i], "reason": str(err)})
                    note(f"skipped {names[i]}: {err}")
                    bar.update(1)
                    continue
                for tensors, meta in samples:
                    key = _key(names[i], meta["start"])
                    writer.write(key, tensors, meta)
                    record["keys"].append(key)
                bar.update(1)
        _write_index(records / f"shard-{g:05d}.json", record)
        built += len(members) - len(record["skipped"])
        skipped += len(record["skipped"])
        if world_size == 1:  # a single process keeps index.json current after every shard
            _write_index(index_path, _merge(index, out, len(groups), settings))
    bar.close()
    if world_size > 1:
        barrier()  # every rank's shards and records are written
    if rank == 0:
        index = _merge(index, out, len(groups), settings)
        _write_index(index_path, index)
    if world_size > 1:
        barrier()  # the merged index is written
    index = json.loads(index_path.read_text())
    if rank == 0:
        note(f"run: {built} clips built, {skipped} skipped, {len(done)} shards already done, "
             f"{world_size} process(es); {index['samples']} samples in {len(index['shards'])} shards")
    else:
        note(f"rank {rank}: {built} clips built, {skipped} skipped")
    return index


def _remove_temporaries(out: Path, g: int) -> None:
    """Delete the hidden temporaries (:func:`mirage.files.atomic_path`) of shard group ``g``: only
    the rank that owns a group writes them, so another rank's work in progress is never touched."""
    for tmp in [*out.glob(f".shard-{g:05d}.tar.*"), *(out / "records").glob(f".shard-{g:05d}.json.*")]:
        tmp.unlink(missing_ok=True)


def _record(out: Path, g: int) -> dict | None:
    path = out / "records" / f"shard-{g:05d}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _finished(out: Path, groups: int, settings: dict) -> set[int]:
    """Shard groups with a record of this config and a tar (the tar is renamed whole before its
    record is written)."""
    return {g for g in range(groups)
            if (out / f"shard-{g:05d}.tar").is_file() and (_record(out, g) or {}).get("config") == settings}


def _merge(index: dict, out: Path, groups: int, settings: dict) -> dict:
    """``index`` with the records of every finished shard, in group order."""
    shards, skipped = [], []
    for g in sorted(_finished(out, groups, settings)):
        record = _record(out, g)
        record.pop("config")
        skipped.extend(record.pop("skipped"))
        shards.append(record)
    merged = {**index, "shards": shards, "skipped": skipped, "complete": len(shards) == groups}
    merged["samples"] = sum(len(r["keys"]) for r in shards)
    return merged


@contextlib.contextmanager
def process_group():
    """(rank, world_size, barrier, local_rank) of a ``torchrun`` / ``accelerate launch`` run.

    Both launchers set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE`` > 1 a
    process group is joined (NCCL on GPUs, gloo on CPUs) with a long timeout, because a rank waits
    at the final barrier until the slowest rank's shards are done, and left at the end. Without
    them this is one process: (0, 1, None, 0).
    """
    import datetime

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1, None, 0
        return
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=48))
    # gloo's barrier is the portable one: NCCL's needs a device and would hold GPU memory
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=48))
    try:
        yield dist.get_rank(), dist.get_world_size(), lambda: dist.barrier(group=group), local
    finally:
        if created:
            dist.destroy_process_group()
