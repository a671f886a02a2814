"""Render ``docs/world_contact_sheet.png``: a few scenes of each procedural-world family.

Each row is one scene: four views along its ``pan-return`` preset (start, two turned views and
the far end of the turn) and a depth map of the start view. Rooms first, then courtyards.

    python docs/make_contact_sheet.py [--out docs/world_contact_sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mirage.world import generate_scene, make_trajectory, render

H, W = 120, 160


def _depth_rgb(depth: torch.Tensor) -> np.ndarray:
    """Inverse depth as gray (near = bright); sky (inf) in blue."""
    inv = torch.where(torch.isfinite(depth), 1.0 / depth, torch.zeros_like(depth))
    inv = inv / inv.max().clamp_min(1e-6)
    gray = (inv * 255).round().to(torch.uint8).numpy()
    out = np.stack([gray] * 3, -1)
    out[~np.isfinite(depth.numpy())] = (40, 60, 140)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("world_contact_sheet.png")))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    labels = []
    for family in ("room", "courtyard"):
        for seed in args.seeds:
            scene = generate_scene(family, seed, moving=1)
            cams = make_trajectory("pan-return", scene, 17, H, W)
            pick = [0, 3, 6, 8]
            out = render(scene, _subset(cams, pick),
                         torch.tensor(pick, dtype=torch.float64) / 16, ssaa=2)
            frames = ((out.rgb.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            tiles = list(frames) + [_depth_rgb(out.depth[0])]
            rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1))
            labels.append(f"{family} seed {seed}")
    sheet = Image.fromarray(np.concatenate(rows, 0))
    draw = ImageDraw.Draw(sheet)
    for k, label in enumerate(labels):
        draw.text((6, k * (H + 4) + 4), label, fill=(255, 255, 255))
    sheet.quantize(256, dither=Image.Dither.NONE).save(args.out, optimize=True)  # keep the file small
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


def _subset(cams, index):
    from mirage.geometry import Camera

    return Camera(cams.K[index], cams.cam2world[index], cams.height, cams.width)


if __name__ == "__main__":
    main()
