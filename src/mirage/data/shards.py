"""Sharded sample storage: plain tar files in the webdataset layout, plus an ``index.json``.

A shard ``shard-NNNNN.tar`` holds, per sample ``KEY``, two members: ``KEY.safetensors`` (the
tensors) and ``KEY.json`` (the rest). It is written with the stdlib :mod:`tarfile` and read
without the webdataset package: :class:`ShardReader` maps every member to its byte offset once,
then reads samples by seeking, so random access costs one read.

``index.json`` (written by :mod:`mirage.data.build`) lists the finished shards with their sample
keys; only shards listed there are read.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from mirage.errors import ConfigError, MemoryFormatError
from mirage.files import atomic_path

__all__ = ["ShardWriter", "ShardReader", "SampleIndex", "encode_sample", "decode_sample",
           "INDEX_FORMAT", "INDEX_VERSION"]

INDEX_FORMAT = "mirage-shards"
INDEX_VERSION = 1


def encode_sample(tensors: dict, meta: dict) -> tuple[bytes, bytes]:
    """(safetensors bytes, JSON bytes) of one sample. Tensors are made contiguous CPU copies."""
    from safetensors.torch import save

    blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    return blob, json.dumps(meta).encode()


def decode_sample(blob: bytes, meta: bytes) -> tuple[dict, dict]:
    from safetensors.torch import load

    return load(blob), json.loads(meta)


class ShardWriter:
    """Write samples into one tar file, atomically: the shard appears only when closed cleanly.

    Use as a context manager; :meth:`write` adds one sample.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.keys: list[str] = []
        self._atomic = atomic_path(self.path, suffix=".tar")
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> "ShardWriter":
        tmp = self._atomic.__enter__()
        self._tar = tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, key: str, tensors: dict, meta: dict) -> None:
        """Add sample ``key``: ``tensors`` (name → Tensor) and JSON-serialisable ``meta``."""
        if "." in key or "/" in key or key in self.keys:
            raise ConfigError(f"sample `key` must be unique and hold no '.' or '/' but is {key!r}")
        blob, text = encode_sample(tensors, meta)
        for name, data in ((f"{key}.safetensors", blob), (f"{key}.json", text)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self.keys.append(key)

    def __exit__(self, *exc) -> None:
        self._tar.close()
        self._atomic.__exit__(*exc)


class ShardReader:
    """Random access to the samples of one shard. ``reader[key]`` → (tensors, meta)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self._offsets: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(self.path, "r:") as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        self._offsets[m.name] = (m.offset_data, m.size)
        except (OSError, tarfile.TarError) as err:
            raise MemoryFormatError(f"shard {str(self.path)!r} is not a readable tar file: {err}") from None
        self.keys = sorted({n.rsplit(".", 1)[0] for n in self._offsets})
        self._fh = None

    def _read(self, name: str) -> bytes:
        if name not in self._offsets:
            raise MemoryFormatError(f"shard {str(self.path)!r} has no member {name!r}")
        if self._fh is None:
            self._fh = open(self.path, "rb")
        offset, size = self._offsets[name]
        self._fh.seek(offset)
        return self._fh.read(size)

    def __getitem__(self, key: str) -> tuple[dict, dict]:
        return decode_sample(self._read(f"{key}.safetensors"), self._read(f"{key}.json"))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SampleIndex:
    """Every sample of a built data folder, in a fixed order: ``index[i]`` → (tensors, meta).

    Reads ``<root>/index.json``; shards are opened on first use. ``len(index)`` is the number of
    samples in finished shards.
    """

    def __init__(self, root) -> None:
        self.root = Path(root)
        path = self.root / "index.json"
        if not path.is_file():
            raise ConfigError(f"`--data` {str(self.root)!r} holds no index.json: build it with "
                              f"`mirage data build --clips DIR --weights DIR --out {self.root}`")
        self.info = json.loads(path.read_text())
        if self.info.get("format") != INDEX_FORMAT or self.info.get("version") != INDEX_VERSION:
            raise MemoryFormatError(f"{str(path)!r} is not a {INDEX_FORMAT} index of version {INDEX_VERSION}")
        self.entries = [(shard["name"], key) for shard in self.info["shards"] for key in shard["keys"]]
        if not self.entries:
            raise ConfigError(f"`--data` {str(self.root)!r} holds no samples (see its index.json `skipped`)")
        self._readers: dict[str, ShardReader] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[dict, dict]:
        shard, key = self.entries[i]
        if shard not in self._readers:
            self._readers[shard] = ShardReader(self.root / shard)
        return self._readers[shard][key]
