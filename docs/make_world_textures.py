"""Rebuild the photographic textures in ``src/mirage/world/assets/`` from scikit-image's samples.

The procedural world ships six small photo textures so that it needs no runtime dependency
beyond Pillow. They are downsampled crops of images bundled in the scikit-image wheel, all
CC0 or public domain (see ``src/mirage/world/assets/SOURCES.md``):

    pip download --no-deps scikit-image==0.26.0 -d /tmp/skw
    python docs/make_world_textures.py /tmp/skw/scikit_image-0.26.0-*.whl

The wheel is read as a zip file; scikit-image itself is never imported.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

SIZE = 64
ASSETS = Path(__file__).resolve().parents[1] / "src" / "mirage" / "world" / "assets"

# name in the wheel -> (output name, crop box as fractions (left, top, right, bottom), mode)
SOURCES = {
    "brick.png": ("brick", (0.0, 0.0, 1.0, 1.0), "L"),
    "grass.png": ("grass", (0.0, 0.0, 0.5, 0.5), "L"),
    "gravel.png": ("gravel", (0.0, 0.0, 0.5, 0.5), "L"),
    "coffee.png": ("coffee", (0.25, 0.15, 0.65, 0.75), "RGB"),
    "chelsea.png": ("chelsea", (0.2, 0.0, 0.75, 0.9), "RGB"),
    "astronaut.png": ("astronaut", (0.0, 0.0, 0.5, 0.5), "RGB"),
}


def main(wheel: str) -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for src, (name, box, mode) in SOURCES.items():
            img = Image.open(io.BytesIO(zf.read(f"skimage/data/{src}"))).convert(mode)
            w, h = img.size
            crop = img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))
            crop.resize((SIZE, SIZE), Image.LANCZOS).save(ASSETS / f"{name}.png", optimize=True)
            print(f"wrote {name}.png from {src}")


if __name__ == "__main__":
    main(sys.argv[1])
