"""Bytes on the wire and in downloads: binary messages, frames as RGB bytes, PLY points.

A binary message is ``uint32 little-endian header length | JSON header | payload``; the page
reads it with one ``DataView`` (static/js/socket.js). Frames travel as raw RGB uint8: a 64×64
frame is 12 KiB, and raw bytes cost nothing to encode or decode, which keeps a key press close
to its first frame on screen.
"""

from __future__ import annotations

import struct

import numpy as np
from pydantic import BaseModel
from torch import Tensor

from mirage.video import tint_uncovered, to_uint8  # tint_uncovered: shared with mirage generate

__all__ = ["pack", "unpack", "frames_to_rgb", "tint_uncovered", "ply_bytes"]


def pack(header: BaseModel, *payloads: bytes) -> bytes:
    """One binary message: the header's JSON, then the payloads back to back."""
    text = header.model_dump_json().encode()
    return b"".join([struct.pack("<I", len(text)), text, *payloads])


def unpack(message: bytes) -> tuple[dict, bytes]:
    """(header dict, payload) of a message made by :func:`pack` (tests and tools)."""
    import json

    (n,) = struct.unpack_from("<I", message)
    return json.loads(message[4:4 + n]), message[4 + n:]


def frames_to_rgb(frames: Tensor) -> bytes:
    """(F, 3, H, W) in [−1, 1] → F·H·W·3 bytes, row-major RGB (F, H, W, 3)."""
    x = to_uint8(frames).cpu()  # the frames leave the device here, on their way to the page
    return x.permute(0, 2, 3, 1).contiguous().numpy().tobytes()


def ply_bytes(points: np.ndarray, colors: np.ndarray) -> bytes:
    """Binary little-endian PLY of ``points`` (N, 3) float32 world xyz with ``colors`` (N, 3)
    uint8 as red/green/blue vertex properties."""
    points = np.ascontiguousarray(points, dtype="<f4").reshape(-1, 3)
    colors = np.ascontiguousarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(points) != len(colors):
        raise ValueError(f"`points` and `colors` must have the same length but have {len(points)} and {len(colors)}")
    header = ("ply\nformat binary_little_endian 1.0\ncomment mirage explore: memory points "
              "(world, OpenCV axes, y down)\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rows = np.empty(len(points), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    rows["xyz"], rows["rgb"] = points, colors
    return header.encode() + rows.tobytes()
