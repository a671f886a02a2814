"""`generate`: the chunked world-model loop with the memory lifecycle (DESIGN §3).

Initialise the memory from the first frame; then, for each chunk of the plan: read the memory
for the target views and retrieve references → denoise → decode → estimate depth → mask
dynamic/sky regions → update the memory. The loop is generic over the backbone protocol, the
memory mode (latent | rgb | none), the depth estimator and the dynamic masker. It writes no
files: everything comes back in a :class:`PipelineOutput`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from mirage.backbones.base import Backbone, ChunkConditioning
from mirage.errors import ConfigError, ShapeError
from mirage.geometry import Camera, check_finite
from mirage.pipeline.context import preceding_ids, reference_exclusions
from mirage.memory.depth_grid import valid_depth
from mirage.memory.store import FUSION_MODES
from mirage.pipeline.memory_modes import (FIRST_FRAME_CONFIDENCE, GENERATED_CONFIDENCE, MEMORY_MODES,
                                          make_memory_mode)
from mirage.pipeline.plan import Chunk, chunk_plan

__all__ = ["PipelineConfig", "ChunkTiming", "PipelineOutput", "generate"]

TIMING_KEYS = ("read", "denoise", "decode", "depth", "update")


@dataclass(frozen=True)
class PipelineConfig:
    """How a video is generated.

    memory_mode: "latent" (Mirage), "rgb" (point-cloud baseline) or "none".
    fusion: how a point memory fuses writes, "voxel" or "append" (see
        :mod:`mirage.memory.store`); None = the mode's default (latent: voxel; rgb: append, as
        the reference implementation). ``rgb`` with "voxel" is the baseline given our fusion.
    steps: sampling steps per chunk.
    preceding: clean latent frames before each chunk's first frame handed to the model.
    references: covisible past latent frames retrieved per chunk (top-k by voxel IoU).
    seed: seeds the sampling noise (one CPU generator for the whole video).
    decode_reads: also decode each chunk's memory read into pixels (for side-by-side videos;
        not counted in the timings).
    paste_reads: after denoising, a covered cell whose read is aligned within this many cells
        (``max |read.offset| ≤ paste_reads``) takes the read's token instead of the generated
        one; None keeps what the model generated everywhere, 0.5 pastes every covered cell.
        The default 0.1 was chosen on tuning scenes (``benchmarks/tune_scenes.py``; revisit PSNR
        was flat from 0.05 to 0.25). A read cell whose source point projects that close to its
        centre is the stored token itself, which the small denoiser reproduces less well than a
        copy. Counted in the denoise time.
    progress: tqdm bars per chunk and per denoising step.
    """

    memory_mode: str = "latent"
    fusion: str | None = None
    steps: int = 6
    preceding: int = 1
    references: int = 1
    seed: int = 0
    decode_reads: bool = False
    paste_reads: float | None = 0.1
    progress: bool = False

    def __post_init__(self) -> None:
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError(f"`memory_mode` must be one of {MEMORY_MODES} but is {self.memory_mode!r}")
        if self.fusion not in (None, *FUSION_MODES):
            raise ConfigError(f"`fusion` must be None or one of {FUSION_MODES} but is {self.fusion!r}")
        for name in ("steps",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` must be an int ≥ 1 but is {v!r}")
        for name in ("preceding", "references", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"`{name}` must be an int ≥ 0 but is {v!r}")
        if self.paste_reads is not None and not (isinstance(self.paste_reads, (int, float))
                                                 and not isinstance(self.paste_reads, bool)
                                                 and 0 <= self.paste_reads <= 0.5):
            raise ConfigError(f"`paste_reads` must be None or a number in [0, 0.5] but is {self.paste_reads!r}")


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
    """What :func:`generate` returns.

    video: (F, 3, H, W) in [−1, 1], the generated frames (frame 0 is the decoded first frame).
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


def _paste_reads(chunk_latents: Tensor, read, max_offset: float) -> Tensor:
    """``chunk_latents`` (C, T, h, w) with each target's covered cells whose read is aligned
    within ``max_offset`` cells replaced by the read's token (``PipelineConfig.paste_reads``)."""
    device = chunk_latents.device
    paste = read.mask.bool().to(device)  # (T−1, h, w)
    if read.offset is not None:
        paste = paste & (read.offset.to(device).abs().amax(dim=1) <= max_offset)
    features = read.features.permute(1, 0, 2, 3).to(device, chunk_latents.dtype)  # (C, T−1, h, w)
    targets = torch.where(paste[None], features, chunk_latents[:, 1:])
    return torch.cat([chunk_latents[:, :1], targets], dim=1)


def _cams(cameras: Camera, idx) -> Camera:
    return cameras[list(idx)]


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
) -> PipelineOutput:
    """Generate F frames that follow ``cameras`` from ``first_frame``, chunk by chunk.

    F must be τ·k+1 (τ = ``backbone.temporal_stride``); chunks hold at most
    ``backbone.max_frames`` frames and overlap by one. Latent frame k is written to memory with
    frame id k. Deterministic for a given ``config.seed``.
    """
    from tqdm.auto import tqdm

    tau, s = backbone.temporal_stride, backbone.spatial_stride
    if first_frame.ndim != 3 or first_frame.shape[0] != 3:
        raise ShapeError(f"`first_frame` must have shape (3, H, W) but has {tuple(first_frame.shape)}")
    H, W = first_frame.shape[1:]
    if (H, W) != cameras.hw:
        raise ShapeError(f"`first_frame` is {H}x{W} but the cameras are for {cameras.hw[0]}x{cameras.hw[1]}")
    if H % s or W % s:
        raise ShapeError(f"image height and width must be divisible by {s} but are {H} and {W}")
    check_finite("first_frame", first_frame)
    for name, value in (("first_depth", first_depth), ("first_exclude", first_exclude)):
        if value is not None and tuple(value.shape) != (H, W):
            raise ShapeError(f"`{name}` must have shape {(H, W)} but has {tuple(value.shape)}")
    plan = chunk_plan(len(cameras), tau, backbone.max_frames)
    h, w = H // s, W // s
    mode = make_memory_mode(config.memory_mode, backbone.latent_channels, fusion=config.fusion)
    generator = torch.Generator().manual_seed(config.seed)
    first_frame = first_frame.float().clamp(-1, 1)

    # -- initialise ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    z0 = backbone.encode(first_frame[None, :, None])[0, :, 0].cpu()  # (C, h, w)
    if first_depth is None:
        first_depth, valid = depth_estimator(first_frame[None], cameras[0], [0])
        first_depth = first_depth[0]
    else:
        first_depth = first_depth.float()
    # Pixels without depth (sky, holes) are never points; a flag on them changes nothing, so
    # only flagged pixels *with* depth (dynamic objects, user masks) are excluded: that keeps
    # "no depth" apart from "excluded" for the partial-cell rule of the latent memory.
    has_depth = valid_depth(first_depth)
    first_depth = torch.where(has_depth, first_depth, torch.full_like(first_depth, float("inf")))
    exclude0 = torch.zeros_like(has_depth) if first_exclude is None else first_exclude.bool() & has_depth
    t1 = time.perf_counter()
    mode.write(z0[None], first_frame[None], first_depth[None], cameras[0], exclude0[None], [0],
               confidence=FIRST_FRAME_CONFIDENCE)
    init_write_seconds = time.perf_counter() - t1
    init_seconds = time.perf_counter() - t0

    latents = [z0]  # latent k
    frames: list[Tensor] = []
    reads: list[Tensor] = [first_frame[None]] if config.decode_reads else []
    # the read each target latent frame was conditioned on (latent 0 has none), for evaluation
    kept_reads = [torch.zeros_like(z0, dtype=torch.float32)]
    kept_masks = [torch.zeros(z0.shape[1:], dtype=torch.bool)]
    timings, stats, references = [], [], []
    chunks = tqdm(plan, desc=f"chunks ({config.memory_mode})", disable=not config.progress, leave=False)
    for chunk in chunks:
        timing = ChunkTiming()
        a = chunk.start_latent
        chunk_cams = _cams(cameras, range(chunk.start_frame, chunk.end_frame + 1))
        target_ids = chunk.target_latents
        target_cams = _cams(cameras, [tau * k for k in target_ids])

        # read + references
        t = time.perf_counter()
        read, refs = mode.read_and_references(chunk_cams, tau, (h, w), backbone, config.references,
                                              reference_exclusions(a, config.preceding))
        timing.read = time.perf_counter() - t
        pre = preceding_ids(a, config.preceding)
        ref_ids = [r.frame_id for r in refs]
        cond = ChunkConditioning(
            first_latent=latents[a],
            memory_features=read.features,
            memory_mask=read.mask,
            preceding=torch.stack([latents[k] for k in pre]) if pre else z0.new_zeros(0, *z0.shape),
            references=torch.stack([latents[k] for k in ref_ids]) if ref_ids else z0.new_zeros(0, *z0.shape),
            first_camera=_cams(cameras, [tau * a]),
            target_cameras=target_cams,
            preceding_cameras=_cams(cameras, [tau * k for k in pre]) if pre else None,
            reference_cameras=_cams(cameras, [tau * k for k in ref_ids]) if ref_ids else None,
            steps=config.steps,
            text=text,
            memory_offset=read.offset,
        )

        # denoise
        t = time.perf_counter()
        with tqdm(total=config.steps, desc=f"chunk {chunk.index + 1}/{len(plan)} steps",
                  disable=not config.progress, leave=False) as bar:
            chunk_latents = backbone.sample(cond, generator, callback=lambda i, n: bar.update(1))
        chunk_latents = chunk_latents[0].cpu()  # (C, T, h, w)
        if config.paste_reads is not None:
            chunk_latents = _paste_reads(chunk_latents, read, config.paste_reads)
        timing.denoise = time.perf_counter() - t

        # decode
        t = time.perf_counter()
        video = backbone.decode(chunk_latents[None])[0].cpu().permute(1, 0, 2, 3)  # (Fc, 3, H, W)
        timing.decode = time.perf_counter() - t
        frames.append(video if chunk.index == 0 else video[1:])

        # depth + masks of the latent-aligned frames
        t = time.perf_counter()
        new_latents = chunk_latents[:, 1:].permute(1, 0, 2, 3)  # (T−1, C, h, w)
        key_frames = video[tau::tau]  # pixel frames τk of the targets
        pixel_ids = [tau * k for k in target_ids]
        depth, valid = depth_estimator(key_frames, target_cams, pixel_ids)
        valid = valid.bool() & valid_depth(depth)
        depth = torch.where(valid, depth, torch.full_like(depth, float("inf")))  # no depth: never a point
        exclude = masker(key_frames, new_latents, read.features, read.mask, target_cams, pixel_ids) & valid
        timing.depth = time.perf_counter() - t

        # update
        t = time.perf_counter()
        mode.write(new_latents, key_frames, depth, target_cams, exclude, target_ids,
                   confidence=GENERATED_CONFIDENCE)
        timing.update = time.perf_counter() - t

        latents.extend(new_latents.unbind(0))
        kept_reads.extend(read.features.float().cpu().unbind(0))
        kept_masks.extend(read.mask.bool().cpu().unbind(0))
        timings.append(timing)
        stats.append({**mode.stats(), "read_coverage": float(read.mask.float().mean()),
                      "excluded": float((exclude | ~valid).float().mean())})
        references.append([{"frame_id": r.frame_id, "iou": round(float(r.iou), 4)} for r in refs])
        if config.decode_reads:
            read_latents = torch.cat([latents[a][:, None], read.features.permute(1, 0, 2, 3)], dim=1)
            reads.append(backbone.decode(read_latents[None])[0].cpu().permute(1, 0, 2, 3)[1:])

    return PipelineOutput(
        video=torch.cat(frames),
        latents=torch.stack(latents, dim=1),
        plan=plan,
        timings=timings,
        init_seconds=init_seconds,
        init_write_seconds=init_write_seconds,
        memory_stats=stats,
        references=references,
        memory=mode.memory,
        memory_reads=torch.cat(reads) if config.decode_reads else None,
        depth_source=getattr(depth_estimator, "name", type(depth_estimator).__name__),
        masker=getattr(masker, "name", type(masker).__name__),
        config=asdict(config),
        read_latents=torch.stack(kept_reads, dim=1),
        read_mask=torch.stack(kept_masks),
    )
