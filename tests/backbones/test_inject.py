"""Training-free memory input: the injection kernel, its settings, and the tiny model's loop."""

from __future__ import annotations

import pytest
import torch

from mirage.backbones import ChunkConditioning
from mirage.backbones.base import MEMORY_INPUTS, Injection
from mirage.backbones.inject import Injector, inject_read
from mirage.backbones.tiny.flow import sampling_times
from mirage.errors import ConfigError

from .test_tiny import conditioning


def _reference_inject(x_t, level, read, weight, noise):
    """Element by element: w·((1 − t)·m + t·ε) + (1 − w)·x_t."""
    out = torch.empty_like(x_t)
    weight = torch.broadcast_to(weight, x_t.shape)
    for i in range(x_t.numel()):
        x, m, w, e = (float(v.reshape(-1)[i]) for v in (x_t, read, weight, noise))
        out.view(-1)[i] = w * ((1 - level) * m + level * e) + (1 - w) * x
    return out


def test_inject_read_equals_the_elementwise_rule():
    g = torch.Generator().manual_seed(0)
    x, read, noise = (torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    weight = torch.rand(2, 1, 4, 5, generator=g, dtype=torch.float64)
    weight[0, 0, 0, 0], weight[1, 0, 2, 3] = 0.0, 1.0
    for level in (1.0, 0.7, 0.05):
        got = inject_read(x, level, read, weight, noise)
        torch.testing.assert_close(got, _reference_inject(x, level, read, weight, noise))
    # weight 0 leaves x_t exactly; weight 1 is the noised read exactly
    got = inject_read(x, 0.3, read, weight, noise)
    assert got[0, :, 0, 0].tolist() == x[0, :, 0, 0].tolist()
    torch.testing.assert_close(got[1, :, 2, 3], 0.7 * read[1, :, 2, 3] + 0.3 * noise[1, :, 2, 3])


def test_injection_weight_masks_offsets_and_feathers():
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 1:4, 1:4] = True
    offset = torch.zeros(1, 2, 5, 5)
    offset[0, 0, 2, 2] = 0.4
    assert torch.equal(Injection().weight(mask, offset), mask.float())
    w = Injection(max_offset=0.25).weight(mask, offset)
    assert w[0, 2, 2] == 0 and w.sum() == 8
    w = Injection(feather=1).weight(mask, None)
    # the centre of a 3×3 covered block sees 9 of 9 covered neighbours, a corner 4 of 9
    assert w[0, 2, 2] == 1.0 and w[0, 1, 1] == pytest.approx(4 / 9) and w[0, 1, 2] == pytest.approx(6 / 9)
    assert w[0, 0, 0] == 0 and w[~mask].abs().sum() == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"until": 1.5}, "inject_until"), ({"until": True}, "inject_until"), ({"until": float("nan")}, "inject_until"),
    ({"max_offset": -1}, "inject_max_offset"), ({"feather": 1.5}, "inject_feather"), ({"feather": -1}, "inject_feather"),
])
def test_injection_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Injection(**kwargs)


def test_injector_injects_only_at_levels_at_or_above_until():
    x = torch.zeros(1, 2, 3)
    inj = Injector(Injection(until=0.5), torch.ones(1, 2, 3), torch.ones(1, 1, 3), torch.full((1, 2, 3), 2.0))
    assert inj(x, 0.4) is x and inj(x, 0.0) is x
    torch.testing.assert_close(inj(x, 0.5), torch.full((1, 2, 3), 1.5))
    assert inj.levels == [0.5]


def test_conditioning_rejects_an_unknown_memory_input(backbone):
    with pytest.raises(ConfigError, match="memory_input"):
        conditioning(backbone).__class__(**{**conditioning(backbone).__dict__, "memory_input": "paste"})
    assert MEMORY_INPUTS == ("branch", "inject", "both")


def _spy_denoiser(backbone, monkeypatch):
    calls = []
    forward = backbone.denoiser.forward

    def spy(x, memory, mask, tt, *rest):
        calls.append((x.clone(), memory.clone(), mask.clone(), tt.clone()))
        return forward(x, memory, mask, tt, *rest)

    monkeypatch.setattr(backbone.denoiser, "forward", spy)
    return calls


@pytest.mark.parametrize("memory_input", ["inject", "both"])
def test_tiny_covered_cells_of_x_t_are_the_noised_read_at_every_injected_step(backbone, monkeypatch, memory_input):
    n, steps, until = 2, 4, 0.3
    base = conditioning(backbone, n=n, steps=steps)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(n, 4, 4, generator=g) > 0.4
    cond = ChunkConditioning(**{**base.__dict__, "memory_mask": mask, "memory_input": memory_input,
                                "injection": Injection(until=until)})
    calls = _spy_denoiser(backbone, monkeypatch)
    backbone.sample(cond, torch.Generator().manual_seed(7))
    noise = torch.randn(1, n, *cond.first_latent.shape, generator=torch.Generator().manual_seed(7))[0]
    times = sampling_times(steps, backbone.config.schedule_shift).tolist()[:-1]
    assert len(calls) == steps
    injected = 0
    for (x, memory, read_mask, tt), t in zip(calls, times):
        assert tt[0, -1].item() == pytest.approx(t)
        targets = x[0, -n:]  # (n, C, h, w)
        expected = (1 - t) * cond.memory_features + t * noise
        if t >= until:
            injected += 1
            torch.testing.assert_close(targets.permute(1, 0, 2, 3)[:, mask], expected.permute(1, 0, 2, 3)[:, mask])
        if memory_input == "inject":  # the model itself is given no read
            assert not read_mask.any() and not memory.any()
        else:
            assert torch.equal(read_mask[0, -n:], mask)
    assert injected == sum(t >= until for t in times) and 0 < injected < steps


def test_tiny_branch_output_is_unchanged_by_injection_settings(backbone):
    cond = conditioning(backbone, covered=True)
    a = backbone.sample(cond, torch.Generator().manual_seed(1))
    b = backbone.sample(ChunkConditioning(**{**cond.__dict__, "injection": Injection(until=0.9, feather=2)}),
                        torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
