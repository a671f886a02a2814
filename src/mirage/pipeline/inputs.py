"""Loading what `mirage generate` starts from: an image (+ optional depth).

A start from a world scene, and the camera paths of a run, come from the world and are built by
the CLI (:mod:`mirage.cli.starts`): the pipeline does not import the world.

Everything here validates its input and raises a :class:`~mirage.errors.MirageError` that
names the argument, so the CLI can fail before it writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ConfigError, FileFormatError, NonFiniteError
from mirage.geometry import Camera

__all__ = ["StartFrame", "StartScene", "load_image", "load_depth", "image_camera"]


@runtime_checkable
class StartScene(Protocol):
    """What the pipeline may know of the world a start was rendered from (a
    :class:`mirage.world.Scene` provides it): the pipeline only carries it to the oracle depth
    estimator and masker, which the world supplies and which render it."""

    family: str
    seed: int
    center: tuple[float, float, float]
    start_yaw: float


@dataclass(frozen=True)
class StartFrame:
    """The first frame and what is known about it.

    image: (3, H, W) in [−1, 1]. depth: (H, W) z-depth or None (estimate it).
    exclude: (H, W) bool never-write mask or None. cameras: the F cameras at (H, W).
    ground_truth: (F, 3, H, W) in [−1, 1] when the world renders it, else None.
    """

    image: Tensor
    depth: Tensor | None
    exclude: Tensor | None
    cameras: Camera
    ground_truth: Tensor | None = None
    scene: StartScene | None = None
    fps: float = 16.0


def load_image(path, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """(3, H, W) in [−1, 1] resized to ``size`` (bilinear), and the file's (height, width)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            original = (img.height, img.width)
            img = img.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32)
    except FileNotFoundError:
        raise FileFormatError(f"`--image` {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise FileFormatError(f"`--image` {str(path)!r} is not a readable image: {err}") from None
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0, original


def load_depth(path, size: tuple[int, int]) -> Tensor:
    """(H, W) z-depth resized to ``size`` (nearest: no invented depths between surfaces).

    Formats: ``.npy`` (H, W) metres; ``.npz`` with ``depth`` (H, W) or a geometry archive's
    ``depths`` (frame 0); a 16-bit ``.png`` in millimetres (0 = invalid); a float ``.tif``/
    ``.tiff`` in metres. inf, 0 and negative values mean invalid (never written); NaN is an
    error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"`--depth` {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "depth" in npz.files:
                    array = npz["depth"]
                elif "depths" in npz.files:
                    array = npz["depths"][0]
                else:
                    raise FileFormatError(f"`--depth` {str(path)!r} holds neither `depth` nor `depths`")
        elif suffix in (".png", ".tif", ".tiff"):
            from PIL import Image

            with Image.open(path) as img:
                array = np.asarray(img, dtype=np.float64)
            if suffix == ".png":
                array = np.where(array > 0, array / 1000.0, np.inf)
        else:
            raise FileFormatError(
                f"`--depth` must be a .npy, .npz, 16-bit .png (mm) or float .tif (m) file but is {str(path)!r}"
            )
    except FileFormatError:
        raise
    except Exception as err:
        raise FileFormatError(f"`--depth` {str(path)!r} is not readable: {err}") from None
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise FileFormatError(f"`--depth` must be a 2D (H, W) map but has shape {array.shape}")
    depth = torch.from_numpy(array.copy())
    if torch.isnan(depth).any():
        raise NonFiniteError(
            f"`--depth` {str(path)!r} holds {int(torch.isnan(depth).sum())} NaN value(s); mark "
            f"invalid depth with 0 or inf instead"
        )
    depth = torch.where(depth > 0, depth, torch.full_like(depth, float("inf")))
    return F.interpolate(depth[None, None], size=size, mode="nearest")[0, 0]


def image_camera(original_hw: tuple[int, int], size: tuple[int, int], fov_deg: float = 60.0,
                 intrinsics: tuple[float, float, float, float] | None = None) -> Tensor:
    """(3, 3) K at ``size`` for an image of ``original_hw``: from ``intrinsics`` (fx, fy, cx, cy
    in the original image's pixels, rescaled by docs/design.md §2.3) or a horizontal field of view."""
    from mirage.geometry import rescale_intrinsics

    if intrinsics is None:
        return Camera.from_fov(torch.eye(4)[None], size[0], size[1], fov_deg).K[0]
    fx, fy, cx, cy = intrinsics
    if not (fx > 0 and fy > 0):
        raise ConfigError(f"`--intrinsics` must have fx > 0 and fy > 0 but are {fx}, {fy}")
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return rescale_intrinsics(K, original_hw, size)
