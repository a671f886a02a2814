"""World blocks: the block storage against a plain list, and culling against projecting everything."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.geometry import Camera, look_at
from mirage.memory import LatentSpatialMemory
from mirage.memory.blocks import BlockedPoints, blocks_in_views
from mirage.memory.covisibility import voxel_keys
from mirage.memory.splat import DEFAULT_NEAR, project_to_cells
from tests.memory.canonical import assert_same_points

SPECS = {"points": ((3,), torch.float32), "tag": ((), torch.int64)}


def _random_points(gen, n, block, border_fraction=0.3):
    """Points in a few blocks, a share of them exactly on block borders (coordinates k·block)."""
    p = (torch.rand(n, 3, generator=gen) - 0.5) * 8 * block
    on_border = torch.rand(n, 3, generator=gen) < border_fraction
    return torch.where(on_border, torch.round(p / block) * block, p).float()


def _random_cameras(gen, V, hw=(6, 10)):
    eyes = (torch.rand(V, 3, generator=gen, dtype=torch.float64) - 0.5) * 6
    targets = (torch.rand(V, 3, generator=gen, dtype=torch.float64) - 0.5) * 6
    c2w = torch.stack([look_at(e, t + 1e-3) for e, t in zip(eyes, targets)])
    f = 2 + 10 * torch.rand(V, generator=gen, dtype=torch.float64)
    K = torch.zeros(V, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = f, f * (0.5 + torch.rand(V, generator=gen, dtype=torch.float64)), 1
    K[:, 0, 1] = 0.3 * (torch.rand(V, generator=gen, dtype=torch.float64) - 0.5)  # skew
    K[:, 0, 2], K[:, 1, 2] = hw[1] / 2 - 0.5, hw[0] / 2 - 0.5
    return Camera(K.float(), c2w.float(), *hw)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), block=st.sampled_from([0.25, 0.5, 1.0, 3.0]),
       offset=st.sampled_from([0.0, 1e3, 3e4]))
def test_culling_keeps_every_block_with_a_landing_point(seed, block, offset):
    # The conservative test against the projection rule itself: a point that lands in a view
    # (project_to_cells, the kernels' rule) always belongs to a kept block; also far from the
    # origin, where float32 rounds coarsely.
    gen = torch.Generator().manual_seed(seed)
    shift = torch.tensor([offset, -offset / 3, offset / 7])
    points = _random_points(gen, 400, block) + shift
    store = BlockedPoints(SPECS, block, "cpu")
    store.append({"points": points, "tag": torch.arange(400)})
    cams = _random_cameras(gen, 3)
    c2w = cams.cam2world.clone()
    c2w[:, :3, 3] += shift
    cams = Camera(cams.K, c2w, *cams.hw)
    kept = blocks_in_views(store.lo, store.hi, cams.K, cams.world2cam, cams.hw, DEFAULT_NEAR)
    _, _, landed = project_to_cells(points, cams.K, cams.world2cam, cams.hw)
    keys = voxel_keys(points[landed.unique()], block)
    assert bool(torch.isin(keys, store.keys[kept]).all())


def test_culling_drops_blocks_behind_and_beside_the_views():
    store = BlockedPoints(SPECS, 1.0, "cpu")
    grid = torch.stack(torch.meshgrid(*[torch.arange(-10, 10.0)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5
    store.append({"points": grid, "tag": torch.arange(grid.shape[0])})
    cam = Camera(torch.tensor([[[10.0, 0, 4.5], [0, 10, 2.5], [0, 0, 1]]]), look_at(torch.zeros(3), torch.tensor([0, 0, 1.0]))[None], 6, 10)
    kept = blocks_in_views(store.lo, store.hi, cam.K, cam.world2cam, cam.hw, DEFAULT_NEAR)
    assert 0 < int(kept.sum()) < store.num_blocks // 4
    away = Camera(cam.K, look_at(torch.tensor([0, 0, 100.0]), torch.tensor([0, 0, 200.0]))[None], 6, 10)
    assert not blocks_in_views(store.lo, store.hi, away.K, away.world2cam, away.hw, DEFAULT_NEAR).any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_block_storage_matches_a_plain_list(seed):
    # Appends and removals in random order keep exactly the points of a plain list, every block
    # holds exactly its points, and positions and rows convert both ways.
    gen = torch.Generator().manual_seed(seed)
    store = BlockedPoints(SPECS, 0.5, "cpu")
    live: dict[int, torch.Tensor] = {}
    tag = 0
    for _ in range(8):
        n = int(torch.randint(0, 60, (1,), generator=gen))
        points = _random_points(gen, n, 0.5)
        store.append({"points": points, "tag": torch.arange(tag, tag + n)})
        live.update({tag + i: points[i] for i in range(n)})
        tag += n
        rows = store.live_rows()
        drop = rows[torch.rand(rows.shape[0], generator=gen) < 0.3]
        for t in store.storage["tag"][drop].tolist():
            del live[t]
        store.remove(drop)
        assert store.num_points == len(live)
        tags, points = store.column("tag"), store.column("points")
        assert sorted(tags.tolist()) == sorted(live)
        for t, p in zip(tags.tolist(), points):
            assert torch.equal(p, live[t])
        for b in range(store.num_blocks):
            in_block = store.storage["points"][store.rows_of(torch.tensor([b]))]
            assert bool((voxel_keys(in_block, 0.5) == store.keys[b]).all())
            assert bool(((in_block >= store.lo[b]) & (in_block <= store.hi[b])).all())
        rows = store.live_rows()
        assert torch.equal(store.positions(rows), torch.arange(rows.shape[0]))
        assert torch.equal(store.rows_at(torch.arange(rows.shape[0])), rows)


def _walk(memory, seed, frames=(6, 10)):
    """Noisy writes of a box room along a pan, the first frame trusted, then random reads."""
    gen = torch.Generator().manual_seed(seed)
    room = BoxRoom(half=(3.0, 1.2, 3.0))
    cams = pan_path(18, 32, 64, passes=2, degrees=200.0)
    depth = room.depth(cams) * (1 + 0.04 * (torch.rand(18, 32, 64, generator=gen) - 0.5))
    latents = torch.randn(18, 4, 4, 8, generator=gen)
    confidence = [2.0] + [1.0] * 5
    for a in range(0, 18, 6):
        ids = list(range(a, a + 6))
        memory.write(latents[ids], depth[ids], cams[ids], frame_ids=ids, confidence=confidence if a == 0 else 1.0)
    return memory


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fusion", ["voxel", "append"])
@pytest.mark.parametrize("block", [0.25, 1.0])
def test_culling_changes_no_result(seed, fusion, block):
    # The store with culling equals the store that projects every point: the fused points, the
    # covisibility index, the reads (of views that see much, little and nothing) and references.
    culled = _walk(LatentSpatialMemory(4, fusion=fusion, block_size=block), seed)
    full = LatentSpatialMemory(4, fusion=fusion, block_size=block)
    full.cull = False
    _walk(full, seed)
    assert_same_points(culled, full)
    for a, b in zip(culled.covisibility.to_tensors().values(), full.covisibility.to_tensors().values()):
        assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(100 + seed)
    views = _random_cameras(gen, 5, hw=(32, 64))
    away = look_at(torch.tensor([0.0, 0, 50]), torch.tensor([0.0, 0, 60]))  # sees no block
    views = Camera(views.K, torch.cat([views.cam2world[:4], away[None].float()]), 32, 64)
    if block == 0.25:  # culling is not vacuous here: one view's blocks hold fewer than all points
        one = culled.blocks.rows_in_views(pan_path(1, 4, 8).K, pan_path(1, 4, 8).world2cam, (4, 8), DEFAULT_NEAR)
        assert 0 < one.shape[0] < culled.num_points
    for hw in ((4, 8), (12, 24)):
        a, b = culled.read(views, hw), full.read(views, hw)
        for x, y in zip(a, b):
            if x is not None and x.dtype == torch.long:  # rows: compare the points they name
                x, y = culled.points[x.clamp_min(0)] * (x >= 0)[..., None], full.points[y.clamp_min(0)] * (y >= 0)[..., None]
            assert torch.equal(x, y)
        assert not a.mask[-1].any()
        if hw == culled.grid_hw:
            assert culled.references(a, k=5, min_iou=1e-6) == full.references(b, k=5, min_iou=1e-6)
