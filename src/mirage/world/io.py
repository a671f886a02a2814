"""Scene files, and cameras from any trajectory spec: a preset, a written path or a camera file.

- **Scene JSON** (``scene.json``): :func:`~mirage.world.scene.scene_to_json`.
- Camera files (our trajectory JSON, ``transforms.json``, RealEstate10K, ``geometry.npz``,
  COLMAP) are read by :mod:`mirage.cameras`, the one reader per format.

Every writer writes atomically: to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mirage.cameras import load_camera_file
from mirage.cameras.fields import read_text
from mirage.errors import ConfigError
from mirage.files import atomic_path
from mirage.geometry import Camera
from mirage.world.scene import Scene, scene_from_json, scene_to_json

__all__ = ["save_scene", "load_scene", "load_trajectory"]


def save_scene(path, scene: Scene) -> None:
    """Write ``scene`` as JSON to ``path`` (atomically)."""
    with atomic_path(path) as tmp:
        tmp.write_text(scene_to_json(scene))


def load_scene(path) -> Scene:
    return scene_from_json(read_text(path, "scene file"))


# -- any trajectory ------------------------------------------------------------------------
def load_trajectory(
    spec: str | os.PathLike,
    *,
    scene: Scene | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    **kwargs,
) -> Camera:
    """Cameras from a preset name or a trajectory file.

    - A preset name (``PRESETS``) needs ``scene``, ``height`` and ``width``; ``frames``
      defaults to ``DEFAULT_FRAMES``, ``kwargs`` go to the preset.
    - A file: ``*.npz`` is a geometry archive, ``*.json`` is our trajectory JSON or a NeRF
      ``transforms.json`` (told apart by content), ``*.txt`` a RealEstate10K camera file (needs
      ``height`` and ``width``: its intrinsics are normalised), and a folder a COLMAP sparse model
      (images in name order; the first image is frame 0), read by
      :func:`mirage.cameras.load_camera_file`. Its intrinsics are rescaled to
      ``(height, width)`` when given. ``frames`` must then be ``None`` or the file's count.
    - A written path such as ``"forward 2, turn-left 30, up 0.5"``
      (:mod:`mirage.world.path_grammar`): ``frames`` (default ``DEFAULT_FRAMES``) poses from the
      scene's start pose (``scene.center``, ``scene.start_yaw``) or the identity, with the presets'
      field of view at ``(height, width)``.
    """
    from mirage.world.trajectories import DEFAULT_FRAMES, PRESETS, make_trajectory

    name = os.fspath(spec)
    if name in PRESETS:
        if scene is None or height is None or width is None:
            raise ConfigError(f"preset {name!r} needs `scene`, `height` and `width`")
        return make_trajectory(name, scene, DEFAULT_FRAMES if frames is None else frames, height, width, **kwargs)
    path = Path(name)
    if not path.exists():
        from mirage.world.path_grammar import GRAMMAR, is_written_path

        if is_written_path(name):
            return _written_trajectory(name, scene, DEFAULT_FRAMES if frames is None else frames, height, width)
        raise ConfigError(
            f"`trajectory` must be a preset {sorted(PRESETS)}, an existing file or a written path "
            f"({GRAMMAR}) but is {name!r}"
        )
    cameras = load_camera_file(path, height, width)
    if frames is not None and frames != len(cameras):
        raise ConfigError(f"`frames` must be None or {len(cameras)} (the file's count) for {name!r} but is {frames}")
    return cameras


def _written_trajectory(text: str, scene, frames: int, height, width) -> Camera:
    """Cameras of a written path (see :func:`load_trajectory`)."""
    from mirage.world.path_grammar import path_poses
    from mirage.world.trajectories import DEFAULT_FOV_X_DEG, level_pose

    if height is None or width is None:
        raise ConfigError(f"a written path ({text!r}) needs `height` and `width` for its intrinsics")
    start = None if scene is None else level_pose(scene.center, getattr(scene, "start_yaw", 0.0)).numpy()
    poses = torch.from_numpy(path_poses(text, frames, start))
    return Camera.from_fov(poses.float(), height, width, DEFAULT_FOV_X_DEG)
