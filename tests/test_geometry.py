import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.errors import CameraError, MirageError, NonFiniteError, ShapeError
from mirage.geometry import (
    Camera,
    backproject_depth,
    look_at,
    pixel_grid,
    pixel_index,
    project_points,
    rescale_intrinsics,
    rigid_inverse,
)


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_pose(gen: torch.Generator, scale: float = 2.0) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = random_rotation(gen)
    pose[:3, 3] = torch.randn(3, generator=gen, dtype=torch.float64) * scale
    return pose


def simple_camera(T=1, H=32, W=48, f=40.0) -> Camera:
    K = torch.tensor([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    return Camera(K.expand(T, 3, 3).clone(), torch.eye(4).expand(T, 4, 4).clone(), H, W)


class TestCamera:
    def test_len_index_slice(self):
        cam = simple_camera(T=5)
        assert len(cam) == 5
        assert len(cam[2]) == 1 and len(cam[-1]) == 1
        assert len(cam[1:4]) == 3
        torch.testing.assert_close(cam[3].K[0], cam.K[3])
        with pytest.raises(IndexError):
            cam[5]
        # lists, tensors and strided slices select cameras (without validating them again)
        picked = cam[[4, 0, 2]]
        assert torch.equal(picked.K, cam.K[[4, 0, 2]]) and torch.equal(picked.cam2world, cam.cam2world[[4, 0, 2]])
        assert (picked.height, picked.width) == (cam.height, cam.width) and isinstance(picked, Camera)
        assert torch.equal(cam[1::2].K, cam.K[1::2]) and len(cam[torch.tensor([1, 3])]) == 2
        with pytest.raises(IndexError, match="batch axis"):
            cam[None]

    def test_world2cam_is_inverse(self):
        gen = torch.Generator().manual_seed(0)
        poses = torch.stack([random_pose(gen) for _ in range(4)]).float()
        cam = Camera(simple_camera(T=4).K, poses, 32, 48)
        eye = torch.eye(4).expand(4, 4, 4)
        torch.testing.assert_close(cam.world2cam @ cam.cam2world, eye, atol=1e-5, rtol=0)

    def test_scaled_follows_the_rescaling_rule(self):
        cam = simple_camera(H=64, W=96)
        small = cam.scaled(4, 6)
        sx, sy = 6 / 96, 4 / 64
        assert small.hw == (4, 6)
        assert small.K[0, 0, 0].item() == pytest.approx(40 * sx)
        assert small.K[0, 1, 1].item() == pytest.approx(40 * sy)
        assert small.K[0, 0, 2].item() == pytest.approx((47.5 + 0.5) * sx - 0.5)
        assert small.K[0, 1, 2].item() == pytest.approx((31.5 + 0.5) * sy - 0.5)

    def test_look_at_axes(self):
        # Looking along +x with the default up (-y world): camera z = +x, x = -z world, y = +y.
        pose = look_at(torch.tensor([0.0, 0, 0]), torch.tensor([1.0, 0, 0]))
        torch.testing.assert_close(pose[:3, 2], torch.tensor([1.0, 0, 0]))
        torch.testing.assert_close(pose[:3, 1], torch.tensor([0.0, 1, 0]))
        torch.testing.assert_close(pose[:3, 0], torch.tensor([0.0, 0, -1]))

    @pytest.mark.parametrize(
        "mutate, error, words",
        [
            (lambda K, P: K.__setitem__((0, 0, 0), float("nan")), NonFiniteError, "`K`"),
            (lambda K, P: P.__setitem__((0, 0, 3), float("inf")), NonFiniteError, "`cam2world`"),
            (lambda K, P: K.__setitem__((0, 0, 0), 0.0), CameraError, "fx > 0"),
            (lambda K, P: K.__setitem__((0, 1, 1), -3.0), CameraError, "fy > 0"),
            (lambda K, P: P.__setitem__((0, 0, 0), 1.5), CameraError, "rigid"),
            (lambda K, P: P.__setitem__((0, 0, 0), -1.0), CameraError, "rigid"),  # reflection
            (lambda K, P: P.__setitem__((0, 3, 0), 0.2), CameraError, "last row"),
        ],
    )
    def test_invalid_cameras_raise_project_errors(self, mutate, error, words):
        cam = simple_camera()
        K, P = cam.K.clone(), cam.cam2world.clone()
        mutate(K, P)
        with pytest.raises(error, match=words) as info:
            Camera(K, P, 32, 48)
        assert isinstance(info.value, ValueError) and isinstance(info.value, MirageError)

    def test_shape_mismatches(self):
        cam = simple_camera(T=3)
        with pytest.raises(ShapeError, match="same number of cameras"):
            Camera(cam.K, cam.cam2world[:2], 32, 48)
        with pytest.raises(ShapeError, match=r"\(\*, 3, 3\)"):
            Camera(torch.eye(4)[None], cam.cam2world[:1], 32, 48)
        with pytest.raises(CameraError, match="positive"):
            Camera(cam.K, cam.cam2world, 0, 48)
        with pytest.raises(ShapeError):
            Camera.cat([simple_camera(H=32), simple_camera(H=16)])


class TestProjection:
    def test_pixel_index_rounds_half_up(self):
        uv = torch.tensor([[0.49, 0.5], [1.5, -0.5], [-0.51, 2.49]])
        row, col = pixel_index(uv)
        assert col.tolist() == [0, 2, -1]
        assert row.tolist() == [1, 0, 2]

    def test_known_projection(self):
        cam = simple_camera()  # identity pose, f=40, centre (23.5, 15.5)
        uv, z = project_points(torch.tensor([[1.0, -0.5, 4.0]]), cam.K, cam.world2cam)
        torch.testing.assert_close(uv[0, 0], torch.tensor([23.5 + 10.0, 15.5 - 5.0]))
        assert z.item() == pytest.approx(4.0)

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 10_000), depth=st.floats(0.2, 50.0))
    def test_backproject_then_project_returns_pixel_centres(self, seed, depth):
        gen = torch.Generator().manual_seed(seed)
        pose = random_pose(gen)[None]
        H, W = 6, 9
        K = torch.tensor([[[7.0, 0.3, 4.1], [0, 8.0, 2.7], [0, 0, 1]]], dtype=torch.float64)
        depths = torch.full((1, H, W), depth, dtype=torch.float64)
        depths = depths * (1 + torch.rand(1, H, W, generator=gen, dtype=torch.float64))
        points = backproject_depth(depths, K, pose)  # (1, H, W, 3)
        uv, z = project_points(points.reshape(-1, 3), K, torch.linalg.inv(pose))
        torch.testing.assert_close(uv[0], pixel_grid(H, W, dtype=torch.float64).reshape(-1, 2))
        torch.testing.assert_close(z[0], depths.reshape(-1))

    @settings(max_examples=30, deadline=None)
    @given(stride=st.sampled_from([1, 2, 4, 8, 16]), h=st.integers(1, 6), w=st.integers(1, 6),
           f=st.floats(1.0, 500.0), cx=st.floats(-10, 100), cy=st.floats(-10, 100))
    def test_latent_cell_centre_is_block_centre(self, stride, h, w, f, cx, cy):
        # A ray through pixel-space point (s·j + (s−1)/2, s·i + (s−1)/2) must be the ray through
        # latent-space point (j, i) under the rescaled intrinsics.
        K = torch.tensor([[f, 0, cx], [0, f * 1.3, cy], [0, 0, 1]], dtype=torch.float64)
        K_latent = rescale_intrinsics(K, (h * stride, w * stride), (h, w))
        i, j = h - 1, w - 1
        pixel = torch.tensor([stride * j + (stride - 1) / 2, stride * i + (stride - 1) / 2, 1.0],
                             dtype=torch.float64)
        latent = torch.tensor([j, i, 1.0], dtype=torch.float64)
        torch.testing.assert_close(torch.linalg.solve(K, pixel), torch.linalg.solve(K_latent, latent))

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 2**31 - 1), src=st.tuples(st.integers(1, 2000), st.integers(1, 2000)),
           dst=st.tuples(st.integers(1, 300), st.integers(1, 300)),
           dtype=st.sampled_from([torch.float32, torch.float64]))
    def test_rescale_equals_the_per_entry_rule_exactly(self, seed, src, dst, dtype):
        # The rule written out entry by entry (docs/design.md §2.3), in the same order of operations.
        gen = torch.Generator().manual_seed(seed)
        K = torch.zeros(5, 3, 3, dtype=dtype)
        K[:, 0, 0], K[:, 1, 1] = 1 + 900 * torch.rand(2, 5, generator=gen, dtype=dtype)
        K[:, 0, 1] = torch.randn(5, generator=gen, dtype=dtype)
        K[:, :2, 2] = 1000 * torch.rand(5, 2, generator=gen, dtype=dtype) - 100
        K[:, 2, 2] = 1
        (H, W), (h, w) = src, dst
        sx, sy = w / W, h / H
        expected = K.clone()
        expected[:, 0, 0], expected[:, 0, 1] = K[:, 0, 0] * sx, K[:, 0, 1] * sx
        expected[:, 1, 1] = K[:, 1, 1] * sy
        expected[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
        expected[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
        out = rescale_intrinsics(K, src, dst)
        assert out.dtype == dtype and torch.equal(out, expected)
        torch_path = rescale_intrinsics(K.clone().requires_grad_(), src, dst).detach()  # not NumPy
        assert torch.equal(torch_path, expected)
        assert torch.equal(rescale_intrinsics(K[0], src, dst), expected[0])  # unbatched (3, 3)

    def test_rescale_rejects_bad_sizes(self):
        with pytest.raises(ShapeError):
            rescale_intrinsics(torch.eye(3), (0, 4), (2, 2))


def test_import_mirage_does_not_import_diffusers():
    import subprocess
    import sys

    code = "import sys, mirage, mirage.memory, mirage.geometry; print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fov_camera():
    cam = Camera.from_fov(torch.eye(4), 32, 64, fov_x_deg=90.0)
    assert cam.K[0, 0, 0].item() == pytest.approx(32.0)
    assert cam.K[0, 0, 2].item() == pytest.approx(31.5)
    assert math.isclose(cam.K[0, 1, 1].item(), 32.0, rel_tol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_rigid_inverse_is_the_closed_form_and_inverts(seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    cam2world = torch.stack([random_pose(gen, 5.0) for _ in range(4)]).to(dtype)
    R, t = cam2world[:, :3, :3], cam2world[:, :3, 3:]
    expected = torch.zeros_like(cam2world)  # [Rᵀ | −Rᵀt; 0 0 0 1], assigned block by block
    expected[:, :3, :3] = R.transpose(-1, -2)
    expected[:, :3, 3:] = -R.transpose(-1, -2) @ t
    expected[:, 3, 3] = 1
    out = rigid_inverse(cam2world)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    eye = torch.eye(4, dtype=dtype).expand(4, 4, 4)
    torch.testing.assert_close(out @ cam2world, eye, atol=1e-5, rtol=0)


@pytest.mark.parametrize("grad", [False, True])
def test_check_finite_names_the_count(grad):
    from mirage.errors import NonFiniteError
    from mirage.geometry import check_finite

    x = torch.ones(3, 4, requires_grad=grad)
    check_finite("x", x)
    check_finite("x", torch.ones(2, dtype=torch.bfloat16))
    bad = x.detach().clone()
    bad[0, 1], bad[2, 3] = float("nan"), float("-inf")
    with pytest.raises(NonFiniteError, match="2 NaN/inf value"):
        check_finite("x", bad.requires_grad_(grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backproject_equals_a_per_pixel_loop(dtype):
    # The pinhole model with skew, pixel by pixel in float64 Python arithmetic.
    from mirage.geometry import backproject_depth

    gen = torch.Generator().manual_seed(7)
    T, H, W = 2, 4, 5
    K = torch.zeros(T, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = 20 + 50 * torch.rand(2, T, generator=gen, dtype=torch.float64)
    K[:, 0, 1] = torch.randn(T, generator=gen, dtype=torch.float64)
    K[:, :2, 2] = 10 * torch.rand(T, 2, generator=gen, dtype=torch.float64)
    K[:, 2, 2] = 1
    cam2world = torch.stack([random_pose(gen) for _ in range(T)])
    depth = 0.5 + 5 * torch.rand(T, H, W, generator=gen, dtype=torch.float64)
    out = backproject_depth(depth.to(dtype), K.to(dtype), cam2world.to(dtype))
    expected = torch.zeros(T, H, W, 3, dtype=torch.float64)
    for t in range(T):
        (fx, s, cx), (_, fy, cy), _ = K[t].tolist()
        for i in range(H):
            for j in range(W):
                z = float(depth[t, i, j])
                y = (i - cy) / fy * z
                x = (j - cx - s * y / z) / fx * z
                expected[t, i, j] = cam2world[t, :3, :3] @ torch.tensor([x, y, z], dtype=torch.float64) + cam2world[t, :3, 3]
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                               atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixel_rays_invert_the_projection_with_skew(dtype):
    """The one unprojection: K⁻¹ (u, v, 1) by a linear solve in float64, pixel by pixel, and the
    rays project back onto their pixel centres."""
    from mirage.geometry import pixel_rays

    gen = torch.Generator().manual_seed(11)
    T, H, W = 3, 4, 6
    K = torch.zeros(T, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = 20 + 50 * torch.rand(2, T, generator=gen, dtype=torch.float64)
    K[:, 0, 1] = torch.randn(T, generator=gen, dtype=torch.float64)
    K[:, :2, 2] = 10 * torch.rand(T, 2, generator=gen, dtype=torch.float64)
    K[:, 2, 2] = 1
    rays = pixel_rays(K.to(dtype), H, W)
    assert rays.shape == (T, H, W, 3) and rays.dtype == dtype and bool((rays[..., 2] == 1).all())
    for t in range(T):
        for i in range(H):
            for j in range(W):
                expected = torch.linalg.solve(K[t], torch.tensor([j, i, 1.0], dtype=torch.float64))
                torch.testing.assert_close(rays[t, i, j].double(), expected / expected[2],
                                           rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
    uv, z = project_points(rays.reshape(T, -1, 3).double(), K, torch.eye(4, dtype=torch.float64).repeat(T, 1, 1))
    torch.testing.assert_close(uv, pixel_grid(H, W, dtype=torch.float64).reshape(1, -1, 2).expand(T, -1, -1),
                               rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)


@given(st.floats(-10.0, 10.0, allow_nan=False))
@settings(max_examples=50, deadline=None)
def test_yaw_rotation_is_a_level_heading(yaw):
    """A rotation about the world vertical whose forward axis is (sin ψ, 0, cos ψ): the camera
    look_at gives for that heading, and turning by a then b is turning by a + b."""
    from mirage.geometry import yaw_rotation

    R = yaw_rotation(yaw)
    torch.testing.assert_close(R.T @ R, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    forward = torch.tensor([math.sin(yaw), 0.0, math.cos(yaw)], dtype=torch.float64)
    torch.testing.assert_close(R[:, 2], forward, rtol=0, atol=1e-12)
    eye = torch.tensor([1.0, -1.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(look_at(eye, eye + forward)[:3, :3], R, rtol=0, atol=1e-12)
    torch.testing.assert_close(yaw_rotation(0.3) @ yaw_rotation(yaw), yaw_rotation(yaw + 0.3), rtol=0, atol=1e-12)
