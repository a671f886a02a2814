"""The tiny random backbones of ``tests/backbones/conftest.py``, shared here, and a small world."""

import pytest
import torch

from tests.backbones.conftest import SMALL, backbone, small_backbone  # noqa: F401


@pytest.fixture(scope="module")
def world():
    """Room 3 on a 25-frame pan-return at 32x32: the scene, its cameras and its ground truth."""
    from mirage.world import generate_scene, make_trajectory, render

    scene = generate_scene("room", 3)
    cams = make_trajectory("pan-return", scene, 25, 32, 32, angle_deg=150.0)
    gt = render(scene, cams, torch.arange(25) / 16)
    return scene, cams, gt


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The small random tiny backbone saved as a weights file, for CLI runs."""
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    small_backbone().save(path)
    return path
