"""RealEstate10K camera files (``.txt``): the one reader and writer.

Line 1 is the video URL; then one line per frame with 19 numbers: ``timestamp_us fx fy cx cy 0 0``
and the 3×4 ``world2cam`` matrix, row-major, in OpenCV axes (no axis change).

The intrinsics are **normalised** by the image size, fx and cx by the width W and fy and cy by
the height H, and the principal point is in pixel-*edge* coordinates: cx = 0.5 is the image
centre, which in our pixel-centre convention is the point (W − 1)/2. The **half-pixel rule** is
therefore ``cx_ours = cx·W − 0.5`` (and ``cy_ours = cy·H − 0.5``): scaling first and then moving
from edges to centres. (``cx·(W − 1)`` would be wrong: it puts cx = 0 on the first pixel's
centre rather than its left edge.) The file carries no image size, so a reader needs (H, W)
from the frames, or from the caller, before the cameras exist: :meth:`CameraSequence.at_size`.
Frames are named by their timestamp (``<timestamp_us>.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mirage.cameras.fields import read_text
from mirage.cameras.sequence import CameraSequence, pixels_to_normalised
from mirage.errors import FileFormatError
from mirage.files import atomic_path
from mirage.geometry import Camera, rigid_inverse

__all__ = ["read_realestate10k", "write_realestate10k", "RE10K_COLUMNS"]

RE10K_COLUMNS = 19
_MAX_TIMESTAMP = 2**63 - 1


def read_realestate10k(path) -> CameraSequence:
    """A RealEstate10K camera file (see the module docstring), with normalised intrinsics."""
    path = Path(path)
    where = repr(str(path))
    lines = read_text(path, "RealEstate10K camera file").splitlines()
    stamps, rows = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != RE10K_COLUMNS:
            raise FileFormatError(
                f"{where} line {n}: a RealEstate10K camera line must have {RE10K_COLUMNS} columns "
                f"(timestamp fx fy cx cy 0 0 and a 3x4 world-to-camera matrix) but has {len(cols)}")
        if not (cols[0].isascii() and cols[0].isdigit() and len(cols[0]) <= 19 and int(cols[0]) <= _MAX_TIMESTAMP):
            raise FileFormatError(f"{where} line {n}: the timestamp must be an integer in [0, 2**63 − 1] "
                                  f"microseconds but is {cols[0][:24]!r}")
        try:
            rows.append([float(c) for c in cols[1:]])
        except ValueError:
            bad = next(c for c in cols[1:] if not _is_float(c))
            raise FileFormatError(f"{where} line {n}: columns 2-19 must be numbers but one is {bad[:24]!r}") from None
        stamps.append(int(cols[0]))
    if not rows:
        raise FileFormatError(f"{where}: a RealEstate10K camera file needs a URL line and at least one camera line")
    data = np.array(rows, dtype=np.float64)  # (F, 18)
    F = len(rows)
    K = np.zeros((F, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = data[:, 0], data[:, 1], data[:, 2], data[:, 3], 1.0
    w2c = np.tile(np.eye(4), (F, 1, 1))
    w2c[:, :3, :] = data[:, 6:].reshape(F, 3, 4)
    c2w = rigid_inverse(torch.from_numpy(w2c)).numpy()
    timestamps = np.array(stamps, dtype=np.int64)
    return CameraSequence(path.stem, [str(t) for t in stamps], K, c2w, None, None, normalised=True,
                          timestamps=timestamps)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_realestate10k(path, cameras: Camera, timestamps, url: str = "https://example.invalid/video") -> None:
    """Write ``cameras`` as a RealEstate10K camera file (``timestamps`` in microseconds)."""
    H, W = cameras.hw
    K = pixels_to_normalised(cameras.K.double().numpy(), H, W)
    w2c = rigid_inverse(cameras.cam2world.double()).numpy()
    lines = [url]
    for t, k, m in zip(timestamps, K, w2c):
        vals = [k[0, 0], k[1, 1], k[0, 2], k[1, 2], 0.0, 0.0, *m[:3].reshape(-1)]
        lines.append(" ".join([str(int(t))] + [repr(float(v)) for v in vals]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
