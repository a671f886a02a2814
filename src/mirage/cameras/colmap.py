"""COLMAP sparse models: the one reader (our own, bounded) and writer (through ``pycolmap``).

A model is a folder with ``cameras``, ``images`` and ``points3D`` as ``.bin`` or ``.txt`` (the
binary files win when both are there, as in COLMAP). ``cam_from_world`` (the image's quaternion
and translation) is ``world2cam`` in OpenCV axes: no axis change. COLMAP puts the centre of the
top-left pixel at (0.5, 0.5), so ``cx_ours = cx − 0.5`` and keypoints shift by −0.5 too. Images
are sorted by name; the first is frame 0. Camera models with non-zero distortion are refused
(undistort first). The model's image size is that of its cameras.

The reader is ours rather than ``pycolmap``'s: a mutated binary model (a count of 2⁴⁰ points)
kept ``pycolmap`` looping for minutes, where this reader checks every count against the bytes
left before it reads, and refuses a malformed model in one line.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from mirage.cameras.fields import MAX_TEXT_BYTES
from mirage.cameras.sequence import CameraSequence
from mirage.errors import ConfigError, FileFormatError
from mirage.geometry import Camera, rigid_inverse

__all__ = ["read_colmap", "write_colmap", "is_colmap_model", "MAX_MODEL_BYTES"]

MAX_MODEL_BYTES = 16 * MAX_TEXT_BYTES  # per file of a model (points3D of large scenes is the largest)
# COLMAP camera model: (id, number of parameters); the pinhole ones are accepted with zero distortion
MODELS = {"SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5), "OPENCV": (4, 8),
          "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5), "SIMPLE_RADIAL_FISHEYE": (8, 4),
          "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12), "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16)}
_BY_ID = {i: (name, n) for name, (i, n) in MODELS.items()}
_PINHOLE = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}
_SINGLE_FOCAL = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"}  # f, cx, cy, ...; the others fx, fy, cx, cy, ...
_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<u8")])
_NO_POINT = 2**64 - 1  # COLMAP's invalid point3D id (-1 as uint64)


def is_colmap_model(path) -> bool:
    """True when ``path`` is a folder holding COLMAP ``cameras`` and ``images`` (.bin or .txt)."""
    p = Path(path)
    return p.is_dir() and any((p / f"cameras{e}").is_file() for e in (".bin", ".txt")) and \
        any((p / f"images{e}").is_file() for e in (".bin", ".txt"))


class _Bytes:
    """A bounded cursor over one binary model file: every read checks the bytes left."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise FileFormatError(f"{self.where}: ends at byte {len(self.data)} inside a record (truncated)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def count(self, item_bytes: int, what: str) -> int:
        (n,) = self.take("<Q")
        if n * item_bytes > len(self.data) - self.pos:
            raise FileFormatError(f"{self.where}: declares {n} {what} but only {len(self.data) - self.pos} bytes "
                                  f"follow (at least {item_bytes} each)")
        return n

    def name(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise FileFormatError(f"{self.where}: an image name is not terminated (truncated)")
        raw, self.pos = self.data[self.pos:end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{self.where}: an image name is not UTF-8") from None

    def array(self, dtype: np.dtype, n: int) -> np.ndarray:
        if self.pos + n * dtype.itemsize > len(self.data):
            raise FileFormatError(f"{self.where}: ends inside a list of {n} records (truncated)")
        out = np.frombuffer(self.data, dtype, n, self.pos)
        self.pos += n * dtype.itemsize
        return out


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise FileFormatError(f"{str(path)!r} must be at most {MAX_MODEL_BYTES} bytes but is {size}")
        return path.read_bytes()
    except OSError as err:
        raise FileFormatError(f"{str(path)!r} is unreadable ({err.strerror or err})") from None


def _text_rows(path: Path, keep_empty: bool = False) -> list[list[str]]:
    """The data lines of a model text file, split on white space (comments dropped)."""
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(f"{str(path)!r} must be UTF-8 text but is not") from None
    return [line.split() for line in text.splitlines()
            if not line.lstrip().startswith("#") and (keep_empty or line.strip())]


def _num(text: str, kind, what: str, where: str):
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        raise FileFormatError(f"{where}: {what} must be {'an integer' if kind is int else 'a number'} but is "
                              f"{text[:24]!r}") from None
    if kind is int and not 0 <= value < 2**64:
        raise FileFormatError(f"{where}: {what} must be an integer in [0, 2**64) but is {text[:24]!r}")
    return value


def _cameras(path: Path) -> dict[int, tuple[str, int, int, np.ndarray]]:
    """{camera id: (model, width, height, params)}."""
    where, out = str(path), {}
    if path.suffix == ".bin":
        buf = _Bytes(_read_bytes(path), where)
        for _ in range(buf.count(24, "cameras")):
            cam_id, model_id, width, height = buf.take("<IiQQ")
            if model_id not in _BY_ID:
                raise FileFormatError(f"{where}: camera {cam_id} has an unknown model id {model_id}")
            model, n = _BY_ID[model_id]
            out[cam_id] = (model, width, height, np.array(buf.take(f"<{n}d")))
        return out
    for row in _text_rows(path):
        if len(row) < 4 or row[1] not in MODELS or len(row) != 4 + MODELS[row[1]][1]:
            raise FileFormatError(f"{where}: a camera line must be `CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]` with a "
                                  f"known model and its parameters but is {' '.join(row)[:60]!r}")
        cam_id, width, height = (_num(row[i], int, f"camera field {i + 1}", where) for i in (0, 2, 3))
        out[cam_id] = (row[1], width, height, np.array([_num(v, float, "a parameter", where) for v in row[4:]]))
    return out


def _images(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, int, np.ndarray]]:
    """[(name, quaternion (w, x, y, z), translation, camera id, points2D (x, y, point3D id))]."""
    where, out = str(path), []
    if path.suffix == ".bin":
        buf = _Bytes(_read_bytes(path), where)
        for _ in range(buf.count(73, "images")):
            values = buf.take("<I7dI")
            name = buf.name()
            points = buf.array(_POINT2D, buf.count(_POINT2D.itemsize, "2D points"))
            out.append((name, np.array(values[1:5]), np.array(values[5:8]), values[8], points))
        return out
    rows, i = _text_rows(path, keep_empty=True), 0
    while i < len(rows):
        row = rows[i]
        if not row:
            i += 1
            continue
        if len(row) < 10:
            raise FileFormatError(f"{where}: an image line must be `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME` "
                                  f"but is {' '.join(row)[:60]!r}")
        pose = [_num(v, float, "a pose value", where) for v in row[1:8]]
        cam_id = _num(row[8], int, "CAMERA_ID", where)
        obs = rows[i + 1] if i + 1 < len(rows) else []
        if len(obs) % 3:
            raise FileFormatError(f"{where}: the points line of image {row[9][:40]!r} must hold (X, Y, POINT3D_ID) "
                                  f"triples but has {len(obs)} values")
        points = np.zeros(len(obs) // 3, _POINT2D)
        for k in range(len(points)):
            pid = obs[3 * k + 2]
            points[k] = (_num(obs[3 * k], float, "X", where), _num(obs[3 * k + 1], float, "Y", where),
                         _NO_POINT if pid == "-1" else _num(pid, int, "POINT3D_ID", where))
        out.append((" ".join(row[9:]), np.array(pose[:4]), np.array(pose[4:]), cam_id, points))
        i += 2
    return out


def _points3d(path: Path) -> dict[int, np.ndarray]:
    """{point3D id: xyz}."""
    where, out = str(path), {}
    if not path.is_file():
        return out
    if path.suffix == ".bin":
        buf = _Bytes(_read_bytes(path), where)
        for _ in range(buf.count(43, "3D points")):
            pid, x, y, z = buf.take("<Q3d")
            buf.take("<3Bd")
            buf.array(np.dtype("<u4"), 2 * buf.count(8, "track elements"))
            out[pid] = np.array([x, y, z])
        return out
    for row in _text_rows(path):
        if len(row) < 8 or (len(row) - 8) % 2:
            raise FileFormatError(f"{where}: a point line must be `POINT3D_ID X Y Z R G B ERROR TRACK[]` but is "
                                  f"{' '.join(row)[:60]!r}")
        out[_num(row[0], int, "POINT3D_ID", where)] = np.array([_num(v, float, "a coordinate", where) for v in row[1:4]])
    return out


def _quaternion_rotation(q: np.ndarray, where: str, name: str) -> np.ndarray:  # (4,) w, x, y, z → (3, 3)
    norm = math.hypot(*q.tolist())  # no overflow for huge entries
    if not (norm > 0 and math.isfinite(norm)):
        raise FileFormatError(f"{where}: image {name[:40]!r} must have a non-zero finite quaternion but has "
                              f"{q.tolist()}")
    w, x, y, z = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _colmap_K(cam_id: int, model: str, params: np.ndarray, where: str) -> np.ndarray:
    if model not in _PINHOLE:
        raise FileFormatError(f"{where}: camera {cam_id} has model {model!r}; supported: pinhole "
                              f"models {sorted(_PINHOLE)} with zero distortion (undistort first)")
    single = model in _SINGLE_FOCAL
    fx, fy, cx, cy = (params[0], params[0], params[1], params[2]) if single else params[:4]
    extra = params[3:] if single else params[4:]
    if np.any(extra != 0):
        raise FileFormatError(f"{where}: camera {cam_id} ({model}) has lens distortion {extra.tolist()}; "
                              f"undistort the images first (`colmap image_undistorter`)")
    # COLMAP: top-left pixel centre at (0.5, 0.5)
    return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])


def _model_file(path: Path, stem: str) -> Path:
    return path / f"{stem}.bin" if (path / f"{stem}.bin").is_file() or not (path / f"{stem}.txt").is_file() \
        else path / f"{stem}.txt"


def read_colmap(path, *, points: bool = True) -> CameraSequence:
    """A COLMAP sparse model (text or binary); images sorted by name.

    ``points``: also collect each image's observed sparse points as (u, v, z) rows.
    """
    path = Path(path)
    where = str(path)
    if not is_colmap_model(path):
        raise FileFormatError(f"`--cameras` {where!r} must be a COLMAP model folder with cameras.bin/.txt and "
                              f"images.bin/.txt (e.g. sparse/0)")
    cameras = _cameras(_model_file(path, "cameras"))
    images = sorted(_images(_model_file(path, "images")), key=lambda im: im[0])
    if not images:
        raise FileFormatError(f"{where}: the COLMAP model holds no registered images")
    missing = sorted({im[3] for im in images} - set(cameras))
    if missing:
        raise FileFormatError(f"{where}: images refer to cameras {missing[:8]} that the model lacks")
    sizes = {(cameras[im[3]][2], cameras[im[3]][1]) for im in images}
    if len(sizes) != 1:
        raise FileFormatError(f"{where}: every image must have one size but the model has {sorted(sizes)[:4]}")
    (h, w), = sizes
    if not (1 <= h < 2**31 and 1 <= w < 2**31):
        raise FileFormatError(f"{where}: the image size must be positive but is {h}x{w}")
    Ks = np.stack([_colmap_K(im[3], cameras[im[3]][0], cameras[im[3]][3], where) for im in images])
    w2c = np.tile(np.eye(4), (len(images), 1, 1))
    for i, (name, q, t, _, _) in enumerate(images):
        w2c[i, :3, :3] = _quaternion_rotation(q, where, name)
        w2c[i, :3, 3] = t
    per_frame = None
    if points:
        xyz = _points3d(_model_file(path, "points3D"))
        ids = np.array(sorted(xyz), dtype=np.uint64)
        table = np.stack([xyz[int(k)] for k in ids]) if len(ids) else np.zeros((0, 3))
        per_frame = []
        for i, im in enumerate(images):
            at = np.minimum(np.searchsorted(ids, im[4]["id"]), max(len(ids) - 1, 0))
            seen = (ids[at] == im[4]["id"]) if len(ids) else np.zeros(len(im[4]), bool)
            uv = np.column_stack([im[4]["x"][seen], im[4]["y"][seen]]) - 0.5
            X = table[at[seen]]
            with np.errstate(all="ignore"):  # non-finite poses are refused per clip, later
                z = X @ w2c[i, 2, :3] + w2c[i, 2, 3]
            per_frame.append(np.column_stack([uv, z]))
    return CameraSequence(path.name, [im[0] for im in images], Ks, rigid_inverse(torch.from_numpy(w2c)).numpy(),
                          int(h), int(w), points=per_frame)


def write_colmap(path, cameras: Camera, names: list[str], points_world=None, observations=None,
                 *, binary: bool = True) -> None:
    """Write a COLMAP model with ``pycolmap`` (one PINHOLE camera per frame).

    points_world: (N, 3) world points; observations: per frame, (M, 3) rows (u, v, point index)
    in our pixel coordinates. Used by tests and benchmarks to stand in for a real reconstruction.
    Needs ``pycolmap`` (``pip install pycolmap``; the ``[dev]`` extra has it).
    """
    import importlib.util

    if importlib.util.find_spec("pycolmap") is None:
        raise ConfigError("writing a COLMAP model needs pycolmap, which is not installed: pip install pycolmap "
                          "(reading one does not)")
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
