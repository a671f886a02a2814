from __future__ import annotations

import pytest
import torch

from mirage.errors import ConfigError
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.evaluation.metrics import revisit_frames
from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate
from mirage.world.oracle import OracleDepthEstimator, OracleMasker

from .conftest import SMALL


def run(backbone, world, mode="latent", seed=0, **kw):
    scene, cams, gt = world
    return generate(backbone, gt.rgb[0], cams, PipelineConfig(memory_mode=mode, seed=seed, steps=2, **kw),
                    depth_estimator=OracleDepthEstimator(scene, 16), masker=LatentDisagreementMasker(),
                    first_depth=torch.where(gt.sky[0], torch.inf, gt.depth[0]), first_exclude=gt.sky[0])


class Spy:
    """Wraps a backbone and records the conditioning of every chunk."""

    def __init__(self, inner):
        self.inner, self.conds = inner, []
        for name in ("spatial_stride", "temporal_stride", "latent_channels", "max_frames"):
            setattr(self, name, getattr(inner, name))
        self.config = SMALL.__class__(**{**vars(inner.config), "max_frames": 9})
        self.max_frames = 9

    def encode(self, video):
        return self.inner.encode(video)

    def decode(self, latents):
        return self.inner.decode(latents)

    def sample(self, cond, generator, callback=None):
        self.conds.append(cond)
        return self.inner.sample(cond, generator, callback)


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_all_memory_modes(backbone, world, mode):
    out = run(backbone, world, mode)
    C = SMALL.latent_channels
    assert out.video.shape == (25, 3, 32, 32) and out.video.abs().max() <= 1
    assert out.latents.shape == (C, 7, 4, 4)
    assert [(c.start_frame, c.end_frame) for c in out.plan] == [(0, 16), (16, 24)]
    assert len(out.timings) == 2 and all(t.total > 0 and t.denoise > 0 for t in out.timings)
    summary = out.timing_summary()
    assert summary["frames"] == 25 and 0 <= summary["memory_share"] < 1
    if mode == "none":
        assert out.memory is None and out.references == [[], []]
        assert all(s["points"] == 0 and s["read_coverage"] == 0 for s in out.memory_stats)
    else:
        assert isinstance(out.memory, LatentSpatialMemory if mode == "latent" else RGBPointCloudMemory)
        assert out.memory.frames == list(range(7))  # every latent frame written once, by id
        # the return chunk looks at what the first chunk saw
        assert out.memory_stats[1]["read_coverage"] > 0.3


def test_memory_grows_with_surface_not_time(backbone, world):
    out = run(backbone, world, "latent")
    first, second = (s["points"] for s in out.memory_stats)
    assert first > 0
    # the second chunk turns back over seen surface: voxel fusion replaces instead of appending
    assert second <= first * 1.25
    rgb = run(backbone, world, "rgb")
    assert rgb.memory_stats[0]["points"] > 20 * first  # pixel-resolution cloud vs latent cells


def test_fusion_option_reaches_the_memory(backbone, world):
    assert run(backbone, world, "rgb").memory.fusion == "append"  # the reference baseline
    voxel = run(backbone, world, "rgb", fusion="voxel")
    assert voxel.memory.fusion == "voxel"
    assert voxel.memory_stats[1]["points"] < run(backbone, world, "rgb").memory_stats[1]["points"]
    assert run(backbone, world, "latent", fusion="append").memory.fusion == "append"
    with pytest.raises(ConfigError, match="fusion"):
        PipelineConfig(fusion="hash")


def test_references_on_revisit(backbone, world):
    out = run(backbone, world, "latent", references=2)
    assert out.references[0] == []  # only frame 0 is in memory, and it is the first frame
    refs = out.references[1]
    assert refs, "the return chunk must retrieve covisible past frames"
    assert all(r["frame_id"] < 3 and r["iou"] >= 0.04 for r in refs)  # from the outward swing
    assert refs == sorted(refs, key=lambda r: -r["iou"])


def test_one_frame_overlap_and_context(backbone, world):
    spy = Spy(backbone)
    scene, cams, gt = world
    out = generate(spy, gt.rgb[0], cams, PipelineConfig(steps=2, preceding=1, references=1),
                   depth_estimator=OracleDepthEstimator(scene, 16), masker=LatentDisagreementMasker(),
                   first_depth=gt.depth[0])
    assert [(c.start_frame, c.end_frame) for c in out.plan] == [(0, 8), (8, 16), (16, 24)]
    assert out.video.shape[0] == 25 and out.latents.shape[1] == 7
    for chunk, cond in zip(out.plan, spy.conds):
        # the first latent of a chunk is the previous chunk's last latent frame
        torch.testing.assert_close(cond.first_latent, out.latents[:, chunk.start_latent])
        assert cond.num_targets == 2
        if chunk.index:
            torch.testing.assert_close(cond.preceding[0], out.latents[:, chunk.start_latent - 1])
        torch.testing.assert_close(cond.target_cameras.cam2world,
                                   cams.cam2world[[4 * k for k in chunk.target_latents]])


def test_determinism_by_seed(backbone, world):
    a, b, c = run(backbone, world, seed=3), run(backbone, world, seed=3), run(backbone, world, seed=4)
    torch.testing.assert_close(a.video, b.video, rtol=0, atol=0)
    assert a.references == b.references
    assert not torch.allclose(a.video, c.video)


def test_decoded_reads_and_estimators(backbone, world):
    scene, cams, gt = world
    out = generate(backbone, gt.rgb[0], cams, PipelineConfig(steps=1, decode_reads=True),
                   depth_estimator=TinyDepthEstimator(backbone), masker=OracleMasker(scene, 16))
    assert out.memory_reads.shape == out.video.shape
    assert out.depth_source == "tiny" and out.masker == "oracle"


def test_bad_inputs(backbone, world):
    scene, cams, gt = world
    kw = dict(depth_estimator=OracleDepthEstimator(scene, 16), masker=LatentDisagreementMasker())
    with pytest.raises(ConfigError, match="5, 9, 13"):
        generate(backbone, gt.rgb[0], _first(cams, 24), PipelineConfig(), **kw)
    with pytest.raises(ConfigError, match="memory_mode"):
        PipelineConfig(memory_mode="voxels")


def _first(cams, n):
    from mirage.geometry import Camera

    return Camera(cams.K[:n], cams.cam2world[:n], *cams.hw)


def test_revisit_frames(world):
    _, cams, _ = world
    frames = revisit_frames(cams, 16)
    assert frames and frames[-1] == 24 and all(k > 16 for k in frames)
    assert revisit_frames(cams, 24) == []


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_temporal_stride_one_backbone(world, mode):
    """τ = 1 (one latent per frame): 5-frame chunks overlapping by one, every frame written."""
    from dataclasses import replace

    from mirage.backbones.tiny import TinyBackbone

    torch.manual_seed(0)
    backbone = TinyBackbone(replace(SMALL, temporal_stride=1, max_frames=5)).eval()
    out = run(backbone, world, mode)
    assert out.video.shape == (25, 3, 32, 32)
    assert out.latents.shape == (SMALL.latent_channels, 25, 4, 4)
    assert [(c.start_frame, c.end_frame) for c in out.plan] == [(4 * i, 4 * i + 4) for i in range(6)]
    if mode != "none":
        assert out.memory.frames == list(range(25))
    again = run(backbone, world, mode)
    torch.testing.assert_close(out.video, again.video, rtol=0, atol=0)


def test_paste_reads(backbone, world):
    """paste_reads=0.5 puts the read's token in every covered target cell; None keeps the
    generated latents there; a bad value is refused."""
    pasted, kept = run(backbone, world, paste_reads=0.5), run(backbone, world, paste_reads=None)
    for out in (pasted, kept):
        assert out.read_mask[:, 1:].any()  # the return chunk reads the first chunk's points
    mask = pasted.read_mask[None].expand_as(pasted.latents)
    torch.testing.assert_close(pasted.latents[mask], pasted.read_latents[mask], rtol=0, atol=0)
    mask = kept.read_mask[None].expand_as(kept.latents)
    assert not torch.allclose(kept.latents[mask], kept.read_latents[mask])
    for bad in (-0.1, 0.6, True, "0.1"):
        with pytest.raises(ConfigError, match="paste_reads"):
            PipelineConfig(paste_reads=bad)


def test_paste_reads_threshold_against_a_loop():
    """`_paste_reads` against a per-cell loop: a target cell takes the read's token iff it is
    covered and its offset is within the threshold in both axes; the chunk's first latent stays."""
    from mirage.pipeline.memory_modes import paste_reads as _paste_reads
    from mirage.pipeline.memory_modes import ModeRead

    g = torch.Generator().manual_seed(0)
    C, T, h, w = 3, 4, 5, 6
    chunk = torch.randn(C, T, h, w, generator=g)
    read = ModeRead(torch.randn(T - 1, C, h, w, generator=g), torch.rand(T - 1, h, w, generator=g) > 0.4,
                    torch.rand(T - 1, 2, h, w, generator=g) - 0.5)
    out = _paste_reads(chunk, read, 0.2)
    for t in range(T):
        for i in range(h):
            for j in range(w):
                take = t > 0 and bool(read.mask[t - 1, i, j]) and all(
                    abs(float(read.offset[t - 1, a, i, j])) <= 0.2 for a in range(2))
                want = read.features[t - 1, :, i, j] if take else chunk[:, t, i, j]
                assert torch.equal(out[:, t, i, j], want)
