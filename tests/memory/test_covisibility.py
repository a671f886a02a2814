"""Reference retrieval: the voxel→frames index against Python sets, and the store's frame sets
against reference splats of the memory after each write."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.memory import LatentSpatialMemory
from mirage.memory.covisibility import FrameIndex, frame_ious_reference, voxel_keys
from mirage.memory.splat import splat_zbuffer_reference

ROOM = BoxRoom()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), writes=st.integers(1, 30), frames=st.integers(1, 5))
def test_index_ious_equal_python_sets(seed, writes, frames):
    # Random writes of a few frames each, frame ids written again now and then (their set is
    # replaced), points crowding a small grid of voxels: every lookup equals the set IoUs.
    gen = torch.Generator().manual_seed(seed)
    index, sets = FrameIndex(0.5), {}
    next_id = 0
    for _ in range(writes):
        ids = []
        for _ in range(frames):
            again = next_id and torch.rand(1, generator=gen).item() < 0.2
            ids.append(int(torch.randint(0, next_id, (1,), generator=gen)) if again else next_id)
            next_id += not again
        P = int(torch.randint(0, 40, (1,), generator=gen))
        points = torch.randint(-4, 4, (P, 3), generator=gen).float() * 0.5 + 0.25
        frame_of = torch.randint(0, frames, (P,), generator=gen)
        index.add(ids, points, frame_of)
        keys = voxel_keys(points, 0.5).tolist()
        for t, f in enumerate(ids):  # a frame listed twice keeps its last occurrence
            sets[f] = {k for k, j in zip(keys, frame_of.tolist()) if j == t}
        target = voxel_keys(torch.randint(-4, 4, (12, 3), generator=gen).float() * 0.5, 0.5).unique()
        frames_got, iou = index.ious(target)
        got = dict(zip(frames_got.tolist(), iou.tolist()))
        expected = frame_ious_reference(sets, set(target.tolist()))
        assert got.keys() == expected.keys()
        for f, v in expected.items():
            assert got[f] == pytest.approx(v, rel=1e-12)
    assert len(index.runs) <= math.log2(max(index.num_pairs, 1)) + 2  # geometric run sizes
    again = FrameIndex.from_tensors(index.to_tensors(), 0.5)
    target = voxel_keys(torch.randint(-4, 4, (20, 3), generator=gen).float() * 0.5, 0.5).unique()
    for a, b in zip(index.ious(target), again.ious(target)):
        assert torch.equal(a.sort().values, b.sort().values)


def test_voxel_keys_name_voxels_one_to_one_and_clamp_far_points():
    gen = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(500, 3, generator=gen) * 50, torch.randn(100, 3, generator=gen) * 0.05])
    keys = voxel_keys(points, 0.1)
    cells = torch.floor(points / 0.1).long()
    assert torch.unique(keys).numel() == torch.unique(cells, dim=0).shape[0]
    same = (keys[:, None] == keys[None]) == (cells[:, None] == cells[None]).all(dim=-1)
    assert bool(same.all())
    far = torch.tensor([[1e9, 0.0, 0.0], [2e9, 0.0, 0.0], [0.0, -1e9, 0.0]])
    far_keys = voxel_keys(far, 0.1)
    assert far_keys[0] == far_keys[1] and far_keys[0] != far_keys[2]  # clamped, still per axis


def _sets_after(memory, frame_ids, cams):
    """What each of ``frame_ids`` sees in ``memory`` now (reference splat at the grid)."""
    small = cams.scaled(*memory.grid_hw)
    out = {}
    for t, f in enumerate(frame_ids):
        seen = splat_zbuffer_reference(memory.points, small.K[t:t + 1], small.world2cam[t:t + 1],
                                       memory.grid_hw, priority=memory.uids).index
        out[f] = set(voxel_keys(memory.points[seen[seen >= 0]], 0.1).tolist())
    return out


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_store_frame_sets_are_what_each_write_leaves_visible(fusion):
    # A pan that comes back twice, written in overlapping chunks with jittered depth (so fusion
    # replaces, carves and appends): each frame's set is the voxels of the points it sees right
    # after the write that wrote it, and references are the IoUs of those sets.
    cams = pan_path(25, 64, 128, degrees=160.0, passes=2)
    gen = torch.Generator().manual_seed(1)
    noise = 1 + 0.06 * (torch.rand(25, 4, 8, generator=gen) - 0.5)
    depth = ROOM.depth(cams) * noise.repeat_interleave(16, 1).repeat_interleave(16, 2)
    mem = LatentSpatialMemory(2, fusion=fusion)
    sets = {}
    for a in range(0, 24, 4):
        ids = list(range(a, a + 5))  # frame a is written again by every chunk after the first
        mem.write(torch.randn(5, 2, 4, 8, generator=gen), depth[ids], cams[ids], frame_ids=ids)
        sets.update(_sets_after(mem, ids, cams[ids]))
        target = cams[[a + 2, (a * 7) % 25]]
        read = mem.read(target, (4, 8))
        winners = read.index[read.index >= 0]
        target_set = set(voxel_keys(mem.points[winners], 0.1).tolist())
        expected = frame_ious_reference(sets, target_set)
        refs = mem.references(read, k=len(sets), min_iou=1e-9)
        assert {r.frame_id: r.iou for r in refs} == pytest.approx(expected)
        assert [r.frame_id for r in refs] == sorted(expected, key=lambda f: (-expected[f], -f))
