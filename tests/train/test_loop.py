from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mirage.errors import MemoryFormatError
from mirage.train import LoopConfig, train_loop
from mirage.train.checkpoint import load_checkpoint, save_checkpoint


def problem():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    w = torch.tensor([[1.0, -2.0, 0.5]])

    def make_batch(i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(16, 3, generator=g)
        return x, x @ w.T

    def loss_fn(m, batch):
        x, y = batch
        loss = (m(x) - y).pow(2).mean()
        return loss, {"mse": loss.detach()}

    return model, make_batch, loss_fn


def test_loss_decreases_and_checkpoint_written(tmp_path):
    model, make_batch, loss_fn = problem()
    before = float(loss_fn(model, make_batch(999))[0].detach())
    state = train_loop("lin", model, model.parameters(), make_batch, loss_fn,
                       LoopConfig(steps=150, lr=0.05, warmup=5, checkpoint_every=50),
                       tmp_path / "ckpt.safetensors", progress=False)
    after = float(loss_fn(model, make_batch(999))[0].detach())
    assert state["done"] and state["step"] == 150
    assert after < 0.05 * before
    assert (tmp_path / "ckpt.safetensors").exists()


def test_resume_matches_uninterrupted_run(tmp_path):
    cfg = LoopConfig(steps=40, lr=0.05, warmup=5, checkpoint_every=10)
    model_a, make_batch, loss_fn = problem()
    train_loop("a", model_a, model_a.parameters(), make_batch, loss_fn, cfg, tmp_path / "a.safetensors", progress=False)

    # the same run, crashing while building batch 20 (after the step-20 checkpoint), then resumed
    model_b, _, _ = problem()

    def crashing(i):
        if i == 20:
            raise KeyboardInterrupt
        return make_batch(i)

    with pytest.raises(KeyboardInterrupt):
        train_loop("b", model_b, model_b.parameters(), crashing, loss_fn, cfg, tmp_path / "b.safetensors", progress=False)
    model_d, _, _ = problem()  # fresh weights: everything must come from the checkpoint
    state = train_loop("b", model_d, model_d.parameters(), make_batch, loss_fn, cfg, tmp_path / "b.safetensors", progress=False)
    assert state["step"] == 40
    for a, d in zip(model_a.parameters(), model_d.parameters()):
        torch.testing.assert_close(a, d, rtol=1e-6, atol=1e-7)


def test_checkpoint_is_safetensors_with_json(tmp_path):
    from safetensors import safe_open

    model, make_batch, loss_fn = problem()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    loss_fn(model, make_batch(0))[0].backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model, opt, {"step": 1, "note": "x"})
    with safe_open(str(tmp_path / "c.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "mirage.checkpoint" and json.loads(meta["state"])["note"] == "x"
    assert {"model.weight", "model.bias", "optim.0.exp_avg"} <= keys
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(MemoryFormatError):
        load_checkpoint(tmp_path / "bad.safetensors", model)


def test_cosine_follows_the_clock_when_the_budget_runs_ahead_of_the_steps():
    from mirage.train.loop import cosine_lr

    config = LoopConfig(1000, lr=1.0, warmup=10, min_lr_ratio=0.05, max_seconds=100.0)
    # Ahead of the budget: the steps decide (the same as with no budget).
    unbudgeted = LoopConfig(1000, lr=1.0, warmup=10, min_lr_ratio=0.05)
    assert cosine_lr(505, config, seconds=10.0) == pytest.approx(cosine_lr(505, unbudgeted))
    # Behind it: the clock decides. Halfway through the budget at a fifth of the steps is step
    # 500 by the clock, and a spent budget is the floor, whatever the step.
    assert cosine_lr(200, config, seconds=50.0) == pytest.approx(cosine_lr(500, unbudgeted))
    assert cosine_lr(200, config, seconds=100.0) == pytest.approx(0.05)
    assert cosine_lr(200, config, seconds=250.0) == pytest.approx(0.05)
    # Just past warm-up with some seconds spent (start-up), a run at the budget's pace or better
    # still follows its steps: the clock does not lead merely because warm-up steps count 0.
    assert cosine_lr(60, config, seconds=5.9) == pytest.approx(cosine_lr(60, unbudgeted))
    # Warm-up is by step alone.
    assert cosine_lr(4, config, seconds=90.0) == pytest.approx(0.5)


def test_a_time_cut_run_ends_near_the_floor_learning_rate(tmp_path):
    import time

    model, make_batch, loss_fn = problem()
    lrs = []

    def slow_loss(m, batch):
        time.sleep(0.01)
        return loss_fn(m, batch)

    state = train_loop("t", model, model.parameters(), make_batch, slow_loss,
                       LoopConfig(100_000, lr=1e-2, warmup=2, min_lr_ratio=0.05, max_seconds=1.0,
                                  checkpoint_every=100_000),
                       tmp_path / "c.safetensors", progress=False,
                       on_step=lambda step, record: lrs.append(record["lr"]))
    assert state["stopped_early"] and len(lrs) < 1000  # cut by the clock, far from its steps
    # By its steps the run is at the peak; by the clock it has decayed to near the floor.
    assert lrs[-1] < 0.15 * 1e-2
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
