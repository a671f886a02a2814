"""What the pipeline returns: per-chunk timings, one step's :class:`StepResult` and the whole
run's :class:`PipelineOutput`.

Their tensors are on the session's device, the backbone's (docs/design.md §3.10): on a GPU the
frames and latents stay there until whoever writes them out moves them (``PipelineOutput.to``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from torch import Tensor

from mirage.pipeline.plan import Chunk

__all__ = ["ChunkTiming", "PipelineOutput", "StepResult", "TIMING_KEYS"]

TIMING_KEYS = ("read", "denoise", "decode", "depth", "update")


@dataclass
class ChunkTiming:
    """Seconds spent per lifecycle step of one chunk."""

    read: float = 0.0
    denoise: float = 0.0
    decode: float = 0.0
    depth: float = 0.0
    update: float = 0.0

    @property
    def total(self) -> float:
        return self.read + self.denoise + self.decode + self.depth + self.update


@dataclass
class PipelineOutput:
    """What :func:`~mirage.pipeline.generate` (and ``Session.output()``) returns.

    video: (F, 3, H, W) in [−1, 1], the generated frames (frame 0 is the decoded first frame
        once a chunk has been generated; before that, the input image).
    latents: (C, T, h, w), latent frame k has the pose of pixel frame τk.
    plan: the chunks.
    timings: one :class:`ChunkTiming` per chunk; ``init_seconds`` covers encoding the first
        frame and initialising the memory.
    memory_stats: per chunk, after its update: points, bytes, frames written, read coverage.
    references: per chunk, the references chosen: [{"frame_id", "iou"}].
    memory: the final memory object (None for ``none``).
    memory_reads: (F, 3, H, W) decoded memory reads (frame 0 is the first frame) when
        ``decode_reads``; else None.
    read_latents: (C, T, h, w) the memory read each target latent frame was conditioned on
        (latent 0, the first frame, has none: zeros); aligned with ``latents``.
    read_mask: (T, h, w) bool coverage of ``read_latents`` (False for latent 0).
    depth_source / masker: labels of what the updates used.
    config: the :class:`~mirage.pipeline.PipelineConfig` as a dict, with the memory mode's
        defaults resolved (``fusion`` and ``far_field`` as used; None for ``none``).
    depth_alignment: per chunk, how a relative estimator's frames were aligned to the memory
        (:attr:`mirage.pipeline.session.Session.depth_alignment`); None entries for a metric one.
    """

    video: Tensor
    latents: Tensor
    plan: list[Chunk]
    timings: list[ChunkTiming]
    init_seconds: float
    memory_stats: list[dict]
    references: list[list[dict]]
    memory: object | None
    memory_reads: Tensor | None = None
    depth_source: str = ""
    masker: str = ""
    config: dict = field(default_factory=dict)
    init_write_seconds: float = 0.0
    read_latents: Tensor | None = None
    read_mask: Tensor | None = None
    depth_alignment: list | None = None

    def to(self, device) -> "PipelineOutput":
        """A copy with every tensor field on ``device`` (the memory object stays where it is)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if f.name != "memory" and isinstance(getattr(self, f.name), Tensor)}
        return replace(self, **moved)

    @property
    def seconds(self) -> float:
        return self.init_seconds + sum(t.total for t in self.timings)

    def timing_summary(self) -> dict:
        """Totals per step, seconds per output frame and the memory share: read + update
        (the initial memory write counts as update) over the whole run."""
        totals = {k: sum(getattr(t, k) for t in self.timings) for k in TIMING_KEYS}
        totals["update"] += self.init_write_seconds
        total = self.seconds
        return {
            **{f"{k}_s": v for k, v in totals.items()},
            "init_s": self.init_seconds - self.init_write_seconds,
            "total_s": total,
            "frames": int(self.video.shape[0]),
            "s_per_frame": total / max(1, self.video.shape[0]),
            "memory_share": (totals["read"] + totals["update"]) / total if total > 0 else 0.0,
        }


@dataclass
class StepResult:
    """What one :meth:`~mirage.pipeline.session.Session.step` made.

    frames: (n, 3, H, W) in [−1, 1], the chunk's n new frames.
    read_frames: (n, 3, H, W) the decoded memory read for those frames when
        ``config.decode_reads``, else None.
    read_mask: (n/τ, h, w) bool coverage of the memory read of the chunk's target latent frames.
    timing: seconds per lifecycle step of the chunk.
    memory_stats: after the update: points, bytes, frames written, read coverage, excluded share.
    references: the covisible past latent frames chosen: [{"frame_id", "iou"}].
    chunk_index: 0 for the first chunk.
    seed: the seed the chunk re-seeded the generator with, or None (it continued the stream).
    depth_alignment: the chunk's record of ``Session.depth_alignment`` (None: metric depth).
    """

    frames: Tensor
    read_frames: Tensor | None
    read_mask: Tensor
    timing: ChunkTiming
    memory_stats: dict
    references: list[dict]
    chunk_index: int
    seed: int | None
    depth_alignment: dict | None = None
