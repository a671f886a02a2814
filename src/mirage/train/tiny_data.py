"""Training data for the tiny model: procedural-world clips, and memory-conditioned samples.

Clips: clip i uses family ``families[i % 2]``, scene seed ``first_seed + i`` (≥ 1000 by default;
evaluation uses seeds < 100, so training never sees an evaluation scene) and a trajectory preset
drawn with random parameters from a generator seeded by i.

Denoiser samples are built **as at inference** (:mod:`mirage.pipeline`): each clip's clean
latents are written into a :class:`~mirage.pipeline.memory_modes.LatentMode` one latent frame at a
time (frame 0 with its exact depth, later frames with the tiny depth estimator's depth and its
invalid mask), and before latent frame s+1 is written, the memory is read for the target latent
frames s+1..s+T−1 of a chunk starting at s, and references are retrieved with the same rule and
exclusions the pipeline uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from mirage.geometry import Camera
from mirage.pipeline.context import preceding_ids, reference_exclusions
from mirage.pipeline.memory_modes import FIRST_FRAME_CONFIDENCE, GENERATED_CONFIDENCE, LatentMode

__all__ = ["DataConfig", "render_clips", "build_memory_samples", "clip_spec"]


@dataclass(frozen=True)
class DataConfig:
    clips: int = 400
    frames: int = 49  # 13 latent frames at τ = 4
    height: int = 64
    width: int = 64
    first_seed: int = 1000
    families: tuple[str, ...] = ("room", "courtyard")


def clip_spec(i: int, config: DataConfig) -> tuple[str, int, str, dict]:
    """(family, seed, preset, preset kwargs) of clip i."""
    rng = random.Random(7_000_003 + i)
    family = config.families[i % len(config.families)]
    seed = config.first_seed + i
    preset = ["pan-return", "pan-return", "orbit", "loop", "forward-back", "random-walk"][rng.randrange(6)]
    kwargs: dict = {}
    if preset == "pan-return":
        kwargs["angle_deg"] = rng.uniform(60.0, 200.0)
    elif preset in ("orbit", "loop"):
        kwargs["turns"] = rng.choice([0.5, 1.0, 1.0])
    elif preset == "random-walk":
        kwargs["speed"] = rng.uniform(0.03, 0.09)
        kwargs["seed"] = i
    return family, seed, preset, kwargs


def render_clips(config: DataConfig, progress: bool = True) -> dict[str, Tensor]:
    """Render every clip: rgb uint8 (N, F, 3, H, W), depth (N, F, H, W) (inf = sky),
    K (N, F, 3, 3) and cam2world (N, F, 4, 4)."""
    from tqdm.auto import tqdm

    from mirage.world import DEFAULT_FPS, generate_scene, make_trajectory, render

    N, Fr, H, W = config.clips, config.frames, config.height, config.width
    out = {
        "rgb": torch.zeros(N, Fr, 3, H, W, dtype=torch.uint8),
        "depth": torch.zeros(N, Fr, H, W),
        "K": torch.zeros(N, Fr, 3, 3),
        "cam2world": torch.zeros(N, Fr, 4, 4),
    }
    for i in tqdm(range(N), desc="render clips", disable=not progress, mininterval=5.0):
        family, seed, preset, kwargs = clip_spec(i, config)
        scene = generate_scene(family, seed)
        cams = make_trajectory(preset, scene, Fr, H, W, **kwargs)
        r = render(scene, cams, torch.arange(Fr, dtype=torch.float64) / DEFAULT_FPS)
        out["rgb"][i] = ((r.rgb + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        out["depth"][i] = torch.where(r.sky, torch.full_like(r.depth, float("inf")), r.depth)
        out["K"][i], out["cam2world"][i] = cams.K, cams.cam2world
    return out


def to_unit(rgb_uint8: Tensor) -> Tensor:
    return rgb_uint8.float() / 127.5 - 1.0


def build_memory_samples(
    latents: Tensor,  # (L, C, h, w) clean latents of one clip
    depths: Tensor,  # (L, H, W) depth of each latent frame (frame 0 exact, others estimated)
    exclude: Tensor,  # (L, H, W) bool never-write mask (invalid / sky)
    cameras: Camera,  # L cameras (the latent frames' poses) at (H, W)
    targets: int,  # T − 1 target latent frames per chunk
    preceding: int,
    references: int,
    relative: tuple[Tensor, Tensor] | None = None,
    alignment: list | None = None,
) -> list[dict]:
    """For every chunk start s: the memory read of its targets and the references, as inference.

    Returns dicts with ``start``, ``targets`` (ids), ``features`` (n, C, h, w), ``mask`` (n, h, w),
    ``offset`` (n, 2, h, w), ``preceding`` (ids) and ``references`` (ids).

    ``relative``: (inverse, valid), each (L, H, W), a relative depth model's affine inverse depth
    of every latent frame: frames after the first are then written as inference writes them,
    aligned to the memory's own depth in their view first and not written when that fails
    (:func:`mirage.pipeline.depth_align.align_frames`); ``depths`` then only gives frame 0. The
    per-frame records are appended to ``alignment`` when given.
    """
    L, C, h, w = latents.shape
    mode = LatentMode(C)
    mode.write(latents[:1], None, depths[:1], cameras[0], exclude[:1], [0], confidence=FIRST_FRAME_CONFIDENCE)
    samples = []
    for s in range(L - 1):
        ids = list(range(s + 1, min(s + targets, L - 1) + 1))
        target_cams = Camera(cameras.K[ids], cameras.cam2world[ids], *cameras.hw)
        read = mode.memory.read(target_cams, (h, w))
        refs = mode.references(target_cams, references, reference_exclusions(s, preceding))
        samples.append({
            "start": s, "targets": ids,
            "features": read.features.float().clone(), "mask": read.mask.clone(),
            "offset": read.offset.clone(),
            "preceding": preceding_ids(s, preceding),
            "references": [r.frame_id for r in refs],
        })
        depth, skip = depths[s + 1:s + 2], exclude[s + 1:s + 2]
        if relative is not None:
            from mirage.pipeline.depth_align import align_frames

            memory = mode.memory.read(cameras[s + 1], (h, w))
            depth, valid, keep, records = align_frames(relative[0][s + 1:s + 2], relative[1][s + 1:s + 2],
                                                       memory.depth, memory.offset, [s + 1])
            skip = skip | ~valid
            if alignment is not None:
                alignment += records
            if not keep[0]:
                continue
        mode.write(latents[s + 1:s + 2], None, depth, cameras[s + 1], skip, [s + 1],
                   confidence=GENERATED_CONFIDENCE)  # later frames are generated at inference
    return samples
