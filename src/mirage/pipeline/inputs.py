"""Loading what `mirage generate` starts from: an image (+ optional depth).

A start from a world scene, and the camera paths of a run, come from the world and are built by
the CLI (:mod:`mirage.cli.starts`): the pipeline does not import the world.

Everything here validates its input and raises a :class:`~mirage.errors.MirageError` that
names the argument, so the CLI can fail before it writes anything.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ConfigError, FileFormatError, NonFiniteError
from mirage.files import read_npy_header
from mirage.geometry import Camera

__all__ = ["StartFrame", "StartScene", "open_image", "load_image", "load_depth", "read_npy_header", "image_camera",
           "MAX_IMAGE_PIXELS", "MAX_DEPTH_BYTES"]


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


# Inputs are decoded only after their size is known to fit: an image's pixel count from its
# header, a depth array's shape and bytes from its .npy header (inside an .npz: its zip entry).
MAX_IMAGE_PIXELS = 2**25  # 33.5 MP (8192x4096, an 8K frame): about 100 MB as RGB bytes
MAX_DEPTH_BYTES = 2**28  # one depth map's stored bytes (256 MiB: 2**25 float64 values)


def _scrub(err: Exception, path: Path, label: str) -> str:
    """``err``'s text with the file's path replaced by ``label`` (a server must not show its
    temporary paths)."""
    return str(err).replace(repr(str(path)), label).replace(str(path), label)


def open_image(path, label: str, max_pixels: int = MAX_IMAGE_PIXELS):
    """``PIL.Image.open(path)``, lazily (only the header is read), refused with a
    :class:`FileFormatError` naming ``label`` when the file is missing, not an image, or has more
    than ``max_pixels`` pixels. Use it as a context manager."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{label} does not exist")
    try:
        with warnings.catch_warnings():  # Pillow warns above its own cap; ours is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:  # Pillow's own cap (above ours) refused the header
        raise FileFormatError(f"{label} has more pixels than Pillow opens; images may have at most "
                              f"{max_pixels / 1e6:.1f} MP") from None
    except UnidentifiedImageError:
        raise FileFormatError(f"{label} is not a readable image (not a format Pillow reads)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise FileFormatError(f"{label} is not a readable image: {_scrub(err, path, 'the file')}") from None
    if img.width * img.height > max_pixels:
        img.close()
        raise FileFormatError(f"{label} is {img.width}x{img.height} ({img.width * img.height / 1e6:.1f} MP) but "
                              f"images may have at most {max_pixels / 1e6:.1f} MP")
    return img


def load_image(path, size: tuple[int, int], *, label: str | None = None,
               max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[Tensor, tuple[int, int]]:
    """(3, H, W) in [−1, 1] resized to ``size`` (bilinear), and the file's (height, width).

    ``label`` names the file in errors (default: "`--image` 'PATH'"); an image of more than
    ``max_pixels`` pixels is refused before it is decoded.
    """
    from PIL import Image

    path = Path(path)
    label = label or f"`--image` {str(path)!r}"
    with open_image(path, label, max_pixels) as img:
        try:
            original = (img.height, img.width)
            img.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale when it can
            img = img.convert("RGB")
            img = img.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise FileFormatError(f"{label} is not a readable image: {_scrub(err, path, 'the file')}") from None
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0, original


def _npz_depth(path: Path, label: str, max_bytes: int, check) -> np.ndarray:
    """The (H, W) map of an .npz's ``depth`` (H, W) or frame 0 of its ``depths`` (F, H, W),
    reading only that map's bytes from the (possibly compressed) zip entry once ``check((H, W))``
    and the byte limit pass."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            key = next((k for k in ("depth", "depths") if f"{k}.npy" in names), None)
            if key is None:
                raise FileFormatError(f"{label} holds neither `depth` nor `depths`")
            with archive.open(f"{key}.npy") as fh:
                shape, fortran, dtype = read_npy_header(fh, f"{label} `{key}`")
                want = 2 if key == "depth" else 3
                if len(shape) != want or min(shape, default=0) < 1:
                    raise FileFormatError(f"{label} `{key}` must have shape "
                                          f"{'(H, W)' if want == 2 else '(F, H, W)'} but has shape {shape}")
                if fortran and want == 3:
                    raise FileFormatError(f"{label} `depths` must be stored in C order (np.savez of a "
                                          f"C-contiguous array)")
                h, w = shape[-2:]
                check((h, w))
                count = h * w
                if count * dtype.itemsize > max_bytes:
                    raise FileFormatError(f"{label} `{key}` map is {h}x{w} {dtype} "
                                          f"({count * dtype.itemsize / 2**20:.0f} MiB) but the limit is "
                                          f"{max_bytes / 2**20:.0f} MiB")
                data = fh.read(count * dtype.itemsize)
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as err:
        raise FileFormatError(f"{label} is not a readable .npz archive: {_scrub(err, path, 'the file')}") from None
    if len(data) != count * dtype.itemsize:
        raise FileFormatError(f"{label} `{key}` is truncated")
    return np.frombuffer(data, dtype).reshape((h, w), order="F" if fortran else "C")


def load_depth(path, size: tuple[int, int], *, shape: tuple[int, int] | None = None,
               label: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS,
               max_bytes: int = MAX_DEPTH_BYTES) -> Tensor:
    """(H, W) z-depth resized to ``size`` (nearest: no invented depths between surfaces).

    Formats: ``.npy`` (H, W) metres; ``.npz`` with ``depth`` (H, W) or a geometry archive's
    ``depths`` (frame 0); a 16-bit ``.png`` in millimetres (0 = invalid); a float ``.tif``/
    ``.tiff`` in metres. inf, 0 and negative values mean invalid (never written); NaN is an
    error.

    ``shape``: the (H, W) the stored map must have (its image's), checked for every format
    before the map is decoded; ``label`` names the file in errors (default "`--depth` 'PATH'").
    A map of more than ``max_pixels`` values or ``max_bytes`` stored bytes is refused unread.
    """
    path = Path(path)
    label = label or f"`--depth` {str(path)!r}"
    if not path.is_file():
        raise FileFormatError(f"{label} does not exist")
    suffix = path.suffix.lower()

    def check(found: tuple[int, ...]) -> None:
        if len(found) != 2:
            raise FileFormatError(f"{label} must be a 2D (H, W) map but has shape {found}")
        if shape is not None and tuple(found) != tuple(shape):
            raise FileFormatError(f"{label} must have the image's shape {tuple(shape)} (H, W) but has {tuple(found)}")
        if found[0] * found[1] > max_pixels:
            raise FileFormatError(f"{label} is {found[0]}x{found[1]} but depth maps may have at most "
                                  f"{max_pixels / 1e6:.1f} MP")

    if suffix == ".npy":
        try:
            with open(path, "rb") as fh:
                found, fortran, dtype = read_npy_header(fh, label)
                check(found)
                if found[0] * found[1] * dtype.itemsize > max_bytes:
                    raise FileFormatError(f"{label} is {found[0]}x{found[1]} {dtype}; the limit is "
                                          f"{max_bytes / 2**20:.0f} MiB")
                array = np.fromfile(fh, dtype=dtype, count=found[0] * found[1])
        except OSError as err:
            raise FileFormatError(f"{label} is not readable: {_scrub(err, path, 'the file')}") from None
        if array.size != found[0] * found[1]:
            raise FileFormatError(f"{label} is truncated")
        array = array.reshape(found, order="F" if fortran else "C")
    elif suffix == ".npz":
        array = _npz_depth(path, label, max_bytes, check)
    elif suffix in (".png", ".tif", ".tiff"):
        with open_image(path, label, max_pixels) as img:
            check((img.height, img.width))
            if suffix == ".png" and img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise FileFormatError(f"{label} must be a 16-bit PNG in millimetres but has mode {img.mode}")
            try:
                array = np.asarray(img)  # uint16 / int32 (PNG), float32 (TIFF 'F'): never float64
            except (OSError, ValueError, SyntaxError) as err:
                raise FileFormatError(f"{label} is not readable: {_scrub(err, path, 'the file')}") from None
        if array.ndim != 2:
            raise FileFormatError(f"{label} must be a single-channel map but has shape {array.shape}")
        if suffix == ".png":
            mm = array.astype(np.float32)
            array = np.where(mm > 0, mm / 1000.0, np.float32(np.inf)).astype(np.float32)
    else:
        raise FileFormatError(
            f"{label} must be a .npy, .npz, 16-bit .png (mm) or float .tif (m) file"
        )
    depth = torch.from_numpy(np.array(array, dtype=np.float32))
    nan = int(torch.isnan(depth).sum())
    if nan:
        raise NonFiniteError(f"{label} holds {nan} NaN value(s); mark invalid depth with 0 or inf instead")
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
