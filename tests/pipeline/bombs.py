"""Small files that claim (or decompress to) huge contents, for the input-limit tests.

``png_header`` writes a valid PNG signature and header for any size with almost no pixel data:
a loader that decodes before checking the size fails on it (or allocates the whole image), one
that checks the header first refuses it at once. ``npz_claiming`` writes an .npz whose member's
.npy header claims a large shape. ``zero_png`` / ``zero_npz`` are real decompression bombs
(every byte decodes), streamed so that writing them stays small.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

import numpy as np

MODES = {"RGB": (8, 2), "L": (8, 0), "I;16": (16, 0)}  # (bit depth, PNG colour type)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(path, width: int, height: int, mode: str = "RGB") -> None:
    """A PNG that says it is ``width``×``height`` but holds one compressed row of zeros."""
    depth, colour = MODES[mode]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + _chunk(b"IEND", b""))


def zero_png(path, width: int, height: int, mode: str = "RGB") -> None:
    """A real all-zero PNG (every row decodes), compressed row by row: tiny on disk."""
    depth, colour = MODES[mode]
    channels = 3 if colour == 2 else 1
    row = b"\0" * (1 + width * channels * depth // 8)
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(height)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                + _chunk(b"IEND", b""))


def _npy_header(shape, dtype="<f4") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def npz_claiming(path, key: str, shape, payload: bytes = b"") -> None:
    """An .npz whose ``key`` member states ``shape`` (float32) and holds ``payload`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{key}.npy", _npy_header(shape) + payload)


def zero_npz(path, key: str, shape) -> None:
    """A real .npz of float32 zeros of ``shape``, deflated while streamed (a zip bomb)."""
    n = int(np.prod(shape)) * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(f"{key}.npy", "w", force_zip64=True) as f:
            f.write(_npy_header(shape))
            block = b"\0" * (1 << 24)
            for start in range(0, n, len(block)):
                f.write(block[: min(len(block), n - start)])
