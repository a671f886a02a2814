from __future__ import annotations

import math

import pytest
import torch

from mirage.evaluation.proxies import (fit_translation_scale, flow_roundtrip_error, rotation_error_deg,
                                       translation_error)


def test_flow_roundtrip_hand_computed():
    H, W = 4, 5
    right = torch.zeros(H, W, 2)
    right[..., 0] = 1.0
    assert flow_roundtrip_error(right, -right) == pytest.approx(0.0)  # consistent both ways
    assert flow_roundtrip_error(right, torch.zeros(H, W, 2)) == pytest.approx(1.0)  # backward forgot the motion
    back = torch.zeros(H, W, 2)
    back[..., 1] = 2.0  # ‖(1, 0) + (0, 2)‖ = √5
    assert flow_roundtrip_error(right, back) == pytest.approx(math.sqrt(5))
    far = torch.full((H, W, 2), 50.0)
    assert math.isnan(flow_roundtrip_error(far, -far))  # every target leaves the image


def _rot_z(deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_rotation_error_hand_computed():
    R_est = torch.stack([_rot_z(10), _rot_z(30), torch.eye(3, dtype=torch.float64)])
    R_gt = torch.stack([torch.eye(3, dtype=torch.float64), _rot_z(-60), torch.eye(3, dtype=torch.float64)])
    assert rotation_error_deg(R_est, R_gt).tolist() == pytest.approx([10.0, 90.0, 0.0], abs=1e-6)


def test_translation_error_hand_computed():
    # a pure scale: c = 2 explains everything
    err, c = translation_error(torch.tensor([[0.5, 0, 0], [1.0, 0, 0]]), torch.tensor([[1.0, 0, 0], [2.0, 0, 0]]))
    assert c == pytest.approx(2.0, abs=1e-6) and err == pytest.approx(0.0, abs=1e-6)
    # Σ‖t_gt − c·t_est‖ = |1 − c| + √(1 + c²) is smallest at c = 1: errors 0 and √2, mean √2 / 2
    err, c = translation_error(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    assert c == pytest.approx(1.0, abs=1e-6) and err == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    # the fit minimises the sum of norms, not of squares: it follows the majority, not the outlier
    t_est = torch.tensor([[1.0, 0, 0]] * 3)
    t_gt = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [10.0, 0, 0]])
    assert fit_translation_scale(t_est, t_gt) == pytest.approx(1.0, abs=1e-6)
    assert fit_translation_scale(t_est, torch.zeros(3, 3)) == pytest.approx(0.0, abs=1e-6)


def test_sift_camera_error_on_ground_truth():
    pytest.importorskip("cv2")
    from mirage.evaluation.proxies import video_camera_error
    from mirage.world import generate_scene, make_trajectory, render

    scene = generate_scene("room", 3)
    cams = make_trajectory("orbit", scene, 33, 64, 64)
    gt = render(scene, cams[:9])
    result = video_camera_error(gt.rgb, cams[:9])
    assert result["pairs"] == 8 and result["pairs_ok"] >= 4
    assert result["rotation_deg"] < 10.0  # consecutive orbit frames turn 11.25°; estimated within 10°
    shuffled = video_camera_error(gt.rgb[torch.tensor([0, 5, 2, 7, 4, 1, 6, 3, 8])], cams[:9])
    assert shuffled["pairs_ok"] < result["pairs_ok"] or shuffled["rotation_deg"] > 2 * result["rotation_deg"]
