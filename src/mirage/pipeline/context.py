"""Which clean frames a chunk is conditioned on (docs/design.md §3.3) — shared by inference and training.

- preceding: the ``count`` latent frames just before the chunk's first latent frame;
- references: the top-``k`` covisible past latent frames that are not already in the context.
"""

from __future__ import annotations

__all__ = ["preceding_ids", "reference_exclusions"]


def preceding_ids(start_latent: int, count: int) -> list[int]:
    """Latent ids [s−count, s−1] clipped at 0, oldest first."""
    return list(range(max(0, start_latent - count), start_latent))


def reference_exclusions(start_latent: int, count: int) -> list[int]:
    """Frames a reference may not be: the first frame and the preceding frames (already given)."""
    return preceding_ids(start_latent, count) + [start_latent]
