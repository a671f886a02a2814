"""Scene description: primitives, moving-object paths, the scene itself, and its JSON form.

World frame: metres, **y down** like the OpenCV camera (so a level camera has no roll and
``mirage.geometry.look_at``'s default up vector applies). The floor or ground is the plane
y = 0 and everything above it has y < 0.

Object ids: 0 is sky (no hit); every primitive carries its own id ≥ 1, unique in the scene.
The generators number planes first, then boxes, spheres and cylinders.

Time: ``times`` are seconds. A moving primitive's centre at time t is
``centre + a·sin(ω t + φ) + b·cos(ω t + φ)`` (:class:`Motion`); static ones ignore time.
Frame k of a clip rendered at ``fps`` is at t = k / fps.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor

from mirage.errors import ConfigError, FileFormatError
from mirage.world.textures import Material

__all__ = [
    "FAMILIES",
    "SCENE_FORMAT_VERSION",
    "Motion",
    "Plane",
    "Box",
    "Sphere",
    "Cylinder",
    "Scene",
    "scene_to_json",
    "scene_from_json",
    "signed_distance",
]

FAMILIES = ("room", "courtyard")
SCENE_FORMAT_VERSION = 1

Vec3 = tuple[float, float, float]


def _vec3(name: str, value) -> Vec3:
    try:
        out = tuple(float(x) for x in value)
    except TypeError as err:
        raise ConfigError(f"`{name}` must be 3 floats but is {value!r}") from err
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise ConfigError(f"`{name}` must be 3 finite floats but is {value!r}")
    return out  # type: ignore[return-value]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"`{name}` must be a finite float > 0 but is {value}")
    return value


def _unit(v: Vec3, norm: float) -> Vec3:
    """``v / norm``, leaving an already-unit vector untouched so JSON round trips are exact."""
    if abs(norm - 1.0) <= 1e-12:
        return v
    return tuple(x / norm for x in v)  # type: ignore[return-value]


def _check_id(object_id) -> None:
    if not isinstance(object_id, int) or object_id < 1:
        raise ConfigError(f"`object_id` must be an int ≥ 1 but is {object_id!r}")


@dataclass(frozen=True)
class Motion:
    """Periodic path of a moving primitive: offset(t) = a·sin(ω t + φ) + b·cos(ω t + φ).

    ``a`` alone gives a back-and-forth line; ``a ⟂ b`` with equal norms gives a circle.
    ``omega`` is in radians per second, ``phase`` in radians.
    """

    a: Vec3
    b: Vec3 = (0.0, 0.0, 0.0)
    omega: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _vec3("a", self.a))
        object.__setattr__(self, "b", _vec3("b", self.b))
        if not (math.isfinite(self.omega) and math.isfinite(self.phase)):
            raise ConfigError(f"`omega` and `phase` must be finite but are {self.omega}, {self.phase}")

    @property
    def reach(self) -> float:
        """Upper bound on |offset(t)| over all t."""
        return math.hypot(*self.a) + math.hypot(*self.b)

    def offset(self, times: Tensor) -> Tensor:  # (T,) seconds -> (T, 3)
        ang = self.omega * times.to(torch.float64) + self.phase
        a = torch.tensor(self.a, dtype=torch.float64)
        b = torch.tensor(self.b, dtype=torch.float64)
        return torch.sin(ang)[:, None] * a + torch.cos(ang)[:, None] * b


@dataclass(frozen=True)
class Plane:
    """Infinite one-sided plane {x : normal·x = offset}; it is seen from the side ``normal``
    points to (rooms point their walls inwards), and its UVs follow two world axes."""

    object_id: int
    material: Material
    normal: Vec3
    offset: float

    def __post_init__(self) -> None:
        _check_id(self.object_id)
        n = _vec3("normal", self.normal)
        norm = math.hypot(*n)
        if norm < 1e-9:
            raise ConfigError(f"`normal` must be non-zero but is {n}")
        object.__setattr__(self, "normal", _unit(n, norm))
        if not math.isfinite(self.offset):
            raise ConfigError(f"`offset` must be finite but is {self.offset}")


@dataclass(frozen=True)
class Box:
    """Axis-aligned box with ``center`` and ``half_size`` (all > 0)."""

    object_id: int
    material: Material
    center: Vec3
    half_size: Vec3
    motion: Motion | None = None

    def __post_init__(self) -> None:
        _check_id(self.object_id)
        object.__setattr__(self, "center", _vec3("center", self.center))
        half = _vec3("half_size", self.half_size)
        if min(half) <= 0:
            raise ConfigError(f"`half_size` must be > 0 on every axis but is {half}")
        object.__setattr__(self, "half_size", half)


@dataclass(frozen=True)
class Sphere:
    object_id: int
    material: Material
    center: Vec3
    radius: float
    motion: Motion | None = None

    def __post_init__(self) -> None:
        _check_id(self.object_id)
        object.__setattr__(self, "center", _vec3("center", self.center))
        object.__setattr__(self, "radius", _positive("radius", self.radius))


@dataclass(frozen=True)
class Cylinder:
    """Capped cylinder with a vertical (world y) axis, spanning centre.y ± half_height."""

    object_id: int
    material: Material
    center: Vec3
    radius: float
    half_height: float
    motion: Motion | None = None

    def __post_init__(self) -> None:
        _check_id(self.object_id)
        object.__setattr__(self, "center", _vec3("center", self.center))
        object.__setattr__(self, "radius", _positive("radius", self.radius))
        object.__setattr__(self, "half_height", _positive("half_height", self.half_height))


@dataclass(frozen=True)
class Scene:
    """A whole scene, fully determined by (family, seed) when made by ``generate_scene``.

    Attributes:
        family: one of ``FAMILIES``.
        seed: the generator seed.
        planes, boxes, spheres, cylinders: the primitives.
        light_dir: unit vector pointing *towards* the directional light (world frame).
        ambient: ambient term of the Lambert + ambient shading, in [0, 1].
        sky: whether rays that miss everything see sky (courtyard) or cannot miss (room).
        sky_horizon, sky_zenith: sky colours in [0, 1] at the horizon and straight up.
        center: world point the camera presets circle around, at eye height.
        free_radius: radius of the horizontal disc around ``center`` that is free of every
            primitive (with a margin), where the presets keep the camera.
        start_yaw: preset start heading in radians (0 looks along +z, π/2 along +x).
    """

    family: str
    seed: int
    planes: tuple[Plane, ...] = ()
    boxes: tuple[Box, ...] = ()
    spheres: tuple[Sphere, ...] = ()
    cylinders: tuple[Cylinder, ...] = ()
    light_dir: Vec3 = (0.3, -0.85, 0.45)
    ambient: float = 0.45
    sky: bool = False
    sky_horizon: Vec3 = (0.8, 0.87, 0.95)
    sky_zenith: Vec3 = (0.3, 0.5, 0.85)
    center: Vec3 = (0.0, -1.5, 0.0)
    free_radius: float = 1.0
    start_yaw: float = 0.0
    version: int = field(default=SCENE_FORMAT_VERSION)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"`family` must be one of {FAMILIES} but is {self.family!r}")
        for name in ("planes", "boxes", "spheres", "cylinders"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        ids = [p.object_id for p in self.primitives]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"primitive `object_id`s must be unique but are {sorted(ids)}")
        if not ids:
            raise ConfigError("a scene must hold at least one primitive but holds none")
        light = _vec3("light_dir", self.light_dir)
        norm = math.hypot(*light)
        if norm < 1e-9:
            raise ConfigError(f"`light_dir` must be non-zero but is {light}")
        object.__setattr__(self, "light_dir", _unit(light, norm))
        if not 0.0 <= self.ambient <= 1.0:
            raise ConfigError(f"`ambient` must be in [0, 1] but is {self.ambient}")
        object.__setattr__(self, "center", _vec3("center", self.center))
        object.__setattr__(self, "free_radius", _positive("free_radius", self.free_radius))
        if self.version != SCENE_FORMAT_VERSION:
            raise ConfigError(
                f"scene `version` must be {SCENE_FORMAT_VERSION} but is {self.version}"
            )

    @property
    def primitives(self) -> tuple:
        """Every primitive in render order: planes, boxes, spheres, cylinders."""
        return self.planes + self.boxes + self.spheres + self.cylinders

    @property
    def dynamic_ids(self) -> tuple[int, ...]:
        """Object ids of the primitives that move."""
        return tuple(p.object_id for p in self.primitives if getattr(p, "motion", None))


# -- JSON ----------------------------------------------------------------------------------
_KINDS = {"planes": Plane, "boxes": Box, "spheres": Sphere, "cylinders": Cylinder}


def scene_to_json(scene: Scene) -> str:
    """Serialise a scene to a JSON string (floats written exactly, so it round-trips)."""
    data = asdict(scene)
    data["format"] = "mirage-scene"
    return json.dumps(data, indent=1, sort_keys=True)


def _build(cls, raw: dict):
    raw = dict(raw)
    raw["material"] = Material(**raw["material"])
    if raw.get("motion") is not None:
        raw["motion"] = Motion(**raw["motion"])
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise FileFormatError(f"{cls.__name__} has unknown keys {sorted(unknown)}")
    return cls(**raw)


def scene_from_json(text: str) -> Scene:
    """Parse a scene written by :func:`scene_to_json`; raises ``FileFormatError`` if malformed."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"scene JSON is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.pop("format", None) != "mirage-scene":
        raise FileFormatError("scene JSON must be an object with \"format\": \"mirage-scene\"")
    try:
        for key, cls in _KINDS.items():
            data[key] = tuple(_build(cls, raw) for raw in data.get(key, ()))
        for key in ("light_dir", "sky_horizon", "sky_zenith", "center"):
            if key in data:
                data[key] = tuple(data[key])
        return Scene(**data)
    except (TypeError, KeyError) as err:
        raise FileFormatError(f"scene JSON is malformed: {err}") from err


# -- signed distance (for collision checks) -------------------------------------------------
def _center_at(prim, times: Tensor) -> Tensor:  # (T, 3)
    c = torch.tensor(prim.center, dtype=torch.float64).expand(times.shape[0], 3)
    if prim.motion is not None:
        c = c + prim.motion.offset(times)
    return c


def signed_distance(
    scene: Scene,
    points_world: Tensor,  # (T, N, 3)
    times: Tensor | None = None,  # (T,) seconds
) -> Tensor:  # (T, N) float64
    """Distance from each point to the nearest solid (negative inside one).

    Planes count as half-spaces behind them, so a point outside a room's walls is negative.
    Exact for planes, spheres and boxes outside; a tight bound elsewhere, which is all a
    collision check needs.
    """
    p = points_world.to(torch.float64)
    T = p.shape[0]
    times = torch.zeros(T) if times is None else times
    dist = torch.full(p.shape[:2], math.inf, dtype=torch.float64)
    for plane in scene.planes:
        n = torch.tensor(plane.normal, dtype=torch.float64)
        dist = torch.minimum(dist, p @ n - plane.offset)
    for box in scene.boxes:
        q = (p - _center_at(box, times)[:, None]).abs() - torch.tensor(box.half_size, dtype=torch.float64)
        outside = q.clamp_min(0).norm(dim=-1)
        dist = torch.minimum(dist, outside + q.amax(-1).clamp_max(0))
    for sph in scene.spheres:
        dist = torch.minimum(dist, (p - _center_at(sph, times)[:, None]).norm(dim=-1) - sph.radius)
    for cyl in scene.cylinders:
        q = p - _center_at(cyl, times)[:, None]
        dr = q[..., [0, 2]].norm(dim=-1) - cyl.radius
        dy = q[..., 1].abs() - cyl.half_height
        d2 = torch.stack([dr, dy], -1)
        dist = torch.minimum(dist, d2.clamp_min(0).norm(dim=-1) + d2.amax(-1).clamp_max(0))
    return dist
