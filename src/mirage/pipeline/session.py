"""`Session`: the memory lifecycle one chunk at a time (docs/design.md §3.10).

A session holds the memory, the latents, the cameras and the random state of one generated
video. It starts from a first frame (encoded and written to memory), and each
:meth:`Session.step` generates the next chunk for the cameras it is given: read the memory for
the target views and retrieve references → denoise → decode → estimate depth → mask dynamic/sky
regions → update the memory. :meth:`Session.undo` returns to the state before the last step
exactly, and :meth:`Session.save` / :meth:`Session.load` (:mod:`mirage.pipeline.session_file`)
round-trip it. :func:`mirage.pipeline.generate` is a session plus a loop over the chunk plan.

Devices (docs/design.md §3.10): latents, frames and reads live on the backbone's device, the
memory on ``memory_device``; nothing a chunk makes returns to the host until it is written out
(relative depth's per-frame fit excepted). Timing stamps synchronise a CUDA device.

Determinism: one CPU ``torch.Generator`` drives the sampling noise. It is seeded with
``config.seed`` when the session starts; a step given a ``seed`` re-seeds it before its chunk.
So a chunk's frames depend only on the state before it, its cameras and its seed: re-rolling a
chunk is ``undo()`` then ``step(cameras, seed=new)``, and a recorded walk (chunk sizes + seeds)
replays to the same frames.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict
from typing import Callable

import torch
from torch import Tensor

from mirage.backbones.base import Backbone, ChunkConditioning
from mirage.errors import ConfigError, SessionError, ShapeError
from mirage.geometry import Camera, check_finite
from mirage.memory.depth_grid import valid_depth
from mirage.pipeline.config import PipelineConfig
from mirage.pipeline.context import preceding_ids, reference_exclusions
from mirage.pipeline.depth import depth_kind
from mirage.pipeline.depth_align import normalise_first, write_chunk
from mirage.pipeline.memory_modes import (FIRST_FRAME_CONFIDENCE, GENERATED_CONFIDENCE, make_memory_mode,
                                          paste_reads)
from mirage.pipeline.output import ChunkTiming, PipelineOutput, StepResult
from mirage.pipeline.plan import Chunk, check_chunk_size

__all__ = ["Session", "StepResult", "DEFAULT_HISTORY", "backbone_device", "memory_device"]

DEFAULT_HISTORY = 8  # undo levels kept (each holds a copy of the memory: a few MB for latent)
_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes any unsigned 64-bit seed
# What a step changes and undo restores (besides the memory mode and the generator state). The
# lists hold tensors that are never modified in place, so a shallow copy is a snapshot.
_LISTS = ("_latents", "_video", "_reads", "_read_latents", "_read_masks", "_plan", "_chunks",
          "_timings", "_stats", "_references", "_depth_records")


def backbone_device(backbone) -> torch.device:
    """The backbone's device (CPU for a backbone without one): where a session's latents and
    frames live."""
    return torch.device(getattr(backbone, "device", None) or "cpu")


def memory_device(config: PipelineConfig, backbone) -> torch.device:
    """Where a session's memory lives: ``config.memory_device``, else the backbone's device."""
    if config.memory_device is not None:
        return torch.device(config.memory_device)
    return backbone_device(backbone)


def _clock(*devices: torch.device) -> float:
    """``time.perf_counter()`` once the CUDA devices among ``devices`` have finished their work."""
    for device in dict.fromkeys(devices):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter()


def _check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED):
        raise ConfigError(f"`seed` must be None or an int in [0, 2**64 − 1] but is {seed!r}")


class Session:
    """One generated video, grown chunk by chunk (module docstring).

    Args:
        backbone: the :class:`~mirage.backbones.base.Backbone`.
        first_frame: (3, H, W) in [−1, 1], frame 0.
        first_camera: a :class:`~mirage.geometry.Camera` of length 1 at (H, W).
        config: the :class:`PipelineConfig`.
        depth_estimator / masker: what each update estimates depth and exclusions with.
        first_depth: (H, W) z-depth of frame 0; None → ``depth_estimator`` (relative: median 1 unit).
        first_exclude: (H, W) bool, pixels of frame 0 never written (dynamic, sky).
        text: optional prompt for every chunk.
        history: how many steps :meth:`undo` can take back (0: none, and no copies are made).
    """

    def __init__(self, backbone: Backbone, first_frame: Tensor, first_camera: Camera,
                 config: PipelineConfig, *, depth_estimator, masker, first_depth: Tensor | None = None,
                 first_exclude: Tensor | None = None, text: str | None = None,
                 history: int = DEFAULT_HISTORY) -> None:
        self._setup(backbone, config, depth_estimator, masker, text, history)
        s = backbone.spatial_stride
        if not isinstance(first_frame, Tensor) or first_frame.ndim != 3 or first_frame.shape[0] != 3:
            raise ShapeError(f"`first_frame` must have shape (3, H, W) but has "
                             f"{tuple(getattr(first_frame, 'shape', ()))}")
        H, W = first_frame.shape[1:]
        if not isinstance(first_camera, Camera) or len(first_camera) != 1:
            raise ShapeError(f"`first_camera` must be a Camera of length 1 but is "
                             f"{type(first_camera).__name__} of length {len(first_camera) if isinstance(first_camera, Camera) else '-'}")
        if (H, W) != first_camera.hw:
            raise ShapeError(f"`first_frame` is {H}x{W} but the cameras are for "
                             f"{first_camera.hw[0]}x{first_camera.hw[1]}")
        if H % s or W % s:
            raise ShapeError(f"image height and width must be divisible by {s} but are {H} and {W}")
        check_finite("first_frame", first_frame)
        for name, value in (("first_depth", first_depth), ("first_exclude", first_exclude)):
            if value is not None and tuple(value.shape) != (H, W):
                raise ShapeError(f"`{name}` must have shape {(H, W)} but has {tuple(value.shape)}")
        first_frame = first_frame.to(self.device, torch.float32).clamp(-1, 1)

        # -- initialise the memory from frame 0 (docs/design.md §3.1) ------------------------------
        t0 = self._clock()
        z0 = backbone.encode(first_frame[None, :, None])[0, :, 0].to(self.device)  # (C, h, w)
        if first_depth is None:
            estimate = depth_estimator(first_frame[None], first_camera, [0])
            first_depth, first_valid = (v[0].to(self.device) for v in estimate)
            if self.depth_kind == "relative":
                first_depth, _, self._depth_base = normalise_first(first_depth, first_valid)
        else:
            first_depth = first_depth.to(self.device, torch.float32)
        # Pixels without depth (sky, holes) are never points; a flag on them changes nothing, so
        # only flagged pixels *with* depth (dynamic objects, user masks) are excluded: that keeps
        # "no depth" apart from "excluded" for the partial-cell rule of the latent memory.
        has_depth = valid_depth(first_depth)
        first_depth = torch.where(has_depth, first_depth, torch.full_like(first_depth, float("inf")))
        exclude0 = (torch.zeros_like(has_depth) if first_exclude is None
                    else first_exclude.to(self.device).bool() & has_depth)
        t1 = self._clock()
        self._mode.write(z0[None], first_frame[None], first_depth[None], first_camera, exclude0[None], [0],
                         confidence=FIRST_FRAME_CONFIDENCE)
        t2 = self._clock()
        self.init_write_seconds, self.init_seconds = t2 - t1, t2 - t0

        self._cameras = first_camera
        self._latents = [z0]  # latent k, (C, h, w)
        self._video = [first_frame[None]]  # segments of (·, 3, H, W); frame 0 becomes decoded
        self._reads = [first_frame[None]] if config.decode_reads else []
        # the read each latent frame was conditioned on (latent 0 has none), for evaluation
        self._read_latents = [torch.zeros_like(z0, dtype=torch.float32)]
        self._read_masks = [torch.zeros(z0.shape[1:], dtype=torch.bool, device=self.device)]

    def _setup(self, backbone, config, depth_estimator, masker, text, history) -> None:
        """The parts of a session that a file does not hold (shared with ``load``)."""
        if not isinstance(config, PipelineConfig):
            raise ConfigError(f"`config` must be a PipelineConfig but is {type(config).__name__}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ConfigError(f"`history` must be an int ≥ 0 but is {history!r}")
        self.backbone, self.config = backbone, config
        self.depth_estimator, self.masker, self.text = depth_estimator, masker, text
        self.history = history
        self.device = backbone_device(backbone)  # the latents, frames and reads
        self.memory_device = memory_device(config, backbone)
        self.start: dict | None = None  # what the walk started from (start_record), saved with it
        self._mode = make_memory_mode(config.memory_mode, backbone.latent_channels, fusion=config.fusion,
                                      far_field=config.far_field, dtype=config.resolve_memory_dtype(backbone),
                                      device=self.memory_device)
        self.memory_input = config.resolve_memory_input(backbone)
        if self.memory_input == "branch" and config.memory_mode != "none" and not getattr(backbone, "has_memory_branch", True):
            warnings.warn("memory_input 'branch' with an untrained (zero-initialised) memory branch: the model "
                          "ignores the memory read; use memory_input 'inject' (or load a trained branch)",
                          stacklevel=3)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._undo: list[dict] = []
        self._evicted = 0  # leading frames whose pixels evict_frames let go
        self._plan: list[Chunk] = []
        self._chunks: list[dict] = []
        self._timings: list[ChunkTiming] = []
        self._stats: list[dict] = []
        self._references: list[list[dict]] = []
        self._depth_records: list[dict | None] = []
        self.depth_kind, self._depth_base = depth_kind(depth_estimator), (1.0, 0.0)  # base: frame 0's map

    # -- state -------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Frames so far, frame 0 included."""
        return len(self._cameras)

    @property
    def cameras(self) -> Camera:
        """The cameras of all frames so far (F)."""
        return self._cameras

    @property
    def video(self) -> Tensor:
        """(F − e, 3, H, W) in [−1, 1]: the frames so far from frame e = :attr:`evicted_frames`
        on (0 unless :meth:`evict_frames` let older ones go; frame 0 is the decoded first frame
        once a chunk has been generated, the input image before)."""
        return torch.cat(self._video)

    @property
    def evicted_frames(self) -> int:
        """How many of the first frames :meth:`evict_frames` has let go (their decoded pixels
        and reads; their latents, cameras and memory stay)."""
        return self._evicted

    def evict_frames(self, keep: int) -> int:
        """Let go of the decoded frames and reads of the oldest chunks while more than ``keep``
        frames would remain, so a long walk holds its pixels for the last ``keep`` frames only.
        Latents, cameras, the memory and the random state stay, so the session continues (and
        saves, loads and replays from an exported path) exactly as before; only :meth:`output`
        (the whole video) is refused afterwards. Returns the frames let go by this call."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"`keep` must be an int ≥ 1 but is {keep!r}")
        before = self._evicted
        kept = self.num_frames - self._evicted
        while len(self._video) > 1 and kept - len(self._video[0]) >= keep:
            n = len(self._video[0])
            self._video = self._video[1:]
            if self._reads:  # the reads are in the same segments: frame 0, then one per chunk
                self._reads = self._reads[1:]
            self._evicted += n
            kept -= n
        return self._evicted - before

    @property
    def latents(self) -> Tensor:
        """(C, T, h, w): latent frame k has the pose of pixel frame τk."""
        return torch.stack(self._latents, dim=1)

    @property
    def mode(self):
        """The memory mode (:mod:`mirage.pipeline.memory_modes`) the session writes and reads."""
        return self._mode

    @property
    def memory(self):
        """The memory object (:class:`~mirage.memory.LatentSpatialMemory` or
        :class:`~mirage.memory.RGBPointCloudMemory`), or None for ``none``. It is the live
        object: the next step changes it."""
        return self._mode.memory

    @property
    def chunks(self) -> list[dict]:
        """Per chunk so far: {"frames": new frames, "seed": the re-seed or None}. The first
        chunk always records a seed (``config.seed`` unless given), so that the list with the
        cameras replays the video without the config's seed (``generate(..., chunks=...)``)."""
        return [dict(c) for c in self._chunks]

    @property
    def depth_alignment(self) -> list[dict | None]:
        """Per chunk: how a relative estimator's frames were aligned to the memory, {"chunk",
        "status", "frames"} (:func:`~mirage.pipeline.depth_align.write_relative`); None if metric."""
        return [None if r is None else {**r, "frames": [dict(f) for f in r["frames"]]} for r in self._depth_records]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def output(self) -> PipelineOutput:
        """What :func:`~mirage.pipeline.generate` returns, for the steps so far. Refused after
        :meth:`evict_frames` let frames go (replay the exported path for the whole video)."""
        if self._evicted:
            raise SessionError(f"the first {self._evicted} frames were evicted (evict_frames), so the "
                               f"whole video is gone; replay the exported path with mirage generate")
        return PipelineOutput(
            video=self.video,
            latents=self.latents,
            plan=list(self._plan),
            timings=list(self._timings),
            init_seconds=self.init_seconds,
            init_write_seconds=self.init_write_seconds,
            memory_stats=list(self._stats),
            references=list(self._references),
            memory=self._mode.memory,
            memory_reads=torch.cat(self._reads) if self.config.decode_reads else None,
            depth_source=getattr(self.depth_estimator, "name", type(self.depth_estimator).__name__),
            masker=getattr(self.masker, "name", type(self.masker).__name__),
            config=self._config_used(),
            read_latents=torch.stack(self._read_latents, dim=1),
            read_mask=torch.stack(self._read_masks),
            depth_alignment=self.depth_alignment,
        )

    def _config_used(self) -> dict:
        """``config`` as a dict with the defaults resolved: the fusion and far field the memory
        actually uses (both None for ``none``, which has no memory) and the memory input."""
        config = {**asdict(self.config), "memory_input": self.memory_input,
                  "memory_dtype": self.config.resolve_memory_dtype(self.backbone)}
        memory = self._mode.memory
        if memory is not None:
            config["fusion"], config["far_field"] = memory.fusion, bool(memory.far_field)
        return config

    # -- undo ----------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        state = {name: list(getattr(self, name)) for name in _LISTS}
        state["_cameras"] = self._cameras
        state["_evicted"] = self._evicted
        state["_mode"] = copy.deepcopy(self._mode)
        state["_generator"] = self._generator.get_state()
        return state

    def _restore(self, state: dict) -> None:
        for name in (*_LISTS, "_cameras", "_mode", "_evicted"):
            setattr(self, name, state[name])
        self._generator.set_state(state["_generator"])

    def undo(self) -> None:
        """Restore the state before the last step exactly (memory, latents, cameras, frames,
        generator state): the next step is the same as if the undone one never happened.
        Raises :class:`~mirage.errors.SessionError` when there is nothing to undo (no step, the
        steps were undone ``history`` times, or the session was loaded from a file)."""
        if not self._undo:
            why = "no step has been taken" if not self._plan else (
                f"only the last {self.history} steps can be undone" if self.history
                else "this session keeps no undo history (history=0)")
            raise SessionError(f"nothing to undo: {why}")
        self._restore(self._undo.pop())

    # -- step ------------------------------------------------------------------------------
    def step(self, cameras: Camera, seed: int | None = None, *,
             callback: Callable[[int, int], None] | None = None) -> StepResult:
        """Generate the next chunk: n new frames at ``cameras``.

        cameras: the n new frames' cameras at (H, W), n = τ·k with 1 ≤ k and n ≤
            ``backbone.max_frames − 1``. The chunk is [the last frame so far] + these n.
        seed: when not None, the sampling generator is re-seeded with it before this chunk.
        callback: ``callback(step, steps)`` after each denoising step (progress).

        On an error the random state is restored, and nothing the session holds (frames,
        latents, cameras, plan) changes: those are committed only once the chunk is complete.
        The memory update is the last thing a step does, so an error before it leaves the memory
        untouched as well. An error *during* the update (an interrupt, say) is undone only when
        the session keeps an undo history (``history`` ≥ 1): the step then restores the
        snapshot that :meth:`undo` would use. With ``history=0`` no copy of the memory exists,
        and it may keep part of the failed chunk's points.
        """
        tau = self.backbone.temporal_stride
        if not isinstance(cameras, Camera):
            raise ConfigError(f"`cameras` must be a Camera but is {type(cameras).__name__}")
        if cameras.hw != self._cameras.hw:
            raise ShapeError(f"`cameras` are for {cameras.hw[0]}x{cameras.hw[1]} but the session is "
                             f"{self._cameras.hw[0]}x{self._cameras.hw[1]}")
        check_chunk_size(len(cameras), tau, self.backbone.max_frames, "cameras")
        _check_seed(seed)
        if cameras.K.dtype != self._cameras.K.dtype or cameras.device != self._cameras.device:
            cameras = cameras.to(device=self._cameras.device, dtype=self._cameras.K.dtype)
        saved = self._snapshot() if self.history else None
        generator_state = self._generator.get_state()
        try:
            result = self._step(cameras, seed, callback)
        except BaseException:
            if saved is not None:
                self._restore(saved)
            else:  # without a snapshot the memory cannot be restored; the random state can
                self._generator.set_state(generator_state)
            raise
        if saved is not None:
            self._undo.append(saved)
            del self._undo[:-self.history]
        return result

    def _clock(self) -> float:
        return _clock(self.device, self.memory_device)

    def _step(self, new_cameras: Camera, seed: int | None, callback) -> StepResult:
        from tqdm.auto import tqdm

        backbone, config, mode = self.backbone, self.config, self._mode
        tau, s = backbone.temporal_stride, backbone.spatial_stride
        H, W = self._cameras.hw
        h, w = H // s, W // s
        index = len(self._plan)
        start = self.num_frames - 1
        end = start + len(new_cameras)
        chunk = Chunk(index, start, end, start // tau, end // tau)
        if seed is None and index == 0:
            seed = config.seed  # the generator is fresh: re-seeding with config.seed changes nothing
        if seed is not None:
            self._generator.manual_seed(seed)
        cameras = Camera.cat([self._cameras, new_cameras])
        a = chunk.start_latent
        chunk_cams = cameras[list(range(start, end + 1))]
        target_ids = chunk.target_latents
        target_cams = cameras[[tau * k for k in target_ids]]
        latents = self._latents
        z0 = latents[0]
        timing = ChunkTiming()

        # read + references
        t = self._clock()
        read, refs = mode.read_and_references(chunk_cams, tau, (h, w), backbone, config.references,
                                              reference_exclusions(a, config.preceding))
        timing.read = self._clock() - t
        pre = preceding_ids(a, config.preceding)
        ref_ids = [r.frame_id for r in refs]
        cond = ChunkConditioning(
            first_latent=latents[a],
            memory_features=read.features,
            memory_mask=read.mask,
            preceding=torch.stack([latents[k] for k in pre]) if pre else z0.new_zeros(0, *z0.shape),
            references=torch.stack([latents[k] for k in ref_ids]) if ref_ids else z0.new_zeros(0, *z0.shape),
            first_camera=cameras[[tau * a]],
            target_cameras=target_cams,
            preceding_cameras=cameras[[tau * k for k in pre]] if pre else None,
            reference_cameras=cameras[[tau * k for k in ref_ids]] if ref_ids else None,
            steps=config.steps,
            text=self.text,
            memory_offset=read.offset,
            memory_input=self.memory_input,
            injection=config.injection,
        )

        # denoise
        t = self._clock()
        with tqdm(total=config.steps, desc=f"chunk {index + 1} steps", disable=not config.progress,
                  leave=False) as bar:
            def progress(i: int, n: int) -> None:
                bar.update(1)
                if callback is not None:
                    callback(i, n)

            chunk_latents = backbone.sample(cond, self._generator, callback=progress)
        chunk_latents = chunk_latents[0].to(self.device)  # (C, T, h, w)
        if config.paste_reads is not None:
            chunk_latents = paste_reads(chunk_latents, read, config.paste_reads)
        timing.denoise = self._clock() - t

        # decode
        t = self._clock()
        video = backbone.decode(chunk_latents[None])[0].to(self.device).permute(1, 0, 2, 3)  # (Fc, 3, H, W)
        timing.decode = self._clock() - t

        # depth + masks of the latent-aligned frames
        t = self._clock()
        new_latents = chunk_latents[:, 1:].permute(1, 0, 2, 3)  # (T−1, C, h, w)
        key_frames = video[tau::tau]  # pixel frames τk of the targets
        pixel_ids = [tau * k for k in target_ids]
        depth, valid = self.depth_estimator(key_frames, target_cams, pixel_ids)
        read_features, read_mask = read.features.float().to(self.device), read.mask.bool().to(self.device)
        flagged = self.masker(key_frames, new_latents, read_features, read_mask, target_cams, pixel_ids)
        flagged = flagged.to(self.device)
        timing.depth = self._clock() - t

        read_frames = None
        if config.decode_reads:  # not counted in the timings; before the update, which is last
            read_latents = torch.cat([latents[a][:, None], read_features.permute(1, 0, 2, 3)], dim=1)
            read_frames = backbone.decode(read_latents[None])[0].to(self.device).permute(1, 0, 2, 3)[1:]

        # update (relative depth aligned first): the last step that can fail, so an error before it
        t = self._clock()  # leaves the memory as it was
        valid, alignment = write_chunk(mode, new_latents, key_frames, depth, valid, flagged, target_cams, target_ids,
                                       pixel_ids, read, kind=self.depth_kind, align=config.depth_align,
                                       base=self._depth_base, confidence=GENERATED_CONFIDENCE, chunk=index)
        exclude = flagged & valid
        timing.update = self._clock() - t

        # commit (nothing above changed the session but the memory and the generator)
        stats = {**mode.stats(), "read_coverage": float(read.mask.float().mean()),
                 "excluded": float((exclude | ~valid).float().mean())}
        references = [{"frame_id": r.frame_id, "iou": round(float(r.iou), 4)} for r in refs]
        self._cameras = cameras
        self._latents = latents + list(new_latents.unbind(0))
        if index == 0:
            self._video = [video[:1]]
        self._video = self._video + [video[1:]]
        if config.decode_reads:
            self._reads = self._reads + [read_frames]
        self._read_latents = self._read_latents + list(read_features.unbind(0))
        self._read_masks = self._read_masks + list(read_mask.unbind(0))
        self._plan = self._plan + [chunk]
        self._chunks = self._chunks + [{"frames": len(new_cameras), "seed": seed}]
        self._timings = self._timings + [timing]
        self._stats = self._stats + [stats]
        self._references = self._references + [references]
        self._depth_records = self._depth_records + [alignment]
        return StepResult(frames=video[1:], read_frames=read_frames, read_mask=read_mask,
                          timing=timing, memory_stats=dict(stats), references=references,
                          chunk_index=index, seed=seed, depth_alignment=self.depth_alignment[-1])

    # -- files -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the session to ``path`` (one safetensors file, :mod:`mirage.pipeline.session_file`),
        atomically. The undo history is not saved."""
        from mirage.pipeline.session_file import save_session

        save_session(path, self)

    @classmethod
    def load(cls, path, backbone: Backbone, *, depth_estimator, masker,
             history: int = DEFAULT_HISTORY, memory_device: str | None = None) -> "Session":
        """The session saved in ``path``, continuing with exactly the frames the saved one would
        have made; its memory on ``memory_device`` (None: the backbone's device; the file does not
        record where the memory lived). Raises :class:`~mirage.errors.SessionFormatError` for a missing, foreign,
        truncated, tampered or newer file, or one saved with another kind of backbone."""
        from mirage.pipeline.session_file import load_session

        return load_session(path, cls, backbone, depth_estimator=depth_estimator, masker=masker,
                            history=history, memory_device=memory_device)
