"""Relative update depth aligned to the memory (mirage.pipeline.depth_align): the anchors are the
memory's points where they project, the fit recovers a known affine map in inverse depth, a frame
that cannot be aligned is not written, and sessions keep the depth settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mirage.errors import ConfigError, SessionFormatError
from mirage.geometry import Camera, rigid_inverse
from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session
from mirage.pipeline.depth_align import ALIGN, align_frames, anchor_points, normalise_first

SIZE = 64  # the small backbone at 64x64: an 8x8 latent grid


@pytest.fixture(scope="module")
def walk():
    """Room 3, a 33-frame pan-return at 64x64: scene, cameras, ground truth."""
    from mirage.world import generate_scene, make_trajectory, render

    scene = generate_scene("room", 3)
    cams = make_trajectory("pan-return", scene, 33, SIZE, SIZE, angle_deg=90.0)
    return scene, cams, render(scene, cams, torch.arange(33) / 16)


def _session(backbone, walk, estimator, **config):
    scene, cams, gt = walk
    depth0 = torch.where(gt.sky[0], torch.full_like(gt.depth[0], math.inf), gt.depth[0])
    return Session(backbone, gt.rgb[0], cams[[0]], PipelineConfig(steps=1, **config), depth_estimator=estimator,
                   masker=LatentDisagreementMasker(), first_depth=depth0, first_exclude=gt.sky[0], history=2)


def test_anchor_points_are_where_the_memory_points_project():
    """Reference: project the stored points with the pixel intrinsics (docs/design.md §2.2 pixel centres)
    and keep each read cell's winner; the anchors from the latent read's depth and offsets agree."""
    from mirage.memory import LatentSpatialMemory

    g = torch.Generator().manual_seed(0)
    H, W, h, w = 48, 64, 12, 16
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    cam = Camera(K[None], torch.eye(4)[None], H, W)
    memory = LatentSpatialMemory(3, fusion="append", far_field=False)
    depth = (2 + 0.02 * torch.arange(W) + 0.01 * torch.arange(H)[:, None])[None].float()  # a slanted plane
    memory.write(torch.randn(1, 3, h, w, generator=g), depth, cam, frame_ids=[0])
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([0.05, -0.03, 0.1])  # a moved view: points land off the cell centres
    view = Camera(K[None], pose[None], H, W)
    read = memory.read(view, (h, w))
    anchors = anchor_points(read.depth[0], read.offset[0], (H, W))
    winners = read.index[0][read.mask[0]]
    w2c = rigid_inverse(pose[None])[0]
    cam_pts = memory.points[winners] @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam_pts[:, :2] / cam_pts[:, 2:] * K.diagonal()[:2] + K[:2, 2]
    np.testing.assert_allclose(anchors[:, :2], uv.numpy(), atol=1e-4)
    np.testing.assert_allclose(anchors[:, 2], cam_pts[:, 2].numpy(), rtol=1e-5)
    assert len(anchors) == int(read.mask.sum()) > 100


def test_align_frames_recovers_an_exact_affine_map():
    """Memory depth = the truth on the grid; prediction = a/z + b at pixels: the fit is (1/a, −b/a)."""
    H, W, h, w = 32, 48, 8, 12
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    z = 1.0 / (0.2 + 0.01 * u + 0.02 * v)  # a plane: inverse depth affine in the pixel coordinates
    a, b = 1.7, 0.05
    inverse = (a / z + b)[None]
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    cu, cv = (j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5  # cell centres in pixels (x.5: between pixels)
    offset = torch.full((1, 2, h, w), 0.5 / 4)  # +1/8 cell: the anchors land on pixels (4j + 2, 4i + 2)
    memory = 1.0 / (0.2 + 0.01 * (cu + 0.5) + 0.02 * (cv + 0.5))
    memory[0, 0] = math.inf  # an empty cell is no anchor
    depth, valid, keep, records = align_frames(inverse.float(), torch.ones(1, H, W, dtype=torch.bool),
                                               memory[None].float(), offset, [4])
    r = records[0]
    assert keep == [True] and r["status"] == "aligned" and r["points"] == h * w - 1 == r["inliers"]
    assert r["scale"] == pytest.approx(1 / a, rel=1e-4) and r["shift"] == pytest.approx(-b / a, abs=1e-5)
    assert r["residual"] < 1e-4 and r["coverage"] == pytest.approx((h * w - 1) / (h * w), abs=1e-4)
    torch.testing.assert_close(depth[0].double(), z, rtol=1e-4, atol=0)
    assert valid.all()


def test_too_little_memory_or_a_bad_fit_is_skipped():
    H = W = 32
    inverse = torch.rand(2, H, W, generator=torch.Generator().manual_seed(1)) + 0.5
    memory = torch.full((2, 8, 8), math.inf)
    memory[0, :2, :3] = 2.0  # 6 cells: fewer anchors than ALIGN.min_points
    memory[1] = 1 + 3 * torch.rand(8, 8, generator=torch.Generator().manual_seed(2))  # unrelated to the prediction
    depth, valid, keep, records = align_frames(inverse, torch.ones(2, H, W, dtype=torch.bool), memory, None, [4, 8])
    assert keep == [False, False] and [r["status"] for r in records] == ["skipped", "skipped"]
    assert f"at least {ALIGN.min_points} needed" in records[0]["reason"]
    assert records[1]["reason"] and records[1]["points"] == 64
    assert not valid.any() and torch.isinf(depth).all()


def test_first_frame_normalised_to_median_depth_one():
    inverse = torch.tensor([[0.5, 1.0, 2.0], [4.0, 3.0, -1.0], [0.0, 8.0, 9.0]])
    given = torch.ones(3, 3, dtype=torch.bool)
    given[2, 1:] = False  # no prediction there
    depth, valid, (scale, shift) = normalise_first(inverse, given)
    assert shift == 0.0 and scale == pytest.approx(1 / 2.0)  # the median of the 5 positive valid ones: 2
    assert float(depth[valid].median()) == pytest.approx(1.0)
    assert valid.tolist() == [[True, True, True], [True, True, False], [False, False, False]]
    assert torch.isinf(depth[~valid]).all()
    with pytest.raises(ConfigError, match="no positive inverse depth"):
        normalise_first(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool))


def test_oracle_relative_fits_recover_each_chunks_map(backbone, walk):
    """Every generated latent frame is aligned, and the recorded fit inverts the chunk's known map:
    on the frame's true depths the fitted map is within 2% (median 1%) of the truth."""
    from mirage.world.oracle import OracleRelativeDepthEstimator, RELATIVE_SCALES, RELATIVE_SHIFTS

    scene, cams, gt = walk
    estimator = OracleRelativeDepthEstimator(scene, 16.0)
    session = _session(backbone, walk, estimator)
    for lo, hi in ((1, 17), (17, 33)):
        result = session.step(cams[lo:hi])
        assert result.depth_alignment["status"] == "aligned"
    records = session.depth_alignment
    maps = set()
    errors = []
    for chunk in records:
        a, b = estimator.affine_map(chunk["frames"][0]["frame"])
        maps.add((a, b))
        assert RELATIVE_SCALES[0] <= a <= RELATIVE_SCALES[1] and RELATIVE_SHIFTS[0] <= b <= RELATIVE_SHIFTS[1]
        for f in chunk["frames"]:
            assert f["status"] == "aligned" and f["residual"] < 0.02 and f["inliers"] >= 0.8 * f["points"]
            assert f["scale"] * a == pytest.approx(1, abs=0.1)
            z = gt.depth[f["frame"]][~gt.sky[f["frame"]]].double()
            z_fit = 1 / (f["scale"] * (a / z + b) + f["shift"])
            errors.append(float(((z_fit - z).abs() / z).median()))
    assert len(maps) == 2  # each chunk its own map
    assert max(errors) < 0.02 and float(np.median(errors)) < 0.01


def test_an_rgb_memory_anchors_at_pixel_resolution(backbone, walk):
    """The rgb baseline's read is a pixel-resolution render: its depth anchors the same fit."""
    from mirage.world.oracle import OracleRelativeDepthEstimator

    scene, cams, gt = walk
    estimator = OracleRelativeDepthEstimator(scene, 16.0)
    session = _session(backbone, walk, estimator, memory_mode="rgb")
    record = session.step(cams[1:9]).depth_alignment
    a, b = estimator.affine_map(4)
    assert record["status"] == "aligned"
    for f in record["frames"]:
        assert f["points"] > 1000  # pixels, not cells
        z = gt.depth[f["frame"]][~gt.sky[f["frame"]]].double()
        z_fit = 1 / (f["scale"] * (a / z + b) + f["shift"])
        assert float(((z_fit - z).abs() / z).median()) < 0.01


def _memory_depth_error(session, cams, gt, frame: int) -> float:
    """Median relative error of the memory's depth in view ``frame`` against the world's."""
    from mirage.inverse_depth import sample_at

    read = session.memory.read(cams[[frame]], (SIZE // 8, SIZE // 8))
    anchors = anchor_points(read.depth[0], read.offset[0], (SIZE, SIZE))
    truth, inside = sample_at(gt.depth[frame].double().numpy(), anchors[:, :2])
    ok = inside & np.isfinite(truth)
    return float(np.median(np.abs(anchors[ok, 2] - truth[ok]) / truth[ok]))


def test_without_alignment_the_memory_takes_the_wrong_geometry(backbone, walk):
    """``depth_align=False`` writes every frame through frame 0's map (here the identity, frame 0's
    depth being given): the memory's depth in a generated view is the map's, far from the truth,
    where the aligned session's is within 2%."""
    from mirage.world.oracle import OracleRelativeDepthEstimator

    scene, cams, gt = walk
    errors = {}
    for align in (True, False):
        session = _session(backbone, walk, OracleRelativeDepthEstimator(scene, 16.0), depth_align=align)
        result = session.step(cams[1:17])
        assert result.depth_alignment["status"] == ("aligned" if align else "unaligned")
        assert session._depth_base == (1.0, 0.0)
        errors[align] = _memory_depth_error(session, cams, gt, 12)
    assert errors[True] < 0.02 and errors[False] > 0.1


class _Noise:
    """A relative estimator whose output has nothing to do with the scene."""

    name, kind = "noise", "relative"

    def __call__(self, images, cameras, frame_indices):
        g = torch.Generator().manual_seed(frame_indices[0])
        return torch.rand(len(frame_indices), *cameras.hw, generator=g) + 0.1, torch.ones(
            len(frame_indices), *cameras.hw, dtype=torch.bool)


def test_a_chunk_that_cannot_be_aligned_is_not_written(backbone, walk):
    scene, cams, gt = walk
    session = _session(backbone, walk, _Noise())
    memory = session.memory
    before = (memory.num_points, memory.points.clone(), memory.features.clone(), memory.table_ids.clone())
    result = session.step(cams[1:9])
    record = result.depth_alignment
    assert record["status"] == "skipped" and [f["frame"] for f in record["frames"]] == [4, 8]
    assert all(f["status"] == "skipped" and f["reason"] for f in record["frames"])
    assert memory.num_points == before[0]
    assert torch.equal(memory.points, before[1]) and torch.equal(memory.features, before[2])
    assert torch.equal(memory.table_ids, before[3])  # not even an empty frame entry
    assert session.depth_alignment == [record] and session.output().depth_alignment == [record]


def test_metric_estimators_record_nothing(backbone, walk):
    from mirage.pipeline import TinyDepthEstimator

    session = _session(backbone, walk, TinyDepthEstimator(backbone))
    assert session.step(walk[1][1:5]).depth_alignment is None and session.depth_alignment == [None]


def test_sessions_keep_the_depth_settings(backbone, walk, tmp_path):
    from mirage.world.oracle import OracleDepthEstimator, OracleRelativeDepthEstimator

    scene, cams, gt = walk
    for align in (True, False):
        session = _session(backbone, walk, OracleRelativeDepthEstimator(scene, 16.0), depth_align=align)
        session.step(cams[1:9])
        path = tmp_path / f"s{align}.safetensors"
        session.save(path)
        loaded = Session.load(path, backbone, depth_estimator=OracleRelativeDepthEstimator(scene, 16.0),
                              masker=LatentDisagreementMasker())
        assert loaded.config.depth_align is align and loaded.depth_alignment == session.depth_alignment
        assert loaded._depth_base == session._depth_base
        a, b = session.step(cams[9:17]), loaded.step(cams[9:17])
        assert torch.equal(a.frames, b.frames) and a.depth_alignment == b.depth_alignment
        assert torch.equal(session.memory.points, loaded.memory.points)
    with pytest.raises(SessionFormatError, match="saved with the update depth 'oracle-relative'"):
        Session.load(path, backbone, depth_estimator=OracleDepthEstimator(scene, 16.0),
                     masker=LatentDisagreementMasker())


def test_relative_first_frame_without_depth_sets_the_scale(backbone, walk):
    """A relative estimator alone: frame 0's median depth becomes 1 unit, and the map is kept."""
    from mirage.world.oracle import OracleRelativeDepthEstimator

    scene, cams, gt = walk
    estimator = OracleRelativeDepthEstimator(scene, 16.0)
    session = Session(backbone, gt.rgb[0], cams[[0]], PipelineConfig(steps=1), depth_estimator=estimator,
                      masker=LatentDisagreementMasker())
    a, b = estimator.affine_map(0)
    pred = (a / gt.depth[0][~gt.sky[0]].double() + b)
    assert session._depth_base == (pytest.approx(1 / float(pred.median())), 0.0)
    depth = session.memory.read(cams[[0]], (8, 8)).depth
    assert float(depth[torch.isfinite(depth)].median()) == pytest.approx(1.0, rel=0.1)


def test_bilinear_reads_are_exact_on_an_affine_image():
    from mirage.pipeline.depth_align import sample_bilinear

    H, W = 5, 7
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    image = 2 + 0.3 * u - 0.1 * v
    uv = np.array([[0.0, 0.0], [2.25, 1.5], [5.9, 3.99], [6.4, 4.4], [-0.4, 2.0], [6.5, 1.0], [1.0, -0.6]])
    got = sample_bilinear(image, uv)
    want = 2 + 0.3 * np.clip(uv[:, 0], 0, W - 1) - 0.1 * np.clip(uv[:, 1], 0, H - 1)
    np.testing.assert_allclose(got[:5], want[:5], rtol=1e-12)  # inside (the outer half pixel reads the edge)
    assert np.isnan(got[5:]).all()  # beyond the image
    image[2, 3] = math.nan
    assert np.isnan(sample_bilinear(image, np.array([[3.5, 2.5]])))[0]
    assert np.isfinite(sample_bilinear(image, np.array([[1.0, 1.0]])))[0]
