"""`generate`: the chunked world-model loop with the memory lifecycle (docs/design.md §3).

A :class:`~mirage.pipeline.session.Session` started from the first frame, stepped once per chunk
of the plan: read the memory for the target views and retrieve references → denoise → decode →
estimate depth → mask dynamic/sky regions → update the memory. The loop is generic over the
backbone protocol, the memory mode (latent | rgb | none), the depth estimator and the dynamic
masker. It writes no files: everything comes back in a :class:`PipelineOutput`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mirage.backbones.base import Backbone
from mirage.errors import ConfigError, ShapeError
from mirage.geometry import Camera
from mirage.pipeline.config import PipelineConfig
from mirage.pipeline.output import ChunkTiming, PipelineOutput
from mirage.pipeline.plan import check_chunks, check_frame_count, chunk_plan
from mirage.pipeline.session import Session

__all__ = ["PipelineConfig", "ChunkTiming", "PipelineOutput", "generate"]


def generate(
    backbone: Backbone,
    first_frame: Tensor,  # (3, H, W) in [-1, 1]
    cameras: Camera,  # F cameras at (H, W)
    config: PipelineConfig,
    *,
    depth_estimator,
    masker,
    first_depth: Tensor | None = None,  # (H, W) z-depth of frame 0; None → depth_estimator
    first_exclude: Tensor | None = None,  # (H, W) bool, never write (dynamic, sky)
    text: str | None = None,
    chunks: Sequence[dict] | None = None,
) -> PipelineOutput:
    """Generate F frames that follow ``cameras`` from ``first_frame``, chunk by chunk.

    F must be τ·k+1 (τ = ``backbone.temporal_stride``). Without ``chunks``, chunks hold at most
    ``backbone.max_frames`` frames and overlap by one (:func:`~mirage.pipeline.plan.chunk_plan`).
    ``chunks`` ([{"frames": n, "seed": int | None}], as ``Session.chunks`` records them) cut the
    video as a session did instead: chunk i adds n new frames, re-seeding the sampling generator
    first when its seed is not None. Latent frame k is written to memory with frame id k.
    Deterministic for a given ``config.seed`` (and ``chunks``).
    """
    from tqdm.auto import tqdm

    tau = backbone.temporal_stride
    if not isinstance(cameras, Camera):
        raise ConfigError(f"`cameras` must be a Camera but is {type(cameras).__name__}")
    if first_frame.ndim == 3 and tuple(first_frame.shape[1:]) != cameras.hw:
        raise ShapeError(f"`first_frame` is {first_frame.shape[1]}x{first_frame.shape[2]} but the cameras "
                         f"are for {cameras.hw[0]}x{cameras.hw[1]}")
    if chunks is None:
        check_frame_count(len(cameras), tau)
        plan = [{"frames": c.end_frame - c.start_frame, "seed": None}
                for c in chunk_plan(len(cameras), tau, backbone.max_frames)]
    else:
        check_frame_count(len(cameras), tau)
        plan = check_chunks(chunks, len(cameras), tau, backbone.max_frames)
    session = Session(backbone, first_frame, cameras[0], config, depth_estimator=depth_estimator,
                      masker=masker, first_depth=first_depth, first_exclude=first_exclude, text=text,
                      history=0)
    start = 0
    for c in tqdm(plan, desc=f"chunks ({config.memory_mode})", disable=not config.progress, leave=False):
        session.step(cameras[start + 1:start + 1 + c["frames"]], seed=c["seed"])
        start += c["frames"]
    return session.output()
