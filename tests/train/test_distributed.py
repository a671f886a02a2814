"""Distribution is real: 2 torchrun processes (gloo) average gradients like one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mirage.data import SampleIndex
from mirage.files import load_safetensors
from mirage.train.loop import LocalEngine, LoopConfig, train_loop
from mirage.train.wan import WanTrainConfig, _Velocity, flow_matching_loss, make_wan_batch, train_wan
from tests.train.wan_standin import StandInWan, branch_state, build_data

WORKER = Path(__file__).with_name("dist_worker.py")


def test_two_processes_average_gradients_like_one(tmp_path):
    shards = build_data(tmp_path)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(shards), str(tmp_path / "ddp"), "2"],
        capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    g0, _ = load_safetensors(tmp_path / "ddp" / "grads-0-of-2.safetensors", "grads")
    g1, _ = load_safetensors(tmp_path / "ddp" / "grads-1-of-2.safetensors", "grads")

    # one process, the same global batch (2 processes × 2 items), gradients of the mean loss
    bb = StandInWan()
    bb.transformer.requires_grad_(False)
    for p in bb.memory_branch_parameters():
        p.requires_grad_(True)
    batch = make_wan_batch(SampleIndex(shards), bb, 0, batch_size=4, seed=0)
    loss, _ = flow_matching_loss(_Velocity(bb), batch)
    loss.backward()
    single = {n: p.grad for n, p in bb.transformer.vace_branch.named_parameters()}
    assert set(single) == set(g0) and any(v.abs().sum() > 0 for v in single.values())
    for name, grad in single.items():
        # float32 sums the 4 items in a different order (2 + 2, then all-reduce): equal up to
        # rounding relative to the tensor's scale. Summing instead of averaging, or a missing
        # all-reduce, is off by O(1) of that scale.
        atol = 1e-5 * float(grad.abs().max())
        torch.testing.assert_close(g0[name], grad, rtol=1e-5, atol=atol)
        torch.testing.assert_close(g1[name], grad, rtol=1e-5, atol=atol)
    # the logged loss is the mean over processes: the single-process loss of the global batch
    record = json.loads((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()[0])
    assert record["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    report = json.loads((tmp_path / "ddp" / "train_report.json").read_text())
    assert report["processes"] == 2 and report["global_batch"] == 4

    # and the trained branch equals a single-process run with batch 4
    one = StandInWan()
    train_wan(tmp_path / "one", shards, one, WanTrainConfig(stage="branch", max_steps=1, lr=1e-2, batch_size=4,
              grad_clip=0.0, gradient_checkpointing=False), progress=False, log=None)
    ddp, _ = load_safetensors(tmp_path / "ddp" / "memory_branch.safetensors", "branch")
    for k, v in branch_state(one).items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)


def test_accelerate_engine_matches_local_engine_in_one_process(tmp_path):
    """`mirage train tiny` runs the loop on LocalEngine; one accelerate process gives the same numbers."""
    from mirage.train.distributed import AccelerateEngine, make_accelerator

    def problem():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        w = torch.tensor([[1.0, -2.0, 0.5]])

        def make_batch(i):
            x = torch.randn(8, 3, generator=torch.Generator().manual_seed(i))
            return x, x @ w.T

        return model, make_batch, lambda m, b: ((m(b[0]) - b[1]).pow(2).mean(), {})

    cfg = LoopConfig(steps=20, lr=0.05, warmup=2, checkpoint_every=5)
    m1, mb, lf = problem()
    s1 = train_loop("a", m1, m1.parameters(), mb, lf, cfg, tmp_path / "a.safetensors", progress=False,
                    engine=LocalEngine())
    m2, mb, lf = problem()
    s2 = train_loop("b", m2, m2.parameters(), mb, lf, cfg, tmp_path / "b.safetensors", progress=False,
                    engine=AccelerateEngine(make_accelerator("no", cpu=True)))
    assert s1["loss_ema"] == pytest.approx(s2["loss_ema"], rel=1e-6) and s1["step"] == s2["step"] == 20
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
