"""Surface materials and their textures, evaluated analytically on surface UVs.

A :class:`Material` is a texture kind plus two colours and a UV transform. Surface UVs are in
world units (see ``render.py`` for how each primitive maps a hit point to UV), so a texture
keeps its physical size whatever the image resolution. Every texture is a pure function of
(UV, material), which is what makes shading view-independent: the same surface point has the
same albedo from every camera.

Kinds:

- ``checker``: alternating squares of ``color_a`` and ``color_b``;
- ``stripes``: smooth sinusoidal stripes between the two colours;
- ``tiles``: running-bond tiles of ``color_a`` with per-tile brightness jitter and
  ``color_b`` grout;
- ``noise``: two octaves of value noise between the two colours;
- ``gradient``: a triangle-wave ramp between the two colours;
- ``photo``: one of the shipped photographs (``PHOTO_NAMES``), tiled. Grayscale photos are
  tinted from ``color_b`` (dark) to ``color_a`` (bright); colour photos are used as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from mirage.errors import ConfigError

__all__ = [
    "TEXTURE_KINDS",
    "PHOTO_NAMES",
    "Material",
    "MaterialTable",
    "load_photos",
    "evaluate_albedo",
]

TEXTURE_KINDS = ("checker", "stripes", "tiles", "noise", "gradient", "photo")
PHOTO_NAMES = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut")
PHOTO_SIZE = 64  # every shipped photo is PHOTO_SIZE x PHOTO_SIZE


def _check_color(name: str, color) -> tuple[float, float, float]:
    color = tuple(float(c) for c in color)
    if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
        raise ConfigError(f"`{name}` must be 3 floats in [0, 1] but is {color}")
    return color  # type: ignore[return-value]


@dataclass(frozen=True)
class Material:
    """One surface's appearance.

    Attributes:
        texture: one of ``TEXTURE_KINDS``.
        color_a, color_b: RGB albedos in [0, 1].
        scale: texture periods per world unit (> 0).
        angle: rotation of the UV frame in radians.
        seed: integer that offsets the pattern (noise lattice, tile jitter, photo origin).
        photo: name in ``PHOTO_NAMES`` when ``texture == "photo"``, else ``None``.
    """

    texture: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float = 1.0
    angle: float = 0.0
    seed: int = 0
    photo: str | None = None

    def __post_init__(self) -> None:
        if self.texture not in TEXTURE_KINDS:
            raise ConfigError(f"`texture` must be one of {TEXTURE_KINDS} but is {self.texture!r}")
        object.__setattr__(self, "color_a", _check_color("color_a", self.color_a))
        object.__setattr__(self, "color_b", _check_color("color_b", self.color_b))
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"`scale` must be a finite float > 0 but is {self.scale}")
        if not math.isfinite(self.angle):
            raise ConfigError(f"`angle` must be finite but is {self.angle}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ConfigError(f"`seed` must be an int in [0, 2**31) but is {self.seed!r}")
        if self.texture == "photo" and self.photo not in PHOTO_NAMES:
            raise ConfigError(
                f"`photo` must be one of {PHOTO_NAMES} for a photo texture but is {self.photo!r}"
            )
        if self.texture != "photo" and self.photo is not None:
            raise ConfigError(f"`photo` must be None for texture {self.texture!r}")


@lru_cache(maxsize=1)
def load_photos() -> tuple[Tensor, Tensor]:
    """The shipped photos: (P, S, S, 3) float32 in [0, 1] and a (P,) bool "is grayscale"."""
    from PIL import Image

    images, gray = [], []
    root = resources.files("mirage.world") / "assets"
    for name in PHOTO_NAMES:
        with (root / f"{name}.png").open("rb") as fh:
            img = Image.open(fh)
            img.load()
        gray.append(img.mode == "L")
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        if arr.shape != (PHOTO_SIZE, PHOTO_SIZE, 3):
            raise ConfigError(f"photo asset {name!r} must be {PHOTO_SIZE}² but is {arr.shape}")
        images.append(torch.from_numpy(arr.copy()))
    return torch.stack(images), torch.tensor(gray)


@dataclass(frozen=True)
class MaterialTable:
    """Materials as tensors, one row per material (M rows)."""

    kind: Tensor  # (M,) long, index into TEXTURE_KINDS
    color_a: Tensor  # (M, 3)
    color_b: Tensor  # (M, 3)
    scale: Tensor  # (M,)
    cos_sin: Tensor  # (M, 2) cos/sin of the UV rotation
    offset: Tensor  # (M, 2) UV offset derived from the seed
    seed: Tensor  # (M,) long
    photo: Tensor  # (M,) long, index into PHOTO_NAMES (0 when unused)

    @property
    def packed(self) -> Tensor:  # (M, 11) floats gathered once per shaded point
        return torch.cat([self.cos_sin, self.scale[:, None], self.offset, self.color_a, self.color_b], 1)

    @property
    def ints(self) -> Tensor:  # (M, 3) kind, seed, photo
        return torch.stack([self.kind, self.seed, self.photo], 1)

    @staticmethod
    def build(materials: tuple[Material, ...]) -> "MaterialTable":
        f32 = torch.float32
        return MaterialTable(
            kind=torch.tensor([TEXTURE_KINDS.index(m.texture) for m in materials]),
            color_a=torch.tensor([m.color_a for m in materials], dtype=f32),
            color_b=torch.tensor([m.color_b for m in materials], dtype=f32),
            scale=torch.tensor([m.scale for m in materials], dtype=f32),
            cos_sin=torch.tensor([[math.cos(m.angle), math.sin(m.angle)] for m in materials], dtype=f32),
            # A seed-dependent offset so two surfaces with one pattern do not line up.
            offset=torch.tensor(
                [[(m.seed * 0.6180339) % 1.0 * 7.0, (m.seed * 0.7548776) % 1.0 * 7.0] for m in materials],
                dtype=f32,
            ),
            seed=torch.tensor([m.seed for m in materials]),
            photo=torch.tensor([PHOTO_NAMES.index(m.photo) if m.photo else 0 for m in materials]),
        )


def _hash01(ix: Tensor, iy: Tensor, seed: Tensor) -> Tensor:
    """Deterministic integer hash of lattice points to [0, 1): int32 arithmetic that wraps on
    overflow (about twice as fast as int64 on CPU), no RNG."""
    h = ix * 73856093 + iy * 19349663 + seed * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


def _value_noise(u: Tensor, v: Tensor, seed: Tensor) -> Tensor:
    fu, fv = torch.floor(u), torch.floor(v)
    tu, tv = u - fu, v - fv
    tu, tv = tu * tu * (3 - 2 * tu), tv * tv * (3 - 2 * tv)  # smoothstep
    iu, iv = fu.int(), fv.int()
    n00, n10 = _hash01(iu, iv, seed), _hash01(iu + 1, iv, seed)
    n01, n11 = _hash01(iu, iv + 1, seed), _hash01(iu + 1, iv + 1, seed)
    return torch.lerp(torch.lerp(n00, n10, tu), torch.lerp(n01, n11, tu), tv)


def _mix(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    return a + (b - a) * w[:, None]


def evaluate_albedo(
    uv: Tensor,  # (N, 2) surface UV in world units
    params: Tensor,  # (N, 11) rows of MaterialTable.packed, one per point
    ints: Tensor,  # (N, 3) rows of MaterialTable.ints, one per point
) -> Tensor:  # (N, 3) albedo in [0, 1]
    """Albedo of N surface points, each with its own material. Loops over kinds, not points."""
    N = uv.shape[0]
    cos, sin, scale = params[:, 0], params[:, 1], params[:, 2]
    u = (cos * uv[:, 0] - sin * uv[:, 1]) * scale + params[:, 3]  # rotated, scaled UV
    v = (sin * uv[:, 0] + cos * uv[:, 1]) * scale + params[:, 4]
    work = torch.cat([u[:, None], v[:, None], params[:, 5:11]], 1)  # (N, 8): u, v, a, b
    kind = ints[:, 0]
    present = torch.bincount(kind, minlength=len(TEXTURE_KINDS)).tolist()
    out = torch.empty(N, 3, dtype=torch.float32)
    for k, name in enumerate(TEXTURE_KINDS):
        if present[k] == 0:
            continue
        if present[k] == N:  # one kind everywhere: no gather / scatter needed
            sel, w, ii = None, work, ints
        else:
            sel = (kind == k).nonzero().squeeze(1)
            w, ii = work.index_select(0, sel), ints.index_select(0, sel)
        seed = ii[:, 1].to(torch.int32)
        out_k = _TEXTURES[name](w[:, 0], w[:, 1], w[:, 2:5], w[:, 5:8], seed, ii[:, 2])
        if sel is None:
            return out_k
        out.index_copy_(0, sel, out_k)
    return out


def _checker(u, v, a, b, seed, photo):
    return _mix(a, b, (torch.floor(u) + torch.floor(v)).remainder(2.0))


def _stripes(u, v, a, b, seed, photo):
    return _mix(a, b, 0.5 + 0.5 * torch.sin(2 * math.pi * u))


def _tiles(u, v, a, b, seed, photo):
    row = torch.floor(v)
    uu = u + 0.5 * row.remainder(2.0)  # running bond: odd rows shift by half a tile
    col = torch.floor(uu)
    fu, fv = uu - col, v - row
    jitter = 0.8 + 0.4 * _hash01(col.int(), row.int(), seed)
    grout = (fu < 0.06) | (fv < 0.1)
    return torch.where(grout[:, None], b, (a * jitter[:, None]).clamp(0.0, 1.0))


def _noise(u, v, a, b, seed, photo):
    n = 0.65 * _value_noise(u, v, seed) + 0.35 * _value_noise(2.7 * u, 2.7 * v, seed + 1)
    return _mix(a, b, n)


def _gradient(u, v, a, b, seed, photo):
    return _mix(a, b, (2.0 * (u - torch.floor(u)) - 1.0).abs())


def _photo(u, v, a, b, seed, photo):
    photos, gray = load_photos()
    iu = ((u - torch.floor(u)) * PHOTO_SIZE).long().clamp_(0, PHOTO_SIZE - 1)
    iv = ((v - torch.floor(v)) * PHOTO_SIZE).long().clamp_(0, PHOTO_SIZE - 1)
    texel = photos.reshape(-1, 3).index_select(0, (photo * PHOTO_SIZE + iv) * PHOTO_SIZE + iu)  # (n, 3)
    return torch.where(gray.index_select(0, photo)[:, None], _mix(b, a, texel[:, 0]), texel)


_TEXTURES = {
    "checker": _checker,
    "stripes": _stripes,
    "tiles": _tiles,
    "noise": _noise,
    "gradient": _gradient,
    "photo": _photo,
}
