import math

import pytest
import torch

from mirage.errors import ConfigError, MirageError
from mirage.world import FAMILIES, generate_scene, scene_from_json, scene_to_json
from mirage.world.scene import Box, Motion, Plane, Scene, Sphere, signed_distance
from mirage.world.textures import PHOTO_NAMES, Material, load_photos

from .conftest import FLAT


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_scene_and_different_seed_different_scene(family):
    a, b = generate_scene(family, 11), generate_scene(family, 11)
    assert a == b
    assert scene_to_json(a) == scene_to_json(b)
    assert generate_scene(family, 12) != a


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_json_round_trip_is_exact(family, seed):
    scene = generate_scene(family, seed, moving=2)
    back = scene_from_json(scene_to_json(scene))
    assert back == scene
    assert scene_to_json(back) == scene_to_json(scene)


def test_room_is_enclosed_and_courtyard_has_sky():
    room = generate_scene("room", 4)
    assert not room.sky and len(room.planes) == 6
    # The centre is inside every wall's half-space, by more than the free radius.
    c = torch.tensor([[room.center]])
    assert signed_distance(room, c).item() >= room.free_radius
    court = generate_scene("courtyard", 4)
    assert court.sky and len(court.planes) == 1 and len(court.boxes) >= 7


@pytest.mark.parametrize("seed", range(6))
def test_room_walls_all_look_different(seed):
    planes = generate_scene("room", seed).planes
    mats = [(p.material.texture, p.material.color_a, p.material.color_b, p.material.scale) for p in planes]
    assert len(set(mats)) == len(mats)
    # Colours differ by a visible amount, not only by round-off.
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            a, b = planes[i].material, planes[j].material
            diff = max(abs(x - y) for x, y in zip(a.color_a + a.color_b, b.color_a + b.color_b))
            assert diff > 0.02 or a.texture != b.texture


def test_object_ids_are_unique_and_start_at_one():
    scene = generate_scene("courtyard", 9, moving=1)
    ids = [p.object_id for p in scene.primitives]
    assert sorted(ids) == list(range(1, len(ids) + 1))
    assert len(scene.dynamic_ids) == 1


def test_bad_inputs_raise_project_errors():
    with pytest.raises(ConfigError, match="family"):
        generate_scene("attic", 0)
    with pytest.raises(ConfigError, match="seed"):
        generate_scene("room", -1)
    with pytest.raises(ConfigError, match="moving"):
        generate_scene("room", 0, moving=99)
    with pytest.raises(ConfigError, match="radius"):
        Sphere(1, FLAT, (0, 0, 0), 0.0)
    with pytest.raises(ConfigError, match="half_size"):
        Box(1, FLAT, (0, 0, 0), (1, 0, 1))
    with pytest.raises(ConfigError, match="texture"):
        Material("plaid", (0, 0, 0), (1, 1, 1))
    with pytest.raises(ConfigError, match="photo"):
        Material("photo", (0, 0, 0), (1, 1, 1))
    with pytest.raises(ConfigError, match="unique"):
        Scene("room", 0, planes=(Plane(1, FLAT, (0, 1, 0), 0.0), Plane(1, FLAT, (1, 0, 0), 0.0)))
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, MirageError)


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "other"}', '{"format": "mirage-scene", "family": "room"}',
                                  '{"format": "mirage-scene", "family": "room", "seed": 0, "planes": [{"x": 1}]}'])
def test_malformed_scene_json_raises(text):
    with pytest.raises(MirageError):
        scene_from_json(text)


def test_signed_distance_matches_analytic_values():
    scene = Scene(
        "courtyard", 0,
        planes=(Plane(1, FLAT, (0, -1, 0), 0.0),),
        boxes=(Box(2, FLAT, (5.0, -1.0, 0.0), (1.0, 1.0, 1.0)),),
        spheres=(Sphere(3, FLAT, (0.0, -1.0, 5.0), 0.5, Motion(a=(1.0, 0.0, 0.0), omega=math.pi / 2)),),
        sky=True,
    )
    pts = torch.tensor([[[0.0, -2.0, 0.0], [2.0, -1.0, 0.0], [0.0, -1.0, 5.0]]])
    d0 = signed_distance(scene, pts, torch.tensor([0.0]))
    torch.testing.assert_close(d0, torch.tensor([[2.0, 1.0, -0.5]], dtype=torch.float64))
    # At t = 1 s the sphere has moved by +1 in x: the third point is now on its surface+0.5.
    d1 = signed_distance(scene, pts, torch.tensor([1.0]))
    torch.testing.assert_close(d1[0, 2], torch.tensor(0.5, dtype=torch.float64))


def test_photo_textures_ship_with_the_package():
    photos, gray = load_photos()
    assert photos.shape == (len(PHOTO_NAMES), 64, 64, 3)
    assert gray.tolist() == [True, True, True, False, False, False]
    # Real photographs: many distinct values and visible contrast.
    for k in range(len(PHOTO_NAMES)):
        assert photos[k].std() > 0.05
        assert torch.unique(photos[k][..., 0]).numel() > 40
