"""Wan2.2 with the training-free memory input: injection in diffusers' UniPC and Euler loops."""

from __future__ import annotations

import pytest
import torch

from mirage.backbones.base import ChunkConditioning
from mirage.backbones.base import Injection

from .conftest import load_tiny, randomise_branch
from .test_sample import make_cond


def _spy(bb):
    seen = []
    predict = bb.predict

    def spy(latents, timesteps, control, context):
        seen.append((latents.clone(), timesteps.clone(), control.clone()))
        return predict(latents, timesteps, control, context)

    bb.predict = spy
    return seen


@pytest.mark.parametrize("sampler", ["unipc", "euler"])
@pytest.mark.parametrize("memory_input", ["inject", "both"])
def test_covered_cells_of_x_t_are_the_noised_read_at_every_injected_step(tiny_dir, sampler, memory_input):
    from mirage.backbones.wan22.sampler import make_scheduler

    bb = load_tiny(tiny_dir, sampler=sampler)
    randomise_branch(bb.transformer)  # so a read given to the branch would show in the control
    n, steps, until = 4, 5, 0.85
    cond = ChunkConditioning(**{**make_cond(n=n, steps=steps).__dict__, "memory_input": memory_input,
                                "injection": Injection(until=until)})
    seen = _spy(bb)
    bb.sample(cond, torch.Generator().manual_seed(5))
    noise = torch.randn(1, 48, n, 4, 4, generator=torch.Generator().manual_seed(5))[0]  # (C, n, h, w)
    sched = make_scheduler(sampler, None, bb.scheduler_config)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas[:steps].tolist()
    read = cond.memory_features.permute(1, 0, 2, 3)  # (C, n, h, w)
    mask = cond.memory_mask  # (n, h, w)
    assert len(seen) == steps
    injected = 0
    for (latents, _, control), sigma in zip(seen, sigmas):
        targets = latents[0, :, -n:]  # (C, n, h, w)
        if sigma >= until:
            injected += 1
            expected = (1 - sigma) * read + sigma * noise
            torch.testing.assert_close(targets[:, mask], expected[:, mask], rtol=1e-5, atol=1e-5)
        target_control = control[0, :, -n:]
        if memory_input == "inject":  # the model itself is given an empty read
            assert torch.count_nonzero(target_control) == 0
        else:
            assert torch.equal(target_control[48:, :][0], mask.float())
    assert 0 < injected < steps


def test_unipc_skips_its_corrector_on_injected_steps_only(tiny_dir, monkeypatch):
    """UniC rebuilds x_t from the previous sample: it must not run on a step whose x_t was
    replaced, and it must still run on the steps below the stop level."""
    from diffusers import UniPCMultistepScheduler

    bb = load_tiny(tiny_dir, sampler="unipc")
    used = []
    original = UniPCMultistepScheduler.multistep_uni_c_bh_update

    def spy(self, *args, **kwargs):
        used.append(self.step_index)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UniPCMultistepScheduler, "multistep_uni_c_bh_update", spy)
    steps = 6
    cond = make_cond(n=2, steps=steps)
    bb.sample(cond, torch.Generator().manual_seed(0))
    assert used == list(range(1, steps))  # plain UniPC: the corrector on every step after the first
    used.clear()
    until = 0.85
    inj = ChunkConditioning(**{**cond.__dict__, "memory_input": "inject", "injection": Injection(until=until)})
    bb.sample(inj, torch.Generator().manual_seed(0))
    from mirage.backbones.wan22.sampler import make_scheduler

    sched = make_scheduler("unipc", None, bb.scheduler_config)
    sched.set_timesteps(steps)
    injected_steps = [i for i, s in enumerate(sched.sigmas[:steps].tolist()) if s >= until]
    assert used == [i for i in range(1, steps) if i not in injected_steps]
    assert 1 in injected_steps and used  # some steps skip it, some keep it


def test_wan_defaults_to_inject_without_a_branch_and_both_with_one(tiny_dir, tmp_path):
    bb = load_tiny(tiny_dir)
    assert not bb.has_memory_branch and bb.default_memory_input == "inject"
    randomise_branch(bb.transformer)
    bb.save_memory_branch(tmp_path / "branch.safetensors")
    with_branch = load_tiny(tiny_dir, memory_branch=tmp_path / "branch.safetensors")
    assert with_branch.has_memory_branch and with_branch.default_memory_input == "both"
