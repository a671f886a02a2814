"""The memory options in the pipeline: culling changes no output; the token dtype reaches the memory."""

from __future__ import annotations

import pytest
import torch

from mirage.memory.store import PointStore

from .test_generator import run


@pytest.mark.parametrize("mode", ["latent", "rgb"])
def test_pipeline_outputs_are_bit_identical_with_culling_on_and_off(backbone, world, mode, monkeypatch):
    culled = run(backbone, world, mode, references=2)
    monkeypatch.setattr(PointStore, "cull", False)
    full = run(backbone, world, mode, references=2)
    torch.testing.assert_close(culled.video, full.video, rtol=0, atol=0)
    torch.testing.assert_close(culled.latents, full.latents, rtol=0, atol=0)
    assert culled.references == full.references
    assert culled.memory_stats == full.memory_stats


@pytest.mark.slow
def test_quick_suite_runs_are_bit_identical_with_culling_on_and_off(monkeypatch):
    # Two cases of the quick suite (one per family) with the shipped tiny weights.
    from mirage.backbones.tiny import SHIPPED_WEIGHTS, TinyBackbone
    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import SUITES, suite_cases

    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("no shipped weights")
    backbone = TinyBackbone.load()
    suite = SUITES["quick"]
    cases = [c for c in suite_cases(suite) if c.preset == "loop" and c.scene == 0]
    assert {c.family for c in cases} == {"room", "courtyard"}
    for case in cases:
        gt = prepare_ground_truth(backbone, case, suite.frames, proxies=False)
        records = []
        for cull in (True, False):
            monkeypatch.setattr(PointStore, "cull", cull)
            record, frames = evaluate_run(backbone, gt, "latent", 0, steps=suite.steps, proxies=False)
            records.append((record, frames))
        (a, fa), (b, fb) = records
        for key in ("psnr", "ssim", "closed_loop_psnr", "cache_bytes", "cache_points", "read_coverage"):
            assert a[key] == b[key], key
        assert all((fa[k] == fb[k]).all() for k in fa)


def test_the_pipeline_stores_the_dtype_it_is_given(backbone, world):
    from mirage.pipeline import PipelineConfig

    out = run(backbone, world, "latent", memory_dtype="float16")
    assert out.memory.dtype == torch.float16 and out.read_latents.dtype == out.latents.dtype
    with pytest.raises(ValueError, match="memory_dtype"):
        PipelineConfig(memory_dtype="int8")
