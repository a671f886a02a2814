"""The shipped tiny weights on one held-out case (slow: deselected by default, run with -m slow)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


def test_revisit_psnr_gain_with_latent_memory():
    from mirage.backbones.tiny import SHIPPED_WEIGHTS, TinyBackbone
    from mirage.evaluation.metrics import frame_psnr, revisit_frames
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate
    from mirage.world import generate_scene, make_trajectory, render

    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("no shipped weights")
    backbone = TinyBackbone.load()
    scene = generate_scene("room", 7)  # training uses seeds ≥ 1000
    cams = make_trajectory("pan-return", scene, 33, 64, 64)
    gt = render(scene, cams)
    depth0 = torch.where(gt.sky[0], torch.inf, gt.depth[0])
    psnr = {}
    for mode in ("latent", "none"):
        out = generate(backbone, gt.rgb[0], cams, PipelineConfig(memory_mode=mode, steps=6),
                       depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                       first_depth=depth0, first_exclude=gt.sky[0])
        per = frame_psnr(out.video, gt.rgb)
        frames = revisit_frames(cams, out.plan[0].end_frame)
        psnr[mode] = sum(per[k] for k in frames) / len(frames)
    # Measured with the shipped weights (2026-11-30): latent 22.0 dB, none 19.8 dB (+2.2) on this
    # case. The goal of +6 dB (on average over held-out scenes) is NOT met by these
    # weights (+3.96 on the quick suite); this guards the gain.
    assert psnr["latent"] > psnr["none"] + 1.5, psnr
