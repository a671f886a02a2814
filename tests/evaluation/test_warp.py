from __future__ import annotations

import pytest
import torch

from mirage.errors import ShapeError
from mirage.evaluation.warp import video_warp_error, warp_error, warp_pairs
from mirage.geometry import Camera

H, W, F_PX, Z = 6, 8, 10.0, 2.0  # fronto-parallel plane at z = 2, focal length 10 px


def _camera(x: float = 0.0) -> Camera:
    K = torch.tensor([[F_PX, 0.0, (W - 1) / 2], [0.0, F_PX, (H - 1) / 2], [0.0, 0.0, 1.0]])
    pose = torch.eye(4)
    pose[0, 3] = x
    return Camera(K, pose, H, W)


def _frame(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_same_camera_constant_offset():
    a = _frame()
    depth = torch.full((H, W), Z)
    err, n = warp_error(a, (a + 0.2).clamp(max=5), depth, depth, _camera(), _camera())
    assert n == H * W
    assert err == pytest.approx(0.1)  # |Δ| = 0.2 in [-1, 1] = 0.1 in [0, 1] units


def test_one_pixel_shift_hand_computed():
    # camera t' moved right by z/f = 0.2: a point at column j of t lands on column j − 1 of t'
    a = _frame()
    b = torch.roll(a, -1, dims=2)
    depth = torch.full((H, W), Z)
    err, n = warp_error(a, b, depth, depth, _camera(), _camera(Z / F_PX))
    assert n == H * (W - 1)  # column 0 of t leaves the image
    assert err == pytest.approx(0.0, abs=1e-6)
    err, _ = warp_error(a, b + 0.5, depth, depth, _camera(), _camera(Z / F_PX))
    assert err == pytest.approx(0.25, abs=1e-6)


def test_occlusion_and_invalid_depth_are_not_counted():
    a = _frame()
    depth = torch.full((H, W), Z)
    occluded = depth.clone()
    occluded[:, 2] = 1.0  # t' sees something nearer at column 2: t's points there are hidden
    src_depth = depth.clone()
    src_depth[0, :] = float("inf")  # sky
    b = a.clone()
    b[:, :, 2] = 5.0  # would be a large error if counted
    err, n = warp_error(a, b, src_depth, occluded, _camera(), _camera())
    assert n == (H - 1) * (W - 1)
    assert err == pytest.approx(0.0, abs=1e-6)
    exclude = torch.zeros(H, W, dtype=torch.bool)
    exclude[:, 0] = True
    _, n = warp_error(a, b, src_depth, occluded, _camera(), _camera(), exclude_src=exclude)
    assert n == (H - 1) * (W - 2)
    err, n = warp_error(a, b, depth, depth, _camera(), _camera(100.0))
    assert n == 0 and err != err  # nothing lands in view: NaN
    with pytest.raises(ShapeError):
        warp_error(a, b, depth[:-1], depth, _camera(), _camera())


def test_warp_pairs():
    assert warp_pairs(6, 4) == [(0, 4), (1, 5)]


@pytest.fixture(scope="module")
def rendered():
    from mirage.world import generate_scene, make_trajectory, render

    scene = generate_scene("room", 3)
    cams = make_trajectory("orbit", scene, 13, 48, 48)
    return cams, render(scene, cams, ssaa=2)


def test_ground_truth_is_consistent_and_shuffled_is_not(rendered):
    cams, gt = rendered
    exact = video_warp_error(gt.rgb, gt.depth, cams, gap=2, exclude=gt.sky)
    shuffled = video_warp_error(gt.rgb[torch.tensor([0, 7, 3, 11, 1, 9, 5, 12, 2, 10, 4, 8, 6])], gt.depth, cams, gap=2)
    assert exact < 0.03  # resampling noise only
    assert shuffled > 0.08 and shuffled > 4 * exact
