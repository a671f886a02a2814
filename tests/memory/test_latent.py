"""LatentSpatialMemory: write/read contract, fusion, retrieval, persistence and bad input."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.errors import ConfigError, MemoryFormatError, NonFiniteError, ShapeError
from mirage.geometry import Camera, backproject_depth, look_at
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.memory.splat import splat_zbuffer_reference
from tests.test_geometry import random_pose

ROOM = BoxRoom()


def room_chunk(frames=9, hw=(32, 64), passes=1, degrees=120.0):
    cams = pan_path(frames, *hw, passes=passes, degrees=degrees)
    return cams, ROOM.depth(cams)


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_write_then_read_same_camera_returns_tokens_unresampled(fusion):
    # (H, W) == (h, w): point (i, j) is the cell centre back-projected with depths[t, i, j].
    gen = torch.Generator().manual_seed(0)
    pose = random_pose(gen).float()
    cam = Camera.from_fov(pose, 6, 8, 60.0)
    depth = 1.0 + 4.0 * torch.rand(1, 6, 8, generator=gen)
    depth[0, 2, 3] = float("nan")
    depth[0, 4, 1] = -1.0
    depth[0, 5, 7] = float("inf")
    depth[0, 0, 0] = 0.0
    latents = torch.randn(1, 5, 6, 8, generator=gen)
    mem = LatentSpatialMemory(5, fusion=fusion)
    assert mem.write(latents, depth, cam) == 44
    read = mem.read(cam, (6, 8))
    valid = torch.isfinite(depth) & (depth > 0)
    assert torch.equal(read.mask, valid)
    torch.testing.assert_close(read.features[:, :, valid[0]], latents[:, :, valid[0]], rtol=0, atol=0)
    assert (read.features[:, :, ~valid[0]] == 0).all()
    torch.testing.assert_close(read.depth[valid], depth[valid], rtol=1e-5, atol=1e-5)
    assert torch.isinf(read.depth[~valid]).all()
    # The stored points are exactly the back-projected cell centres.
    expected = backproject_depth(torch.where(valid, depth, 1.0), cam.K, cam.cam2world)[valid]
    torch.testing.assert_close(mem.points, expected)


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_write_then_read_with_a_stride_16_vae(fusion):
    cams, depth = room_chunk(frames=3, hw=(64, 128))
    latents = torch.randn(3, 4, 4, 8)
    mem = LatentSpatialMemory(4, fusion=fusion)
    mem.write(latents[:1], depth[:1], cams[0])
    read = mem.read(cams[0], (4, 8))
    assert read.mask.float().mean() > 0.9  # planar walls: only edge-straddling cells drop
    torch.testing.assert_close(read.features[0][:, read.mask[0]], latents[0][:, read.mask[0]],
                               rtol=0, atol=0)


def test_excluded_and_edge_cells_are_never_written():
    cams, depth = room_chunk(frames=1, hw=(64, 128))
    exclude = torch.zeros(1, 64, 128, dtype=torch.bool)
    exclude[0, 20, 40] = True  # one pixel of latent cell (1, 2)
    depth = depth.clone()
    depth[0, :, 64:] = depth[0, :, 64:] * 2.0  # a depth edge through cells of column 4
    mem = LatentSpatialMemory(2, fusion="append")
    mem.write(torch.randn(1, 2, 4, 8), depth, cams, exclude=exclude)
    read = mem.read(cams, (4, 8))
    assert not read.mask[0, 1, 2]
    assert read.mask[0, :, 3].all() and read.mask[0, :, 4].all()  # the edge runs between cells
    depth[0, :, 60:] = depth[0, :, 60:] * 1.5  # now an edge inside the cells of column 3
    mem2 = LatentSpatialMemory(2, fusion="append")
    mem2.write(torch.randn(1, 2, 4, 8), depth, cams, exclude=exclude)
    assert not mem2.read(cams, (4, 8)).mask[0, :, 3].any()


def test_read_is_deterministic_and_storage_order_free():
    cams, depth = room_chunk(frames=9, hw=(64, 128))
    mem = LatentSpatialMemory(6, fusion="append")
    mem.write(torch.randn(9, 6, 4, 8), depth, cams)
    targets = pan_path(5, 64, 128, degrees=77.0)
    a = mem.read(targets, (8, 16))
    b = mem.read(targets, (8, 16))
    perm = torch.randperm(mem.num_points, generator=torch.Generator().manual_seed(1))
    mem.points, mem.features = mem.points[perm], mem.features[perm]
    mem.frame_ids, mem.uids = mem.frame_ids[perm], mem.uids[perm]
    c = mem.read(targets, (8, 16))
    for x, y in ((a, b), (a, c)):
        assert torch.equal(x.mask, y.mask)
        assert torch.equal(x.features, y.features)
        assert torch.equal(x.depth, y.depth)


def test_read_matches_reference_splat():
    cams, depth = room_chunk(frames=9, hw=(64, 128))
    mem = LatentSpatialMemory(3, fusion="append")
    latents = torch.randn(9, 3, 4, 8)
    mem.write(latents, depth, cams)
    target = pan_path(3, 64, 128, degrees=50.0)
    # (12, 24) = 3x the written grid: written cell centres map to read cell centres, so the
    # float32 kernel and the float64 reference cannot disagree on a cell boundary there.
    read = mem.read(target, (12, 24))
    small = target.scaled(12, 24)
    ref = splat_zbuffer_reference(mem.points, small.K, small.world2cam, (12, 24), priority=mem.uids)
    assert torch.equal(read.mask, ref.index >= 0)
    expected = mem.features[ref.index.clamp_min(0)].permute(0, 3, 1, 2) * read.mask[:, None]
    torch.testing.assert_close(read.features, expected, rtol=0, atol=0)


def test_voxel_fusion_stops_growing_on_revisits():
    cams = pan_path(65, 64, 128, passes=4, degrees=150.0)  # look away and back, four times
    depth = ROOM.depth(cams)
    mem = LatentSpatialMemory(4)
    sizes = []
    for t in range(65):
        mem.write(torch.randn(1, 4, 4, 8), depth[t:t + 1], cams[t], frame_ids=[t])
        sizes.append(mem.num_points)
    first_pass = sizes[16]
    assert sizes[-1] == first_pass  # same poses again: every cell replaces, nothing is added
    append = LatentSpatialMemory(4, fusion="append")
    append.write(torch.randn(65, 4, 4, 8), depth, cams)
    assert append.num_points > 3 * sizes[-1]


def test_voxel_fusion_replaces_tokens_on_revisit():
    cams, depth = room_chunk(frames=1, hw=(32, 64))
    mem = LatentSpatialMemory(2)
    old, new = torch.zeros(1, 2, 4, 8), torch.ones(1, 2, 4, 8)
    mem.write(old, depth, cams, frame_ids=[0])
    n = mem.num_points
    mem.write(new, depth * 1.01, cams, frame_ids=[1])  # jittered depth, within the band
    assert mem.num_points == n
    read = mem.read(cams, (4, 8))
    assert (read.features[:, :, read.mask[0]] == 1).all()
    assert set(mem.frame_ids.tolist()) == {1}


def test_voxel_fusion_carves_points_contradicted_by_free_space():
    cams, depth = room_chunk(frames=1, hw=(32, 64))
    mem = LatentSpatialMemory(2)
    mem.write(torch.zeros(1, 2, 4, 8), depth * 0.5, cams)  # a wrong, too-near surface
    mem.write(torch.ones(1, 2, 4, 8), depth, cams)  # now we see through it
    read = mem.read(cams, (4, 8))
    assert (read.features[:, :, read.mask[0]] == 1).all()
    assert mem.num_points == int(read.mask.sum())


def test_references_prefer_the_revisited_view():
    cams = pan_path(17, 64, 128, degrees=150.0)
    depth = ROOM.depth(cams)
    mem = LatentSpatialMemory(2, fusion="append")
    mem.write(torch.randn(17, 2, 4, 8), depth, cams)
    refs = mem.retrieve_references(cams[3], k=4, min_iou=0.04, voxel_size=0.1)
    assert len(refs) == 4
    assert {r.frame_id for r in refs[:2]} == {3, 13}  # same pose on the way out and back
    assert refs[0].iou == pytest.approx(1.0) and refs[0].iou >= refs[-1].iou
    away = mem.retrieve_references(cams[8], k=4, min_iou=0.99)
    assert [r.frame_id for r in away] == [8]
    assert mem.retrieve_references(cams[3], k=2, exclude_frames=[3, 13])[0].frame_id not in (3, 13)


def test_references_iou_against_python_sets():
    cams = pan_path(9, 64, 128, degrees=90.0)
    depth = ROOM.depth(cams)
    mem = LatentSpatialMemory(2, fusion="append")
    mem.write(torch.randn(9, 2, 4, 8), depth, cams)
    target = pan_path(3, 64, 128, degrees=40.0)
    refs = mem.retrieve_references(target, k=9, min_iou=0.0, voxel_size=0.3)
    vis = mem.frame_visibility().index
    tgt = mem.read(target, (4, 8))
    small = target.scaled(4, 8)
    tgt_index = splat_zbuffer_reference(mem.points, small.K, small.world2cam, (4, 8),
                                        priority=mem.uids).index
    assert torch.equal(tgt.mask, tgt_index >= 0)

    def voxels(indices):
        return {tuple(v) for v in torch.floor(mem.points[indices] / 0.3).long().tolist()}

    target_set = voxels(tgt_index[tgt_index >= 0])
    expected = {}
    for f in range(9):
        s = voxels(vis[f][vis[f] >= 0])
        expected[f] = len(s & target_set) / len(s | target_set)
    got = {r.frame_id: r.iou for r in refs}
    assert got.keys() == {f for f, v in expected.items() if v >= 0.0}
    for f, v in expected.items():
        assert got[f] == pytest.approx(v)


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_read_with_references_equals_the_two_calls(fusion):
    # The pipeline's one-splat path must give exactly what read + retrieve_references give.
    cams = pan_path(13, 64, 128, degrees=200.0, passes=2)
    depth = ROOM.depth(cams)
    gen = torch.Generator().manual_seed(3)
    mem = LatentSpatialMemory(3, fusion=fusion)
    for start in range(0, 12, 4):  # writes of 4 frames, the later ones revisiting
        ids = list(range(start, start + 4))
        mem.write(torch.randn(4, 3, 4, 8, generator=gen), depth[ids], cams[ids], frame_ids=ids)
        target = cams[[start + 1, start + 4 if start + 4 < 13 else 0, (start * 5) % 13]]
        for k, exclude in ((1, []), (3, [start]), (0, []), (9, list(range(6)))):
            read, refs = mem.read_with_references(target, (4, 8), k=k, min_iou=0.01,
                                                  voxel_size=0.2, exclude_frames=exclude)
            alone = mem.read(target, (4, 8))
            for name in ("features", "mask", "depth", "offset"):
                assert torch.equal(getattr(read, name), getattr(alone, name)), name
            assert refs == mem.retrieve_references(target, k=k, min_iou=0.01, voxel_size=0.2,
                                                   exclude_frames=exclude)
            if k == 3 and start:
                assert refs and all(r.frame_id != start for r in refs)
    # A read at another size than the written grid takes the two-call path.
    read, refs = mem.read_with_references(cams[[2]], (8, 16), k=2)
    assert torch.equal(read.features, mem.read(cams[[2]], (8, 16)).features)
    assert refs == mem.retrieve_references(cams[[2]], k=2)
    with pytest.raises(ConfigError, match="`k` must be"):
        mem.read_with_references(cams[[2]], (4, 8), k=-1)
    empty_read, empty_refs = LatentSpatialMemory(3).read_with_references(cams[[2]], (4, 8), k=2)
    assert empty_refs == [] and not empty_read.mask.any()


def test_save_load_round_trip(tmp_path):
    cams, depth = room_chunk(frames=9, hw=(64, 128))
    mem = LatentSpatialMemory(6, voxel_scale=2.0)
    mem.write(torch.randn(9, 6, 4, 8), depth, cams, frame_ids=range(10, 19))
    path = tmp_path / "mem.safetensors"
    mem.save(path)
    back = LatentSpatialMemory.load(path)
    for name in ("points", "features", "frame_ids", "uids", "table_ids", "table_K",
                 "table_cam2world"):
        assert torch.equal(getattr(mem, name), getattr(back, name)), name
    assert (back.fusion, back.voxel_scale, back.grid_hw) == ("voxel", 2.0, (4, 8))
    target = pan_path(3, 64, 128, degrees=33.0)
    assert torch.equal(mem.read(target, (4, 8)).features, back.read(target, (4, 8)).features)
    # Writing continues with fresh uids after a load.
    back.write(torch.randn(1, 6, 4, 8), depth[:1], cams[0])
    assert back.uids.max() > mem.uids.max()


def test_load_refuses_truncated_foreign_and_wrong_version(tmp_path):
    from safetensors.torch import save_file

    cams, depth = room_chunk(frames=2, hw=(32, 64))
    mem = LatentSpatialMemory(3)
    mem.write(torch.randn(2, 3, 2, 4), depth, cams)
    good = tmp_path / "mem.safetensors"
    mem.save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MemoryFormatError, match="truncated"):
        LatentSpatialMemory.load(tmp_path / "trunc.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), {"format": "other"})
    with pytest.raises(MemoryFormatError, match="not a mirage memory"):
        LatentSpatialMemory.load(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04pickle? no")
    with pytest.raises(MemoryFormatError):
        LatentSpatialMemory.load(tmp_path / "junk.safetensors")
    meta = {"format": "mirage.memory", "kind": "latent", "version": "999", "config": "{}"}
    save_file({"x": torch.zeros(2)}, str(tmp_path / "v999.safetensors"), meta)
    with pytest.raises(MemoryFormatError, match="version"):
        LatentSpatialMemory.load(tmp_path / "v999.safetensors")
    with pytest.raises(MemoryFormatError, match="'latent' memory"):
        RGBPointCloudMemory.load(good)
    with pytest.raises(MemoryFormatError, match="does not exist"):
        LatentSpatialMemory.load(tmp_path / "missing.safetensors")


def test_bad_inputs_raise_project_errors():
    cams, depth = room_chunk(frames=2, hw=(32, 64))
    mem = LatentSpatialMemory(3)
    good = torch.randn(2, 3, 2, 4)
    with pytest.raises(ShapeError, match="3 channels"):
        mem.write(torch.randn(2, 4, 2, 4), depth, cams)
    with pytest.raises(ShapeError, match="`cameras` must hold 2"):
        mem.write(good, depth, cams[0])
    with pytest.raises(ShapeError, match="`depths`"):
        mem.write(good, depth[:, :16], cams)
    with pytest.raises(ShapeError, match="integer multiple"):
        mem.write(torch.randn(2, 3, 3, 4), depth, cams)
    with pytest.raises(ShapeError, match="`exclude`"):
        mem.write(good, depth, cams, exclude=torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(NonFiniteError, match="`latents`"):
        mem.write(good * float("nan"), depth, cams)
    with pytest.raises(ShapeError, match="frame_ids"):
        mem.write(good, depth, cams, frame_ids=[1])
    with pytest.raises(ConfigError, match="fusion"):
        LatentSpatialMemory(3, fusion="merge")
    with pytest.raises(ConfigError, match="channels"):
        LatentSpatialMemory(0)
    with pytest.raises(ShapeError, match="hw"):
        mem.read(cams, (0, 4))
    mem.write(good, depth, cams)
    with pytest.raises(ShapeError, match="grid size"):
        mem.write(torch.randn(2, 3, 4, 8), depth, cams)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_rigid_motion_invariance_of_the_memory(seed):
    gen = torch.Generator().manual_seed(seed)
    cams, depth = room_chunk(frames=5, hw=(32, 64), degrees=60.0)
    latents = torch.randn(5, 3, 4, 8, generator=gen)
    G = random_pose(gen, scale=3.0).float()
    moved = Camera(cams.K, G @ cams.cam2world, 32, 64)
    a, b = LatentSpatialMemory(3), LatentSpatialMemory(3)
    a.write(latents, depth, cams)
    b.write(latents, depth, moved)
    # Read from the written cameras: points sit at cell centres, far from cell boundaries.
    ra, rb = a.read(cams, (4, 8)), b.read(moved, (4, 8))
    assert a.num_points == b.num_points
    assert torch.equal(ra.mask, rb.mask)
    torch.testing.assert_close(ra.depth[ra.mask], rb.depth[rb.mask], rtol=1e-4, atol=1e-4)
    # Tokens agree except where two points of one surface tie in depth to float32 round-off
    # (the depths above agree everywhere, so a wrong, farther winner cannot hide here).
    differs = (ra.features != rb.features).any(dim=1)
    assert differs.float().mean() <= 0.05


def test_rgb_cache_write_render_and_bytes():
    cams, depth = room_chunk(frames=3, hw=(32, 64))
    images = ROOM.rgb(cams)
    rgb = RGBPointCloudMemory()
    assert rgb.fusion == "append"
    assert rgb.write(images, depth, cams) == 3 * 32 * 64
    out = rgb.render(cams[1], (32, 64))
    assert out.mask.all()
    torch.testing.assert_close(out.features[0], images[1], rtol=0, atol=0)
    latent = LatentSpatialMemory(48, fusion="append")
    assert latent.write(torch.randn(3, 48, 2, 4), depth, cams) == latent.num_points
    # 256 pixels per latent cell; latent cells that straddle a depth edge are dropped too.
    assert rgb.num_points >= 256 * latent.num_points > 0
    assert rgb.nbytes > 20 * latent.nbytes
    with pytest.raises(ShapeError, match="images"):
        rgb.write(images[:, :2], depth, cams)


def test_memory_on_an_odd_pose_sees_nothing_behind():
    cams, depth = room_chunk(frames=1, hw=(32, 64))
    mem = LatentSpatialMemory(2)
    mem.write(torch.randn(1, 2, 4, 8), depth, cams)
    back = look_at(torch.tensor([0.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, -3.0]))
    read = mem.read(Camera.from_fov(back, 32, 64), (4, 8))
    assert not read.mask.any()
    assert json.dumps(mem.retrieve_references(Camera.from_fov(back, 32, 64)), default=str) == "[]"


def _offsets_reference(points, cams, hw, index):
    """Slow twin of MemoryRead.offset: each winner projected alone in float64 Python."""
    h, w = hw
    K = Camera(cams.K, cams.cam2world, *cams.hw).scaled(h, w).K.double().tolist()
    w2c = torch.linalg.inv(cams.cam2world.double()).tolist()
    out = torch.zeros(len(cams), 2, h, w, dtype=torch.float64)
    for v in range(len(cams)):
        (fx, s, cx), (_, fy, cy), _ = K[v]
        M = w2c[v]
        for i in range(h):
            for j in range(w):
                n = int(index[v, i, j])
                if n < 0:
                    continue
                px, py, pz = points[n].double().tolist()
                x, y, z = (M[r][0] * px + M[r][1] * py + M[r][2] * pz + M[r][3] for r in range(3))
                out[v, 0, i, j] = fx * x / z + s * y / z + cx - j
                out[v, 1, i, j] = fy * y / z + cy - i
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_read_offsets_match_a_per_point_projection(seed):
    gen = torch.Generator().manual_seed(seed)
    cams, depth = room_chunk(frames=5, hw=(32, 64), degrees=float(torch.randint(20, 150, (1,), generator=gen)))
    mem = LatentSpatialMemory(3)
    mem.write(torch.randn(2, 3, 8, 16, generator=gen), depth[:2], cams[:2])
    targets = cams[2:]
    read = mem.read(targets, (8, 16))
    index = splat_zbuffer_reference(mem.points, targets.scaled(8, 16).K, torch.linalg.inv(targets.cam2world),
                                    (8, 16), priority=mem.uids).index
    assert torch.equal(read.mask, index >= 0)
    expected = _offsets_reference(mem.points, targets, (8, 16), index)
    assert read.offset.shape == (3, 2, 8, 16) and read.offset.dtype == torch.float32
    torch.testing.assert_close(read.offset.double(), expected.clamp(-0.5, 0.5), rtol=0, atol=1e-4)
    assert (read.offset.abs() <= 0.5).all()
    assert (read.offset.permute(1, 0, 2, 3)[:, ~read.mask] == 0).all()
    assert read.offset[read.mask[:, None].expand_as(read.offset)].abs().max() > 0.05  # a moved view is misaligned


def test_read_offsets_are_zero_at_the_written_view():
    # Cell centres back-projected and read again from the same camera land on their centres.
    cams, depth = room_chunk(frames=3, hw=(32, 64))
    mem = LatentSpatialMemory(4)
    mem.write(torch.randn(1, 4, 8, 16), depth[:1], cams[0])
    read = mem.read(cams[0], (8, 16))
    assert read.mask.float().mean() > 0.9
    assert read.offset.abs().max() < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_read_equals_the_torch_read_bit_for_bit(monkeypatch, seed):
    # On CPU the read gathers tokens and computes the sub-cell offsets in NumPy; torch (other
    # devices, bfloat16) must give the same read, offsets included: at the written view they
    # are rounding noise around 0, which float32 keeps, so the arithmetic has to match exactly.
    import mirage.memory.store as store

    gen = torch.Generator().manual_seed(seed)
    # Tilted poses and a skew, so that every product and sum of the projection rounds.
    pose = random_pose(gen).float()
    poses = pose.expand(6, 4, 4).clone()
    poses[1:, :3, 3] += 0.05 * torch.randn(5, 3, generator=gen)
    cams = Camera.from_fov(poses, 32, 64, 70.0)
    cams = Camera(cams.K + torch.tensor([[0, 0.3, 0], [0, 0, 0], [0, 0, 0]]), cams.cam2world, 32, 64)
    depth = 2.0 + torch.rand(6, 8, 16, generator=gen).repeat_interleave(4, 1).repeat_interleave(4, 2)
    mem = LatentSpatialMemory(3)
    empty = mem.read(cams[:2], (8, 16))
    mem.write(torch.randn(3, 3, 8, 16, generator=gen), depth[:3], cams[:3])
    views = cams[torch.tensor([0, 3, 4, 5])]  # a written view and three moved ones
    fast = [mem.read(views, (8, 16)), mem.read_with_references(views, (8, 16))[0], empty]
    monkeypatch.setattr(store, "_array_ops", lambda *tensors: store._torch_ops(tensors[0].device))
    empty_mem = LatentSpatialMemory(3)
    slow = [mem.read(views, (8, 16)), mem.read_with_references(views, (8, 16))[0],
            empty_mem.read(cams[:2], (8, 16))]
    for a, b in zip(fast, slow):
        for name in ("features", "mask", "depth", "offset"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert torch.equal(x, y), name
            assert x.stride() == y.stride(), name  # the same layout as well
    written = fast[0].offset[0][:, fast[0].mask[0]]  # at frame 0's view, frame 0's points...
    assert ((written != 0) & (written.abs() < 1e-5)).any()  # ...carry the noise the match keeps


def test_numpy_cell_offsets_equal_torch_on_many_near_zero_offsets():
    # Cell centres back-projected in float32 and projected again: offsets are float64 rounding
    # noise around 0, where float32 keeps every bit of it. Exact equality needs the same
    # operations in the same order.
    from mirage.memory.store import _cell_offsets, _cell_offsets_numpy

    gen = torch.Generator().manual_seed(4)
    V, h, w = 4, 64, 64
    cams = Camera.from_fov(torch.stack([random_pose(gen) for _ in range(V)]).float(), h, w, 70.0)
    K = cams.K + torch.tensor([[0, 0.2, 0], [0, 0, 0], [0, 0, 0]])
    depth = 1.0 + 4.0 * torch.rand(V, h, w, generator=gen)
    points = backproject_depth(depth, K, cams.cam2world).reshape(-1, 3)  # (V·h·w, 3)
    mask = torch.rand(V, h, w, generator=gen) < 0.9
    points = points[mask.reshape(-1)]
    world2cam = torch.linalg.inv(cams.cam2world)
    fast = _cell_offsets_numpy(points.numpy(), K.numpy(), world2cam.numpy(), mask.numpy())
    slow = _cell_offsets(points, K, world2cam, mask)
    assert fast.dtype == np.float32 and (np.abs(fast) < 1e-3).all() and (fast != 0).mean() > 0.5
    assert np.array_equal(fast, slow.numpy())


def test_frame_table_keeps_first_write_order_and_takes_the_newest_pose():
    # Against the obvious per-frame rule: a new id is appended, a known id's pose is replaced.
    gen = torch.Generator().manual_seed(5)
    mem = LatentSpatialMemory(2)
    expected = {}  # id → (K, cam2world), in first-write order
    for ids in ([0, 1, 2, 3], [3, 4, 5, 6], [6, 2, 7, 7], [8]):
        poses = torch.stack([random_pose(gen).float() for _ in ids])
        cams = Camera.from_fov(poses, 8, 16, 60.0)
        K = cams.K.clone()
        K[:, :2, :2] *= 1 + torch.rand(len(ids), 1, 1, generator=gen)  # a focal length per frame
        cams = Camera(K, cams.cam2world, 8, 16)
        mem.write(torch.randn(len(ids), 2, 2, 4, generator=gen), torch.full((len(ids), 8, 16), 3.0),
                  cams, frame_ids=ids)
        small = cams.scaled(2, 4)
        for t, f in enumerate(ids):
            expected[f] = (small.K[t], small.cam2world[t])
    assert mem.frames == list(expected)
    for row, (K, cam2world) in enumerate(expected.values()):
        assert torch.allclose(mem.table_K[row], K.float())
        assert torch.equal(mem.table_cam2world[row], cam2world.float())


@pytest.mark.parametrize("voxel_size", [0.05, 0.2, 1e-7])
def test_frame_ious_numpy_equal_torch(voxel_size):
    # On CPU the IoUs are computed in NumPy; the torch version (other devices) must agree
    # exactly, including a voxel size so small that the keys cannot be linearised.
    from mirage.memory.store import _frame_ious_numpy

    cams = pan_path(13, 64, 128, degrees=200.0, passes=2)
    depth = ROOM.depth(cams)
    mem = LatentSpatialMemory(2)
    for start in range(0, 12, 4):
        ids = list(range(start, start + 4))
        mem.write(torch.randn(4, 2, 4, 8), depth[ids], cams[ids], frame_ids=ids)
    small = cams[[1, 6, 11]].scaled(4, 8)
    target = splat_zbuffer_reference(mem.points, small.K, small.world2cam, (4, 8),
                                     priority=mem.uids).index
    past = mem.frame_visibility().index
    fast = _frame_ious_numpy(mem.points.numpy(), target.numpy(), past.numpy(), voxel_size)
    assert fast == mem._frame_ious(target, past, voxel_size)
    assert len(fast) == 12 and max(fast) > 0


def test_frame_ious_when_nothing_is_seen():
    # Views that see no memory point: every IoU is 0, in both implementations.
    from mirage.memory.store import _frame_ious_numpy

    mem = LatentSpatialMemory(2)
    cams = pan_path(3, 64, 128, degrees=20.0)
    mem.write(torch.randn(3, 2, 4, 8), ROOM.depth(cams), cams)
    empty_target = torch.full((2, 4, 8), -1, dtype=torch.long)
    empty_past = torch.full((3, 4, 8), -1, dtype=torch.long)
    expected = [0.0, 0.0, 0.0]
    assert _frame_ious_numpy(mem.points.numpy(), empty_target.numpy(), empty_past.numpy(), 0.1) == expected
    assert mem._frame_ious(empty_target, empty_past, 0.1) == expected


def test_excluding_frames_changes_no_other_iou():
    # Excluded frames are left out of the visibility splat; every other frame's IoU and the
    # order must be what the full retrieval gives with those frames filtered out.
    cams = pan_path(13, 64, 128, degrees=200.0, passes=2)
    mem = LatentSpatialMemory(2)
    mem.write(torch.randn(13, 2, 4, 8), ROOM.depth(cams), cams)
    target = cams[[2, 7]]
    full = mem.retrieve_references(target, k=13, min_iou=0.0)
    assert len(full) == 13
    for exclude in ([2], [0, 7, 12], list(range(13)), [99]):
        got = mem.retrieve_references(target, k=13, min_iou=0.0, exclude_frames=exclude)
        assert got == [r for r in full if r.frame_id not in exclude]
        read, refs = mem.read_with_references(target, (4, 8), k=3, min_iou=0.0, exclude_frames=exclude)
        assert refs == got[:3]
