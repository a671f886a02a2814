"""Test helper: a store's points in a canonical order (by uid), since storage order is free."""

from __future__ import annotations

import torch

from mirage.memory.attributes import POINT_ATTRIBUTES


def by_uid(memory) -> dict[str, torch.Tensor]:
    """Every per-point attribute of ``memory``, rows sorted by uid."""
    order = torch.argsort(memory.uids)
    return {a.name: getattr(memory, a.name)[order] for a in POINT_ATTRIBUTES}


def assert_same_points(a, b) -> None:
    """Two stores hold the same points with the same attributes, bit for bit, in any order."""
    x, y = by_uid(a), by_uid(b)
    for name in x:
        assert torch.equal(x[name], y[name]), name
