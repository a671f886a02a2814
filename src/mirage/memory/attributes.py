"""What every memory point carries: one table of named per-point attributes.

The store (:mod:`mirage.memory.store`), its block storage (:mod:`mirage.memory.blocks`) and the
file format (:mod:`mirage.memory.format`) all read this table, so adding a per-point attribute
is one new row here (plus whatever code gives it meaning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PointAttribute", "POINT_ATTRIBUTES", "GREY", "column_specs"]

GREY = 128  # the display colour of points written without images


@dataclass(frozen=True)
class PointAttribute:
    """One per-point attribute.

    name: the store's attribute and the file's tensor name.
    shape: the trailing shape of one point's value; ``"C"`` stands for the store's channels.
    dtype: its dtype; None for the store's feature dtype.
    cached: counted in the cache's bytes (the method reads it); False for display-only data.
    since: the first file format version that holds it.
    default: the value of points loaded from older files (None: every version holds it).
    """

    name: str
    shape: tuple
    dtype: torch.dtype | None
    cached: bool = True
    since: int = 1
    default: float | None = None

    def trailing(self, channels: int) -> tuple[int, ...]:
        return tuple(channels if d == "C" else d for d in self.shape)

    def resolved_dtype(self, feature_dtype: torch.dtype) -> torch.dtype:
        return feature_dtype if self.dtype is None else self.dtype


POINT_ATTRIBUTES: tuple[PointAttribute, ...] = (
    PointAttribute("points", (3,), torch.float32),  # world position
    PointAttribute("features", ("C",), None),  # the token (latent memory) or colour (RGB baseline)
    PointAttribute("frame_ids", (), torch.int32),  # the frame that last wrote it (int64 before version 4)
    PointAttribute("uids", (), torch.int64),  # unique, increasing: the z-buffer's tie-break
    PointAttribute("confidences", (), torch.float32, since=2, default=1.0),  # its write's confidence
    PointAttribute("colors", (3,), torch.uint8, cached=False, since=3, default=GREY),  # display only
)


def column_specs(channels: int, feature_dtype: torch.dtype) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name → (trailing shape, dtype) of every attribute, for a store of these channels and dtype."""
    return {a.name: (a.trailing(channels), a.resolved_dtype(feature_dtype)) for a in POINT_ATTRIBUTES}
