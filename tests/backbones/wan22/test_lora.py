"""LoRA through peft: a nonzero LoRA changes the output, unloading restores it exactly, files reload."""

from __future__ import annotations

import pytest
import torch

from .conftest import load_tiny


@torch.no_grad()
def test_lora_add_save_unload_load(tiny_dir, tmp_path):
    from mirage.errors import ConfigError, MemoryFormatError

    bb = load_tiny(tiny_dir)
    g = torch.Generator().manual_seed(0)
    x, control, context = torch.randn(1, 48, 3, 4, 4, generator=g), torch.randn(1, 96, 3, 4, 4, generator=g), torch.randn(1, 5, 16, generator=g)
    t = torch.tensor([[0.0, 400.0, 400.0]])
    before = bb.predict(x, t, control, context)

    bb.add_lora(rank=4, alpha=4)
    names = [n for n, _ in bb.transformer.named_parameters() if "lora_" in n]
    assert names and not any(n.startswith("vace_") for n in names)  # base blocks only
    assert any(".attn1.to_q." in n for n in names) and any(".ffn.net.2." in n for n in names)
    assert torch.equal(bb.predict(x, t, control, context), before)  # B = 0 at init
    for n, p in bb.transformer.named_parameters():
        if "lora_B" in n:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    with_lora = bb.predict(x, t, control, context)
    assert (with_lora - before).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="already has a LoRA"):
        bb.add_lora(rank=4)
    bb.save_lora(tmp_path / "lora.safetensors")

    bb.unload_lora()
    assert not any("lora_" in n for n, _ in bb.transformer.named_parameters())
    assert torch.equal(bb.predict(x, t, control, context), before)

    bb.load_lora(tmp_path / "lora.safetensors")
    assert torch.equal(bb.predict(x, t, control, context), with_lora)
    bb.unload_lora()
    fresh = load_tiny(tiny_dir, lora=tmp_path / "lora.safetensors")
    torch.testing.assert_close(fresh.predict(x, t, control, context), with_lora)
    assert fresh.run_info()["lora"] == str(tmp_path / "lora.safetensors")

    bb.save_memory_branch(tmp_path / "branch.safetensors")
    with pytest.raises(MemoryFormatError, match="not a mirage Wan2.2 LoRA"):
        bb.load_lora(tmp_path / "branch.safetensors")


@torch.no_grad()
def test_lora_scale_through_attention_kwargs(tiny_dir):
    bb = load_tiny(tiny_dir)
    g = torch.Generator().manual_seed(1)
    x, control, context = torch.randn(1, 48, 2, 4, 4, generator=g), torch.randn(1, 96, 2, 4, 4, generator=g), torch.randn(1, 5, 16, generator=g)
    t = torch.tensor([[0.0, 300.0]])
    run = lambda **kw: bb.transformer(x, t, context, control_hidden_states=control, return_dict=False, **kw)[0]  # noqa: E731
    base = run()
    bb.add_lora(rank=2, alpha=2)
    for n, p in bb.transformer.named_parameters():
        if "lora_B" in n:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    assert (run() - base).abs().max() > 1e-3
    torch.testing.assert_close(run(attention_kwargs={"scale": 0.0}), base)
