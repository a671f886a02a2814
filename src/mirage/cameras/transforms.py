"""NeRF ``transforms.json`` (instant-ngp, nerfstudio): the one reader and writer.

The file's conventions and our conversion:

- **Axes.** ``transform_matrix`` is cam2world in OpenGL camera axes (x right, y up, z backward).
  Ours are OpenCV (x right, y down, z forward): ``cam2world_cv = cam2world_gl · diag(1, −1, −1, 1)``,
  i.e. the y and z columns change sign (done as a column sign flip, which is exact).
- **Principal point.** ``cx``/``cy`` are in pixel-*edge* coordinates (the image centre is
  ``w/2``); ours put pixel centres at integers, so ``cx_ours = cx − 0.5``. Missing, they default
  to the image centre.
- **Focal length.** ``fl_x`` and ``fl_y`` in pixels; else ``camera_angle_x`` (the horizontal field
  of view, radians): ``fx = w / (2·tan(angle_x / 2))``; likewise ``fy`` from ``camera_angle_y``
  and ``h``. When the file gives only x, pixels are square (``fy = fx``). instant-ngp writes
  ``camera_angle_y`` beside ``camera_angle_x`` for non-square pixels, so reading it is the
  faithful rule; ignoring it would give the wrong ``fy``.
- **Lens.** mirage projects through a pinhole: a ``camera_model`` other than ``OPENCV`` or
  ``PINHOLE``, or a non-zero distortion coefficient (``k1``–``k4``, ``p1``, ``p2``), is refused
  rather than silently ignored (undistort the frames first).
- **Per frame.** Any of these keys may sit on a frame, where it overrides the file's top level;
  every frame must end with one image size (``h``, ``w``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from mirage.cameras.fields import MAX_SIDE, integer, mapping, matrix, number, read_json
from mirage.cameras.sequence import CameraSequence
from mirage.errors import FileFormatError
from mirage.files import atomic_path
from mirage.geometry import Camera

__all__ = ["read_transforms", "load_transforms_json", "save_transforms_json", "is_transforms"]

GL_TO_CV = np.array([1.0, -1.0, -1.0, 1.0])  # column signs: OpenGL ↔ OpenCV camera axes
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_PINHOLE_MODELS = ("OPENCV", "PINHOLE")


def is_transforms(data) -> bool:
    """True when a parsed JSON document looks like a transforms.json (an object with ``frames``)."""
    return isinstance(data, dict) and "frames" in data


def read_transforms(path, image_size: tuple[int, int] | None = None, data=None) -> CameraSequence:
    """A NeRF ``transforms.json`` (see the module docstring); ``image_size`` (H, W) stands in for
    a missing ``h``/``w``. ``data``: the parsed document, when the caller has read it already."""
    path = Path(path)
    where = str(path)
    if data is None:
        data = read_json(path, "transforms file")
    data = mapping(data, "transforms.json", where)
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise FileFormatError(f"{where}: a transforms.json needs a non-empty `frames` list")
    names, Ks, poses, sizes = [], [], [], set()
    for i, frame in enumerate(frames):
        frame = mapping(frame, f"frames[{i}]", where)
        src = {**data, **frame}
        at = f"{where}: frame {i}"

        model = src.get("camera_model", "OPENCV")
        if model not in _PINHOLE_MODELS:
            raise FileFormatError(f"{at}: `camera_model` must be one of {_PINHOLE_MODELS} (pinhole: undistort "
                                  f"first) but is {model!r}" if isinstance(model, str) else
                                  f"{at}: `camera_model` must be one of {_PINHOLE_MODELS} but is not a string")
        bad = {k: number(src[k], k, at) for k in _DISTORTION_KEYS if src.get(k) is not None}
        bad = {k: v for k, v in bad.items() if v != 0.0}
        if bad:
            raise FileFormatError(f"{at} has lens distortion {bad}; mirage needs undistorted pinhole frames "
                                  f"(undistort them first, e.g. with `colmap image_undistorter`)")
        if "h" in src and "w" in src:
            h, w = integer(src["h"], "h", at, 1, MAX_SIDE), integer(src["w"], "w", at, 1, MAX_SIDE)
        elif image_size is not None:
            h, w = image_size
        else:
            raise FileFormatError(f"{at} has no image size: give `h` and `w`")
        sizes.add((h, w))

        fx = _focal(src, "x", w, at)
        if fx is None:
            raise FileFormatError(f"{at} has neither `fl_x` nor `camera_angle_x`")
        fy = _focal(src, "y", h, at)
        fy = fx if fy is None else fy  # square pixels unless the file says otherwise
        cx = (number(src["cx"], "cx", at) if "cx" in src else w / 2) - 0.5
        cy = (number(src["cy"], "cy", at) if "cy" in src else h / 2) - 0.5
        if "transform_matrix" not in frame:
            raise FileFormatError(f"{at} lacks `transform_matrix`")
        m = matrix(frame["transform_matrix"], (4, 4), "transform_matrix", at)
        name = frame.get("file_path", f"frame_{i:05d}")
        if not isinstance(name, str):
            raise FileFormatError(f"{at}: `file_path` must be a string but is {type(name).__name__}")
        names.append(name[2:] if name.startswith("./") else name)
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        poses.append(m * GL_TO_CV)
    if len(sizes) != 1:
        raise FileFormatError(f"{where}: every frame must have one image size but the file has {sorted(sizes)}")
    (h, w), = sizes
    return CameraSequence(path.parent.name or path.stem, names, np.array(Ks), np.array(poses), h, w)


def _focal(src: dict, axis: str, side: int, at: str) -> float | None:
    """The focal length along ``axis`` ("x" or "y"): ``fl_<axis>`` in pixels, else from the field
    of view ``camera_angle_<axis>`` and the image ``side`` (w or h), else None."""
    if f"fl_{axis}" in src:
        return number(src[f"fl_{axis}"], f"fl_{axis}", at, positive=True)
    if f"camera_angle_{axis}" in src:
        angle = number(src[f"camera_angle_{axis}"], f"camera_angle_{axis}", at, positive=True, below=math.pi)
        return 0.5 * side / math.tan(0.5 * angle)
    return None


def load_transforms_json(path) -> Camera:
    """The validated cameras of a NeRF ``transforms.json`` (OpenCV axes, our pixel centres)."""
    return read_transforms(path).camera()


def save_transforms_json(path, cameras: Camera, file_paths: list[str] | None = None) -> None:
    """Write cameras as a NeRF ``transforms.json`` (OpenGL axes, pixel-edge principal point).

    Shared intrinsics go in the header; per-frame ones are written when they differ.
    """
    K = cameras.K.double()
    shared = bool((K == K[0]).all())
    c2w_gl = cameras.cam2world.double() * torch.from_numpy(GL_TO_CV)  # the conversion is its own inverse

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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
