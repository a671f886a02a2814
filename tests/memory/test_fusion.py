"""Voxel fusion: the fast one-projection kernel against the round-by-round reference loop,
the fusion rule on hand-built cells, and the store's fast paths against the slow ones."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.geometry import look_at
from tests.memory.canonical import assert_same_points, by_uid
from mirage.memory import LatentSpatialMemory
from mirage.memory.fusion import (DEPTH_BAND, MAX_CARVE_ROUNDS, fuse_write, fuse_write_reference,
                                  voxel_fusion_reference)
from mirage.memory.splat import project_to_cells, splat_zbuffer

HW = (6, 8)
DEPTHS = torch.tensor([1.5, 1.8, 1.9, 2.0, 2.04, 2.08, 2.3, 3.0])  # same / carve / behind mixes


def _K(views: int) -> torch.Tensor:
    h, w = HW
    K = torch.tensor([[6.0, 0, (w - 1) / 2], [0, 6.0, (h - 1) / 2], [0, 0, 1]])
    return K.expand(views, 3, 3).clone()


def _backproject(K, cam2world, cells, z):  # cells (M,) flat in HW, z (M,) → (M, 3) world
    w = HW[1]
    u, v = (cells % w).float(), (cells // w).float()
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return torch.stack([x, y, z], dim=1) @ cam2world[:3, :3].T + cam2world[:3, 3]


def crowded_write(seed: int, frames: int = 3, old: int = 120, ties: bool = True):
    """A memory crowded into few cells (stacks of points on a few depth levels, exact duplicates
    so depth ties go to the priority) and a write whose frames land on the same cells from
    nearly the same poses, so that every case of the rule (replace, carve up to the round
    limit, append in front or behind) occurs, within a frame and across frames.

    ``ties=False``: the old points' depths are jittered and there are no duplicates, so no two
    points of a cell tie in depth."""
    gen = torch.Generator().manual_seed(seed)
    eye = torch.randn(frames, 3, generator=gen) * 0.02
    cam2world = look_at(eye, torch.tensor([0.0, 0.0, 4.0]).expand(frames, 3))
    world2cam = torch.linalg.inv(cam2world)
    K = _K(frames)
    h, w = HW
    cells = torch.randint(0, h * w // 3, (old,), generator=gen)  # few cells: deep stacks
    z = DEPTHS[torch.randint(0, len(DEPTHS), (old,), generator=gen)]
    if not ties:
        z = z * (1 + 0.01 * torch.rand(old, generator=gen))
    points = _backproject(K[0], cam2world[0], cells, z)
    if ties:
        points = torch.cat([points, points[:30]])  # exact duplicates: ties in z everywhere
    priority = torch.randperm(points.shape[0], generator=gen) * 2 + 5
    new_points, new_frame, new_cells, new_z = [], [], [], []
    for t in range(frames):
        c = torch.randperm(h * w, generator=gen)[: h * w // 2].sort().values  # distinct cells
        zt = DEPTHS[torch.randint(0, len(DEPTHS), (c.numel(),), generator=gen)]
        new_points.append(_backproject(K[t], cam2world[t], c, zt))
        new_frame.append(torch.full((c.numel(),), t)), new_cells.append(c), new_z.append(zt)
    new_points = torch.cat(new_points)
    # The fusion compares with the z the new points have in their frame's camera.
    new_frame, new_cells = torch.cat(new_frame), torch.cat(new_cells)
    new_z = torch.cat(new_z)
    new_priority = torch.arange(new_points.shape[0]) + int(priority.max()) + 1
    return (points, priority, K, world2cam, HW, new_points, new_frame, new_cells, new_z,
            new_priority)


def assert_same_plan(fast, slow) -> None:
    # Decisions and winners are indices: equal exactly. The crowded scenes put every point on
    # a cell's centre ray, far from cell borders, so the float32 kernel and the float64
    # reference projection agree on the cells (borders: test_splat's rule).
    assert torch.equal(fast.keep, slow.keep)
    assert torch.equal(fast.carrier, slow.carrier)
    assert torch.equal(fast.visible, slow.visible)


@pytest.mark.parametrize("ties", [True, False])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), voxel_scale=st.sampled_from([0.5, 1.0, 2.0]),
       frames=st.integers(1, 4), max_rounds=st.sampled_from([0, 1, 2, MAX_CARVE_ROUNDS]))
def test_fast_write_fusion_matches_the_reference_loop(ties, seed, voxel_scale, frames, max_rounds):
    # With and without depth ties between the points of a cell.
    args = crowded_write(seed, frames, ties=ties)
    fast = fuse_write(*args, voxel_scale=voxel_scale, max_rounds=max_rounds)
    slow = fuse_write_reference(*args, voxel_scale=voxel_scale, max_rounds=max_rounds)
    assert_same_plan(fast, slow)


def test_visible_is_the_splat_of_the_memory_after_the_write():
    # WritePlan.visible, what each written frame sees, is a z-buffer of the points kept, with
    # the priorities they carry after the write: checked against the reference splat.
    from mirage.memory.splat import splat_zbuffer_reference

    for seed in range(5):
        args = crowded_write(seed, frames=3)
        points, priority, K, world2cam, hw, new_points = args[:6]
        plan = fuse_write(*args)
        everything = torch.cat([points, new_points])
        prio = torch.cat([priority, args[9]])
        carried = plan.carrier >= 0
        prio[carried] = args[9][plan.carrier[carried]]
        kept = plan.keep.nonzero().squeeze(1)
        seen = splat_zbuffer_reference(everything[kept], K, world2cam, hw, priority=prio[kept]).index
        assert torch.equal(plan.visible, torch.where(seen >= 0, kept[seen.clamp_min(0)], -1))
        assert (plan.visible >= 0).sum() > 10


@pytest.mark.parametrize("ties", [True, False])
def test_crowded_writes_exercise_every_case(ties):
    # The property test above only means something if its scenes replace, carve and append,
    # and if the pairs of one cell tie in depth exactly when asked to.
    N = crowded_write(0, ties=ties)[0].shape[0]
    replaced = carved = appended = deep = 0
    for seed in range(10):
        args = crowded_write(seed, ties=ties)
        points, priority, K, world2cam, hw = args[:5]
        cell, z, _ = project_to_cells(torch.cat([points, args[5]]), K, world2cam, hw)
        pairs = torch.stack([cell.double(), z.double()], dim=1)
        assert (torch.unique(pairs, dim=0).shape[0] < pairs.shape[0]) == ties
        plan = fuse_write(*args)
        replaced += int((plan.carrier[:N] >= 0).sum())
        carved += int((~plan.keep[:N]).sum())
        appended += int(plan.keep[N:].sum())
        # a new point replaced by a later frame of the same write
        deep += int((plan.carrier[N:] != torch.arange(args[5].shape[0])).sum())
    assert min(replaced, carved, appended, deep) > 5, (replaced, carved, appended, deep)


def _one_cell_memory(z_stack, z_new, priority=None):
    """Points stacked at depths ``z_stack`` on the centre ray of cell (1, 1) of a 3x3 view."""
    K = torch.tensor([[[3.0, 0, 1.0], [0, 3.0, 1.0], [0, 0, 1]]])
    points = torch.tensor([[0.0, 0.0, z] for z in z_stack])
    priority = torch.arange(len(z_stack)) if priority is None else torch.tensor(priority)
    new = torch.tensor([[0.0, 0.0, z_new]])
    return (points, priority, K, torch.eye(4)[None], (3, 3), new, torch.zeros(1, dtype=torch.long),
            torch.tensor([4]), torch.tensor([z_new]), torch.tensor([100]))


@pytest.mark.parametrize("kernel", [fuse_write, fuse_write_reference])
def test_the_rule_on_one_cell(kernel):
    band = DEPTH_BAND * 2.0  # at z_new = 2
    # within the band: the front point is replaced, nothing added
    plan = kernel(*_one_cell_memory([2.0 + 0.9 * band, 5.0], 2.0))
    assert plan.keep.tolist() == [True, True, False] and plan.carrier.tolist() == [0, -1, 0]
    # in front: carved; then the next one is within the band: replaced
    plan = kernel(*_one_cell_memory([1.0, 2.0 - 0.5 * band, 5.0], 2.0))
    assert plan.keep.tolist() == [False, True, True, False]
    assert plan.carrier.tolist() == [-1, 0, -1, 0]
    # behind: kept, and the new point is added in front of it
    plan = kernel(*_one_cell_memory([3.0], 2.0))
    assert plan.keep.tolist() == [True, True] and plan.carrier.tolist() == [-1, 0]
    # five points in front: only MAX_CARVE_ROUNDS are carved, then the new point is added
    plan = kernel(*_one_cell_memory([1.0, 1.1, 1.2, 1.3, 1.4], 2.0))
    carved = MAX_CARVE_ROUNDS
    assert plan.keep.tolist() == [False] * carved + [True] * (5 - carved) + [True]
    # a depth tie: the smaller priority is the winner, so it is the one replaced
    plan = kernel(*_one_cell_memory([2.0, 2.0], 2.0, priority=[9, 4]))
    assert plan.carrier.tolist() == [-1, 0, 0] and plan.keep.tolist() == [True, True, False]
    # and when the tied pair is carved, both go (two rounds), then the new point is added
    plan = kernel(*_one_cell_memory([1.0, 1.0], 2.0, priority=[9, 4]))
    assert plan.keep.tolist() == [False, False, True]


def test_reference_rule_matches_a_python_walk():
    # voxel_fusion_reference, cell by cell, is the walk down the (z, priority)-sorted stack.
    args = crowded_write(7, frames=1)
    points, priority, K, world2cam, hw, _, _, cells, z_new, new_priority = args
    plan = voxel_fusion_reference(points, priority, K, world2cam, hw, cells, z_new, new_priority)
    cell, z, pid = project_to_cells(points, K, world2cam, hw)
    stacks = {}
    for c, zz, p in zip(cell.tolist(), z.tolist(), pid.tolist()):
        stacks.setdefault(c, []).append((zz, int(priority[p]), p))
    replaced, carved, append = {}, set(), []
    for j, (c, zn) in enumerate(zip(cells.tolist(), z_new.tolist())):
        band = DEPTH_BAND * float(z_new[j])
        outcome = "append"
        for zm, _, p in sorted(stacks.get(c, []))[:MAX_CARVE_ROUNDS]:
            zm, zn32 = torch.tensor(zm), z_new[j]
            if (zm - zn32).abs() <= band:
                replaced[p], outcome = j, "replace"
                break
            if zm < zn32 - band:
                carved.add(p)
                continue
            break
        append.append(outcome == "append")
    assert dict(zip(plan.replaced.tolist(), plan.replaced_by.tolist())) == replaced
    assert set(plan.carved.tolist()) == carved
    assert plan.append.tolist() == append
    assert replaced and carved and any(append)


def _noisy_room_writes(memory, seed, trust_first=False):
    """Three chunks over a pan that comes back, with depth noise (carving and replacing);
    ``trust_first``: frame 0 at confidence 1, the chunks at 0.5."""
    room = BoxRoom()
    gen = torch.Generator().manual_seed(seed)
    cams = pan_path(13, 32, 64, passes=2, degrees=90.0)
    depth = room.depth(cams)
    noise = 1.0 + 0.12 * (torch.rand(13, 8, 16, generator=gen) - 0.5)
    depth = depth * noise.repeat_interleave(4, 1).repeat_interleave(4, 2)  # per-cell jitter
    depth[3, :, 40:] = depth[3, :, 40:] * 0.6  # a wrong, too-near surface, seen through later
    latents = torch.randn(13, 3, 8, 16, generator=gen)
    for a, b in ((0, 1), (1, 5), (5, 9), (9, 13)):  # chunks overlap: frame 1, 5, 9 written twice
        confidence = 0.5 if trust_first and a > 0 else 1.0
        memory.write(latents[a:b], depth[a:b], cams[a:b], frame_ids=range(a, b), confidence=confidence)
    return memory


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("trust_first", [False, True])
def test_store_fast_fusion_equals_the_reference_store(seed, trust_first):
    fast = _noisy_room_writes(LatentSpatialMemory(3), seed, trust_first)
    slow = LatentSpatialMemory(3)
    slow.fusion_kernel = fuse_write_reference
    _noisy_room_writes(slow, seed, trust_first)
    assert_same_points(fast, slow)  # storage order is free: compared by uid
    for name in ("table_ids", "table_K", "table_cam2world"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    for a, b in zip(fast.covisibility.to_tensors().values(), slow.covisibility.to_tensors().values()):
        assert torch.equal(a, b)
    append = _noisy_room_writes(LatentSpatialMemory(3, fusion="append"), seed, trust_first)
    assert fast.num_points < append.num_points  # the writes did fuse


def test_store_per_frame_writes_equal_one_write():
    # Frames written in one call fuse exactly as frames written one call each.
    room = BoxRoom()
    cams = pan_path(9, 32, 64, passes=2, degrees=60.0)
    noise = torch.randn(9, 32, 64, generator=torch.Generator().manual_seed(3))
    depth = room.depth(cams) * (1.0 + 0.03 * noise)
    latents = torch.randn(9, 3, 8, 16)
    one, each = LatentSpatialMemory(3), LatentSpatialMemory(3)
    one.write(latents, depth, cams)
    for t in range(9):
        each.write(latents[t:t + 1], depth[t:t + 1], cams[t], frame_ids=[t])
    assert_same_points(one, each)  # storage order is free: compared by uid


def test_project_to_cells_is_what_the_splat_keeps():
    args = crowded_write(11, frames=3)
    points, priority, K, world2cam, hw = args[:5]
    cell, z, pid = project_to_cells(points, K, world2cam, hw)
    splat = splat_zbuffer(points, K, world2cam, hw, priority=priority)
    # every landed pair is one (view, point); the splat's winners are among them, nearest first
    assert len(set(zip(cell.tolist(), pid.tolist()))) == cell.numel()
    best = torch.full((3 * hw[0] * hw[1],), float("inf")).scatter_reduce(0, cell, z, "amin")
    torch.testing.assert_close(best, splat.depth.flatten(), rtol=0, atol=0)
    for block in (1, 5, 64):
        again = project_to_cells(points, K, world2cam, hw, block_entries=block)
        key = lambda c, p: sorted(zip(c.tolist(), p.tolist()))
        assert key(again[0], again[2]) == key(cell, pid)


# -- confidence: a write never overrides a more trusted point ------------------------------------
def _confidences(args, seed):
    """Random confidences from {0.5, 1} for the old and the new points of a crowded write."""
    gen = torch.Generator().manual_seed(seed + 1)
    N, M = args[0].shape[0], args[5].shape[0]
    levels = torch.tensor([0.5, 1.0])
    return (levels[torch.randint(0, 2, (N,), generator=gen)],
            levels[torch.randint(0, 2, (M,), generator=gen)])


@pytest.mark.parametrize("ties", [True, False])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), frames=st.integers(1, 4),
       max_rounds=st.sampled_from([1, 2, MAX_CARVE_ROUNDS]))
def test_fast_fusion_with_confidences_matches_the_reference_loop(ties, seed, frames, max_rounds):
    args = crowded_write(seed, frames, ties=ties)
    old, new = _confidences(args, seed)
    fast = fuse_write(*args, max_rounds=max_rounds, confidence=old, new_confidence=new)
    slow = fuse_write_reference(*args, max_rounds=max_rounds, confidence=old, new_confidence=new)
    assert_same_plan(fast, slow)


def test_crowded_writes_with_confidences_drop_and_still_replace():
    N = crowded_write(0)[0].shape[0]
    dropped = replaced = 0
    for seed in range(10):
        args = crowded_write(seed)
        old, new = _confidences(args, seed)
        plan = fuse_write(*args, confidence=old, new_confidence=new)
        equal = fuse_write(*args)
        replaced += int((plan.carrier[:N] >= 0).sum())
        dropped += int((~plan.keep[N:] & (plan.carrier[N:] == torch.arange(args[5].shape[0]))).sum()
                       - (~equal.keep[N:] & (equal.carrier[N:] == torch.arange(args[5].shape[0]))).sum())
        # no old point of confidence 1 is replaced by a cell of confidence 0.5
        replacer = plan.carrier[:N].clamp_min(0)
        trusted_old = old == 1.0
        assert not bool(((plan.carrier[:N] >= 0) & trusted_old & (new[replacer] < 1.0)).any())
        # and when every new cell has confidence 0.5, none is carved or replaced at all
        low = fuse_write(*args, confidence=old, new_confidence=torch.full_like(new, 0.5))
        assert bool(low.keep[:N][trusted_old].all())
        assert not bool((low.carrier[:N][trusted_old] >= 0).any())
    assert replaced > 5 and dropped > 5, (replaced, dropped)


@pytest.mark.parametrize("kernel", [fuse_write, fuse_write_reference])
def test_the_confidence_rule_on_one_cell(kernel):
    band = DEPTH_BAND * 2.0
    def run(z_stack, conf_stack, conf_new):
        return kernel(*_one_cell_memory(z_stack, 2.0), confidence=torch.tensor(conf_stack),
                      new_confidence=torch.tensor([conf_new]))

    # a trusted point in the same voxel is not replaced; the new cell is dropped
    plan = run([2.0 + 0.5 * band], [1.0], 0.5)
    assert plan.keep.tolist() == [True, False] and plan.carrier.tolist() == [-1, 0]
    # a trusted point in front is not carved; the new cell is dropped
    plan = run([1.0, 5.0], [1.0, 0.5], 0.5)
    assert plan.keep.tolist() == [True, True, False]
    # a trusted point behind: the new cell is dropped too (it would hide the trusted point)
    plan = run([3.0], [1.0], 0.5)
    assert plan.keep.tolist() == [True, False]
    # carving stops at the first trusted point: the less trusted one in front is carved
    plan = run([1.0, 1.5, 2.0], [0.5, 1.0, 0.5], 0.5)
    assert plan.keep.tolist() == [False, True, True, False]
    # a more trusted cell replaces and carves as before, and equal confidences change nothing
    for conf_stack, conf_new in (([0.5, 0.5], 1.0), ([1.0, 1.0], 1.0), ([0.5, 0.5], 0.5)):
        plan = run([1.0, 2.0 - 0.5 * band], conf_stack, conf_new)
        assert plan.keep.tolist() == [False, True, False] and plan.carrier.tolist() == [-1, 0, 0]


def test_store_keeps_the_trusted_first_frame_through_generated_revisits():
    # Frame 0 written at confidence 1, then a pan that comes back written at 0.5 with noisy
    # depth and its own tokens: frame 0's points survive unchanged, and a read at frame 0's
    # camera gives back frame 0's tokens in more cells than with equal confidences. (Not in
    # every cell: the rule is judged in the writing frame's view, so a less trusted point that
    # no trusted point contested there may still land in front of one in another view.)
    room = BoxRoom()
    gen = torch.Generator().manual_seed(5)
    cams = pan_path(13, 32, 64, passes=2, degrees=90.0)
    noise = 1.0 + 0.2 * (torch.rand(13, 8, 16, generator=gen) - 0.5)
    depth = room.depth(cams) * noise.repeat_interleave(4, 1).repeat_interleave(4, 2)
    depth[0] = room.depth(cams[0])[0]
    latents = torch.randn(13, 3, 8, 16, generator=gen)
    memory = LatentSpatialMemory(3)
    memory.write(latents[:1], depth[:1], cams[0], frame_ids=[0], confidence=1.0)
    first = by_uid(memory)  # storage order is free: compared by uid
    first_read = memory.read(cams[0], (8, 16))
    for a, b in ((1, 5), (5, 9), (9, 13)):
        memory.write(latents[a:b], depth[a:b], cams[a:b], frame_ids=range(a, b), confidence=0.5)
    now = by_uid(memory)
    kept = now["frame_ids"] == 0
    assert int(kept.sum()) == first["points"].shape[0]
    assert torch.equal(now["uids"][kept], first["uids"])
    assert torch.equal(now["points"][kept], first["points"])
    assert torch.equal(now["features"][kept], first["features"])
    assert torch.equal(now["confidences"][kept], torch.ones(int(kept.sum())))

    def cells_giving_frame_0(mem):
        read = mem.read(cams[0], (8, 16))
        return int((read.features == first_read.features).all(dim=1)[first_read.mask].sum())

    # the same writes at equal confidence replace and hide frame 0's tokens
    same = LatentSpatialMemory(3)
    same.write(latents[:1], depth[:1], cams[0], frame_ids=[0])
    for a, b in ((1, 5), (5, 9), (9, 13)):
        same.write(latents[a:b], depth[a:b], cams[a:b], frame_ids=range(a, b))
    assert int((same.frame_ids == 0).sum()) < first["points"].shape[0]
    written = int(first_read.mask.sum())
    trusted, equal = cells_giving_frame_0(memory), cells_giving_frame_0(same)
    print(f"frame-0 cells read back: {trusted}/{written} with confidences, {equal} without")
    assert trusted > equal and trusted >= 0.9 * written


def test_confidences_are_checked_saved_and_loaded(tmp_path):
    from mirage.errors import ConfigError
    from mirage.files import load_safetensors, save_safetensors

    room = BoxRoom()
    cams = pan_path(3, 32, 64, passes=1, degrees=20.0)
    depth = room.depth(cams)
    memory = LatentSpatialMemory(3)
    memory.write(torch.randn(3, 3, 8, 16), depth, cams, confidence=[1.0, 0.5, 0.25])
    assert set(memory.confidences.tolist()) <= {1.0, 0.5, 0.25} and memory.num_points > 0
    for bad in ([1.0, 0.5], float("nan"), "high", [[1.0, 2.0, 3.0, 4.0]]):
        with pytest.raises(ConfigError, match="confidence"):
            memory.write(torch.randn(3, 3, 8, 16), depth, cams, confidence=bad)
    memory.save(tmp_path / "m.safetensors")
    again = LatentSpatialMemory.load(tmp_path / "m.safetensors")
    assert torch.equal(again.confidences, memory.confidences)
    # a version-1 file (no confidences) loads with every point at confidence 1
    tensors, meta = load_safetensors(tmp_path / "m.safetensors", "memory")
    for name in ("confidences", "colors", "table_confidence", "index_keys", "index_slots",
                 "slot_frame", "slot_size", "slot_live"):  # what versions 2 and 3 added
        del tensors[name]
    save_safetensors(tmp_path / "v1.safetensors", tensors, {**meta, "version": "1"})
    old = LatentSpatialMemory.load(tmp_path / "v1.safetensors")
    assert torch.equal(old.confidences, torch.ones(memory.num_points))
    assert torch.equal(old.points, memory.points)
