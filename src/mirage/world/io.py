"""Readers and writers for scenes, trajectories and geometry archives.

Formats:

- **Scene JSON** (``scene.json``): :func:`~mirage.world.scene.scene_to_json`.
- **Trajectory JSON** (ours): ``{"format": "mirage-trajectory", "version": 1, "height": H,
  "width": W, "fps": f | null, "frames": [{"K": 3x3, "cam2world": 4x4}, ...]}`` in OpenCV axes
  and the pixel convention of docs/design.md §2.2. Version 2 adds ``"chunks": [{"frames": n, "seed": s | null},
  ...]``: how a session cut the walk (n new frames per chunk, summing to F − 1) and the seed each
  chunk re-seeded its sampling with, so that ``mirage generate`` replays it frame for frame. A
  file without chunks is written as version 1, so older readers still read it; a reader of
  version 1 would ignore chunks, hence the new version when they are present.
- **NeRF ``transforms.json``**: OpenGL camera axes (x right, y up, z backward), converted with
  ``cam2world_cv = cam2world_gl · diag(1, −1, −1, 1)``. Intrinsics come from ``fl_x``/``fl_y``/
  ``cx``/``cy`` (top level or per frame) or else ``camera_angle_x``; the file's principal point
  uses the nerfstudio / instant-ngp pixel-*edge* convention, so ``cx_ours = cx_file − 0.5``.
- **``geometry.npz``** (the reference implementation's layout): ``frames`` uint8 (F, H, W, 3),
  ``depths`` float32 (F, H, W) z-depth (inf = sky), ``intrinsics`` float32 (F, 3, 3),
  ``poses_c2w`` float32 (F, 4, 4), optional ``masks`` bool (F, H, W) (we store the dynamic
  mask). We add optional ``sky_masks`` bool, ``object_ids`` int32 and ``times`` float64 (F,).

Every writer writes atomically: to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage.errors import ConfigError, FileFormatError, MirageError
from mirage.files import atomic_path
from mirage.geometry import Camera
from mirage.world.scene import Scene, scene_from_json, scene_to_json

__all__ = [
    "GeometryArchive",
    "atomic_path",
    "save_scene",
    "load_scene",
    "save_trajectory_json",
    "load_trajectory_json",
    "load_trajectory_chunks",
    "save_transforms_json",
    "load_transforms_json",
    "save_geometry_npz",
    "load_geometry_npz",
    "load_trajectory",
]

TRAJECTORY_FORMAT_VERSION = 2  # 2 added "chunks"; files without chunks are still written as 1
TRAJECTORY_VERSIONS = (1, 2)
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _read_json(path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise FileFormatError(f"trajectory/scene file {str(path)!r} does not exist") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{str(path)!r} is not valid JSON: {err}") from err


def _matrix(name: str, value, shape: tuple[int, int], where: str) -> torch.Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise FileFormatError(f"{where}: `{name}` must be a {shape[0]}x{shape[1]} matrix of numbers") from err
    if tuple(m.shape) != shape:
        raise FileFormatError(f"{where}: `{name}` must have shape {shape} but has {tuple(m.shape)}")
    return m


def _camera(K, cam2world, height, width, where: str) -> Camera:
    try:
        return Camera(K.to(torch.float32), cam2world.to(torch.float32), int(height), int(width))
    except MirageError as err:
        raise FileFormatError(f"{where}: {err}") from err


# -- scene ---------------------------------------------------------------------------------
def save_scene(path, scene: Scene) -> None:
    """Write ``scene`` as JSON to ``path`` (atomically)."""
    _write_text(path, scene_to_json(scene))


def load_scene(path) -> Scene:
    try:
        text = Path(path).read_text()
    except FileNotFoundError as err:
        raise FileFormatError(f"scene file {str(path)!r} does not exist") from err
    return scene_from_json(text)


# -- our trajectory JSON ---------------------------------------------------------------------
def save_trajectory_json(path, cameras: Camera, fps: float | None = None,
                         chunks: list[dict] | None = None) -> None:
    """Write cameras (OpenCV, docs/design.md §2 pixels) as our trajectory JSON, with the session's
    ``chunks`` ([{"frames": n, "seed": int | None}], summing to F − 1) when given."""
    data = {
        "format": "mirage-trajectory",
        "version": 1 if chunks is None else TRAJECTORY_FORMAT_VERSION,
        "height": cameras.height,
        "width": cameras.width,
        "fps": fps,
        "frames": [
            {"K": K.tolist(), "cam2world": c2w.tolist()}
            for K, c2w in zip(cameras.K.double(), cameras.cam2world.double())
        ],
    }
    if chunks is not None:
        data["chunks"] = _chunks(chunks, len(cameras), "save_trajectory_json", ConfigError)
    _write_text(path, json.dumps(data, indent=1))


def _chunks(value, frames: int, where: str, error) -> list[dict]:
    """``value`` checked as a chunks list for ``frames`` cameras: [{"frames": int ≥ 1, "seed":
    int ≥ 0 | None}] whose frames sum to ``frames − 1``. (Which sizes a backbone accepts is the
    pipeline's check.)"""
    def bad(message):
        raise error(f"{where}: {message}")

    if not isinstance(value, list) or not value:
        bad("`chunks` must be a non-empty list of {\"frames\": n, \"seed\": s | null}")
    out = []
    for i, c in enumerate(value):
        if not isinstance(c, dict) or set(c) != {"frames", "seed"}:
            bad(f"`chunks[{i}]` must be {{\"frames\": n, \"seed\": s | null}} but is {c!r}")
        n, seed = c["frames"], c["seed"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            bad(f"`chunks[{i}].frames` must be an int ≥ 1 but is {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
            bad(f"`chunks[{i}].seed` must be null or an int in [0, 2**64 − 1] but is {seed!r}")
        out.append({"frames": n, "seed": seed})
    if sum(c["frames"] for c in out) != frames - 1:
        bad(f"`chunks` must add up to {frames - 1} new frames (the {frames} frames less the first) "
            f"but add up to {sum(c['frames'] for c in out)}")
    return out


def load_trajectory_json(path) -> Camera:
    """The cameras of our trajectory JSON (any version; see :func:`load_trajectory_chunks`)."""
    return _read_trajectory_json(path)[0]


def load_trajectory_chunks(path) -> list[dict] | None:
    """The ``chunks`` of our trajectory JSON ([{"frames": n, "seed": int | None}]), or None
    when it has none (version 1, or a version-2 file without them)."""
    return _read_trajectory_json(path)[1]


def _read_trajectory_json(path) -> tuple[Camera, list[dict] | None]:
    where = str(path)
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != "mirage-trajectory":
        raise FileFormatError(f"{where}: expected an object with \"format\": \"mirage-trajectory\"")
    version = data.get("version")
    if isinstance(version, bool) or version not in TRAJECTORY_VERSIONS:
        raise FileFormatError(f"{where}: `version` must be one of {TRAJECTORY_VERSIONS} but is {version!r}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise FileFormatError(f"{where}: `frames` must be a non-empty list")
    try:
        Ks = torch.stack([_matrix("K", f["K"], (3, 3), where) for f in frames])
        c2w = torch.stack([_matrix("cam2world", f["cam2world"], (4, 4), where) for f in frames])
        cameras = _camera(Ks, c2w, data["height"], data["width"], where)
    except (KeyError, TypeError) as err:
        raise FileFormatError(f"{where}: a frame or the header lacks {err}") from err
    chunks = data.get("chunks")
    if chunks is not None and version < 2:
        raise FileFormatError(f"{where}: `chunks` need `version` 2 but the file is version {version}")
    return cameras, None if chunks is None else _chunks(chunks, len(cameras), where, FileFormatError)


# -- NeRF transforms.json ------------------------------------------------------------------
def save_transforms_json(path, cameras: Camera, file_paths: list[str] | None = None) -> None:
    """Write cameras as a NeRF ``transforms.json`` (OpenGL axes, pixel-edge principal point).

    Shared intrinsics go in the header; per-frame ones are written when they differ.
    """
    K = cameras.K.double()
    shared = bool((K == K[0]).all())
    c2w_gl = cameras.cam2world.double() @ _GL_TO_CV  # the conversion is its own inverse

    def intr(k) -> dict:
        return {"fl_x": float(k[0, 0]), "fl_y": float(k[1, 1]), "cx": float(k[0, 2]) + 0.5, "cy": float(k[1, 2]) + 0.5}

    data: dict = {"w": cameras.width, "h": cameras.height}
    if shared:
        data.update(intr(K[0]))
        data["camera_angle_x"] = float(2 * torch.atan(0.5 * cameras.width / K[0, 0, 0]))
    frames = []
    for i in range(len(cameras)):
        frame = {"file_path": file_paths[i] if file_paths else f"frame_{i:05d}", "transform_matrix": c2w_gl[i].tolist()}
        if not shared:
            frame.update(intr(K[i]))
        frames.append(frame)
    data["frames"] = frames
    _write_text(path, json.dumps(data, indent=1))


def load_transforms_json(path) -> Camera:
    """Read a NeRF ``transforms.json`` into OpenCV cameras (see the module docstring)."""
    where = str(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise FileFormatError(f"{where}: a transforms.json needs a non-empty `frames` list")
    try:
        height, width = int(data["h"]), int(data["w"])
    except (KeyError, TypeError, ValueError) as err:
        raise FileFormatError(f"{where}: `h` and `w` (image size) must be given as ints") from err
    Ks, poses = [], []
    for i, frame in enumerate(data["frames"]):
        src = {**data, **frame}
        if "fl_x" in src:
            fx = float(src["fl_x"])
            fy = float(src.get("fl_y", fx))
        elif "camera_angle_x" in src:
            fx = 0.5 * width / float(np.tan(0.5 * float(src["camera_angle_x"])))
            fy = fx
        else:
            raise FileFormatError(f"{where}: frame {i} has neither `fl_x` nor `camera_angle_x`")
        cx = float(src.get("cx", width / 2)) - 0.5
        cy = float(src.get("cy", height / 2)) - 0.5
        Ks.append(torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64))
        if "transform_matrix" not in frame:
            raise FileFormatError(f"{where}: frame {i} lacks `transform_matrix`")
        poses.append(_matrix("transform_matrix", frame["transform_matrix"], (4, 4), where) @ _GL_TO_CV)
    return _camera(torch.stack(Ks), torch.stack(poses), height, width, where)


# -- geometry.npz --------------------------------------------------------------------------
@dataclass(frozen=True)
class GeometryArchive:
    """Contents of a ``geometry.npz``: frames (F, H, W, 3) uint8, depths (F, H, W) float32,
    cameras (F views), and the optional masks (dynamic), sky masks, object ids and times."""

    frames: np.ndarray
    depths: np.ndarray
    cameras: Camera
    masks: np.ndarray | None = None
    sky_masks: np.ndarray | None = None
    object_ids: np.ndarray | None = None
    times: np.ndarray | None = None


def save_geometry_npz(
    path,
    frames: np.ndarray,  # (F, H, W, 3) uint8
    depths: np.ndarray,  # (F, H, W) z-depth
    cameras: Camera,  # F views of (H, W)
    *,
    masks: np.ndarray | None = None,  # (F, H, W) bool, dynamic
    sky_masks: np.ndarray | None = None,
    object_ids: np.ndarray | None = None,
    times: np.ndarray | None = None,
) -> None:
    """Write the reference ``geometry.npz`` layout (atomically, uncompressed)."""
    F, H, W = len(cameras), cameras.height, cameras.width
    frames = np.asarray(frames)
    if frames.shape != (F, H, W, 3) or frames.dtype != np.uint8:
        raise FileFormatError(f"`frames` must be uint8 {(F, H, W, 3)} but is {frames.dtype} {frames.shape}")
    arrays = {
        "frames": frames,
        "depths": np.asarray(depths, dtype=np.float32),
        "intrinsics": cameras.K.to(torch.float32).numpy(),
        "poses_c2w": cameras.cam2world.to(torch.float32).numpy(),
    }
    extras = {"masks": (masks, bool), "sky_masks": (sky_masks, bool), "object_ids": (object_ids, np.int32)}
    for key, (value, dtype) in extras.items():
        if value is not None:
            arrays[key] = np.asarray(value, dtype=dtype)
    if times is not None:
        arrays["times"] = np.asarray(times, dtype=np.float64)
    for key in ("depths", "masks", "sky_masks", "object_ids"):
        if key in arrays and arrays[key].shape != (F, H, W):
            raise FileFormatError(f"`{key}` must have shape {(F, H, W)} but has {arrays[key].shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_geometry_npz(path) -> GeometryArchive:
    """Read a ``geometry.npz``; raises ``FileFormatError`` naming what is missing or wrong."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError as err:
        raise FileFormatError(f"geometry archive {where!r} does not exist") from err
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise FileFormatError(f"{where}: not a readable .npz archive ({err})") from err
    missing = [k for k in ("frames", "depths", "intrinsics", "poses_c2w") if k not in data]
    if missing:
        raise FileFormatError(f"{where}: geometry.npz lacks {missing}")
    frames = data["frames"]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise FileFormatError(f"{where}: `frames` must be (F, H, W, 3) but is {frames.shape}")
    F, H, W, _ = frames.shape
    for key, shape in (("depths", (F, H, W)), ("intrinsics", (F, 3, 3)), ("poses_c2w", (F, 4, 4))):
        if data[key].shape != shape:
            raise FileFormatError(f"{where}: `{key}` must have shape {shape} but has {data[key].shape}")
    cameras = _camera(torch.from_numpy(data["intrinsics"]), torch.from_numpy(data["poses_c2w"]), H, W, where)
    return GeometryArchive(
        frames=frames,
        depths=data["depths"],
        cameras=cameras,
        masks=data.get("masks"),
        sky_masks=data.get("sky_masks"),
        object_ids=data.get("object_ids"),
        times=data.get("times"),
    )


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
      (images in name order; the first image is frame 0). See
      :mod:`mirage.world.camera_formats`. Its intrinsics are rescaled (docs/design.md §2.3) to
      ``(height, width)`` when given. ``frames`` must then be ``None`` or the file's count.
    - A written path such as ``"forward 2, turn-left 30, up 0.5"``
      (:mod:`mirage.world.path_grammar`): ``frames`` (default ``DEFAULT_FRAMES``) poses from the
      scene's start pose (``scene.center``, ``scene.start_yaw``) or the identity, with the presets'
      field of view at ``(height, width)``.
    """
    from mirage.errors import ConfigError
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
    if path.is_dir():
        from mirage.world.camera_formats import read_colmap

        cameras = read_colmap(path, points=False).camera()
    elif path.suffix == ".txt":
        from mirage.world.camera_formats import read_realestate10k

        sequence = read_realestate10k(path)
        if height is None or width is None:
            raise ConfigError(f"a RealEstate10K camera file ({name!r}) has normalised intrinsics: "
                              f"`height` and `width` are needed")
        cameras = sequence.at_size(height, width).camera()
    elif path.suffix == ".npz":
        cameras = load_geometry_npz(path).cameras
    elif path.suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and data.get("format") == "mirage-trajectory":
            cameras = load_trajectory_json(path)
        elif isinstance(data, dict) and "frames" in data:
            cameras = load_transforms_json(path)
        else:
            raise FileFormatError(f"{name}: neither a mirage trajectory nor a transforms.json")
    else:
        raise FileFormatError(f"{name}: trajectory files must end in .json, .npz or .txt (RealEstate10K), "
                              f"or be a COLMAP model folder")
    if frames is not None and frames != len(cameras):
        raise ConfigError(f"`frames` must be None or {len(cameras)} (the file's count) for {name!r} but is {frames}")
    if height is not None and width is not None and (height, width) != cameras.hw:
        cameras = cameras.scaled(height, width)
    return cameras


def _written_trajectory(text: str, scene, frames: int, height, width) -> Camera:
    """Cameras of a written path (see :func:`load_trajectory`)."""
    from mirage.errors import ConfigError
    from mirage.world.path_grammar import path_poses
    from mirage.world.trajectories import DEFAULT_FOV_X_DEG, level_pose

    if height is None or width is None:
        raise ConfigError(f"a written path ({text!r}) needs `height` and `width` for its intrinsics")
    start = None if scene is None else level_pose(scene.center, getattr(scene, "start_yaw", 0.0)).numpy()
    poses = torch.from_numpy(path_poses(text, frames, start))
    return Camera.from_fov(poses.float(), height, width, DEFAULT_FOV_X_DEG)
