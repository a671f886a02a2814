import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.errors import ConfigError, MirageError
from mirage.geometry import Camera
from mirage.world import DEFAULT_FOV_X_DEG, FAMILIES, PRESETS, generate_scene, make_trajectory
from mirage.world.scene import signed_distance

from .conftest import yaw_of

MARGIN = 0.3  # metres between a camera centre and the nearest solid


def test_registry_lists_the_five_presets_with_defaults():
    assert set(PRESETS) == {"pan-return", "orbit", "forward-back", "loop", "random-walk"}
    assert PRESETS["pan-return"].defaults["angle_deg"] >= 90
    assert {n for n, p in PRESETS.items() if p.closed} == {"pan-return", "orbit", "forward-back", "loop"}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_collision_free(family, seed, name):
    scene = generate_scene(family, seed, moving=2)
    cams = make_trajectory(name, scene, 40, 16, 16)
    centres = cams.cam2world[:, :3, 3].double()  # (F, 3)
    times = torch.arange(40, dtype=torch.float64) / 16
    dist = signed_distance(scene, centres[:, None], times)  # moving objects at each frame's time
    assert dist.min() > MARGIN, f"{name} comes within {dist.min():.3f} m of a solid"
    radial = (centres[:, [0, 2]] - torch.tensor(scene.center, dtype=torch.float64)[[0, 2]]).norm(dim=-1)
    assert radial.max() <= scene.free_radius + 1e-6


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.closed])
@pytest.mark.parametrize("frames", [2, 17, 33, 48])
def test_closed_presets_end_exactly_on_their_start_pose(room, name, frames):
    cams = make_trajectory(name, room, frames, 32, 32)
    assert torch.equal(cams.cam2world[-1], cams.cam2world[0])
    assert torch.equal(cams.K[-1], cams.K[0])


def test_pan_return_turns_at_least_90_degrees_and_comes_back(room):
    cams = make_trajectory("pan-return", room, 33, 32, 32)
    yaw = yaw_of(cams.cam2world)
    turn = torch.remainder(yaw - yaw[0] + math.pi, 2 * math.pi) - math.pi
    assert turn.abs().max().item() >= math.radians(90)
    assert turn.abs().max().item() == pytest.approx(math.radians(120), abs=1e-5)
    # It stands still while it turns.
    assert torch.equal(cams.cam2world[:, :3, 3], cams.cam2world[:1, :3, 3].expand(33, 3))


def test_orbit_looks_at_the_centre_and_loop_looks_ahead(room):
    orbit = make_trajectory("orbit", room, 24, 16, 16)
    to_centre = torch.tensor(room.center) - orbit.cam2world[:, :3, 3]
    fwd = orbit.cam2world[:, :3, 2]
    cos = (to_centre * fwd).sum(-1) / to_centre.norm(dim=-1)
    torch.testing.assert_close(cos, torch.ones(24), atol=1e-5, rtol=0)
    loop = make_trajectory("loop", room, 64, 16, 16)
    step = loop.cam2world[1:, :3, 3] - loop.cam2world[:-1, :3, 3]
    fwd = loop.cam2world[:-1, :3, 2]
    cos = (step * fwd).sum(-1) / step.norm(dim=-1)
    assert cos.min() > 0.99  # heading along the direction of travel


def test_forward_back_moves_along_its_view_direction(room):
    cams = make_trajectory("forward-back", room, 33, 16, 16)
    move = cams.cam2world[16, :3, 3] - cams.cam2world[0, :3, 3]
    assert move.norm().item() == pytest.approx(0.7 * room.free_radius, rel=1e-5)
    torch.testing.assert_close(move / move.norm(), cams.cam2world[0, :3, 2], atol=1e-5, rtol=0)


def test_presets_are_cameras_with_the_default_fov(room):
    cams = make_trajectory("random-walk", room, 10, 48, 64)
    assert isinstance(cams, Camera) and len(cams) == 10 and cams.hw == (48, 64)
    fx = cams.K[0, 0, 0].item()
    assert 2 * math.degrees(math.atan(32 / fx)) == pytest.approx(DEFAULT_FOV_X_DEG, abs=1e-4)
    assert cams.K[0, 0, 2].item() == pytest.approx(31.5)


def test_random_walk_is_seeded(room):
    a = make_trajectory("random-walk", room, 30, 8, 8, seed=1)
    assert torch.equal(a.cam2world, make_trajectory("random-walk", room, 30, 8, 8, seed=1).cam2world)
    assert not torch.equal(a.cam2world, make_trajectory("random-walk", room, 30, 8, 8, seed=2).cam2world)
    steps = (a.cam2world[1:, :3, 3] - a.cam2world[:-1, :3, 3]).norm(dim=-1)
    assert steps.max().item() <= 0.04 + 1e-6


@settings(max_examples=25, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    seed=st.integers(0, 10_000),
    name=st.sampled_from(sorted(PRESETS)),
    frames=st.integers(1, 60),
)
def test_presets_stay_in_free_space_for_any_scene(family, seed, name, frames):
    scene = generate_scene(family, seed)
    cams = make_trajectory(name, scene, frames, 8, 8)
    assert len(cams) == frames
    dist = signed_distance(scene, cams.cam2world[None, :, :3, 3])
    assert dist.min() > MARGIN


def test_bad_trajectory_arguments_raise(room):
    with pytest.raises(ConfigError, match="trajectory"):
        make_trajectory("spiral", room, 10, 8, 8)
    with pytest.raises(ConfigError, match="frames"):
        make_trajectory("orbit", room, 0, 8, 8)
    with pytest.raises(ConfigError, match="options"):
        make_trajectory("orbit", room, 10, 8, 8, speed=3)
    with pytest.raises(ConfigError, match="radius"):
        make_trajectory("orbit", room, 10, 8, 8, radius=100.0)
    with pytest.raises(MirageError, match="height"):
        make_trajectory("orbit", room, 10, 0, 8)
