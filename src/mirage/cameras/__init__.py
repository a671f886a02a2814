"""Camera files: one reader and one writer per format, outside the procedural world.

Every format is converted on reading to mirage's conventions (OpenCV camera axes: x right, y
down, z forward; pixel intrinsics for a stated (height, width) with pixel centres at integer
coordinates) and back on writing; ``docs/cameras.md`` gives each format's own conventions. Both
``mirage generate --trajectory`` and ``mirage data import`` read through these readers, and every
reader refuses a malformed file with a one-line :class:`~mirage.errors.FileFormatError`.

=====================  =====================================  ======================================
format                 read                                   write
=====================  =====================================  ======================================
our trajectory JSON    :func:`load_trajectory_json`           :func:`save_trajectory_json`
NeRF transforms.json   :func:`read_transforms`                :func:`save_transforms_json`
RealEstate10K .txt     :func:`read_realestate10k`             :func:`write_realestate10k`
COLMAP sparse model    :func:`read_colmap`                    :func:`write_colmap`
geometry.npz           :func:`load_geometry_npz`              :func:`save_geometry_npz`
any of them            :func:`load_camera_file`
=====================  =====================================  ======================================
"""

from mirage.cameras.colmap import is_colmap_model, read_colmap, write_colmap
from mirage.cameras.dispatch import load_camera_file
from mirage.cameras.geometry_npz import GeometryArchive, load_geometry_cameras, load_geometry_npz, save_geometry_npz
from mirage.cameras.realestate10k import read_realestate10k, write_realestate10k
from mirage.cameras.sequence import CameraSequence
from mirage.cameras.trajectory_json import load_trajectory_chunks, load_trajectory_json, save_trajectory_json
from mirage.cameras.transforms import load_transforms_json, read_transforms, save_transforms_json

__all__ = [
    "CameraSequence",
    "GeometryArchive",
    "load_camera_file",
    "load_trajectory_json",
    "load_trajectory_chunks",
    "save_trajectory_json",
    "read_transforms",
    "load_transforms_json",
    "save_transforms_json",
    "read_realestate10k",
    "write_realestate10k",
    "read_colmap",
    "write_colmap",
    "is_colmap_model",
    "load_geometry_npz",
    "load_geometry_cameras",
    "save_geometry_npz",
]
