"""Training clips from the procedural world, written to disk with resume.

Layout of ``out_dir``::

    dataset.json            the DatasetConfig (written first; a resume must match it)
    index.json              the finished clips (name, family, seed, trajectory, frames, size)
                            and ``"complete": true`` once every clip is written
    clips/<name>/geometry.npz   reference layout + sky_masks, object_ids, times (see io.py)
    clips/<name>/scene.json

Clip i uses scene seed ``first_seed + i``, family ``families[i % len(families)]`` and
trajectory ``trajectories[i % len(trajectories)]``. A clip is rendered into a hidden temporary
folder that is renamed into ``clips/`` only once complete, so after an interruption every clip
folder present is whole, and a rerun skips them and continues.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mirage.errors import ConfigError
from mirage.world.generate import generate_scene
from mirage.cameras import save_geometry_npz
from mirage.files import atomic_path
from mirage.world.io import save_scene
from mirage.world.raycast import render
from mirage.world.scene import FAMILIES
from mirage.world.trajectories import DEFAULT_FPS, PRESETS, make_trajectory

__all__ = ["DatasetConfig", "ClipSpec", "plan_clips", "render_clip_arrays", "write_dataset"]

DATASET_FORMAT = "mirage-world-dataset"


@dataclass(frozen=True)
class DatasetConfig:
    """What ``mirage world dataset`` writes: ``scenes`` clips of ``frames`` frames at
    (height, width)."""

    scenes: int
    frames: int
    height: int
    width: int
    families: tuple[str, ...] = FAMILIES
    trajectories: tuple[str, ...] = tuple(PRESETS)
    first_seed: int = 0
    moving: int = 0
    ssaa: int = 1
    fps: int = DEFAULT_FPS

    def __post_init__(self) -> None:
        for name in ("scenes", "frames", "height", "width", "ssaa", "fps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{name}` must be an int ≥ 1 but is {value!r}")
        if isinstance(self.first_seed, bool) or not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise ConfigError(f"`first_seed` must be an int ≥ 0 but is {self.first_seed!r}")
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "trajectories", tuple(self.trajectories))
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families:
            raise ConfigError(f"`families` must be a non-empty subset of {FAMILIES} but is {self.families}")
        bad = [t for t in self.trajectories if t not in PRESETS]
        if bad or not self.trajectories:
            raise ConfigError(f"`trajectories` must be a non-empty subset of {sorted(PRESETS)} but is {self.trajectories}")


@dataclass(frozen=True)
class ClipSpec:
    name: str
    family: str
    seed: int
    trajectory: str


def plan_clips(config: DatasetConfig) -> list[ClipSpec]:
    """The clips of a dataset, in order (see the module docstring for the rule)."""
    clips = []
    for i in range(config.scenes):
        family = config.families[i % len(config.families)]
        trajectory = config.trajectories[i % len(config.trajectories)]
        seed = config.first_seed + i
        clips.append(ClipSpec(f"{i:05d}-{family}-s{seed}-{trajectory}", family, seed, trajectory))
    return clips


def render_clip_arrays(
    scene, cameras, fps: float, ssaa: int = 1
) -> dict[str, np.ndarray]:
    """Render a clip to the numpy arrays of a geometry archive (frames uint8 (F, H, W, 3) …).

    Frame k is at t = k / fps seconds.
    """
    times = torch.arange(len(cameras), dtype=torch.float64) / fps
    out = render(scene, cameras, times, ssaa=ssaa)
    frames = ((out.rgb.permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return {
        "frames": frames.numpy(),
        "depths": out.depth.numpy(),
        "masks": out.dynamic.numpy(),
        "sky_masks": out.sky.numpy(),
        "object_ids": out.object_id.to(torch.int32).numpy(),
        "times": times.numpy(),
    }


def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def write_dataset(out_dir: str | os.PathLike, config: DatasetConfig, *, progress: bool = True) -> list[dict]:
    """Write (or resume writing) the dataset ``config`` into ``out_dir``; returns the index.

    Raises ``ConfigError`` if ``out_dir`` already holds a dataset with a different config.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    clips_dir = out / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    meta = {"format": DATASET_FORMAT, "version": 1, "config": asdict(config)}
    meta["config"]["families"] = list(config.families)
    meta["config"]["trajectories"] = list(config.trajectories)
    meta_path = out / "dataset.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old != meta:
            raise ConfigError(
                f"`out` {str(out)!r} holds a dataset with config {old.get('config')} but this run "
                f"asks for {meta['config']}; use a fresh folder"
            )
    else:
        _write_json(meta_path, meta)
    for leftover in clips_dir.glob(".tmp-*"):  # debris of an interrupted clip
        shutil.rmtree(leftover, ignore_errors=True)
    index = []
    for spec in tqdm(plan_clips(config), desc="clips", unit="clip", disable=not progress):
        entry = {**asdict(spec), "frames": config.frames, "height": config.height, "width": config.width,
                 "path": f"clips/{spec.name}"}
        final = clips_dir / spec.name
        if not final.exists():
            scene = generate_scene(spec.family, spec.seed, moving=config.moving)
            cameras = make_trajectory(spec.trajectory, scene, config.frames, config.height, config.width)
            arrays = render_clip_arrays(scene, cameras, config.fps, config.ssaa)
            tmp = clips_dir / f".tmp-{spec.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_geometry_npz(tmp / "geometry.npz", cameras=cameras, **arrays)
            save_scene(tmp / "scene.json", scene)
            os.replace(tmp, final)
        index.append(entry)
        done = len(index) == config.scenes
        _write_json(out / "index.json", {"format": DATASET_FORMAT, "complete": done, "clips": index})
    return index
