import math

import pytest
import torch

from mirage.errors import ConfigError, ShapeError
from mirage.geometry import Camera, backproject_depth, pixel_index, project_points
from mirage.world import generate_scene, make_trajectory, render, scene_from_json, scene_to_json, trace_rays
from mirage.world.scene import Cylinder, Motion, Plane, Scene, Sphere

from .conftest import FLAT, level_camera


# -- analytic answers -----------------------------------------------------------------------
def _wall_scene(distance: float) -> Scene:
    # The plane z = distance, seen from the origin side (normal -z).
    return Scene("courtyard", 0, planes=(Plane(1, FLAT, (0, 0, -1), -distance),), sky=True)


def test_depth_of_a_facing_plane_is_its_distance_everywhere():
    cam = level_camera((0.0, 0.0, 0.0), 0.0, 24, 32)
    out = render(_wall_scene(3.0), cam)
    # z-depth, not ray length: the same 3.0 at the corners as in the centre.
    torch.testing.assert_close(out.depth, torch.full((1, 24, 32), 3.0), atol=1e-5, rtol=0)
    assert out.object_id.eq(1).all() and not out.sky.any() and not out.dynamic.any()


def test_depth_of_a_plane_seen_at_an_angle_matches_the_analytic_z_depth():
    yaw = math.radians(25.0)
    cam = level_camera((0.5, -0.2, 1.0), yaw, 20, 30)
    out = render(_wall_scene(4.0), cam)
    # Ray through pixel (u, v): camera direction (x, y, 1); world z component of the direction
    # is -sin(yaw)·x + cos(yaw); it meets z = 4 at t = (4 - 1) / dz, and t is the z-depth.
    K = cam.K[0].double()
    u = torch.arange(30, dtype=torch.float64)
    x = (u - K[0, 2]) / K[0, 0]
    dz = -math.sin(yaw) * x + math.cos(yaw)
    expected = (3.0 / dz).expand(20, 30)
    torch.testing.assert_close(out.depth[0].double(), expected, atol=1e-4, rtol=1e-5)


def test_sphere_silhouette_and_nearest_depth():
    D, r, S = 5.0, 1.0, 41
    scene = Scene("courtyard", 0, spheres=(Sphere(7, FLAT, (0.0, 0.0, D), r),), sky=True)
    cam = level_camera((0.0, 0.0, 0.0), 0.0, S, S, fov=40.0)
    out = render(scene, cam)
    K = cam.K[0].double()
    v, u = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    angle = torch.atan(torch.sqrt(x**2 + y**2))  # angle between the pixel ray and the axis
    half_angle = math.asin(r / D)
    inside, outside = angle < half_angle - 0.01, angle > half_angle + 0.01
    assert inside.sum() > 100 and outside.sum() > 100
    hit = out.object_id[0] == 7
    assert hit[inside].all() and not hit[outside].any()
    assert out.sky[0][outside].all() and torch.isinf(out.depth[0][outside]).all()
    c = S // 2  # the centre pixel looks straight down the axis
    assert out.depth[0, c, c].item() == pytest.approx(D - r, abs=1e-5)
    # Every hit pixel: z-depth of the near intersection of the ray (x, y, 1) with the sphere.
    a = x**2 + y**2 + 1
    t = (D - torch.sqrt((D**2 - (D**2 - r**2) * a).clamp_min(0))) / a
    torch.testing.assert_close(out.depth[0][inside].double(), t[inside], atol=1e-4, rtol=0)


# -- slow reference twin of the intersection kernel ---------------------------------------
def _reference_t(scene: Scene, o, d) -> tuple[float, int]:
    """Nearest hit (t, object id) of one ray, primitive by primitive, in float64 Python."""
    best = (math.inf, 0)

    def consider(t, oid):
        nonlocal best
        if 1e-4 < t < best[0]:
            best = (t, oid)

    for p in scene.planes:
        den = sum(n * di for n, di in zip(p.normal, d))
        if den < -1e-12:
            consider((p.offset - sum(n * oi for n, oi in zip(p.normal, o))) / den, p.object_id)
    for b in scene.boxes:
        lo, hi = -math.inf, math.inf
        for k in range(3):
            dk = d[k] if abs(d[k]) > 1e-12 else 1e-12
            t1 = (b.center[k] - b.half_size[k] - o[k]) / dk
            t2 = (b.center[k] + b.half_size[k] - o[k]) / dk
            lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
        if lo <= hi:
            consider(lo, b.object_id)
    for s in scene.spheres:
        oc = [o[k] - s.center[k] for k in range(3)]
        a = sum(x * x for x in d)
        bb = sum(x * y for x, y in zip(d, oc))
        disc = bb * bb - a * (sum(x * x for x in oc) - s.radius**2)
        if disc > 0:
            consider((-bb - math.sqrt(disc)) / a, s.object_id)
    for c in scene.cylinders:
        oc = [o[k] - c.center[k] for k in range(3)]
        a = d[0] ** 2 + d[2] ** 2
        bb = d[0] * oc[0] + d[2] * oc[2]
        disc = bb * bb - a * (oc[0] ** 2 + oc[2] ** 2 - c.radius**2)
        if disc > 0 and a > 0:
            t = (-bb - math.sqrt(disc)) / a
            if abs(oc[1] + t * d[1]) <= c.half_height:
                consider(t, c.object_id)
        for cap in (-c.half_height, c.half_height):
            if abs(d[1]) > 1e-12 and abs(oc[1]) > c.half_height:
                t = (cap - oc[1]) / d[1]
                if (oc[0] + t * d[0]) ** 2 + (oc[2] + t * d[2]) ** 2 <= c.radius**2:
                    consider(t, c.object_id)
    return best


@pytest.mark.parametrize("family,seed", [("room", 1), ("courtyard", 2)])
def test_fast_intersection_agrees_with_the_reference_twin(family, seed):
    scene = generate_scene(family, seed)
    gen = torch.Generator().manual_seed(0)
    origins = torch.tensor([scene.center]) + torch.randn(1, 3, generator=gen) * 0.3
    dirs = torch.randn(1, 300, 3, generator=gen)
    hits = trace_rays(scene, origins, dirs)
    for k in range(dirs.shape[1]):
        t_ref, id_ref = _reference_t(scene, origins[0].double().tolist(), dirs[0, k].double().tolist())
        if math.isinf(t_ref):
            assert hits.object_id[0, k] == 0 and math.isinf(hits.t[0, k])
        else:
            assert hits.t[0, k].item() == pytest.approx(t_ref, rel=1e-4, abs=1e-4)
            assert hits.object_id[0, k].item() == id_ref


def test_cylinder_caps_are_hit_from_above():
    scene = Scene("courtyard", 0, cylinders=(Cylinder(4, FLAT, (0.0, -1.0, 0.0), 0.5, 1.0),), sky=True)
    hits = trace_rays(scene, torch.tensor([[0.1, -5.0, 0.0]]), torch.tensor([[[0.0, 1.0, 0.0]]]))
    assert hits.t[0, 0].item() == pytest.approx(3.0, abs=1e-5)  # top cap at y = -2
    assert hits.object_id[0, 0].item() == 4


# -- back-project and re-project ----------------------------------------------------------
@pytest.mark.parametrize("family", ["room", "courtyard"])
def test_backprojected_depth_reprojects_with_matching_depth_and_colour(family):
    scene = generate_scene(family, 6)
    cams = make_trajectory("orbit", scene, 12, 48, 64)
    view1, view2 = cams[0], cams[1]  # 30° apart around the centre
    out1, out2 = render(scene, view1), render(scene, view2)
    valid = torch.isfinite(out1.depth[0])
    X = backproject_depth(out1.depth, view1.K, view1.cam2world)[0][valid]  # (N, 3) world
    colour1 = out1.rgb[0].permute(1, 2, 0)[valid]  # (N, 3)

    # Exact check: cast a ray from camera 2 to every point. Where nothing is in front (t ≈ 1),
    # the surface and its colour must be the same (shading does not depend on the view).
    o2 = view2.cam2world[:, :3, 3]
    hits = trace_rays(scene, o2, (X - o2)[None])
    visible = (hits.t[0] - 1.0).abs() < 1e-3
    assert visible.float().mean() > 0.3
    close = ((hits.rgb[0][visible] - colour1[visible]).abs().amax(-1) < 1e-3).float().mean()
    assert close > 0.99

    # Pixel-grid check against the direct render of view 2.
    uv, z = project_points(X, view2.K, view2.world2cam)
    row, col = pixel_index(uv[0])
    inside = (z[0] > 0.1) & (row >= 0) & (row < 48) & (col >= 0) & (col < 64) & visible
    d2 = out2.depth[0][row[inside], col[inside]]
    rel = ((d2 - z[0][inside]).abs() / z[0][inside])
    assert inside.sum() > 500
    assert (rel < 0.05).float().mean() > 0.95  # disagreements only at depth edges
    c2 = out2.rgb[0].permute(1, 2, 0)[row[inside], col[inside]]
    agree = (c2 - colour1[inside]).abs().amax(-1) < 0.1
    assert agree.float().mean() > 0.7  # nearest-pixel colour: textures alias at edges


# -- determinism, masks, options ----------------------------------------------------------
def test_render_is_deterministic(room):
    cams = make_trajectory("random-walk", room, 4, 32, 40)
    a, b = render(room, cams), render(room, cams)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    again = render(scene_from_json(scene_to_json(room)), cams)
    assert torch.equal(again.rgb, a.rgb) and torch.equal(again.depth, a.depth)


def test_room_has_no_sky_and_outputs_have_documented_shapes(room):
    cams = make_trajectory("pan-return", room, 9, 24, 40)
    out = render(room, cams)
    assert out.rgb.shape == (9, 3, 24, 40) and out.rgb.dtype == torch.float32
    assert out.depth.shape == out.object_id.shape == out.sky.shape == out.dynamic.shape == (9, 24, 40)
    assert out.rgb.min() >= -1 and out.rgb.max() <= 1 and out.rgb.std() > 0.1
    assert torch.isfinite(out.depth).all() and (out.depth > 0).all()
    assert not out.sky.any() and (out.object_id > 0).all()
    assert out.object_id.unique().numel() >= 4


def test_courtyard_sky_has_infinite_depth_and_id_zero(courtyard):
    out = render(courtyard, make_trajectory("orbit", courtyard, 3, 32, 48))
    assert 0.05 < out.sky.float().mean() < 0.8
    assert torch.equal(torch.isinf(out.depth), out.sky)
    assert torch.equal(out.object_id == 0, out.sky)
    # Sky is in the upper part of the image: the top row is sky, the bottom row ground.
    assert out.sky[:, 0].float().mean() > 0.5 and not out.sky[:, -1].any()


def test_moving_objects_move_and_are_flagged_dynamic():
    mat = FLAT
    scene = Scene(
        "courtyard", 0,
        planes=(Plane(1, mat, (0, 0, -1), -8.0),),
        spheres=(Sphere(2, mat, (0.0, 0.0, 4.0), 0.6, Motion(a=(1.5, 0.0, 0.0), omega=math.pi / 2)),),
        sky=True,
    )
    cams = Camera.cat([level_camera((0.0, 0.0, 0.0), 0.0, 31, 31)] * 2)
    out = render(scene, cams, torch.tensor([0.0, 1.0]))
    assert torch.equal(out.dynamic, out.object_id == 2)
    assert out.dynamic[0, 15, 15] and not out.dynamic[1, 15, 15]  # moved 1.5 m to the right
    assert out.dynamic[1].any()
    # The static wall's colour does not depend on time where it is seen in both frames.
    both = (out.object_id[0] == 1) & (out.object_id[1] == 1)
    assert torch.equal(out.rgb[0][:, both], out.rgb[1][:, both])
    assert not render(scene, cams[:1]).dynamic[0, 0, 0]


def test_supersampling_keeps_exact_geometry_and_smooths_colour(room):
    cams = make_trajectory("orbit", room, 2, 40, 56)
    plain, ss = render(room, cams), render(room, cams, ssaa=2)
    assert torch.equal(plain.depth, ss.depth) and torch.equal(plain.object_id, ss.object_id)
    diff = (plain.rgb - ss.rgb).abs()
    assert diff.mean() < 0.1 and diff.max() > 0  # close on average, but really supersampled


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (33, 17)])
def test_any_resolution(room, size):
    out = render(room, make_trajectory("loop", room, 2, *size))
    assert out.rgb.shape == (2, 3, *size)


def test_render_rejects_bad_arguments(room):
    cams = make_trajectory("orbit", room, 2, 8, 8)
    with pytest.raises(ShapeError, match="times"):
        render(room, cams, torch.zeros(3))
    with pytest.raises(ConfigError, match="ssaa"):
        render(room, cams, ssaa=0)
    with pytest.raises(ConfigError, match="cameras"):
        render(room, "not a camera")
