"""COLMAP sparse models: the one reader and writer (through ``pycolmap``).

A model is a folder with ``cameras``, ``images`` and ``points3D`` as ``.bin`` or ``.txt``.
``cam_from_world`` is ``world2cam`` in OpenCV axes (no axis change). COLMAP puts the centre of the
top-left pixel at (0.5, 0.5), so ``cx_ours = cx − 0.5`` and keypoints shift by −0.5 too. Images
are sorted by name; the first is frame 0. Camera models with non-zero distortion are refused
(undistort first). The model's image size is that of its cameras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mirage.cameras.sequence import CameraSequence
from mirage.errors import FileFormatError
from mirage.geometry import Camera, rigid_inverse

__all__ = ["read_colmap", "write_colmap", "is_colmap_model"]

# COLMAP camera models whose extra parameters are distortion; accepted only when those are 0
_COLMAP_MODELS = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}


def is_colmap_model(path) -> bool:
    """True when ``path`` is a folder holding COLMAP ``cameras`` and ``images`` (.bin or .txt)."""
    p = Path(path)
    return p.is_dir() and any((p / f"cameras{e}").is_file() for e in (".bin", ".txt")) and \
        any((p / f"images{e}").is_file() for e in (".bin", ".txt"))


def _colmap_K(cam, where: str) -> np.ndarray:
    model = cam.model_name if hasattr(cam, "model_name") else str(cam.model)
    params = np.asarray(cam.params, dtype=np.float64)
    if model not in _COLMAP_MODELS:
        raise FileFormatError(f"{where}: camera {cam.camera_id} has model {model!r}; supported: pinhole "
                              f"models {sorted(_COLMAP_MODELS)} with zero distortion (undistort first)")
    extra = params[list(cam.extra_params_idxs())]
    if np.any(extra != 0):
        raise FileFormatError(f"{where}: camera {cam.camera_id} ({model}) has lens distortion {extra.tolist()}; "
                              f"undistort the images first (`colmap image_undistorter`)")
    K = np.asarray(cam.calibration_matrix(), dtype=np.float64).copy()
    K[0, 2] -= 0.5  # COLMAP: top-left pixel centre at (0.5, 0.5)
    K[1, 2] -= 0.5
    return K


def read_colmap(path, *, points: bool = True) -> CameraSequence:
    """A COLMAP sparse model (text or binary) through ``pycolmap``; images sorted by name.

    ``points``: also collect each image's observed sparse points as (u, v, z) rows.
    """
    path = Path(path)
    where = str(path)
    if not is_colmap_model(path):
        raise FileFormatError(f"`--cameras` {where!r} must be a COLMAP model folder with cameras.bin/.txt and "
                              f"images.bin/.txt (e.g. sparse/0)")
    try:
        import pycolmap
    except ImportError as err:
        raise FileFormatError("reading COLMAP models needs the `pycolmap` package: "
                              "pip install 'mirage-world[data]'") from err
    try:
        rec = pycolmap.Reconstruction(str(path))
    except Exception as err:  # pycolmap raises RuntimeError/ValueError with COLMAP's message
        raise FileFormatError(f"{where}: not a readable COLMAP model ({err})") from None
    images = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not images:
        raise FileFormatError(f"{where}: the COLMAP model holds no registered images")
    sizes = {(rec.cameras[im.camera_id].height, rec.cameras[im.camera_id].width) for im in images}
    if len(sizes) != 1:
        raise FileFormatError(f"{where}: every image must have one size but the model has {sorted(sizes)}")
    (h, w), = sizes
    Ks = np.stack([_colmap_K(rec.cameras[im.camera_id], where) for im in images])
    w2c = np.tile(np.eye(4), (len(images), 1, 1))
    for i, im in enumerate(images):
        pose = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world  # a method in pycolmap 4
        w2c[i, :3] = np.asarray(pose.matrix(), dtype=np.float64)
    per_frame = None
    if points:
        xyz = {pid: p.xyz for pid, p in rec.points3D.items()}
        per_frame = []
        for i, im in enumerate(images):
            obs = [(p2.xy, xyz[p2.point3D_id]) for p2 in im.points2D if p2.has_point3D() and p2.point3D_id in xyz]
            if not obs:
                per_frame.append(np.zeros((0, 3)))
                continue
            uv = np.array([o[0] for o in obs], dtype=np.float64) - 0.5
            X = np.array([o[1] for o in obs], dtype=np.float64)
            z = X @ w2c[i, 2, :3] + w2c[i, 2, 3]
            per_frame.append(np.column_stack([uv, z]))
    return CameraSequence(path.name, [im.name for im in images], Ks, rigid_inverse(torch.from_numpy(w2c)).numpy(), int(h), int(w),
                          points=per_frame)


def write_colmap(path, cameras: Camera, names: list[str], points_world=None, observations=None,
                 *, binary: bool = True) -> None:
    """Write a COLMAP model with ``pycolmap`` (one PINHOLE camera per frame).

    points_world: (N, 3) world points; observations: per frame, (M, 3) rows (u, v, point index)
    in our pixel coordinates. Used by tests and benchmarks to stand in for a real reconstruction.
    """
    import pycolmap

    H, W = cameras.hw
    rec = pycolmap.Reconstruction()
    K = cameras.K.double().numpy()
    w2c = rigid_inverse(cameras.cam2world.double()).numpy()
    tracks: dict[int, list] = {}
    for i in range(len(cameras)):
        cam = pycolmap.Camera.create_from_model_name(i + 1, "PINHOLE", 1.0, W, H)
        cam.params = [K[i, 0, 0], K[i, 1, 1], K[i, 0, 2] + 0.5, K[i, 1, 2] + 0.5]
        rec.add_camera_with_trivial_rig(cam)
        obs = np.zeros((0, 3)) if observations is None else np.asarray(observations[i], dtype=np.float64)
        image = pycolmap.Image(name=names[i], keypoints=obs[:, :2] + 0.5, camera_id=i + 1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[i, :3]))
        for j, pid in enumerate(obs[:, 2].astype(int)):
            tracks.setdefault(int(pid), []).append((i + 1, j))
    for pid in sorted(tracks):
        track = pycolmap.Track()
        for image_id, idx in tracks[pid]:
            track.add_element(image_id, idx)
        rec.add_point3D(np.asarray(points_world[pid], dtype=np.float64), track)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (rec.write_binary if binary else rec.write_text)(str(path))
