"""``geometry.npz``, the reference implementation's clip layout: the one reader and writer.

Arrays: ``frames`` uint8 (F, H, W, 3), ``depths`` float32 (F, H, W) z-depth (inf = sky),
``intrinsics`` float32 (F, 3, 3) pixel intrinsics for (H, W) in our convention (pixel centres at
integers), ``poses_c2w`` float32 (F, 4, 4) in OpenCV axes, optional ``masks`` bool (F, H, W)
(the dynamic mask). We add optional ``sky_masks`` bool, ``object_ids`` int32 and ``times``
float64 (F,). Nothing is converted.

Reading is bounded: each array's header is read first, and an array whose declared size is larger
than its member in the archive, or than ``MAX_ARRAY_BYTES``, is refused before anything is
allocated, so a small archive cannot claim gigabytes. Object (pickled) arrays are refused.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from mirage.errors import FileFormatError, MirageError
from mirage.files import atomic_path, read_npy_header
from mirage.geometry import Camera

__all__ = ["GeometryArchive", "GEOMETRY_KEYS", "MAX_ARRAY_BYTES", "read_geometry_arrays", "load_geometry_npz",
           "load_geometry_cameras", "save_geometry_npz"]

REQUIRED = ("frames", "depths", "intrinsics", "poses_c2w")
GEOMETRY_KEYS = REQUIRED + ("masks", "sky_masks", "object_ids", "times")
MAX_ARRAY_BYTES = 4 * 2**30  # one array of a clip; a 200-frame 704x1280 clip's depths are 0.7 GiB
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError, TypeError,
               OverflowError, zipfile.BadZipFile, zlib.error, struct.error)


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


def _header(zf: zipfile.ZipFile, member: str, where: str, max_bytes: int) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of the .npy ``member``, checked against its stored size and ``max_bytes``."""
    info = zf.getinfo(member)
    key = member[:-4]
    with zf.open(info) as fh:
        shape, _, dtype = read_npy_header(fh, f"{where}: `{key}`", kinds="fiub")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > min(info.file_size, max_bytes):
        raise FileFormatError(f"{where}: `{key}` declares shape {shape} ({nbytes} bytes) but its member holds "
                              f"{info.file_size} bytes (and at most {max_bytes} are read)")
    return shape, dtype


def read_geometry_arrays(path, keys=GEOMETRY_KEYS, *, shapes_only=(), max_bytes: int = MAX_ARRAY_BYTES) -> dict:
    """The arrays ``keys`` that the ``geometry.npz`` at ``path`` holds ({key: ndarray}; absent
    keys are left out), read with the bounds of the module docstring. For a key in
    ``shapes_only`` the value is its shape (a tuple), and its data is not read."""
    where = str(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {name[:-4]: name for name in zf.namelist() if name.endswith(".npy")}
            for key in keys:
                if key not in members:
                    continue
                shape, _ = _header(zf, members[key], where, max_bytes)
                if key in shapes_only:
                    out[key] = shape
                    continue
                with zf.open(members[key]) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
    except FileNotFoundError:
        raise FileFormatError(f"geometry archive {where!r} does not exist") from None
    except MemoryError:
        raise FileFormatError(f"{where}: an array is too large to load") from None
    except _UNREADABLE as err:
        if isinstance(err, MirageError):
            raise
        raise FileFormatError(f"{where}: not a readable .npz archive ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'})") from None
    return out


def _check_shapes(data: dict, where: str) -> tuple[int, int, int]:
    """(F, H, W) of a geometry archive's arrays (or shapes), every required one present and shaped."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise FileFormatError(f"{where}: geometry.npz lacks {missing}")
    shape = lambda k: data[k] if isinstance(data[k], tuple) else data[k].shape  # noqa: E731
    frames = shape("frames")
    if len(frames) != 4 or frames[-1] != 3:
        raise FileFormatError(f"{where}: `frames` must be (F, H, W, 3) but is {frames}")
    F, H, W, _ = frames
    for key, want in (("depths", (F, H, W)), ("intrinsics", (F, 3, 3)), ("poses_c2w", (F, 4, 4))):
        if shape(key) != want:
            raise FileFormatError(f"{where}: `{key}` must have shape {want} but has {shape(key)}")
    return F, H, W


def _cameras(data: dict, H: int, W: int, where: str) -> Camera:
    try:
        K = torch.from_numpy(np.asarray(data["intrinsics"], dtype=np.float32))
        c2w = torch.from_numpy(np.asarray(data["poses_c2w"], dtype=np.float32))
        return Camera(K, c2w, int(H), int(W))
    except (MirageError, TypeError, ValueError) as err:
        raise FileFormatError(f"{where}: {err}") from None


def load_geometry_npz(path) -> GeometryArchive:
    """Read a ``geometry.npz``; raises ``FileFormatError`` naming what is missing or wrong."""
    where = str(path)
    data = read_geometry_arrays(path)
    F, H, W = _check_shapes(data, where)
    return GeometryArchive(
        frames=data["frames"],
        depths=data["depths"],
        cameras=_cameras(data, H, W, where),
        masks=data.get("masks"),
        sky_masks=data.get("sky_masks"),
        object_ids=data.get("object_ids"),
        times=data.get("times"),
    )


def load_geometry_cameras(path) -> Camera:
    """The cameras of a ``geometry.npz`` alone: frames and depths are checked by their headers
    and never read."""
    where = str(path)
    data = read_geometry_arrays(path, REQUIRED, shapes_only=("frames", "depths"))
    _, H, W = _check_shapes(data, where)
    return _cameras(data, H, W, where)


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
