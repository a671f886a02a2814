"""The chunk plan (docs/design.md §3.11): how a video of F frames is cut into overlapping chunks.

The first chunk has up to ``max_frames`` pixel frames; each later chunk overlaps the previous one
by one frame (its first frame is the previous chunk's last) and adds up to ``max_frames − 1``
new frames. Every count is of the form τ·k+1, so chunk boundaries fall on latent frames.

An interactive session (or a trajectory file that records one) may cut a video differently: any
chunk sizes of τ·k new frames, 1 ≤ τ·k ≤ ``max_frames − 1`` (:func:`plan_from_sizes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from mirage.errors import ConfigError
from mirage.frames import is_frame_count, valid_frame_counts

__all__ = ["Chunk", "chunk_plan", "valid_frame_counts", "check_frame_count", "check_chunk_size",
           "plan_from_sizes", "check_chunks"]


@dataclass(frozen=True)
class Chunk:
    """One chunk: pixel frames [start_frame, end_frame] inclusive, latent frames likewise.

    ``start_frame`` is the overlap frame (already generated, except in chunk 0 where it is the
    input image); the chunk generates latent frames ``start_latent + 1 .. end_latent``.
    """

    index: int
    start_frame: int
    end_frame: int
    start_latent: int
    end_latent: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    @property
    def num_latents(self) -> int:
        return self.end_latent - self.start_latent + 1

    @property
    def target_latents(self) -> list[int]:
        return list(range(self.start_latent + 1, self.end_latent + 1))

    def to_dict(self) -> dict:
        return asdict(self)


def check_frame_count(frames: int, temporal_stride: int, name: str = "frames") -> None:
    """Raise :class:`ConfigError` unless ``frames`` = τ·k+1 with k ≥ 1; the message lists valid counts."""
    if not is_frame_count(frames, temporal_stride):
        counts = ", ".join(str(c) for c in valid_frame_counts(temporal_stride))
        raise ConfigError(
            f"`{name}` must be of the form {temporal_stride}·k+1 with k ≥ 1 ({counts}, …) "
            f"but is {frames!r}"
        )


def chunk_plan(frames: int, temporal_stride: int, max_frames: int) -> list[Chunk]:
    """Cut ``frames`` pixel frames into chunks of at most ``max_frames`` overlapping by one.

    Both counts must be τ·k+1. The last chunk may be shorter. Example (τ=4, max 17):
    33 frames → [0..16], [16..32]; 25 frames → [0..16], [16..24].
    """
    check_frame_count(max_frames, temporal_stride, "max_frames")
    check_frame_count(frames, temporal_stride, "frames")
    step = max_frames - 1
    chunks, start = [], 0
    while start < frames - 1:
        end = min(start + step, frames - 1)
        chunks.append(Chunk(len(chunks), start, end, start // temporal_stride, end // temporal_stride))
        start = end
    return chunks


def check_chunk_size(new_frames: int, temporal_stride: int, max_frames: int, name: str = "cameras") -> None:
    """Raise :class:`ConfigError` unless a chunk may add ``new_frames`` frames: τ·k with k ≥ 1
    and at most ``max_frames − 1`` (the chunk's first frame is the previous chunk's last)."""
    counts = list(range(temporal_stride, max_frames, temporal_stride))
    if isinstance(new_frames, bool) or not isinstance(new_frames, int) or new_frames not in counts:
        raise ConfigError(
            f"`{name}` must hold a number of new frames in {counts} (τ·k ≤ max_frames − 1 = "
            f"{max_frames - 1}) but holds {new_frames!r}"
        )


def plan_from_sizes(sizes, temporal_stride: int, max_frames: int) -> list[Chunk]:
    """The chunks that add ``sizes[i]`` new frames each (see :func:`check_chunk_size`), in order,
    each overlapping the previous one by one frame. Covers 1 + sum(sizes) frames."""
    check_frame_count(max_frames, temporal_stride, "max_frames")
    chunks, start = [], 0
    for i, n in enumerate(sizes):
        check_chunk_size(n, temporal_stride, max_frames, f"chunks[{i}].frames")
        end = start + n
        chunks.append(Chunk(len(chunks), start, end, start // temporal_stride, end // temporal_stride))
        start = end
    return chunks


def check_chunks(chunks, frames: int, temporal_stride: int, max_frames: int) -> list[dict]:
    """``chunks`` as a list of {"frames": n, "seed": int | None} that cuts ``frames`` frames:
    every n a valid chunk size (:func:`~mirage.pipeline.plan.check_chunk_size`) and their sum
    ``frames − 1``. Raises :class:`ConfigError` naming the entry that is wrong."""
    if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence) or not chunks:
        raise ConfigError(f"`chunks` must be a non-empty list of {{'frames', 'seed'}} but is {chunks!r}")
    out = []
    for i, c in enumerate(chunks):
        if not isinstance(c, dict) or "frames" not in c or set(c) - {"frames", "seed"}:
            raise ConfigError(f"`chunks[{i}]` must be {{'frames': n, 'seed': int | None}} but is {c!r}")
        check_chunk_size(c["frames"], temporal_stride, max_frames, f"chunks[{i}].frames")
        seed = c.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
            raise ConfigError(f"`chunks[{i}].seed` must be None or an int in [0, 2**64 − 1] but is {seed!r}")
        out.append({"frames": c["frames"], "seed": seed})
    total = sum(c["frames"] for c in out)
    if total != frames - 1:
        raise ConfigError(f"`chunks` must add up to {frames - 1} new frames (the cameras' {frames} "
                          f"frames less the first) but add up to {total}")
    return out
