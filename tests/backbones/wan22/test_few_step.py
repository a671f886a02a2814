"""The few-step sampler: against a slow reference loop, inject levels, clean frames at t = 0, CFG off."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mirage.errors import ConfigError

from .conftest import load_tiny, randomise_branch
from .test_sample import make_cond


def reference_few_step(bb, cond, timesteps, generator):
    """Slow, obviously correct: the whole sequence built by hand, one model call per timestep,
    x̂₀ = x_t − σ·v and x_{next} = (1 − σ')·x̂₀ + σ'·ε in float64, the noise drawn in the same order."""
    C, h, w = cond.first_latent.shape
    n = cond.num_targets
    clean = torch.cat([cond.references, cond.preceding, cond.first_latent[None]])  # (S − n, C, h, w)
    control = bb.assemble(cond).control
    x = torch.randn(1, C, n, h, w, generator=generator, dtype=torch.float32).double()
    for i, t in enumerate(timesteps):
        sigma = t / 1000.0
        seq = torch.cat([clean.permute(1, 0, 2, 3)[None].double(), x], dim=2)  # (1, C, S, h, w)
        ts = torch.tensor([[0.0] * len(clean) + [float(t)] * n])
        v = bb.transformer(hidden_states=seq.float(), timestep=ts, encoder_hidden_states=torch.zeros(1, 512, 16),
                           control_hidden_states=control, return_dict=False)[0][:, :, len(clean):].double()
        x0 = x - sigma * v
        if i == len(timesteps) - 1:
            x = x0
        else:
            nxt = timesteps[i + 1] / 1000.0
            eps = torch.randn(1, C, n, h, w, generator=generator, dtype=torch.float32).double()
            x = (1.0 - nxt) * x0 + nxt * eps
    return torch.cat([cond.first_latent.double()[:, None], x[0]], dim=1)[None]  # (1, C, T, h, w)


@pytest.mark.parametrize("timesteps", ["1000,757,522", "sf-4", "900,300"])
def test_backbone_few_step_equals_reference_loop(tiny_dir, timesteps):
    from mirage.backbones.wan22.sampler import parse_timesteps

    bb = load_tiny(tiny_dir, sampler="few-step", timesteps=timesteps)
    randomise_branch(bb.transformer, seed=3)  # the memory read matters
    cond = make_cond(n=4, P=1, R=1, steps=50)  # steps is not used by few-step
    out = bb.sample(cond, torch.Generator().manual_seed(11))
    ref = reference_few_step(bb, cond, parse_timesteps(timesteps), torch.Generator().manual_seed(11))
    assert out.shape == ref.shape == (1, 48, 5, 4, 4)
    # the loops differ only in float32 vs float64 update arithmetic
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[0, :, 0], cond.first_latent)
    # fresh noise per re-noise: another seed gives another chunk
    other = bb.sample(cond, torch.Generator().manual_seed(12))
    assert (other - out).abs().max() > 1e-2


def test_few_step_clean_frames_at_zero_and_one_call_per_timestep(tiny_dir, monkeypatch):
    bb = load_tiny(tiny_dir, sampler="few-step", timesteps="1000,757,522")
    assert bb.config.steps == 3 and bb.config.timesteps == (1000.0, 757.0, 522.0)
    cond = make_cond(n=3, P=1, R=2)
    seen = []
    predict = bb.predict
    monkeypatch.setattr(bb, "predict", lambda lat, ts, *a: seen.append((lat.clone(), ts.clone())) or predict(lat, ts, *a))
    progress = []
    bb.sample(cond, torch.Generator().manual_seed(0), callback=lambda i, n: progress.append((i, n)))
    assert [ts[0].tolist() for _, ts in seen] == [[0, 0, 0, 0, t, t, t] for t in (1000, 757, 522)]
    for latents, _ in seen:
        assert torch.equal(latents[0, :, 3], cond.first_latent) and torch.equal(latents[0, :, 1], cond.references[1])
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert bb.run_info()["sampler"] == "FewStep(timesteps=[1000.0, 757.0, 522.0])"


def test_sample_few_step_inject_levels_and_pure_function():
    """The pure function on a linear toy velocity, against the closed form; inject is called with
    the targets' x_t and its level right before each evaluation, and what it returns is used."""
    from mirage.backbones.wan22.sampler import sample_few_step

    noise = torch.randn(1, 2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    calls, evaluated = [], []

    def velocity(x, t):
        evaluated.append((x.clone(), float(t)))
        return 0.5 * x + 0.001 * t

    def inject(x, level):
        calls.append((x.clone(), level))
        return x + 1.0

    levels = (1000.0, 600.0, 250.0)
    out = sample_few_step(velocity, noise, levels, generator=torch.Generator().manual_seed(4), inject=inject)
    assert [lv for _, lv in calls] == [1.0, 0.6, 0.25]
    assert [t for _, t in evaluated] == list(levels)
    torch.testing.assert_close(calls[0][0], noise)
    for (x_in, _), (x_eval, _) in zip(calls, evaluated):
        torch.testing.assert_close(x_eval, x_in + 1.0)  # the injected x is what the model sees
    g = torch.Generator().manual_seed(4)
    x = noise.double()
    for i, t in enumerate(levels):
        x = x + 1.0
        x0 = x - t / 1000 * (0.5 * x + 0.001 * t)
        if i + 1 < len(levels):
            s = levels[i + 1] / 1000
            x = (1 - s) * x0 + s * torch.randn(noise.shape, generator=g).double()
        else:
            x = x0
    torch.testing.assert_close(out.double(), x, rtol=1e-6, atol=1e-6)


def test_few_step_cfg_off_by_default(tiny_text_dir):
    cond = make_cond(n=2, text="a room with red walls")
    for guidance, calls_per_step in ((None, 1), (3.0, 2)):
        bb = load_tiny(tiny_text_dir, sampler="few-step", timesteps="dmd-3", guidance=guidance)
        calls = []
        predict = bb.predict
        bb.predict = lambda *a, _p=predict: calls.append(a) or _p(*a)
        bb.sample(cond, torch.Generator().manual_seed(0))
        assert len(calls) == 3 * calls_per_step
        assert bb.run_info()["guidance"] == (1.0 if guidance is None else guidance)
    assert load_tiny(tiny_text_dir).run_info()["guidance"] == 5.0  # the schedulers keep CFG 5


def test_few_step_config_validation():
    from mirage.backbones.wan22 import Wan22Config
    from mirage.backbones.wan22.sampler import FEW_STEP_SCHEDULES, parse_timesteps

    assert Wan22Config(sampler="few-step").timesteps == FEW_STEP_SCHEDULES["dmd-3"]
    assert Wan22Config(sampler="few-step", timesteps="sf-4").steps == 4
    assert parse_timesteps("sf-4") == (1000.0, 750.0, 500.0, 250.0)
    assert parse_timesteps([1000, 500]) == (1000.0, 500.0)
    with pytest.raises(ConfigError, match="`timesteps` is for `sampler` 'few-step'"):
        Wan22Config(timesteps="1000,500")
    for bad in ("1000,1000", "500,700", "1200,500", "0", "1000,0", "fast", "", "1000,nan"):
        with pytest.raises(ConfigError, match="`timesteps`"):
            Wan22Config(sampler="few-step", timesteps=bad)
    with pytest.raises(ConfigError, match="`sampler`"):
        Wan22Config(sampler="lcm")


def test_generate_cli_few_step(tiny_dir, tmp_path, capsys):
    from mirage.cli import main

    def run(*extra):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return main(["generate", "--backbone", "wan22", "--weights", str(tiny_dir), "--frames", "9",
                         "--size", "64x64", "--scene", "1", "--no-progress", "--memory", "latent", *extra])

    assert run("--sampler", "few-step", "--timesteps", "1000,500", "--out", str(tmp_path / "a")) == 0
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run_json["config"]["steps"] == 2
    assert run_json["config"]["backbone_info"]["sampler"] == "FewStep(timesteps=[1000.0, 500.0])"
    capsys.readouterr()
    assert run("--sampler", "few-step", "--steps", "6", "--out", str(tmp_path / "b")) == 2
    assert "`--steps` is 6 but `--sampler few-step` takes one step per `--timesteps` entry (3)" in capsys.readouterr().err
    assert main(["generate", "--timesteps", "dmd-3", "--out", str(tmp_path / "c")]) == 2  # tiny backbone
    assert "--timesteps need `--backbone wan22`" in capsys.readouterr().err
