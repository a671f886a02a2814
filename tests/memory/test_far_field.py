"""The far field: the cube map against its Python twin, and what the store does with it."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.geometry import Camera, look_at
from mirage.memory import LatentSpatialMemory
from mirage.memory.far_field import (FarField, _cube_cell_python, cell_directions, cell_rays, cube_cells,
                                     far_field_lookup_reference, far_field_write_reference)

ROOM = BoxRoom()


def test_cube_cells_of_cell_centres_are_the_cells_and_cover_the_sphere():
    for R in (1, 3, 28):
        centres = cell_directions(R)
        assert torch.equal(cube_cells(centres, R), torch.arange(6 * R * R))
        assert torch.allclose(centres.norm(dim=1), torch.ones(6 * R * R))
    # bounded cells: uniform random directions reach every cell, the largest (face centre)
    # under 3^1.5 ≈ 5.2 times the smallest (corner) in solid angle
    d = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(cube_cells(d, 4), minlength=96).float()
    assert counts.min() > 0 and counts.max() / counts.min() < 5.2


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), R=st.sampled_from([1, 2, 5, 28, 1024]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_cube_cells_equal_the_python_loop(seed, R, dtype):
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    d[:50] = torch.randint(-1, 2, (50, 3), generator=gen).double()  # ties and zeros between axes
    d = d[d.abs().amax(dim=1) > 0].to(dtype)
    expected = [_cube_cell_python(x, R) for x in d.double().tolist()]
    assert cube_cells(d, R).tolist() == expected


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), h=st.integers(1, 5), w=st.integers(1, 5))
def test_cell_rays_are_the_inverse_intrinsics_turned_into_the_world(seed, h, w):
    gen = torch.Generator().manual_seed(seed)
    V = 2
    K = torch.eye(3, dtype=torch.float64).repeat(V, 1, 1)
    K[:, [0, 1], [0, 1]] = 1 + 9 * torch.rand(V, 2, generator=gen, dtype=torch.float64)  # fx, fy
    K[:, 0, 1] = torch.randn(V, generator=gen, dtype=torch.float64)  # skew
    K[:, :2, 2] = 5 * torch.randn(V, 2, generator=gen, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(V, 3, 3, generator=gen, dtype=torch.float64)).Q
    rays = cell_rays(K, rotation, (h, w))
    for view in range(V):
        for i in range(h):
            for j in range(w):
                d = rotation[view] @ torch.linalg.inv(K[view]) @ torch.tensor([j, i, 1.0], dtype=torch.float64)
                assert torch.allclose(rays[view, i, j], d / d.norm(), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), R=st.sampled_from([1, 2, 5]), writes=st.integers(1, 4))
def test_write_and_lookup_equal_the_python_loop(seed, R, writes):
    # Crowded: many candidates per cell, confidence levels, orders: every tie-break is used.
    gen = torch.Generator().manual_seed(seed)
    far = FarField(3, R)
    state, batches = {}, []
    for _ in range(writes):
        M = int(torch.randint(1, 60, (1,), generator=gen))
        d = torch.nn.functional.normalize(torch.randn(M, 3, generator=gen), dim=1)
        tokens = torch.randn(M, 3, generator=gen)
        level = torch.randint(0, 2, (M,), generator=gen)
        conf = torch.tensor([0.5, 1.0])[level]
        priority = 3 * level + torch.randint(0, 3, (M,), generator=gen)  # confidence first
        far.write(tokens, d, conf, priority, torch.zeros(M, dtype=torch.long), torch.zeros(M, 3, dtype=torch.uint8))
        batches.append((tokens, d, conf, priority))
    far_field_write_reference(state, R, batches)
    queries = torch.nn.functional.normalize(torch.randn(300, 3, generator=gen), dim=1)
    cell, written = far.lookup(queries)
    expected = far_field_lookup_reference(state, R, queries)
    assert written.tolist() == [e is not None for e in expected]
    for c, w, e in zip(cell.tolist(), written.tolist(), expected):
        if w:
            assert torch.equal(far.features[c], e)
    assert far.num_written == len(state)


def _sky_room(frames: int):
    """A pan in the box room whose upper quarter is sky (no depth)."""
    cams = pan_path(frames, 32, 64, degrees=150.0, passes=2)
    depth = ROOM.depth(cams)
    depth[:, :8] = float("inf")
    return cams, depth


def test_the_given_frames_sky_comes_back_exactly_at_its_pose():
    cams, depth = _sky_room(13)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(13, 4, 8, 16, generator=gen)
    mem = LatentSpatialMemory(4, far_field=True)
    mem.write(latents[:1], depth[:1], cams[0], frame_ids=[0], confidence=1.0)
    size = mem.far.num_written
    for a in range(1, 13, 4):  # generated frames at lower confidence, with their own tokens
        ids = list(range(a, a + 4))
        mem.write(latents[ids], depth[ids], cams[ids], frame_ids=ids, confidence=0.5)
    read = mem.read(cams[0], (8, 16))
    sky = torch.zeros(1, 8, 16, dtype=torch.bool)
    sky[:, :2] = True  # the first two latent rows are all sky
    assert bool(read.far[sky].all()) and not bool(read.far[~sky].any())
    assert bool(read.mask.all())
    assert torch.equal(read.features[0][:, sky[0]], latents[0][:, sky[0]])  # frame 0's sky tokens
    assert read.offset[0][:, sky[0]].abs().max() < 1e-3  # written along exactly these rays
    assert torch.isinf(read.depth[sky]).all() and bool((read.index[sky] == -1).all())
    # only written cells are stored: the generated frames' sky added cells, never beyond the map
    assert size < mem.far.num_written <= 6 * mem.far.resolution ** 2
    assert mem.far.features.shape == (mem.far.num_written, 4) and torch.equal(mem.far.cells, mem.far.cells.unique())
    # without a far field the sky is simply not covered
    plain = LatentSpatialMemory(4)
    plain.write(latents[:1], depth[:1], cams[0], frame_ids=[0])
    assert not bool(plain.read(cams[0], (8, 16)).mask[sky].any())


def test_a_point_always_wins_over_the_far_field():
    cams, depth = _sky_room(1)
    mem = LatentSpatialMemory(2, far_field=True)
    mem.write(torch.zeros(1, 2, 8, 16), depth, cams)  # sky in rows 0-1 → far field
    # a second frame writes a point where the first saw sky (a surface seen there later)
    near = torch.full((1, 32, 64), 2.0)
    mem.write(torch.ones(1, 2, 8, 16), near, cams, confidence=1.0)
    read = mem.read(cams, (8, 16))
    assert not bool(read.far.any()) and bool((read.features == 1).all())


def test_less_trusted_points_never_hide_the_given_frame_in_its_own_view():
    # Frame 0 (confidence 1) sees the room; a generated frame (0.5) at a nearby pose has depth
    # estimated too near in its left half and a point where frame 0 saw sky. In frame 0's view
    # those points would land in front of frame 0's points or in its sky: they are not written.
    # frame 1 turned 35° right: its left half overlaps frame 0's view, its right half is new
    cams = Camera.from_fov(look_at(torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 1.0], [0.57, 0.0, 0.82]])),
                           32, 64, 70.0)
    depth = ROOM.depth(cams)
    depth[0, :8] = float("inf")  # frame 0's sky
    wrong = depth[1:].clone()
    wrong[..., :24] *= 0.5  # too near
    wrong[:, :8] = 3.0  # points where frame 0 saw sky
    mem = LatentSpatialMemory(2, far_field=True)
    mem.write(torch.zeros(1, 2, 8, 16), depth[:1], cams[0], frame_ids=[0], confidence=1.0)
    mem.write(torch.ones(1, 2, 8, 16), wrong, cams[1], frame_ids=[1], confidence=0.5)
    read = mem.read(cams[0], (8, 16))
    assert bool(read.mask.all()) and bool((read.features == 0).all())  # frame 0 comes back whole
    assert int((mem.frame_ids == 1).sum()) > 0  # the generated frame still added points elsewhere
    # the same writes at equal confidence: the near points do hide frame 0
    equal = LatentSpatialMemory(2, far_field=True)
    equal.write(torch.zeros(1, 2, 8, 16), depth[:1], cams[0], frame_ids=[0])
    equal.write(torch.ones(1, 2, 8, 16), wrong, cams[1], frame_ids=[1])
    assert bool((equal.read(cams[0], (8, 16)).features == 1).any())


def test_far_field_round_trips_through_the_file(tmp_path):
    cams, depth = _sky_room(5)
    mem = LatentSpatialMemory(3, far_field=True)
    mem.write(torch.randn(5, 3, 8, 16), depth, cams, images=torch.rand(5, 3, 32, 64) * 2 - 1)
    mem.save(tmp_path / "m.safetensors")
    back = LatentSpatialMemory.load(tmp_path / "m.safetensors")
    assert back.far_field and back.far.resolution == mem.far.resolution
    for name, value in mem.far.state().items():
        assert torch.equal(value, back.far.state()[name]), name
    a, b = mem.read(cams[[2]], (8, 16)), back.read(cams[[2]], (8, 16))
    assert torch.equal(a.features, b.features) and torch.equal(a.far, b.far)


def test_rgb_memory_keeps_the_sky_only_when_asked():
    from mirage.memory import RGBPointCloudMemory

    cams, depth = _sky_room(1)
    images = torch.rand(1, 3, 32, 64) * 2 - 1
    off, on = RGBPointCloudMemory(), RGBPointCloudMemory(far_field=True)
    for mem in (off, on):
        mem.write(images, depth, cams)
    sky = torch.zeros(1, 32, 64, dtype=torch.bool)
    sky[:, :8] = True
    assert not bool(off.render(cams, (32, 64)).mask[sky].any())
    render = on.render(cams, (32, 64))
    assert bool(render.mask.all())
    torch.testing.assert_close(render.features[0][:, sky[0]], images[0][:, sky[0]])


@pytest.mark.parametrize("R", [1, 28])
def test_resolution_follows_the_grid(R):
    K = torch.tensor([[[R / 2, 0.0, 7.5], [0.0, R / 2, 3.5], [0.0, 0.0, 1.0]]])
    assert FarField.resolution_for(K) == R


def test_the_trusted_view_cache_changes_nothing():
    # hides_trusted keeps its per-view limits between writes; a memory that recomputes them
    # before every write must end up the same, through trusted and generated writes.
    cams, depth = _sky_room(21)
    gen = torch.Generator().manual_seed(3)
    noise = 1 + 0.3 * (torch.rand(21, 8, 16, generator=gen) - 0.5)
    depth = depth * noise.repeat_interleave(4, 1).repeat_interleave(4, 2)
    latents = torch.randn(21, 2, 8, 16, generator=gen)
    cached, fresh = LatentSpatialMemory(2, far_field=True), LatentSpatialMemory(2, far_field=True)
    for mem in (cached, fresh):
        for a, b, conf in ((0, 1, 1.0), (1, 5, 0.5), (5, 9, 0.5), (9, 10, 1.0), (10, 15, 0.5), (15, 21, 0.5)):
            if mem is fresh:
                mem._trusted_limits.clear()
            ids = list(range(a, b))
            mem.write(latents[ids], depth[ids], cams[ids], frame_ids=ids, confidence=conf)
    assert cached._trusted_limits  # the cache was used
    for name in ("points", "features", "frame_ids", "uids", "confidences"):
        assert torch.equal(getattr(cached, name), getattr(fresh, name)), name
