"""The bytes of a 5-chunk pan at Wan2.2's size, by token dtype, with and without the far field (issue 28).

    python benchmarks/pan_bytes.py --out benchmarks/results/world-scale

The pan of issue 28: 704×1280 frames, 41 latent frames (5 chunks of 9 sharing one frame, as
Wan2.2's 33-frame chunks), the box room's exact depth with the top quarter of every frame sky
(no depth), 48-channel random tokens, written chunk by chunk through
``LatentSpatialMemory(48, far_field=True)`` (and without the far field). Prints and writes
``pan_bytes.json``: points, far-field cells, and the bytes of each part.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.memory import LatentSpatialMemory

H, W, FRAMES, CHUNK = 704, 1280, 41, 9


def build_pan(dtype=torch.float32, far_field: bool = True, degrees: float = 120.0) -> LatentSpatialMemory:
    """The issue's 5-chunk pan written into a fresh memory (the camera pans ``degrees`` away and
    back, :func:`mirage.bench.box_room.pan_path`)."""
    cams = pan_path(FRAMES, H, W, degrees=degrees)
    gen = torch.Generator().manual_seed(0)
    memory = LatentSpatialMemory(48, far_field=far_field, dtype=dtype)
    for a in range(0, FRAMES - 1, CHUNK - 1):
        ids = list(range(a, a + CHUNK))
        depth = BoxRoom().depth(cams[ids])
        depth[:, : H // 4] = float("inf")  # the top quarter is sky
        latents = torch.randn(CHUNK, 48, H // 16, W // 16, generator=gen)
        memory.write(latents, depth, cams[ids], frame_ids=ids)
    return memory


def parts(memory) -> dict:
    far = memory.far
    return {"points": memory.num_points, "far_cells": far.num_written if far is not None else 0,
            "bytes": memory.nbytes, "MiB": memory.nbytes / 2**20,
            "far_bytes": far.nbytes if far is not None else 0, "covisibility_bytes": memory.covisibility.nbytes,
            "bytes_per_point": (memory.nbytes - (far.nbytes if far is not None else 0)
                                - memory.covisibility.nbytes) / max(memory.num_points, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--dtypes", nargs="*", default=["float32", "float16", "bfloat16"])
    p.add_argument("--far-field", nargs="*", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--degrees", type=float, nargs="*", default=[120.0, 250.0],
                   help="pan angles (the issue does not give its own; 250 gives about its 17,600 points)")
    args = p.parse_args(argv)
    rows = []
    for degrees, dtype, far in itertools.product(args.degrees, args.dtypes, args.far_field):
        row = ({"degrees": degrees, "dtype": dtype, "far_field": far == "on"}
               | parts(build_pan(getattr(torch, dtype), far == "on", degrees)))
        rows.append(row)
        print(row, flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pan_bytes.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
