"""LatentSpatialMemory: write/read contract, fusion, retrieval, persistence and bad input."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.errors import ConfigError, MemoryFormatError, NonFiniteError, ShapeError
from mirage.geometry import Camera, backproject_depth, look_at
from tests.memory.canonical import by_uid
from mirage.memory.attributes import POINT_ATTRIBUTES
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
    torch.testing.assert_close(by_uid(mem)["points"], expected)  # uids follow the cells


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
    # keep_edges keeps them, on the near side of the edge (the excluded cell stays dropped)
    mem3 = LatentSpatialMemory(2, fusion="append")
    mem3.write(torch.randn(1, 2, 4, 8), depth, cams, exclude=exclude, keep_edges=True)
    read = mem3.read(cams, (4, 8))
    assert read.mask[0, :, 3].all() and not read.mask[0, 1, 2]
    near = depth[0].reshape(4, 16, 8, 16).amin(dim=(1, 3))  # the nearest pixel depth per cell
    torch.testing.assert_close(read.depth[0, :, 3], near[:, 3], rtol=1e-5, atol=0)


def test_read_is_deterministic_and_storage_order_free():
    cams, depth = room_chunk(frames=9, hw=(64, 128))
    mem = LatentSpatialMemory(6, fusion="append")
    mem.write(torch.randn(9, 6, 4, 8), depth, cams)
    targets = pan_path(5, 64, 128, degrees=77.0)
    a = mem.read(targets, (8, 16))
    b = mem.read(targets, (8, 16))
    perm = torch.randperm(mem.num_points, generator=torch.Generator().manual_seed(1))
    mem.set_points({a.name: getattr(mem, a.name)[perm] for a in POINT_ATTRIBUTES})
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
    refs = mem.retrieve_references(cams[3], k=4, min_iou=0.04)
    assert len(refs) == 4
    assert {r.frame_id for r in refs[:2]} == {3, 13}  # same pose on the way out and back
    assert refs[0].iou == pytest.approx(1.0) and refs[0].iou >= refs[-1].iou
    away = mem.retrieve_references(cams[8], k=4, min_iou=0.99)
    assert [r.frame_id for r in away] == [8]
    assert mem.retrieve_references(cams[3], k=2, exclude_frames=[3, 13])[0].frame_id not in (3, 13)


def test_references_iou_against_python_sets():
    # One write: each frame's set is what it sees in the memory after that write (a reference
    # splat per frame), the target's what the target views see; IoUs of Python sets.
    cams = pan_path(9, 64, 128, degrees=90.0)
    depth = ROOM.depth(cams)
    mem = LatentSpatialMemory(2, fusion="append", reference_voxel=0.3)
    mem.write(torch.randn(9, 2, 4, 8), depth, cams)
    target = pan_path(3, 64, 128, degrees=40.0)
    refs = mem.retrieve_references(target, k=9, min_iou=1e-9)
    small, grid = target.scaled(4, 8), cams.scaled(4, 8)
    tgt_index = splat_zbuffer_reference(mem.points, small.K, small.world2cam, (4, 8),
                                        priority=mem.uids).index
    assert torch.equal(mem.read(target, (4, 8)).mask, tgt_index >= 0)

    def voxels(indices):
        return {tuple(v) for v in torch.floor(mem.points[indices] / 0.3).long().tolist()}

    target_set = voxels(tgt_index[tgt_index >= 0])
    expected = {}
    for f in range(9):
        vis = splat_zbuffer_reference(mem.points, grid.K[f:f + 1], grid.world2cam[f:f + 1], (4, 8),
                                      priority=mem.uids).index
        s = voxels(vis[vis >= 0])
        expected[f] = len(s & target_set) / len(s | target_set)
    got = {r.frame_id: r.iou for r in refs}
    assert got.keys() == {f for f, v in expected.items() if v > 0} and len(got) > 3
    for f, v in expected.items():
        assert got.get(f, 0.0) == pytest.approx(v)


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_references_of_a_read_equal_retrieve_references(fusion):
    # The pipeline asks the read of the target views for its references; that must be what
    # retrieve_references gives from the cameras.
    cams = pan_path(13, 64, 128, degrees=200.0, passes=2)
    depth = ROOM.depth(cams)
    gen = torch.Generator().manual_seed(3)
    mem = LatentSpatialMemory(3, fusion=fusion)
    for start in range(0, 12, 4):  # writes of 4 frames, the later ones revisiting
        ids = list(range(start, start + 4))
        mem.write(torch.randn(4, 3, 4, 8, generator=gen), depth[ids], cams[ids], frame_ids=ids)
        target = cams[[start + 1, start + 4 if start + 4 < 13 else 0, (start * 5) % 13]]
        for k, exclude in ((1, []), (3, [start]), (0, []), (9, list(range(6)))):
            read = mem.read(target, (4, 8))
            refs = mem.references(read, k=k, min_iou=0.01, exclude_frames=exclude)
            assert refs == mem.retrieve_references(target, k=k, min_iou=0.01, exclude_frames=exclude)
            assert len(refs) <= k and all(r.frame_id not in exclude for r in refs)
            if k == 3 and start:
                assert refs and all(r.frame_id != start for r in refs)
    with pytest.raises(ShapeError, match="grid size"):
        mem.references(mem.read(cams[[2]], (8, 16)), k=2)
    with pytest.raises(ConfigError, match="`k` must be"):
        mem.references(mem.read(cams[[2]], (4, 8)), k=-1)
    with pytest.raises(ConfigError, match="`min_iou`"):
        mem.references(mem.read(cams[[2]], (4, 8)), min_iou=0.0)
    empty = LatentSpatialMemory(3)
    assert empty.references(empty.read(cams[[2]], (4, 8)), k=2) == []


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


def test_excluding_frames_changes_no_other_iou():
    cams = pan_path(13, 64, 128, degrees=200.0, passes=2)
    mem = LatentSpatialMemory(2)
    mem.write(torch.randn(13, 2, 4, 8), ROOM.depth(cams), cams)
    target = cams[[2, 7]]
    full = mem.retrieve_references(target, k=13, min_iou=1e-9)
    assert len(full) >= 8
    for exclude in ([2], [0, 7, 12], list(range(13)), [99]):
        got = mem.retrieve_references(target, k=13, min_iou=1e-9, exclude_frames=exclude)
        assert got == [r for r in full if r.frame_id not in exclude]
