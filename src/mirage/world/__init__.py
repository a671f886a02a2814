"""The procedural 3D world: seeded scenes, a torch ray caster and camera presets (camera files
are read by :mod:`mirage.cameras`).

Main API::

    scene = generate_scene("room", seed=3)                   # or "courtyard"
    cams = make_trajectory("pan-return", scene, frames=33, height=128, width=128)
    out = render(scene, cams, times)                          # rgb, depth, object_id, dynamic, sky

World frame: metres, y down (OpenCV-like), floor at y = 0. Object id 0 is sky. Times are
seconds; a clip at ``fps`` has frame k at t = k / fps. See docs/design.md §2 and §6.
"""

from mirage.world.generate import generate_scene
from mirage.world.io import load_trajectory
from mirage.world.raycast import RenderOutput, render, trace_rays
from mirage.world.scene import FAMILIES, Scene, scene_from_json, scene_to_json
from mirage.world.trajectories import (
    DEFAULT_FOV_X_DEG,
    DEFAULT_FPS,
    DEFAULT_FRAMES,
    PRESETS,
    make_trajectory,
)

__all__ = [
    "FAMILIES",
    "PRESETS",
    "DEFAULT_FOV_X_DEG",
    "DEFAULT_FPS",
    "DEFAULT_FRAMES",
    "Scene",
    "RenderOutput",
    "generate_scene",
    "make_trajectory",
    "load_trajectory",
    "render",
    "trace_rays",
    "scene_to_json",
    "scene_from_json",
]
