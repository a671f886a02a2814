"""The sample builder's memory read equals what ``generate`` reads at inference for the same frames."""

from __future__ import annotations

import torch

from mirage.data import read_clip
from mirage.data.samples import clip_samples, encode_clip
from mirage.pipeline import PipelineConfig
from mirage.pipeline.generator import generate
from tests.train.wan_standin import StandInWan, render_clips


class _Replay(StandInWan):
    """Generates the clip's own latents, and records what the pipeline conditions each chunk on."""

    def __init__(self, truth):
        super().__init__()
        self.truth, self.conds, self.start = truth, [], 0

    def sample(self, cond, generator, callback=None):
        self.conds.append(cond)
        n = cond.num_targets
        out = self.truth[self.start:self.start + n + 1].permute(1, 0, 2, 3)[None]  # (1, C, n+1, h, w)
        self.start += n
        return out.clone()


def test_builder_read_equals_pipeline_read(tmp_path):
    root = render_clips(tmp_path, count=1, frames=17, size=32)
    clip = read_clip(root / "clip0", temporal_stride=4, spatial_stride=8, min_frames=9)
    truth = encode_clip(StandInWan(), clip)  # (5, C, 4, 4)
    bb = _Replay(truth)

    def depth(frames, cams, pixel_ids):  # the clip's depth, as the builder uses it
        d = clip.depths[pixel_ids]
        return d, torch.isfinite(d)

    def masker(frames, latents, read, mask, cams, pixel_ids):
        return clip.exclude[pixel_ids]

    # paste_reads off: the replay's premise is that the kept latents are the clip's own, which
    # pasting memory tokens into covered cells would change by design.
    generate(bb, clip.video[0], clip.cameras, PipelineConfig(steps=1, preceding=1, references=1, paste_reads=None),
             depth_estimator=depth, masker=masker, first_depth=clip.depths[0], first_exclude=clip.exclude[0])
    samples = {m["start"]: (t, m) for t, m in clip_samples(bb, clip, preceding=1, references=1, latents=truth)}
    assert len(bb.conds) == 2  # chunks [0..8] and [8..16]: start latents 0 and 2
    covered = 0
    for cond, start in zip(bb.conds, (0, 2)):
        tensors, meta = samples[start]
        # float32 round-off only: the pipeline encodes frame 0 alone, the builder the whole clip
        torch.testing.assert_close(tensors["memory_features"], cond.memory_features.float())
        assert torch.equal(tensors["memory_mask"], cond.memory_mask.bool())
        torch.testing.assert_close(tensors["first"], cond.first_latent)
        torch.testing.assert_close(tensors["preceding"], cond.preceding)
        torch.testing.assert_close(tensors["references"], cond.references)
        torch.testing.assert_close(tensors["cam2world"][-cond.num_targets:], cond.target_cameras.cam2world)
        covered += int(cond.memory_mask.sum())
    assert covered > 0  # the reads are not trivially empty
