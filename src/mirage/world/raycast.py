"""Vectorised torch ray caster for :class:`~mirage.world.scene.Scene`.

Rays are cast through pixel centres (u=j, v=i) with camera-frame direction
``K⁻¹ (u, v, 1)``, whose z component is exactly 1, so the ray parameter of a hit **is** its
z-depth (docs/design.md §2.4). All primitives of one kind are intersected at once as tensors
(rays × primitives), the nearest hit is kept with a per-ray min, and only the winner is shaded.
Rays are processed in blocks of about ``RAY_BLOCK`` rays to stay in cache; the result does
not depend on the block size.

Shading is Lambert + ambient with one directional light and no shadows:
``rgb = albedo · (ambient + (1 − ambient)·max(0, n·l))``. It does not depend on the view, so a
surface point has the same colour from every camera. Sky (courtyard only) depends on the ray
direction alone: a blend from ``sky_horizon`` to ``sky_zenith`` with elevation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from mirage.errors import ConfigError, ShapeError
from mirage.geometry import Camera
from mirage.world.scene import Scene
from mirage.world.textures import MaterialTable, evaluate_albedo

__all__ = ["RenderOutput", "RayHits", "render", "trace_rays", "RAY_BLOCK", "FAR"]

RAY_BLOCK = 16384  # rays per intersection block (frames are grouped when a frame has fewer)
SHADE_BLOCK = 65536  # rays per shading block (tuned on 2 cores; see benchmarks/world.py)
FAR = 1000.0  # hits farther than this (world units of the ray parameter) count as sky
_EPS = 1e-4  # minimum ray parameter of a hit
_PLANE, _BOX, _SPHERE, _CYL = range(4)
_BOX_UV_AXES = torch.tensor([[2, 1], [0, 2], [0, 1]])  # face axis -> the two UV axes


class RenderOutput(NamedTuple):
    """What :func:`render` returns for T cameras of size (H, W).

    rgb: (T, 3, H, W) float32 in [-1, 1].
    depth: (T, H, W) float32 z-depth in the camera frame; ``inf`` where sky.
    object_id: (T, H, W) int64, the id of the primitive seen; 0 where sky.
    dynamic: (T, H, W) bool, the pixel sees a moving primitive.
    sky: (T, H, W) bool, the pixel sees sky (no hit within ``FAR``).
    """

    rgb: Tensor
    depth: Tensor
    object_id: Tensor
    dynamic: Tensor
    sky: Tensor


class RayHits(NamedTuple):
    """What :func:`trace_rays` returns for (T, R) rays.

    t: (T, R) ray parameter of the nearest hit (``inf`` on a miss); with a direction whose
        camera-z component is 1, this is the z-depth.
    object_id: (T, R) int64, 0 on a miss.
    rgb: (T, R, 3) float32 in [-1, 1] (sky colour on a miss).
    """

    t: Tensor
    object_id: Tensor
    rgb: Tensor


@dataclass(frozen=True)
class _Compiled:
    """A scene as tensors. Primitives are indexed globally in ``scene.primitives`` order."""

    kind: Tensor  # (P,) long
    object_id: Tensor  # (P,) long
    dynamic: Tensor  # (P,) bool
    center: Tensor  # (P, 3) static centre (zero for planes)
    half: Tensor  # (P, 3) box half size; (r, r, r) sphere; (r, h, r) cylinder
    normal: Tensor  # (P, 3) plane normals (zero otherwise)
    offset: Tensor  # (P,) plane offsets
    packed: Tensor  # (P, 27) centre, half, normal, t_u, t_v, kind (as float), material params
    material_ints: Tensor  # (P, 3) texture kind, seed, photo
    start: tuple[int, ...]  # first global index of each kind
    count: tuple[int, ...]  # primitives of each kind
    motions: tuple  # ((global index, Motion), ...)
    table: MaterialTable
    light: Tensor  # (3,)
    ambient: float
    sky_horizon: Tensor  # (3,)
    sky_zenith: Tensor  # (3,)


def _tangents(n: tuple[float, float, float]) -> tuple[list[float], list[float]]:
    """Two world axes spanning the plane: drop the axis the normal is most aligned with."""
    axis = max(range(3), key=lambda i: abs(n[i]))
    nt = torch.tensor(n, dtype=torch.float64)
    a = torch.zeros(3, dtype=torch.float64)
    a[(axis + 1) % 3] = 1.0
    tu = a - (a @ nt) * nt
    tu = tu / tu.norm()
    tv = torch.linalg.cross(nt, tu)
    return tu.tolist(), tv.tolist()


@lru_cache(maxsize=16)
def _compile(scene: Scene) -> _Compiled:
    prims = scene.primitives
    kinds = [_PLANE] * len(scene.planes) + [_BOX] * len(scene.boxes)
    kinds += [_SPHERE] * len(scene.spheres) + [_CYL] * len(scene.cylinders)
    center, half, normal, offset, tus, tvs = [], [], [], [], [], []
    for p, k in zip(prims, kinds):
        center.append(p.center if k != _PLANE else (0.0, 0.0, 0.0))
        half.append(
            p.half_size if k == _BOX
            else (p.radius,) * 3 if k == _SPHERE
            else (p.radius, p.half_height, p.radius) if k == _CYL
            else (1.0, 1.0, 1.0)
        )
        normal.append(p.normal if k == _PLANE else (0.0, 0.0, 0.0))
        offset.append(p.offset if k == _PLANE else 0.0)
        tu, tv = _tangents(p.normal) if k == _PLANE else ([0.0] * 3, [0.0] * 3)
        tus.append(tu)
        tvs.append(tv)
    counts = (len(scene.planes), len(scene.boxes), len(scene.spheres), len(scene.cylinders))
    starts = tuple(sum(counts[:i]) for i in range(4))
    f32 = torch.float32
    table = MaterialTable.build(tuple(p.material for p in prims))  # row i = primitive i
    geometry = [torch.tensor(x, dtype=f32) for x in (center, half, normal, tus, tvs)]
    packed = torch.cat(geometry + [torch.tensor(kinds, dtype=f32)[:, None], table.packed], 1)
    return _Compiled(
        kind=torch.tensor(kinds),
        object_id=torch.tensor([p.object_id for p in prims]),
        dynamic=torch.tensor([getattr(p, "motion", None) is not None for p in prims]),
        center=torch.tensor(center, dtype=f32),
        half=torch.tensor(half, dtype=f32),
        normal=torch.tensor(normal, dtype=f32),
        offset=torch.tensor(offset, dtype=f32),
        packed=packed,
        material_ints=table.ints,
        start=starts,
        count=counts,
        motions=tuple((i, p.motion) for i, p in enumerate(prims) if getattr(p, "motion", None)),
        table=table,
        light=torch.tensor(scene.light_dir, dtype=f32),
        ambient=float(scene.ambient),
        sky_horizon=torch.tensor(scene.sky_horizon, dtype=f32),
        sky_zenith=torch.tensor(scene.sky_zenith, dtype=f32),
    )


def _centers(c: _Compiled, times: Tensor) -> Tensor:  # (T,) -> (T, P, 3)
    centers = c.center.expand(times.shape[0], -1, -1).clone()
    for index, motion in c.motions:
        centers[:, index] += motion.offset(times).to(torch.float32)
    return centers


def _step(x: Tensor) -> Tensor:
    """1.0 where x > 0, else 0.0, with arithmetic only: comparisons, ``torch.where`` and any
    NaN-producing op cost several times more than plain arithmetic on CPU. ``x`` is finite."""
    return x.sign().clamp_min_(0.0)


def _intersect(c: _Compiled, centers: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest hit of rays o (B, 3) + t·d (B, R, 3): t (B, R) and global index (B, R), -1 on miss.

    Every primitive gets an *inverse* ray parameter s = 1/t, zero when the ray misses it or
    hits it behind the origin, so that misses need no masking: s = max over primitives and
    t = 1/s (1/0 = inf on a miss). Tensors are laid out (B, P, R) so the reduction over
    primitives vectorises over rays. Ray origins must lie outside every solid.
    """
    B, R, _ = d.shape
    dT = d.transpose(1, 2)  # (B, 3, R)
    inv_t = torch.empty(B, c.kind.shape[0], R)  # (B, P, R) inverse ray parameters

    s, n = c.start[_PLANE], c.count[_PLANE]
    if n:  # one-sided: hit only travelling against the normal, from the front side
        normal = c.normal[s : s + n]  # (Pp, 3)
        denom = normal @ dT  # (B, Pp, R)
        num = c.offset[s : s + n] - o @ normal.T  # (B, Pp): < 0 when the origin is in front
        inv_num = torch.where(num < 0, 1.0 / num, torch.zeros_like(num))
        inv_t[:, s : s + n] = (denom * inv_num[..., None]).clamp_min_(0.0)
    s, n = c.start[_BOX], c.count[_BOX]
    if n:  # slab test
        cen, half = centers[:, s : s + n], c.half[s : s + n]
        lo, hi = cen - half - o[:, None], cen + half - o[:, None]  # (B, Pb, 3)
        # An origin exactly on a slab plane would give 0·inf = NaN below: nudge it.
        lo = torch.where(lo == 0, torch.full_like(lo, -1e-9), lo)
        hi = torch.where(hi == 0, torch.full_like(hi, 1e-9), hi)
        inv = 1.0 / torch.where(dT.abs() < 1e-12, torch.full_like(dT, 1e-12), dT)  # (B, 3, R)
        t_near = t_far = None
        for k in range(3):
            t1 = lo[..., k, None] * inv[:, None, k]  # (B, Pb, R)
            t2 = hi[..., k, None] * inv[:, None, k]
            near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
            t_near = near if t_near is None else torch.maximum(t_near, near)
            t_far = far if t_far is None else torch.minimum(t_far, far)
        inv_t[:, s : s + n] = (1.0 / t_near).clamp_min_(0.0) * _step(t_far - t_near)
    s, n = c.start[_SPHERE], c.count[_SPHERE]
    if n:
        oc = o[:, None] - centers[:, s : s + n]  # (B, Ps, 3)
        a = (dT * dT).sum(1, keepdim=True)  # (B, 1, R)
        b = oc @ dT  # (B, Ps, R)
        cc = (oc * oc).sum(-1, keepdim=True) - c.half[s : s + n, :1] ** 2  # (B, Ps, 1)
        disc = b * b - a * cc
        root = -b - disc.clamp_min(0.0).sqrt()  # a·t of the near hit
        inv_t[:, s : s + n] = (a / root.clamp_min(1e-20)) * _step(disc) * _step(root)
    s, n = c.start[_CYL], c.count[_CYL]
    if n:
        oc = o[:, None] - centers[:, s : s + n]  # (B, Pc, 3)
        r, h = c.half[s : s + n, 0, None], c.half[s : s + n, 1, None]  # (Pc, 1)
        dx, dy, dz = dT[:, None, 0], dT[:, None, 1], dT[:, None, 2]  # (B, 1, R)
        ox, oy, oz = oc[..., 0, None], oc[..., 1, None], oc[..., 2, None]  # (B, Pc, 1)
        a = (dx * dx + dz * dz).clamp_min(1e-20)
        b = ox * dx + oz * dz  # (B, Pc, R)
        disc = b * b - a * (ox * ox + oz * oz - r * r)
        root = -b - disc.clamp_min(0.0).sqrt()  # a·t of the side hit
        y = oy + dy * (root / a)  # height of the side hit relative to the centre
        side = (a / root.clamp_min(1e-20)) * _step(disc) * _step(root) * _step(h - y.abs())
        cap_y = torch.where(oy < 0, -h, h)  # (B, Pc, 1): the cap facing the origin
        facing = (oy.abs() > h).to(d.dtype)  # the origin is above or below the cylinder
        dy_safe = torch.where(dy == 0, torch.full_like(dy, 1e-20), dy)
        t_cap = (cap_y - oy) / dy_safe  # (B, Pc, R)
        px, pz = ox + t_cap * dx, oz + t_cap * dz
        cap = facing / t_cap.clamp_min(1e-20) * _step(t_cap) * _step(r * r - (px * px + pz * pz))
        inv_t[:, s : s + n] = torch.maximum(side, cap)
    best, index = inv_t.max(dim=1)  # (B, R)
    miss = best < 1.0 / FAR
    return 1.0 / best.masked_fill(miss, 0.0), index.masked_fill(miss, -1)


def _shade(c: _Compiled, centers: Tensor, o: Tensor, d: Tensor, t: Tensor, g: Tensor) -> Tensor:
    """Colour (B, R, 3) in [0, 1] of rays with nearest hit t / global index g (-1 = sky).

    Surface frames per kind (q = hit point − primitive centre, r/h its radius/half height):
    plane: n fixed, UV = (q·t_u, q·t_v) on two world axes; box: n = ±(axis of largest
    |q|/half), UV = the other two coordinates of q; sphere: n = q/r, UV = (r·atan2(q_z, q_x),
    q_y); cylinder: side like the sphere with n horizontal, caps n = ±y, UV = (q_x, q_z).
    """
    B, R, _ = d.shape
    P = c.kind.shape[0]
    g = g.reshape(-1)
    d_flat = d.reshape(-1, 3)
    hit = g >= 0
    if bool(hit.all()):  # rooms: every ray hits, so skip the gathers
        idx, gi, tt, dd = None, g, t.reshape(-1), d_flat
        p = (o[:, None] + t[..., None] * d).reshape(-1, 3)  # (N, 3) world hit points
        frame = None
    else:
        rgb = torch.empty(B * R, 3)
        sky = (~hit).nonzero().squeeze(1)
        ds = d_flat.index_select(0, sky)
        elev = (-ds[:, 1] / ds.norm(dim=-1)).clamp(0.0, 1.0).sqrt()  # world up is -y
        rgb[sky] = torch.lerp(c.sky_horizon.expand(len(sky), 3), c.sky_zenith.expand(len(sky), 3), elev[:, None])
        idx = hit.nonzero().squeeze(1)
        if idx.numel() == 0:
            return rgb.reshape(B, R, 3)
        gi, tt, dd, frame = g.index_select(0, idx), t.reshape(-1).index_select(0, idx), d_flat.index_select(0, idx), idx // R
        p = o.index_select(0, frame) + tt[:, None] * dd
    prim = c.packed.index_select(0, gi)  # (N, 27): see _Compiled.packed
    q = p - prim[:, 0:3]  # (N, 3) relative to the static centre
    if c.motions:  # moving primitives: use each frame's centre instead
        if frame is None:
            frame = torch.arange(B).repeat_interleave(R)
        q = p - centers.reshape(-1, 3).index_select(0, frame * P + gi)
    half, kind = prim[:, 3:6], prim[:, 15]
    is_plane, is_box = kind == _PLANE, kind == _BOX
    is_sphere, is_cyl = kind == _SPHERE, kind == _CYL
    # Planar UV frames: planes carry theirs, boxes use the face axis, cylinder caps use x/z.
    rel = q / half
    axis = rel.abs().argmax(-1)  # (N,) box face axis
    box_n = torch.zeros_like(q).scatter_(1, axis[:, None], torch.sign(rel.gather(1, axis[:, None])))
    uv_axes = _BOX_UV_AXES.index_select(0, torch.where(is_box, axis, 1))
    uv = q.gather(1, uv_axes)  # boxes and caps
    if bool(is_plane.any()):
        plane_uv = torch.stack([(q * prim[:, 9:12]).sum(-1), (q * prim[:, 12:15]).sum(-1)], -1)
        uv = torch.where(is_plane[:, None], plane_uv, uv)
    normal = torch.where(is_plane[:, None], prim[:, 6:9], box_n)
    if bool((is_sphere | is_cyl).any()):
        r = half[:, 0]
        radial = torch.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2)
        cap = is_cyl & (q[:, 1].abs() >= half[:, 1] - 1e-4) & (radial < r - 1e-4)
        side = is_cyl & ~cap
        round_uv = torch.stack([r * torch.atan2(q[:, 2], q[:, 0]), q[:, 1]], -1)
        uv = torch.where((is_sphere | side)[:, None], round_uv, uv)
        side_n = q * torch.tensor([1.0, 0.0, 1.0]) / radial.clamp_min(1e-12)[:, None]
        cap_n = torch.zeros_like(q)
        cap_n[:, 1] = torch.sign(q[:, 1])
        normal = torch.where(is_sphere[:, None], q / r[:, None], normal)
        normal = torch.where(side[:, None], side_n, normal)
        normal = torch.where(cap[:, None], cap_n, normal)
    albedo = evaluate_albedo(uv, prim[:, 16:27], c.material_ints.index_select(0, gi))
    lambert = c.ambient + (1.0 - c.ambient) * (normal @ c.light).clamp_min(0.0)
    colour = (albedo * lambert[:, None]).clamp(0.0, 1.0)
    if idx is None:
        return colour.reshape(B, R, 3)
    rgb[idx] = colour
    return rgb.reshape(B, R, 3)


def _check_times(times, T: int) -> Tensor:
    if times is None:
        return torch.zeros(T)
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    if times.shape != (T,):
        raise ShapeError(f"`times` must have shape ({T},) but has shape {tuple(times.shape)}")
    if not torch.isfinite(times).all():
        raise ConfigError("`times` must be finite seconds but holds NaN/inf")
    return times


def trace_rays(
    scene: Scene,
    origins: Tensor,  # (T, 3) world
    directions: Tensor,  # (T, R, 3) world, any non-zero length
    times: Tensor | None = None,  # (T,) seconds
) -> RayHits:
    """Cast R rays from each of T origins at times ``times``: nearest hit, its id and colour."""
    if origins.ndim != 2 or origins.shape[1] != 3:
        raise ShapeError(f"`origins` must have shape (T, 3) but has shape {tuple(origins.shape)}")
    T = origins.shape[0]
    if directions.ndim != 3 or directions.shape[0] != T or directions.shape[2] != 3:
        raise ShapeError(f"`directions` must have shape ({T}, R, 3) but has shape {tuple(directions.shape)}")
    c = _compile(scene)
    centers = _centers(c, _check_times(times, T))
    o, d = origins.to(torch.float32), directions.to(torch.float32)
    t, g = _intersect(c, centers, o, d)
    rgb = _shade(c, centers, o, d, t, g)
    oid = torch.where(g >= 0, c.object_id[g.clamp_min(0)], 0)
    return RayHits(t, oid, rgb * 2.0 - 1.0)


def _camera_rays(cameras: Camera) -> tuple[Tensor, Tensor]:
    """World origins (T, 3) and directions (T, H·W, 3) whose camera-z component is 1."""
    from mirage.geometry import pixel_rays

    cam = cameras.to(dtype=torch.float32)
    d_cam = pixel_rays(cam.K, cam.height, cam.width).reshape(len(cam), -1, 3)  # (T, HW, 3)
    R = cam.cam2world[:, :3, :3]
    return cam.cam2world[:, :3, 3].contiguous(), d_cam @ R.transpose(1, 2)


def _blocks(frames: int, rays: int, block: int):
    """(f0, f1, r0, r1) blocks of about ``block`` rays: whole frames grouped when a frame is
    smaller than a block, else slices of one frame."""
    per = max(1, block // rays)  # frames per block
    step = min(rays, block)  # rays per block
    for f0 in range(0, frames, per):
        for r0 in range(0, rays, step):
            yield f0, min(frames, f0 + per), r0, min(rays, r0 + step)


def _render_geometry_and_colour(scene: Scene, cameras: Camera, times: Tensor, shade: bool):
    c = _compile(scene)
    T, H, W = len(cameras), cameras.height, cameras.width
    origins, dirs = _camera_rays(cameras)  # (T, 3), (T, HW, 3)
    centers = _centers(c, times)
    t_all = torch.empty(T, H * W)
    g_all = torch.empty(T, H * W, dtype=torch.long)
    rgb_all = torch.empty(T, H * W, 3) if shade else None
    # Intersection makes (rays x primitives) temporaries, so it runs in cache-sized blocks;
    # shading is per ray only and runs on larger blocks, right after their intersection while
    # the rays are still in cache, to amortise per-op overhead.
    for f0, f1, r0, r1 in _blocks(T, H * W, SHADE_BLOCK if shade else RAY_BLOCK):
        o, d, cen = origins[f0:f1], dirs[f0:f1, r0:r1], centers[f0:f1]
        for g0, g1, q0, q1 in _blocks(f1 - f0, r1 - r0, RAY_BLOCK):
            t, g = _intersect(c, cen[g0:g1], o[g0:g1], d[g0:g1, q0:q1])
            t_all[f0 + g0 : f0 + g1, r0 + q0 : r0 + q1] = t
            g_all[f0 + g0 : f0 + g1, r0 + q0 : r0 + q1] = g
        if shade:
            t, g = t_all[f0:f1, r0:r1], g_all[f0:f1, r0:r1]
            rgb_all[f0:f1, r0:r1] = _shade(c, cen, o, d, t, g)
    return t_all.reshape(T, H, W), g_all.reshape(T, H, W), rgb_all


def render(
    scene: Scene,
    cameras: Camera,
    times: Tensor | None = None,
    *,
    ssaa: int = 1,
) -> RenderOutput:
    """Render T views of ``scene``: RGB, z-depth, object ids, dynamic and sky masks.

    Args:
        scene: the scene.
        cameras: T cameras (OpenCV axes, pixel intrinsics for (H, W)), any resolution.
        times: (T,) seconds for moving objects; ``None`` means t = 0 for every frame.
        ssaa: supersampling factor s ≥ 1. Colour is the mean of s×s samples per pixel (a
            render at (sH, sW) with docs/design.md §2.3 rescaled intrinsics); depth, ids and masks are
            always exact at the pixel centre.

    Returns:
        :class:`RenderOutput` with rgb (T, 3, H, W) in [-1, 1], depth (T, H, W) (inf = sky),
        object_id (T, H, W) int64 (0 = sky), dynamic (T, H, W) bool, sky (T, H, W) bool.
        Deterministic: the same inputs always give bit-identical outputs.
    """
    if not isinstance(cameras, Camera):
        raise ConfigError(f"`cameras` must be a mirage.geometry.Camera but is {type(cameras).__name__}")
    if isinstance(ssaa, bool) or not isinstance(ssaa, int) or ssaa < 1:
        raise ConfigError(f"`ssaa` must be an int ≥ 1 but is {ssaa!r}")
    T, H, W = len(cameras), cameras.height, cameras.width
    times = _check_times(times, T)
    cameras = cameras.to(device="cpu", dtype=torch.float32)
    depth, g, rgb = _render_geometry_and_colour(scene, cameras, times, shade=ssaa == 1)
    if ssaa > 1:
        fine = cameras.scaled(H * ssaa, W * ssaa)
        _, _, rgb = _render_geometry_and_colour(scene, fine, times, shade=True)
        rgb = rgb.reshape(T, H, ssaa, W, ssaa, 3).mean(dim=(2, 4))
    rgb = rgb.reshape(T, H, W, 3).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0  # (T, 3, H, W)
    c = _compile(scene)
    hit = g >= 0
    gi = g.clamp_min(0)
    return RenderOutput(
        rgb=rgb,
        depth=depth,
        object_id=torch.where(hit, c.object_id[gi], 0),
        dynamic=hit & c.dynamic[gi],
        sky=~hit,
    )
