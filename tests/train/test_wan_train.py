from __future__ import annotations

import json

import pytest
import torch

import mirage.train.wan as wan
from mirage.errors import ConfigError
from mirage.train.wan import WanTrainConfig, make_wan_batch, train_wan
from tests.train.wan_standin import StandInWan, branch_state, build_data


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("wan-data"))


def _losses(out) -> dict[int, float]:
    """Loss per step from log.jsonl; a step run twice (after a crash) keeps its last record."""
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def _cfg(**kw):
    return WanTrainConfig(**{"stage": "branch", "max_steps": 4, "lr": 1e-2, "batch_size": 2,
                             "checkpoint_every": 1, "gradient_checkpointing": False, **kw})


def test_resume_continues_exactly(shards, tmp_path, monkeypatch):
    a = StandInWan()
    state_a = train_wan(tmp_path / "a", shards, a, _cfg(), progress=False, log=None)

    real = wan.make_wan_batch

    def crash_at_2(dataset, backbone, step, **kw):
        if step == 2:
            raise KeyboardInterrupt  # killed while building batch 2, after the step-2 checkpoint
        return real(dataset, backbone, step, **kw)

    monkeypatch.setattr(wan, "make_wan_batch", crash_at_2)
    with pytest.raises(KeyboardInterrupt):
        train_wan(tmp_path / "b", shards, StandInWan(), _cfg(), progress=False, log=None)
    monkeypatch.setattr(wan, "make_wan_batch", real)
    assert not (tmp_path / "b" / "memory_branch.safetensors").exists()
    b = StandInWan()  # fresh weights: everything must come from the checkpoint
    state_b = train_wan(tmp_path / "b", shards, b, _cfg(), progress=False, log=None)

    assert state_a["step"] == state_b["step"] == 4
    la, lb = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert list(la) == list(lb) == [1, 2, 3, 4]
    assert la[1] != la[4]  # training moved the loss
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-6, abs=1e-7)
    for k, v in branch_state(a).items():
        torch.testing.assert_close(branch_state(b)[k], v, rtol=1e-6, atol=1e-7)

    # a finished run asked for more steps trains on, to the same place as one longer run
    c = StandInWan()
    train_wan(tmp_path / "c", shards, c, _cfg(max_steps=2), progress=False, log=None)
    c = StandInWan()
    state_c = train_wan(tmp_path / "c", shards, c, _cfg(max_steps=4), progress=False, log=None)
    assert state_c["step"] == 4
    for k, v in branch_state(a).items():
        torch.testing.assert_close(branch_state(c)[k], v, rtol=1e-6, atol=1e-7)


def test_stages_train_only_their_parameters(shards, tmp_path):
    bb = StandInWan()
    base = {k: v.clone() for k, v in bb.transformer.state_dict().items()}
    train_wan(tmp_path / "r1", shards, bb, _cfg(max_steps=2), progress=False, log=None)
    after = bb.transformer.state_dict()
    changed = {k for k in base if not torch.equal(base[k], after[k])}
    assert changed and all(k.startswith("vace_branch.") for k in changed)
    assert (tmp_path / "r1" / "memory_branch.safetensors").is_file()

    with pytest.raises(ConfigError, match="needs `--resume`"):
        train_wan(tmp_path / "r2", shards, StandInWan(), _cfg(stage="lora", max_steps=1), progress=False, log=None)
    bb2 = StandInWan()
    train_wan(tmp_path / "r2", shards, bb2, _cfg(stage="lora", max_steps=2, lora_rank=3),
              resume_from=tmp_path / "r1", progress=False, log=None)
    tr = bb2.transformer
    for k, v in branch_state(bb).items():  # stage 1's branch loaded and left frozen
        torch.testing.assert_close(tr.vace_branch.state_dict()[k], v)
    assert tr.lora_up.weight.abs().sum() > 0  # the LoRA (B = 0 at init) trained
    assert torch.equal(tr.base.weight, base["base.weight"])
    assert (tmp_path / "r2" / "lora.safetensors").is_file()
    report = json.loads((tmp_path / "r2" / "train_report.json").read_text())
    assert report["step"] == 2 and report["trainable_parameters"] == 2 * 3 * 4


def test_batch_noises_targets_only_with_per_frame_levels(shards):
    from mirage.data import SampleIndex

    data, bb = SampleIndex(shards), StandInWan()
    items = make_wan_batch(data, bb, 3, batch_size=4, seed=0)
    again = make_wan_batch(data, bb, 3, batch_size=2, seed=0, rank=1, world=2)
    for item in items:
        n, f = item["target"].shape[2], item["first_target"]
        t = item["timesteps"][0]
        assert torch.all(t[:f] == 0) and torch.all(t[f:] > 0) and t.shape[0] == f + n
        if n > 1:
            assert len(set(t[f:].tolist())) == n  # one independent level per target frame
        sigma = t[f:] / 1000
        x_t = item["latents"][:, :, f:]
        x0 = x_t - sigma.view(1, 1, -1, 1, 1) * item["target"]  # x_t = x0 + σ(ε − x0)
        assert not torch.allclose(x0, x_t)
    for mine, theirs in zip(items[2:], again):  # rank 1 of 2 gets items 2, 3 of the global batch
        torch.testing.assert_close(mine["latents"], theirs["latents"])
        torch.testing.assert_close(mine["target"], theirs["target"])


def test_tensorboard_logger_needs_its_package(shards, tmp_path):
    import importlib.util

    cfg = _cfg(max_steps=1, logger="tensorboard")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match="tensorboard package"):
            train_wan(tmp_path / "tb", shards, StandInWan(), cfg, progress=False, log=None)
        assert not (tmp_path / "tb").exists()  # refused before writing anything
    else:
        train_wan(tmp_path / "tb", shards, StandInWan(), cfg, progress=False, log=None)
        assert any((tmp_path / "tb" / "tensorboard").iterdir())
    with pytest.raises(ConfigError, match="`logger`"):
        _cfg(logger="wandb")
