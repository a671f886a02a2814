"""What a walk started from, recorded with the files that replay it.

An exported path (the explorer's Export path) and a saved explorer world carry a ``start``
record, so replaying them from another start is refused instead of silently running another
world:

- a world scene: ``{"scene": seed, "family": "room"}``;
- an image: ``{"image": name, "sha256": hex digest of the image file, "depth": hex digest of
  the depth file or null (estimated)}``.

Files without the record (older ones, or written by other tools) replay from any start.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mirage.errors import ConfigError, FileFormatError

__all__ = ["scene_record", "image_record", "file_digest", "parse_record", "describe", "check_start"]

_HEX = set("0123456789abcdef")


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scene_record(seed: int, family: str) -> dict:
    return {"scene": int(seed), "family": str(family)}


def image_record(image_path, depth_path=None, name: str | None = None) -> dict:
    return {"image": name or Path(image_path).name, "sha256": file_digest(image_path),
            "depth": file_digest(depth_path) if depth_path is not None else None}


def _is_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def parse_record(value, where: str) -> dict | None:
    """``value`` checked as a start record (None when absent); :class:`FileFormatError` naming
    ``where`` otherwise."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"scene", "family"}:
        seed, family = value["scene"], value["family"]
        if (not isinstance(seed, bool) and isinstance(seed, int) and 0 <= seed < 2**31
                and isinstance(family, str) and len(family) <= 64):
            return scene_record(seed, family)
    if isinstance(value, dict) and set(value) == {"image", "sha256", "depth"}:
        if (isinstance(value["image"], str) and len(value["image"]) <= 255 and _is_digest(value["sha256"])
                and (value["depth"] is None or _is_digest(value["depth"]))):
            return dict(value)
    shown = repr(value)
    raise FileFormatError(f"{where}: `start` must be {{\"scene\": seed, \"family\": name}} or {{\"image\": name, "
                          f"\"sha256\": hex, \"depth\": hex | null}} but is {shown[:200]}")


def describe(record: dict) -> str:
    if "scene" in record:
        return f"scene {record['scene']} ({record['family']})"
    depth = "" if record["depth"] is None else f" with depth sha256 {record['depth'][:12]}…"
    return f"the image {record['image']!r} (sha256 {record['sha256'][:12]}…){depth}"


def _identity(record: dict) -> tuple:
    """What makes two starts the same world: the scene, or the image's (and depth's) bytes; the
    image's file name is only its label."""
    if "scene" in record:
        return ("scene", record["scene"], record["family"])
    return ("image", record["sha256"], record["depth"])


def check_start(recorded: dict | None, current: dict, what: str) -> None:
    """Refuse (:class:`ConfigError`) to replay ``what``, walked from ``recorded``, from the
    ``current`` start; a file without a record passes."""
    if recorded is None or _identity(recorded) == _identity(current):
        return
    raise ConfigError(f"{what} was walked from {describe(recorded)} but this run starts from "
                      f"{describe(current)}; replay it from the start it was walked from")

