"""Camera files of real footage: RealEstate10K, NeRF ``transforms.json`` and COLMAP sparse models.

Each reader returns a :class:`CameraSequence`: per-frame intrinsics and OpenCV ``cam2world`` in
float64, the frame's image name, and (COLMAP) the sparse points each frame observes. Readers do
not validate poses (``mirage data import`` validates per clip, so one NaN pose costs one clip);
:meth:`CameraSequence.camera` builds a validated :class:`~mirage.geometry.Camera`.

Conventions of the files, and the conversion to ours (docs/design.md §2: OpenCV axes, pixel centres at
integers):

- **RealEstate10K** (``.txt``): line 1 is the video URL; then one line per frame with 19 numbers:
  ``timestamp_us fx fy cx cy 0 0`` and the 3×4 ``world2cam`` matrix, row-major, OpenCV axes.
  Intrinsics are normalised by the image width (fx, cx) and height (fy, cy) with the principal
  point in pixel-*edge* coordinates (cx = 0.5 is the image centre), so for an image of (H, W)
  ``cx_ours = cx·W − 0.5``. Frames are named by their timestamp (``<timestamp_us>.png``).
- **transforms.json**: read by the same rules as :func:`mirage.world.io.load_transforms_json`
  (OpenGL axes, pixel-edge principal point). Distortion coefficients other than 0, or a
  non-pinhole ``camera_model``, are refused (undistort first).
- **COLMAP** (a folder with ``cameras``/``images``/``points3D`` as ``.bin`` or ``.txt``), read with
  ``pycolmap``: ``cam_from_world`` is ``world2cam`` in OpenCV axes; COLMAP puts the centre of the
  top-left pixel at (0.5, 0.5), so ``cx_ours = cx − 0.5`` and keypoints shift by −0.5 too. Images
  are sorted by name. Camera models with non-zero distortion are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mirage.errors import FileFormatError, MirageError
from mirage.geometry import Camera

__all__ = [
    "CameraSequence",
    "read_realestate10k",
    "write_realestate10k",
    "read_transforms",
    "read_colmap",
    "write_colmap",
    "is_colmap_model",
]

RE10K_COLUMNS = 19
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
# COLMAP camera models whose extra parameters are distortion; accepted only when those are 0
_COLMAP_MODELS = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}


@dataclass(frozen=True)
class CameraSequence:
    """One camera sequence of a file.

    names: per frame, the image name (relative path, with extension when the file gives one).
    K: (F, 3, 3) float64 pixel intrinsics at (height, width), or normalised ones (RealEstate10K:
    ``normalised`` is True and height/width are None until :meth:`at_size`).
    cam2world: (F, 4, 4) float64, OpenCV axes (not validated).
    points: per frame, (N, 3) float64 rows (u, v, z): the sparse points the frame observes, in our
    pixel coordinates, with their z-depth in that camera; None when the file has none.
    timestamps: (F,) int64 microseconds (RealEstate10K) or None.
    """

    name: str
    names: list
    K: np.ndarray
    cam2world: np.ndarray
    height: int | None
    width: int | None
    normalised: bool = False
    points: list | None = None
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def at_size(self, height: int, width: int) -> "CameraSequence":
        """Normalised intrinsics → pixels for (height, width); pixel ones are returned as they are."""
        if not self.normalised:
            return self
        K = self.K.copy()
        K[:, 0, 0] *= width
        K[:, 1, 1] *= height
        K[:, 0, 2] = K[:, 0, 2] * width - 0.5
        K[:, 1, 2] = K[:, 1, 2] * height - 0.5
        return replace(self, K=K, height=int(height), width=int(width), normalised=False)

    def camera(self, index=slice(None)) -> Camera:
        """A validated :class:`Camera` of frames ``index`` (pixel intrinsics needed)."""
        if self.normalised:
            raise FileFormatError(f"{self.name}: normalised intrinsics need an image size (`height`, `width`)")
        K = torch.from_numpy(np.ascontiguousarray(self.K[index]))
        c2w = torch.from_numpy(np.ascontiguousarray(self.cam2world[index]))
        try:
            return Camera(K.float(), c2w.float(), int(self.height), int(self.width))
        except MirageError as err:
            raise FileFormatError(f"{self.name}: {err}") from None


# -- RealEstate10K ---------------------------------------------------------------------------
def read_realestate10k(path) -> CameraSequence:
    """A RealEstate10K camera file (see the module docstring); normalised intrinsics."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, IsADirectoryError) as err:
        raise FileFormatError(f"RealEstate10K camera file {str(path)!r} does not exist") from err
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{str(path)!r} is not a text file: {err}") from err
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != RE10K_COLUMNS:
            raise FileFormatError(
                f"{str(path)!r} line {n}: a RealEstate10K camera line must have {RE10K_COLUMNS} columns "
                f"(timestamp fx fy cx cy 0 0 and a 3x4 world-to-camera matrix) but has {len(cols)}")
        try:
            rows.append([int(cols[0])] + [float(c) for c in cols[1:]])
        except ValueError as err:
            raise FileFormatError(f"{str(path)!r} line {n}: columns must be numbers ({err})") from None
    if not rows:
        raise FileFormatError(f"{str(path)!r}: a RealEstate10K camera file needs a URL line and at least one camera line")
    data = np.array([r[1:] for r in rows], dtype=np.float64)  # (F, 18)
    F = len(rows)
    K = np.zeros((F, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = data[:, 0], data[:, 1], data[:, 2], data[:, 3], 1.0
    w2c = np.tile(np.eye(4), (F, 1, 1))
    w2c[:, :3, :] = data[:, 6:].reshape(F, 3, 4)
    with np.errstate(all="ignore"):
        c2w = _rigid_inverse(w2c)
    stamps = np.array([r[0] for r in rows], dtype=np.int64)
    return CameraSequence(path.stem, [str(t) for t in stamps], K, c2w, None, None, normalised=True,
                          timestamps=stamps)


def write_realestate10k(path, cameras: Camera, timestamps, url: str = "https://example.invalid/video") -> None:
    """Write ``cameras`` as a RealEstate10K camera file (``timestamps`` in microseconds)."""
    from mirage.files import atomic_path

    H, W = cameras.hw
    K = cameras.K.double().numpy()
    w2c = _rigid_inverse(cameras.cam2world.double().numpy())
    lines = [url]
    for t, k, m in zip(timestamps, K, w2c):
        vals = [k[0, 0] / W, k[1, 1] / H, (k[0, 2] + 0.5) / W, (k[1, 2] + 0.5) / H, 0.0, 0.0, *m[:3].reshape(-1)]
        lines.append(" ".join([str(int(t))] + [repr(float(v)) for v in vals]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _rigid_inverse(m: np.ndarray) -> np.ndarray:  # (F, 4, 4) → (F, 4, 4)
    out = np.tile(np.eye(4), (len(m), 1, 1))
    R = np.swapaxes(m[:, :3, :3], 1, 2)
    out[:, :3, :3] = R
    out[:, :3, 3] = -np.einsum("fij,fj->fi", R, m[:, :3, 3])
    return out


# -- transforms.json -------------------------------------------------------------------------
def read_transforms(path, image_size: tuple[int, int] | None = None) -> CameraSequence:
    """A NeRF ``transforms.json``; ``image_size`` (H, W) stands in for a missing ``h``/``w``."""
    path = Path(path)
    where = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileFormatError(f"transforms file {where!r} does not exist") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{where!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise FileFormatError(f"{where}: a transforms.json needs a non-empty `frames` list")
    names, Ks, poses, sizes = [], [], [], set()
    for i, frame in enumerate(data["frames"]):
        src = {**data, **frame}
        model = src.get("camera_model", "OPENCV")
        if model not in ("OPENCV", "PINHOLE"):
            raise FileFormatError(f"{where}: frame {i} has `camera_model` {model!r}; only pinhole cameras "
                                  f"(OPENCV with zero distortion, PINHOLE) are supported: undistort first")
        bad = {k: src[k] for k in _DISTORTION_KEYS if float(src.get(k, 0.0) or 0.0) != 0.0}
        if bad:
            raise FileFormatError(f"{where}: frame {i} has lens distortion {bad}; mirage needs undistorted "
                                  f"pinhole frames (undistort them first, e.g. with `colmap image_undistorter`)")
        try:
            h, w = (int(src["h"]), int(src["w"])) if "h" in src and "w" in src else image_size or (None, None)
        except (TypeError, ValueError) as err:
            raise FileFormatError(f"{where}: `h` and `w` must be ints ({err})") from None
        if h is None:
            raise FileFormatError(f"{where}: frame {i} has no image size: give `h` and `w`")
        sizes.add((h, w))
        try:
            if "fl_x" in src:
                fx = float(src["fl_x"])
                fy = float(src.get("fl_y", fx))
            elif "camera_angle_x" in src:
                fx = 0.5 * w / float(np.tan(0.5 * float(src["camera_angle_x"])))
                fy = 0.5 * h / float(np.tan(0.5 * float(src["camera_angle_y"]))) if "camera_angle_y" in src else fx
            else:
                raise FileFormatError(f"{where}: frame {i} has neither `fl_x` nor `camera_angle_x`")
            cx = float(src.get("cx", w / 2)) - 0.5
            cy = float(src.get("cy", h / 2)) - 0.5
            m = np.array(frame["transform_matrix"], dtype=np.float64)
            name = str(frame["file_path"])
        except KeyError as err:
            raise FileFormatError(f"{where}: frame {i} lacks {err}") from None
        except (TypeError, ValueError) as err:
            raise FileFormatError(f"{where}: frame {i} has a malformed value ({err})") from None
        if m.shape != (4, 4):
            raise FileFormatError(f"{where}: frame {i} `transform_matrix` must be 4x4 but has shape {m.shape}")
        names.append(name[2:] if name.startswith("./") else name)
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        poses.append(m @ _GL_TO_CV)
    if len(sizes) != 1:
        raise FileFormatError(f"{where}: every frame must have one image size but the file has {sorted(sizes)}")
    (h, w), = sizes
    return CameraSequence(path.parent.name or path.stem, names, np.array(Ks), np.array(poses), h, w)


# -- COLMAP ----------------------------------------------------------------------------------
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
    return CameraSequence(path.name, [im.name for im in images], Ks, _rigid_inverse(w2c), int(h), int(w),
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
    w2c = _rigid_inverse(cameras.cam2world.double().numpy())
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
