from __future__ import annotations

import math

import pytest
import torch

from mirage.errors import ShapeError
from mirage.evaluation.metrics import (PSNR_8BIT, SSIM_K1, closed_loop, frame_psnr, frame_segments, frame_ssim, psnr,
                                       read_latent_error, revisit_frames, ssim)
from mirage.geometry import Camera
from mirage.world.trajectories import level_pose


def test_psnr_hand_computed():
    a = torch.zeros(3, 2, 2)
    b = torch.full((3, 2, 2), 0.1)  # MSE 0.01, range 2 → 10·log10(4 / 0.01)
    assert psnr(a, b) == pytest.approx(10 * math.log10(400.0))
    assert psnr(a, b, data_range=1.0) == pytest.approx(20.0)
    b[0, 0, 0] = 0.0  # MSE 0.11/12
    assert psnr(a, b) == pytest.approx(10 * math.log10(4 / (0.11 / 12)))
    assert psnr(a, a) == math.inf
    assert frame_psnr(torch.stack([a, a]), torch.stack([a, torch.full_like(a, 0.1)])) == pytest.approx([math.inf, 26.0206], abs=1e-4)
    with pytest.raises(ShapeError):
        psnr(a, torch.zeros(3, 2, 3))


def test_ssim_hand_computed_constant_images():
    # constant images: every variance/covariance is 0, so SSIM = (2ab + C1) / (a² + b² + C1)
    # with a, b the values mapped to [0, 1] and C1 = K1²: 0.2 → 0.6, −0.4 → 0.3
    a, b = 0.6, 0.3
    c1 = SSIM_K1**2
    x, y = torch.full((3, 12, 13), 0.2), torch.full((3, 12, 13), -0.4)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)
    assert ssim(x * 127.5 + 127.5, y * 127.5 + 127.5, value_range=(0, 255)) == pytest.approx(ssim(x, y), abs=1e-6)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)


def test_ssim_structure():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    same = frame_ssim(x, x)
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)
    assert ssim(x[0], -x[0]) < 0  # anticorrelated structure
    noisy = (x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert all(0 < s < 0.9 for s in frame_ssim(noisy, x))
    with pytest.raises(ShapeError):
        frame_ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))  # smaller than the window


def _cams(yaws, positions=None) -> Camera:
    positions = positions or [(0.0, 0.0, 0.0)] * len(yaws)
    poses = torch.stack([level_pose(p, math.radians(y)) for p, y in zip(positions, yaws)]).float()
    return Camera.from_fov(poses, 16, 16, 60.0)


def test_revisit_frames_and_segments():
    cams = _cams([0, 40, 80, 40, 25, 10, 0])
    assert revisit_frames(cams, 2) == [4, 5, 6]  # within 30° of frame 0, after the first chunk
    assert revisit_frames(cams, 2, max_angle_deg=20) == [5, 6]
    moved = _cams([0, 0, 0, 0], [(0, 0, 0), (1.0, 0, 0), (0.1, 0, 0), (1.0, 0, 0)])
    assert revisit_frames(moved, 0) == [2]  # back within 0.3 units; frame 3 is 1.0 away
    # frames near the start view that the camera has not left yet are not revisits, however
    # short the first chunk: the set is the same for chunk ends 0 and 2
    slow = _cams([0, 5, 10, 20, 40, 80, 40, 10, 0])
    assert revisit_frames(slow, 0) == revisit_frames(slow, 2) == [7, 8]
    assert revisit_frames(_cams([0, 5, 10, 5, 0]), 0) == []  # never left
    assert frame_segments([9, 3, 4, 5]) == [(3, 5), (9, 9)]
    assert frame_segments([]) == []


def test_closed_loop():
    video = torch.zeros(3, 3, 16, 16)
    video[-1] = 0.1
    loop = closed_loop(video, _cams([0, 90, 0]))
    assert loop["psnr"] == pytest.approx(26.0206, abs=1e-4)
    assert loop["ssim"] < 1
    assert closed_loop(video, _cams([0, 90, 45])) is None
    video[-1] = video[0]  # an exact return: capped at the 8-bit PSNR, not infinite
    assert closed_loop(video, _cams([0, 90, 0]))["psnr"] == pytest.approx(58.9226, abs=1e-4) == PSNR_8BIT


def test_read_latent_error_hand_computed():
    read = torch.ones(2, 3, 2, 2)
    target = torch.full((2, 3, 2, 2), 2.0)
    mask = torch.zeros(3, 2, 2, dtype=torch.bool)
    assert read_latent_error(read, mask, target) is None
    mask[1, 0, :] = True
    read[:, ~mask] = 100.0  # uncovered cells never count
    err = read_latent_error(read, mask, target)
    assert err == {"rmse": pytest.approx(1.0), "relative": pytest.approx(0.5)}
    with pytest.raises(ShapeError):
        read_latent_error(read, mask[:2], target)
