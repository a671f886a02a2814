"""Any camera file to validated cameras: the format is told by the path, then by content."""

from __future__ import annotations

from pathlib import Path

from mirage.cameras.colmap import read_colmap
from mirage.cameras.fields import read_json
from mirage.cameras.geometry_npz import load_geometry_cameras
from mirage.cameras.realestate10k import read_realestate10k
from mirage.cameras.trajectory_json import is_trajectory_json, read_trajectory_json
from mirage.cameras.transforms import is_transforms, read_transforms
from mirage.errors import ConfigError, FileFormatError
from mirage.geometry import Camera

__all__ = ["load_camera_file", "CAMERA_FILES"]

CAMERA_FILES = ("our trajectory .json", "transforms.json", "RealEstate10K .txt", "geometry.npz",
                "COLMAP model folder")


def load_camera_file(path, height: int | None = None, width: int | None = None) -> Camera:
    """The cameras of the camera file at ``path``, at ``(height, width)`` when given.

    - a folder: a COLMAP sparse model (images in name order; the first image is frame 0);
    - ``*.txt``: a RealEstate10K camera file (normalised intrinsics: needs ``height`` and ``width``);
    - ``*.npz``: a ``geometry.npz``;
    - ``*.json``: our trajectory JSON or a NeRF ``transforms.json``, told apart by content.

    Pixel intrinsics are rescaled to ``(height, width)`` when both are given and differ from the
    file's size (the rule of :func:`mirage.geometry.rescale_intrinsics`).
    """
    path = Path(path)
    name = str(path)
    if path.is_dir():
        cameras = read_colmap(path, points=False).camera()
    elif path.suffix == ".txt":
        sequence = read_realestate10k(path)
        if height is None or width is None:
            raise ConfigError(f"a RealEstate10K camera file ({name!r}) has normalised intrinsics: "
                              f"`height` and `width` are needed")
        cameras = sequence.at_size(height, width).camera()
    elif path.suffix == ".npz":
        cameras = load_geometry_cameras(path)
    elif path.suffix == ".json":
        data = read_json(path, "trajectory file")
        if is_trajectory_json(data):
            cameras = read_trajectory_json(path, data)[0]
        elif is_transforms(data):
            cameras = read_transforms(path, data=data).camera()
        else:
            raise FileFormatError(f"{name}: neither a mirage trajectory nor a transforms.json")
    else:
        raise FileFormatError(f"{name}: camera files must end in .json, .npz or .txt (RealEstate10K), "
                              f"or be a COLMAP model folder")
    if height is not None and width is not None and (height, width) != cameras.hw:
        cameras = cameras.scaled(height, width)
    return cameras
