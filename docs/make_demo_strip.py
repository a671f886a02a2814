"""Render ``docs/demo_strip.png``: what ``make demo`` (``mirage generate`` with no arguments) makes.

Runs the default generation (tiny backbone, room 0, pan-return, 33 frames) into a scratch folder,
reads its ``side_by_side.mp4`` and lays every 4th frame out in three rows: generated, the decoded
memory read (magenta where the memory had nothing) and the ground truth.

    python docs/make_demo_strip.py [--out docs/demo_strip.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mirage.cli import main as mirage
from mirage.video import LABEL_HEIGHT

ROWS = ("generated", "memory read", "ground truth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("demo_strip.png")))
    parser.add_argument("--every", type=int, default=4, help="take every N-th frame (default 4)")
    args = parser.parse_args()
    import imageio.v2 as imageio

    with tempfile.TemporaryDirectory() as tmp:
        assert mirage(["generate", "--out", tmp, "--no-progress"]) == 0
        frames = np.stack(imageio.mimread(Path(tmp) / "side_by_side.mp4"))  # (F, 14 + S, 3·S, 3)
    frames = frames[::args.every, LABEL_HEIGHT:]
    size = frames.shape[1]
    gap, left = 2, 84
    sheet = Image.new("RGB", (left + len(frames) * (size + gap), len(ROWS) * (size + gap) + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    for r, name in enumerate(ROWS):
        draw.text((4, r * (size + gap) + size // 2 - 6), name, fill=(0, 0, 0), font=font)
        for c, frame in enumerate(frames):
            panel = frame[:, r * size:(r + 1) * size]
            sheet.paste(Image.fromarray(np.ascontiguousarray(panel)), (left + c * (size + gap), r * (size + gap)))
    for c in range(len(frames)):
        draw.text((left + c * (size + gap) + 4, len(ROWS) * (size + gap) + 2), f"frame {c * args.every}",
                  fill=(0, 0, 0), font=font)
    sheet.quantize(256, dither=Image.Dither.NONE).save(args.out, optimize=True)  # keep the file small
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
