"""Depth → latent grid: the partial-cell rule (cells partly without depth) against a per-cell loop."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.errors import ShapeError
from mirage.memory.depth_grid import reduce_depth_to_grid


def _partial_reference(depths, exclude, hw, tol, fraction):
    """Per cell, in Python: the cells the relaxed rule adds, and their depth."""
    T, H, W = depths.shape
    h, w = hw
    sy, sx = H // h, W // w
    out = {}
    for t in range(T):
        for i in range(h):
            for j in range(w):
                block = [(float(depths[t, i * sy + a, j * sx + b]), bool(exclude[t, i * sy + a, j * sx + b]))
                         for a in range(sy) for b in range(sx)]
                if any(e for _, e in block):
                    continue
                inv = [1.0 / d for d, _ in block if math.isfinite(d) and d > 0]
                if len(inv) == len(block) or len(inv) < fraction * len(block):
                    continue  # a full cell follows the planarity rule; too few pixels: dropped
                mean = sum(inv) / len(inv)
                if max(inv) - min(inv) <= tol * mean:
                    out[(t, i, j)] = 1.0 / mean
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.sampled_from([0.25, 0.5, 0.75]))
def test_partial_cells_match_a_per_cell_loop(seed, fraction):
    g = torch.Generator().manual_seed(seed)
    T, H, W, hw = 2, 16, 24, (4, 6)
    # Piecewise-flat depth (some cells flat, some with edges), sky holes, a few excluded pixels.
    depths = (2.0 + 3.0 * torch.rand(T, 4, 6, generator=g)).repeat_interleave(4, 1).repeat_interleave(4, 2)
    depths = depths * (1 + 0.3 * (torch.rand(T, H, W, generator=g) < 0.1))  # edges inside some cells
    depths[torch.rand(T, H, W, generator=g) < 0.3] = float("inf")
    depths[0, 0, 0] = float("nan")
    exclude = torch.rand(T, H, W, generator=g) < 0.03
    strict_depth, strict_valid = reduce_depth_to_grid(depths, hw, exclude=exclude, planarity_tol=0.2)
    depth, valid = reduce_depth_to_grid(depths, hw, exclude=exclude, planarity_tol=0.2, min_valid_fraction=fraction)
    expected = _partial_reference(depths, exclude, hw, 0.2, fraction)
    added = valid & ~strict_valid
    assert {tuple(k) for k in added.nonzero().tolist()} == set(expected)
    assert (valid | ~strict_valid).all()  # nothing the strict rule keeps is lost
    torch.testing.assert_close(depth[strict_valid], strict_depth[strict_valid], rtol=0, atol=0)
    for (t, i, j), d in expected.items():
        assert depth[t, i, j].item() == pytest.approx(d, rel=1e-5)
    assert torch.isinf(depth[~valid]).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.sampled_from([0.25, 0.5, 1.0]))
def test_edge_cells_are_kept_at_their_nearest_depth_and_the_rest_is_far(seed, fraction):
    """keep_edges adds exactly the non-excluded cells with enough depth that the rule without it
    drops, at the smallest depth of their pixels (a per-cell loop says which); return_far gives
    the non-excluded cells with too little depth; together every cell without an excluded pixel
    is stored once."""
    g = torch.Generator().manual_seed(seed)
    T, H, W, hw = 2, 16, 24, (4, 6)
    depths = (2.0 + 3.0 * torch.rand(T, 4, 6, generator=g)).repeat_interleave(4, 1).repeat_interleave(4, 2)
    depths = depths * (1 + 0.5 * (torch.rand(T, H, W, generator=g) < 0.15))  # edges inside cells
    depths[torch.rand(T, H, W, generator=g) < 0.3] = float("inf")
    exclude = torch.rand(T, H, W, generator=g) < 0.03
    kw = dict(exclude=exclude, planarity_tol=0.2, min_valid_fraction=fraction)
    plain_depth, plain = reduce_depth_to_grid(depths, hw, **kw)
    depth, valid, far = reduce_depth_to_grid(depths, hw, keep_edges=True, return_far=True, **kw)
    assert torch.equal(reduce_depth_to_grid(depths, hw, return_far=True, **kw)[2], far)  # keep_edges: same far
    sy, sx = H // hw[0], W // hw[1]
    for t in range(T):
        for i in range(hw[0]):
            for j in range(hw[1]):
                block = depths[t, i * sy:(i + 1) * sy, j * sx:(j + 1) * sx].flatten().tolist()
                excluded = bool(exclude[t, i * sy:(i + 1) * sy, j * sx:(j + 1) * sx].any())
                with_depth = [d for d in block if math.isfinite(d) and d > 0]
                enough = len(with_depth) >= fraction * len(block)
                if plain[t, i, j]:  # what the rule keeps is unchanged
                    assert valid[t, i, j] and depth[t, i, j] == plain_depth[t, i, j]
                elif not excluded and enough:  # an edge cell: its foreground
                    assert valid[t, i, j] and depth[t, i, j].item() == pytest.approx(min(with_depth), rel=1e-6)
                else:
                    assert not valid[t, i, j] and math.isinf(depth[t, i, j])
                assert bool(far[t, i, j]) == (not excluded and not enough)
    assert not (valid & far).any()


def test_a_skyline_cell_is_kept_from_its_surface_and_an_excluded_pixel_still_drops_it():
    depths = torch.full((1, 4, 4), 2.0)
    depths[0, :2] = float("inf")  # the top half of the cell is sky
    _, strict = reduce_depth_to_grid(depths, (1, 1))
    depth, valid = reduce_depth_to_grid(depths, (1, 1), min_valid_fraction=0.5)
    assert not strict.any() and valid.all() and depth.item() == pytest.approx(2.0)
    _, valid = reduce_depth_to_grid(depths, (1, 1), min_valid_fraction=0.75)
    assert not valid.any()  # only half the pixels have depth
    exclude = torch.zeros(1, 4, 4, dtype=torch.bool)
    exclude[0, 3, 3] = True
    _, valid = reduce_depth_to_grid(depths, (1, 1), exclude=exclude, min_valid_fraction=0.5)
    assert not valid.any()
    with pytest.raises(ShapeError, match="min_valid_fraction"):
        reduce_depth_to_grid(depths, (1, 1), min_valid_fraction=0.0)


def test_latent_mode_writes_skyline_cells_and_the_pipeline_keeps_sky_apart_from_exclusions():
    from mirage.backbones.tiny import TinyBackbone
    from mirage.geometry import Camera, look_at
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate
    from mirage.pipeline.memory_modes import PARTIAL_CELL_FRACTION, LatentMode
    from tests.backbones.conftest import SMALL

    cam = Camera.from_fov(look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None], 8, 8, 60.0)
    # Top cells (4×4 pixels each) with n pixels of depth, the rest sky: kept iff n/16 reaches
    # the pipeline's PARTIAL_CELL_FRACTION; the full-cell rule never keeps them.
    need = math.ceil(PARTIAL_CELL_FRACTION * 16)
    for n, kept in ((need - 1, False), (need, True)):
        depth = torch.full((1, 8, 8), 3.0)
        depth[0, :4] = float("inf")
        for c in range(2):  # the first n pixels of each top cell, row-major within the cell
            r, q = divmod(n, 4)
            cell = depth[0, :4, 4 * c:4 * c + 4]
            cell[:r] = 3.0
            cell[r, :q] = 3.0
        strict, partial = LatentMode(2, min_valid_fraction=1.0), LatentMode(2)
        for mode in (strict, partial):
            mode.write(torch.randn(1, 2, 2, 2), None, depth, cam, torch.zeros(1, 8, 8, dtype=torch.bool), [0])
        assert strict.memory.num_points == 2
        assert partial.memory.num_points == (4 if kept else 2), n
    # The pipeline flags sky as "no depth", not as excluded, so the first frame's skyline cells
    # are written even when the caller's exclusion mask covers the sky too.
    torch.manual_seed(0)
    model = TinyBackbone(SMALL)
    H = model.config.height
    cams = Camera.from_fov(look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None].expand(5, 4, 4), H, H, 60.0)
    first_depth = torch.full((H, H), 3.0)
    first_depth[:4] = float("inf")  # half of the top latent row (stride 8) is sky
    out = generate(model, torch.zeros(3, H, H), cams, PipelineConfig(steps=1),
                   depth_estimator=TinyDepthEstimator(model), masker=LatentDisagreementMasker(),
                   first_depth=first_depth, first_exclude=~torch.isfinite(first_depth))
    # Every cell of frame 0, the top row included (generated frames write at a lower confidence,
    # so they never take over frame 0's points).
    assert int((out.memory.frame_ids == 0).sum()) == (H // 8) ** 2


def test_at_pixel_size_the_far_cells_are_the_pixels_without_depth():
    g = torch.Generator().manual_seed(0)
    depths = 1 + torch.rand(2, 5, 7, generator=g)
    depths[torch.rand(2, 5, 7, generator=g) < 0.3] = float("inf")
    depths[0, 0, 0] = -1.0  # behind the camera: no depth either
    exclude = torch.rand(2, 5, 7, generator=g) < 0.2
    depth, valid, far = reduce_depth_to_grid(depths, (5, 7), exclude=exclude, return_far=True)
    no_depth = ~(torch.isfinite(depths) & (depths > 0))
    assert torch.equal(far, no_depth & ~exclude) and torch.equal(valid, ~no_depth & ~exclude)
