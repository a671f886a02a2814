"""Where `mirage generate --image` paths start: the image's camera, its intrinsics, --frames."""

import torch

from mirage.cli.starts import image_trajectory
from mirage.geometry import Camera


def test_a_written_path_from_an_image_starts_at_its_camera_with_its_intrinsics():
    K = Camera.from_fov(torch.eye(4), 64, 96, 50.0).K[0]
    cams = image_trajectory("forward 1, turn-left 30", 17, (64, 96), K)
    assert len(cams) == 17 and cams.hw == (64, 96)
    assert torch.equal(cams.K, K.expand(17, 3, 3))
    torch.testing.assert_close(cams.cam2world[0], torch.eye(4))
    torch.testing.assert_close(cams.cam2world[-1, :3, 3], torch.tensor([0.0, 0.0, 1.0]))
    assert not torch.allclose(cams.cam2world[-1, :3, :3], torch.eye(3))  # it turned
