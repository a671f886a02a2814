"""``mirage data build``: clips with geometry → sharded training samples, resumably.

Layout of ``out``::

    index.json            format, config, the finished shards (name, clips, sample keys), the
                          skipped clips with their reasons, and ``"complete": true`` at the end
    shard-NNNNN.tar       the samples of clips [N·k, (N+1)·k) (k = ``clips_per_shard``)
    build.log             one line per skipped clip, and a summary per run

Clips are taken in sorted order and grouped ``clips_per_shard`` at a time; a shard is written to
a temporary file and renamed when whole, then recorded in ``index.json``. A rerun with the same
config skips the recorded shards, so an interrupted build continues where it stopped. A clip
that cannot be used (see :func:`mirage.data.clips.read_clip`) is skipped and its reason logged;
the build never stops on one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from mirage.data.clips import find_clips, load_captions, read_clip
from mirage.data.samples import clip_samples
from mirage.data.shards import INDEX_FORMAT, INDEX_VERSION, ShardWriter
from mirage.errors import ConfigError, MirageError
from mirage.files import atomic_path

__all__ = ["BuildConfig", "build_dataset"]

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
    """

    preceding: int = 1
    references: int = 1
    stride: int = 1
    clips_per_shard: int = 4
    min_frames: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
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
) -> dict:
    """Build (or resume building) the samples of every clip in ``clips_dir`` into ``out``.

    ``backbone`` provides the VAE (``encode``) and the chunk geometry (strides, ``max_frames``,
    ``latent_channels``). Returns the index (see the module docstring). Raises
    :class:`ConfigError` when ``out`` holds a build with another config.
    """
    from tqdm.auto import tqdm

    config = config or BuildConfig()
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
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "config": settings, "clips": names,
             "shards": [], "skipped": [], "complete": False}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("config") != settings or old.get("clips") != names:
            raise ConfigError(
                f"`out` {str(out)!r} holds a build with config {old.get('config')} of "
                f"{len(old.get('clips', []))} clips, but this run asks for {settings} of {len(names)} "
                f"clips; use a fresh folder")
        index = old
    done = {g["group"] for g in index["shards"]}
    log_path = out / "build.log"

    def note(line: str) -> None:
        with open(log_path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        if log is not None:
            log(line)

    k = config.clips_per_shard
    groups = [list(range(i, min(i + k, len(folders)))) for i in range(0, len(folders), k)]
    bar = tqdm(total=len(folders), desc="clips", unit="clip", disable=not progress)
    dtype = DTYPES[config.dtype]
    built = skipped = 0
    for g, members in enumerate(groups):
        if g in done:
            bar.update(len(members))
            continue
        name = f"shard-{g:05d}.tar"
        record = {"group": g, "name": name, "clips": [names[i] for i in members], "keys": []}
        skips = []
        with ShardWriter(out / name) as writer:
            for i in members:
                try:
                    clip = read_clip(folders[i], temporal_stride=tau, spatial_stride=s,
                                     min_frames=min_frames, caption=captions.get(folders[i].name))
                    samples = clip_samples(backbone, clip, preceding=config.preceding,
                                           references=config.references, stride=config.stride, dtype=dtype)
                except MirageError as err:  # ClipError, or a clip the backbone refuses (shape, …)
                    skips.append({"clip": names[i], "reason": str(err)})
                    note(f"skipped {names[i]}: {err}")
                    bar.update(1)
                    continue
                for tensors, meta in samples:
                    key = _key(names[i], meta["start"])
                    writer.write(key, tensors, meta)
                    record["keys"].append(key)
                bar.update(1)
        index["shards"].append(record)
        index["skipped"].extend(skips)
        built += len(members) - len(skips)
        skipped += len(skips)
        _write_index(index_path, index)
    bar.close()
    index["complete"] = True
    index["samples"] = sum(len(r["keys"]) for r in index["shards"])
    _write_index(index_path, index)
    note(f"run: {built} clips built, {skipped} skipped, {len(done)} shards already done; "
         f"{index['samples']} samples in {len(index['shards'])} shards")
    return index
