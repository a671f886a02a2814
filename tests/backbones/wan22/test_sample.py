"""Chunk assembly and sampling: layout, control, clean frames at t = 0, determinism, CFG."""

from __future__ import annotations

import pytest
import torch

from mirage.backbones.base import ChunkConditioning
from mirage.geometry import Camera

from .conftest import load_tiny


def make_cond(n=4, P=1, R=1, steps=2, text=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cams = Camera.from_fov(torch.eye(4).expand(1 + n + P + R, 4, 4), 64, 64, 60.0)
    mask = torch.rand(n, 4, 4, generator=g) > 0.5
    return ChunkConditioning(
        first_latent=torch.randn(48, 4, 4, generator=g),
        memory_features=torch.randn(n, 48, 4, 4, generator=g) * mask[:, None],
        memory_mask=mask, preceding=torch.randn(P, 48, 4, 4, generator=g),
        references=torch.randn(R, 48, 4, 4, generator=g), first_camera=cams[[0]],
        target_cameras=cams[list(range(1, 1 + n))],
        preceding_cameras=cams[list(range(1 + n, 1 + n + P))] if P else None,
        reference_cameras=cams[list(range(1 + n + P, 1 + n + P + R))] if R else None,
        steps=steps, text=text)


def test_assemble_layout_and_control(tiny_dir):
    bb = load_tiny(tiny_dir)
    cond = make_cond(n=4, P=1, R=2)
    inp = bb.assemble(cond)
    assert inp.layout == ("reference", "reference", "preceding", "first", "target", "target", "target", "target")
    assert inp.latents.shape == (1, 48, 8, 4, 4) and inp.control.shape == (1, 96, 8, 4, 4)
    assert torch.equal(inp.latents[0, :, 0], cond.references[0]) and torch.equal(inp.latents[0, :, 2], cond.preceding[0])
    assert torch.equal(inp.latents[0, :, 3], cond.first_latent) and torch.count_nonzero(inp.latents[0, :, 4:]) == 0
    assert torch.count_nonzero(inp.control[0, :, :4]) == 0  # clean frames: no control
    assert torch.equal(inp.control[0, :48, 4:].permute(1, 0, 2, 3), cond.memory_features * cond.memory_mask[:, None])
    mask = cond.memory_mask.float()
    assert torch.equal(inp.control[0, 48:, 4:], mask[None].expand(48, -1, -1, -1))
    assert inp.timesteps(700.0).tolist() == [[0, 0, 0, 0, 700, 700, 700, 700]]


def test_sample_clean_frames_at_zero_deterministic(tiny_dir, monkeypatch):
    from mirage.backbones.wan22.sampler import make_scheduler

    bb = load_tiny(tiny_dir)
    cond = make_cond(n=4, steps=3)
    seen = []
    predict = bb.predict

    def spy(latents, timesteps, control, context):
        seen.append((latents.clone(), timesteps.clone()))
        return predict(latents, timesteps, control, context)

    monkeypatch.setattr(bb, "predict", spy)
    out = bb.sample(cond, torch.Generator().manual_seed(5))
    assert out.shape == (1, 48, 5, 4, 4) and torch.isfinite(out).all()
    assert torch.equal(out[0, :, 0], cond.first_latent)
    sched = make_scheduler("auto", None, bb.scheduler_config)
    sched.set_timesteps(3)
    assert len(seen) == 3
    for (latents, ts), t in zip(seen, sched.timesteps.tolist()):
        assert ts[0, :3].tolist() == [0, 0, 0] and ts[0, 3:].tolist() == [t] * 4
        assert torch.equal(latents[0, :, 2], cond.first_latent)  # clean frames handed in unchanged
        assert torch.equal(latents[0, :, 0], cond.references[0])
    again = bb.sample(cond, torch.Generator().manual_seed(5))
    assert torch.equal(again, out)
    other = bb.sample(cond, torch.Generator().manual_seed(6))
    assert (other[:, :, 1:] - out[:, :, 1:]).abs().max() > 1e-3


def test_euler_sampler_and_cfg(tiny_text_dir):
    bb_euler = load_tiny(tiny_text_dir, sampler="euler", shift=3.0, guidance=1.0)
    assert bb_euler.run_info()["sampler"] == "FlowMatchEulerDiscreteScheduler(shift=3.0)"
    cond = make_cond(n=2, text="a room with red walls")
    plain = bb_euler.sample(cond, torch.Generator().manual_seed(0))
    bb_cfg = load_tiny(tiny_text_dir, sampler="euler", shift=3.0, guidance=4.0, negative_prompt="blue")
    calls = []
    predict = bb_cfg.predict
    bb_cfg.predict = lambda *a: calls.append(a[3]) or predict(*a)
    guided = bb_cfg.sample(cond, torch.Generator().manual_seed(0))
    assert len(calls) == 4  # 2 steps × (cond + uncond)
    assert not torch.equal(calls[0], calls[1])  # prompt vs negative prompt context
    assert (guided - plain).abs().max() > 1e-4


def test_odd_latent_grid_is_refused(tiny_dir):
    from mirage.errors import ShapeError

    bb = load_tiny(tiny_dir)
    g = torch.Generator().manual_seed(0)
    cams = Camera.from_fov(torch.eye(4).expand(2, 4, 4), 48, 48, 60.0)
    cond = ChunkConditioning(torch.randn(48, 3, 3, generator=g), torch.zeros(1, 48, 3, 3),
                             torch.zeros(1, 3, 3, dtype=torch.bool), torch.zeros(0, 48, 3, 3),
                             torch.zeros(0, 48, 3, 3), cams[[0]], cams[[1]])
    with pytest.raises(ShapeError, match="divisible by 32"):
        bb.sample(cond, g)
