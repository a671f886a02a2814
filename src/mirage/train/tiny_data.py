"""Training data for the tiny model: procedural-world clips, and memory-conditioned samples.

Clips: clip i uses family ``families[i % 2]``, scene seed ``first_seed + i`` (≥ 1000 by default;
evaluation uses seeds < 100, so training never sees an evaluation scene) and a trajectory preset
drawn with random parameters from a generator seeded by i.

Denoiser samples are built **as at inference**, by the pipeline's own
:func:`mirage.pipeline.build_memory_samples` (frame 0 with its exact depth, later frames with the
tiny depth estimator's depth and its invalid mask).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor


__all__ = ["DataConfig", "render_clips", "clip_spec", "to_unit"]


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
