"""Camera trajectory presets for the procedural world.

Every preset keeps the camera centre inside the scene's free disc (radius
``scene.free_radius`` around ``scene.center``, see ``generate.py``), so it is collision-free,
and it returns a :class:`mirage.geometry.Camera` batch with ``DEFAULT_FOV_X_DEG`` intrinsics.
Cameras are level (no pitch or roll) at eye height. Yaw ψ is the heading: the camera looks
along (sin ψ, 0, cos ψ) in the y-down world, so ψ = 0 looks along +z.

Progress along a path is s = k / (F − 1) for frame k of F. Presets:

- ``pan-return``: stands at the centre, turns by ``angle_deg`` (≥ 90 by default: 120) and
  back, easing with (1 − cos 2πs)/2. The last pose **equals** the first.
- ``orbit``: circles ``turns`` times around the centre at ``radius`` while looking at it.
  Closed when ``turns`` is an integer.
- ``forward-back``: walks ``distance`` forward along the start heading and back, same easing
  as pan-return. Closed.
- ``loop``: drives ``turns`` times around a circle of ``radius`` looking along the direction of
  travel. Closed (integer ``turns``).
- ``random-walk``: a seeded, smooth random walk at ``speed`` metres per frame, turning back
  before it leaves the free disc. Not closed.

Closed presets copy the first pose into the last frame, so closure is exact, not approximate.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

import torch

from mirage.errors import ConfigError
from mirage.geometry import Camera, yaw_rotation
from mirage.world.scene import Scene

__all__ = [
    "DEFAULT_FOV_X_DEG",
    "DEFAULT_FPS",
    "DEFAULT_FRAMES",
    "PRESETS",
    "Preset",
    "make_trajectory",
    "level_pose",
]

DEFAULT_FOV_X_DEG = 60.0  # horizontal field of view of every preset camera
DEFAULT_FPS = 16  # frame k of a clip is at t = k / DEFAULT_FPS seconds
DEFAULT_FRAMES = 33  # one Wan2.2 chunk (docs/design.md §3.11)
_PATH_FRACTION = 0.7  # default radius/distance as a fraction of the free radius


def level_pose(position, yaw: float) -> torch.Tensor:
    """(4, 4) float64 cam2world of a level OpenCV camera at ``position`` with heading ``yaw``."""
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = yaw_rotation(yaw)  # columns: right, down, forward
    pose[:3, 3] = torch.as_tensor(position, dtype=torch.float64)
    return pose


def _ease(frames: int) -> list[float]:
    """(1 − cos 2πs)/2 for s = k/(F−1): 0 → 1 → 0."""
    if frames == 1:
        return [0.0]
    return [(1.0 - math.cos(2 * math.pi * k / (frames - 1))) / 2.0 for k in range(frames)]


def _progress(frames: int) -> list[float]:
    return [0.0] if frames == 1 else [k / (frames - 1) for k in range(frames)]


def _radius(scene: Scene, value, name: str) -> float:
    r = _PATH_FRACTION * scene.free_radius if value is None else float(value)
    if not 0 <= r <= scene.free_radius:
        raise ConfigError(f"`{name}` must be in [0, {scene.free_radius:.3f}] (the scene's free radius) but is {r}")
    return r


def _pan_return(scene: Scene, frames: int, angle_deg: float = 120.0) -> list:
    if not 0 < angle_deg < 360:
        raise ConfigError(f"`angle_deg` must be in (0, 360) but is {angle_deg}")
    a = math.radians(angle_deg)
    return [level_pose(scene.center, scene.start_yaw + a * e) for e in _ease(frames)]


def _circle(scene: Scene, frames: int, radius: float | None, turns: float, offset) -> list:
    """Level poses on a circle about the centre whose heading turns ``turns`` times; the camera
    sits at the centre + ``offset(yaw, r)`` (its x and z) at heading yaw."""
    r = _radius(scene, radius, "radius")
    cx, cy, cz = scene.center
    poses = []
    for s in _progress(frames):
        yaw = scene.start_yaw + 2 * math.pi * turns * s
        dx, dz = offset(yaw, r)
        poses.append(level_pose((cx + dx, cy, cz + dz), yaw))
    return poses


def _orbit(scene: Scene, frames: int, radius: float | None = None, turns: float = 1.0) -> list:
    # behind the centre at every heading: always looking at it
    return _circle(scene, frames, radius, turns, lambda yaw, r: (-(r * math.sin(yaw)), -(r * math.cos(yaw))))


def _forward_back(scene: Scene, frames: int, distance: float | None = None) -> list:
    dist = _radius(scene, distance, "distance")
    cx, cy, cz = scene.center
    yaw = scene.start_yaw
    fx, fz = math.sin(yaw), math.cos(yaw)
    return [level_pose((cx + dist * e * fx, cy, cz + dist * e * fz), yaw) for e in _ease(frames)]


def _loop(scene: Scene, frames: int, radius: float | None = None, turns: float = 1.0) -> list:
    # to the side of the centre: heading along the tangent
    return _circle(scene, frames, radius, turns, lambda yaw, r: (-(r * math.cos(yaw)), r * math.sin(yaw)))


def _random_walk(scene: Scene, frames: int, speed: float = 0.04, seed: int = 0) -> list:
    if not (math.isfinite(speed) and speed > 0):
        raise ConfigError(f"`speed` must be a float > 0 (metres per frame) but is {speed}")
    rng = random.Random(seed * 7919 + scene.seed)
    cx, cy, cz = scene.center
    limit = _PATH_FRACTION * scene.free_radius
    x, z, yaw, turn = cx, cz, scene.start_yaw, 0.0
    poses = []
    for _ in range(frames):
        poses.append(level_pose((x, cy, z), yaw))
        turn = 0.85 * turn + 0.15 * (rng.random() - 0.5) * 0.5  # smooth turning rate
        nx, nz = x + speed * math.sin(yaw + turn), z + speed * math.cos(yaw + turn)
        if math.hypot(nx - cx, nz - cz) > limit:  # steer back towards the centre
            home = math.atan2(cx - x, cz - z)
            turn = math.remainder(home - yaw, 2 * math.pi) * 0.25
            nx, nz = x + speed * math.sin(yaw + turn), z + speed * math.cos(yaw + turn)
            if math.hypot(nx - cx, nz - cz) > limit:  # still outside: stay put, keep turning
                nx, nz = x, z
        yaw += turn
        x, z = nx, nz
    return poses


@dataclass(frozen=True)
class Preset:
    """A named trajectory: its builder, its keyword defaults and whether it ends on its start."""

    name: str
    build: Callable
    defaults: dict
    closed: bool
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("pan-return", _pan_return, {"angle_deg": 120.0}, True, "turn away and back in place"),
        Preset("orbit", _orbit, {"radius": None, "turns": 1.0}, True, "circle the centre looking at it"),
        Preset("forward-back", _forward_back, {"distance": None}, True, "walk forward and back"),
        Preset("loop", _loop, {"radius": None, "turns": 1.0}, True, "drive a closed circle looking ahead"),
        Preset("random-walk", _random_walk, {"speed": 0.04, "seed": 0}, False, "seeded smooth random walk"),
    )
}


def make_trajectory(
    name: str,
    scene: Scene,
    frames: int,
    height: int,
    width: int,
    *,
    fov_deg: float = DEFAULT_FOV_X_DEG,
    **kwargs,
) -> Camera:
    """F cameras of preset ``name`` for ``scene`` at image size (height, width).

    Keyword arguments override the preset's defaults (``PRESETS[name].defaults``); ``None``
    radius/distance means 0.7 × the scene's free radius. Returns a float32 ``Camera`` of
    length ``frames`` with OpenCV cam2world poses in the scene's world frame.
    """
    if name not in PRESETS:
        raise ConfigError(f"`trajectory` must be one of {sorted(PRESETS)} but is {name!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"`frames` must be an int ≥ 1 but is {frames!r}")
    preset = PRESETS[name]
    unknown = set(kwargs) - set(preset.defaults)
    if unknown:
        raise ConfigError(
            f"preset {name!r} takes options {sorted(preset.defaults)} but got {sorted(unknown)}"
        )
    poses = preset.build(scene, frames, **{**preset.defaults, **kwargs})
    if preset.closed and frames > 1 and float(kwargs.get("turns", 1.0)).is_integer():
        poses[-1] = poses[0].clone()
    cam2world = torch.stack(poses).to(torch.float32)  # (F, 4, 4)
    return Camera.from_fov(cam2world, height, width, fov_deg)
