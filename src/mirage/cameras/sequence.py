"""A camera sequence as a file gives it: per-frame intrinsics and poses, before validation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mirage.errors import FileFormatError, MirageError
from mirage.geometry import Camera

__all__ = ["CameraSequence", "normalised_to_pixels", "pixels_to_normalised"]


def normalised_to_pixels(K: np.ndarray, height: int, width: int) -> np.ndarray:  # (F, 3, 3) → (F, 3, 3)
    """Intrinsics normalised by the image size, principal point in pixel-edge coordinates
    (cx = 0.5 is the image centre), to our pixel intrinsics: fx·W, fy·H, cx·W − 0.5, cy·H − 0.5."""
    K = np.array(K, dtype=np.float64)
    K[:, 0, 0] *= width
    K[:, 1, 1] *= height
    K[:, 0, 2] = K[:, 0, 2] * width - 0.5
    K[:, 1, 2] = K[:, 1, 2] * height - 0.5
    return K


def pixels_to_normalised(K: np.ndarray, height: int, width: int) -> np.ndarray:  # (F, 3, 3) → (F, 3, 3)
    """The inverse of :func:`normalised_to_pixels`."""
    K = np.array(K, dtype=np.float64)
    K[:, 0, 0] /= width
    K[:, 1, 1] /= height
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) / width
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) / height
    return K


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
        return replace(self, K=normalised_to_pixels(self.K, height, width), height=int(height), width=int(width),
                       normalised=False)

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
