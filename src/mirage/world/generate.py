"""Seeded scene generators: ``generate_scene(family, seed)`` for the ``room`` and ``courtyard``
families.

Determinism: each scene is drawn from ``random.Random`` seeded with an integer built from
(family, seed); only ``random()`` is used, whose stream Python keeps stable across versions.

Layout rule shared by both families: a horizontal disc of radius ``free_radius`` around
``center`` stays clear of every primitive (and of the full reach of every moving one) with a
margin of ``CLEARANCE`` metres, and the camera presets stay inside that disc, which is what
makes them collision-free.
"""

from __future__ import annotations

import colorsys
import math
import random

from mirage.errors import ConfigError
from mirage.world.scene import FAMILIES, Box, Cylinder, Motion, Plane, Scene, Sphere
from mirage.world.textures import PHOTO_NAMES, TEXTURE_KINDS, Material

__all__ = ["generate_scene", "CLEARANCE", "EYE_HEIGHT"]

CLEARANCE = 0.5  # metres between the camera disc and the nearest primitive
EYE_HEIGHT = 1.5  # camera height above the floor (the centre is at y = -EYE_HEIGHT)
_FAMILY_SALT = {"room": 0x5EED_0001, "courtyard": 0x5EED_0002}
_PLACE_TRIES = 60


class _Draw:
    """Thin wrapper over ``random.Random`` with the few draws the generators need."""

    def __init__(self, family: str, seed: int) -> None:
        self.rng = random.Random(_FAMILY_SALT[family] * 1_000_003 + seed)
        self.material_count = 0

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.rng.random()

    def integer(self, lo: int, hi: int) -> int:  # inclusive
        return lo + min(int(self.rng.random() * (hi - lo + 1)), hi - lo)

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def material(self, kinds=TEXTURE_KINDS, scale=(1.0, 3.0)) -> Material:
        """A material whose hue is spread along the golden-ratio sequence, so consecutive
        surfaces in one scene differ in colour as well as pattern."""
        self.material_count += 1
        hue = (self.rng.random() + self.material_count * 0.618034) % 1.0
        sat, val = self.uniform(0.35, 0.8), self.uniform(0.55, 0.95)
        color_a = colorsys.hsv_to_rgb(hue, sat, val)
        hue_b = (hue + self.uniform(0.08, 0.5)) % 1.0
        color_b = colorsys.hsv_to_rgb(hue_b, self.uniform(0.2, 0.7), self.uniform(0.15, 0.55))
        texture = self.choice(kinds)
        return Material(
            texture=texture,
            color_a=tuple(round(c, 6) for c in color_a),
            color_b=tuple(round(c, 6) for c in color_b),
            scale=round(self.uniform(*scale), 6),
            angle=round(self.uniform(0.0, math.pi), 6),
            seed=self.integer(0, 2**31 - 1),
            photo=self.choice(PHOTO_NAMES) if texture == "photo" else None,
        )


def _place(draw: _Draw, taken: list, radius: float, region, keep_out: float):
    """Rejection-sample an (x, z) footprint of ``radius`` inside ``region`` (xmin, xmax, zmin,
    zmax), at least ``keep_out`` from the origin and not overlapping ``taken`` circles."""
    xmin, xmax, zmin, zmax = region
    for _ in range(_PLACE_TRIES):
        x, z = draw.uniform(xmin + radius, xmax - radius), draw.uniform(zmin + radius, zmax - radius)
        if math.hypot(x, z) < keep_out + radius:
            continue
        if all(math.hypot(x - tx, z - tz) >= radius + tr + 0.1 for tx, tz, tr in taken):
            taken.append((x, z, radius))
            return x, z
    return None


def _moving_sphere(draw: _Draw, oid: int, taken, region, keep_out, height_range) -> Sphere | None:
    r = draw.uniform(0.2, 0.4)
    amp = draw.uniform(0.3, 0.7)
    spot = _place(draw, taken, r + amp, region, keep_out)
    if spot is None:
        return None
    ang = draw.uniform(0.0, 2 * math.pi)
    if draw.rng.random() < 0.5:  # back and forth along a horizontal line
        motion = Motion(a=(amp * math.cos(ang), 0.0, amp * math.sin(ang)))
    else:  # horizontal circle
        motion = Motion(a=(amp, 0.0, 0.0), b=(0.0, 0.0, amp))
    motion = Motion(motion.a, motion.b, omega=draw.uniform(1.0, 3.0), phase=draw.uniform(0, 6.28))
    y = -draw.uniform(*height_range)
    return Sphere(oid, draw.material(), (spot[0], min(y, -r), spot[1]), r, motion)


def _room(seed: int, moving: int) -> Scene:
    draw = _Draw("room", seed)
    sx, sz = draw.uniform(6.5, 9.5), draw.uniform(6.5, 9.5)
    height = draw.uniform(2.8, 3.6)
    hx, hz = sx / 2, sz / 2
    free = min(hx, hz) - 2.0
    keep_out = free + CLEARANCE
    region = (-hx, hx, -hz, hz)
    oid = iter(range(1, 10_000))
    wall = ("checker", "stripes", "tiles", "noise", "gradient", "photo")
    planes = [
        Plane(next(oid), draw.material(("checker", "tiles", "photo"), (1.0, 2.0)), (0, -1, 0), 0.0),
        Plane(next(oid), draw.material(("noise", "gradient", "stripes"), (0.5, 1.0)), (0, 1, 0), -height),
        Plane(next(oid), draw.material(wall), (1, 0, 0), -hx),
        Plane(next(oid), draw.material(wall), (-1, 0, 0), -hx),
        Plane(next(oid), draw.material(wall), (0, 0, 1), -hz),
        Plane(next(oid), draw.material(wall), (0, 0, -1), -hz),
    ]
    taken: list = []
    boxes, spheres, cylinders = [], [], []
    for _ in range(draw.integer(3, 5)):  # furniture
        bx, bz, by = draw.uniform(0.3, 0.9), draw.uniform(0.3, 0.9), draw.uniform(0.2, 1.0)
        spot = _place(draw, taken, math.hypot(bx, bz), region, keep_out)
        if spot is not None:
            box = Box(next(oid), draw.material(), (spot[0], -by, spot[1]), (bx, by, bz))
            boxes.append(box)
            if draw.rng.random() < 0.4:  # a ball resting on the furniture
                r = min(bx, bz, 0.35) * draw.uniform(0.6, 1.0)
                spheres.append(Sphere(next(oid), draw.material(), (spot[0], -2 * by - r, spot[1]), r))
    for _ in range(draw.integer(1, 3)):  # floor-to-ceiling columns
        r = draw.uniform(0.15, 0.35)
        spot = _place(draw, taken, r, region, keep_out)
        if spot is not None:
            cylinders.append(
                Cylinder(next(oid), draw.material(scale=(2.0, 5.0)), (spot[0], -height / 2, spot[1]), r, height / 2)
            )
    for _ in range(draw.integer(1, 2)):  # balls on the floor
        r = draw.uniform(0.25, 0.55)
        spot = _place(draw, taken, r, region, keep_out)
        if spot is not None:
            spheres.append(Sphere(next(oid), draw.material(scale=(2.0, 5.0)), (spot[0], -r, spot[1]), r))
    for _ in range(moving):
        sph = _moving_sphere(draw, next(oid), taken, region, keep_out, (0.5, min(2.0, height - 0.5)))
        if sph is not None:
            spheres.append(sph)
    return Scene(
        family="room",
        seed=seed,
        planes=tuple(planes),
        boxes=tuple(boxes),
        spheres=tuple(spheres),
        cylinders=tuple(cylinders),
        light_dir=(draw.uniform(-0.6, 0.6), -1.0, draw.uniform(-0.6, 0.6)),
        ambient=0.45,
        sky=False,
        center=(0.0, -EYE_HEIGHT, 0.0),
        free_radius=free,
        start_yaw=draw.choice((0.0, math.pi / 2, math.pi, -math.pi / 2)) + draw.uniform(-0.3, 0.3),
    )


def _courtyard(seed: int, moving: int) -> Scene:
    draw = _Draw("courtyard", seed)
    free = draw.uniform(2.5, 3.5)
    keep_out = free + CLEARANCE
    oid = iter(range(1, 10_000))
    planes = [Plane(next(oid), draw.material(("tiles", "checker", "photo", "noise"), (0.5, 1.5)), (0, -1, 0), 0.0)]
    taken: list = []
    boxes, spheres, cylinders = [], [], []
    n_buildings = draw.integer(7, 10)
    for k in range(n_buildings):  # buildings in a ring, one per angular sector
        ang = 2 * math.pi * (k + draw.uniform(0.2, 0.8)) / n_buildings
        bx, bz, by = draw.uniform(1.0, 2.5), draw.uniform(1.0, 2.5), draw.uniform(1.5, 5.0)
        dist = keep_out + draw.uniform(3.0, 8.0) + max(bx, bz)
        x, z = dist * math.sin(ang), dist * math.cos(ang)
        if all(math.hypot(x - tx, z - tz) >= math.hypot(bx, bz) + tr for tx, tz, tr in taken):
            taken.append((x, z, math.hypot(bx, bz)))
            boxes.append(Box(next(oid), draw.material(scale=(0.5, 1.5)), (x, -by, z), (bx, by, bz)))
    inner = (-keep_out - 5, keep_out + 5, -keep_out - 5, keep_out + 5)
    for _ in range(draw.integer(2, 4)):  # low blocks
        bx, bz, by = draw.uniform(0.3, 0.8), draw.uniform(0.3, 0.8), draw.uniform(0.2, 0.6)
        spot = _place(draw, taken, math.hypot(bx, bz), inner, keep_out)
        if spot is not None:
            boxes.append(Box(next(oid), draw.material(), (spot[0], -by, spot[1]), (bx, by, bz)))
    for _ in range(draw.integer(2, 4)):  # pillars, some topped with a ball
        r, hh = draw.uniform(0.15, 0.4), draw.uniform(0.5, 2.0)
        spot = _place(draw, taken, 1.8 * r, inner, keep_out)  # room for a ball on top
        if spot is not None:
            cylinders.append(Cylinder(next(oid), draw.material(scale=(2.0, 4.0)), (spot[0], -hh, spot[1]), r, hh))
            if draw.rng.random() < 0.5:
                rs = r * draw.uniform(1.2, 1.8)
                spheres.append(Sphere(next(oid), draw.material(), (spot[0], -2 * hh - rs, spot[1]), rs))
    for _ in range(draw.integer(1, 2)):  # balls on the ground
        r = draw.uniform(0.3, 0.7)
        spot = _place(draw, taken, r, inner, keep_out)
        if spot is not None:
            spheres.append(Sphere(next(oid), draw.material(), (spot[0], -r, spot[1]), r))
    for _ in range(moving):
        sph = _moving_sphere(draw, next(oid), taken, inner, keep_out, (0.4, 2.0))
        if sph is not None:
            spheres.append(sph)
    hue = draw.uniform(0.55, 0.65)
    return Scene(
        family="courtyard",
        seed=seed,
        planes=tuple(planes),
        boxes=tuple(boxes),
        spheres=tuple(spheres),
        cylinders=tuple(cylinders),
        light_dir=(draw.uniform(-0.8, 0.8), -1.0, draw.uniform(-0.8, 0.8)),
        ambient=0.4,
        sky=True,
        sky_horizon=tuple(round(c, 6) for c in colorsys.hsv_to_rgb(hue, 0.15, 0.95)),
        sky_zenith=tuple(round(c, 6) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.85)),
        center=(0.0, -EYE_HEIGHT, 0.0),
        free_radius=free,
        start_yaw=draw.uniform(-math.pi, math.pi),
    )


def generate_scene(family: str, seed: int, *, moving: int = 0) -> Scene:
    """The scene of ``family`` ("room" or "courtyard") for ``seed`` (an int ≥ 0).

    ``moving`` adds that many moving spheres (flagged in the dynamic mask); 0 keeps the scene
    static. The same (family, seed, moving) always gives the same scene.
    """
    if family not in FAMILIES:
        raise ConfigError(f"`family` must be one of {FAMILIES} but is {family!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"`seed` must be an int ≥ 0 but is {seed!r}")
    if isinstance(moving, bool) or not isinstance(moving, int) or not 0 <= moving <= 8:
        raise ConfigError(f"`moving` must be an int in [0, 8] but is {moving!r}")
    return _room(seed, moving) if family == "room" else _courtyard(seed, moving)
