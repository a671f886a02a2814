"""The memory transformer: zero-init branch = base model; per-frame timesteps; branch files."""

from __future__ import annotations

import pytest
import torch

from .conftest import load_tiny, randomise_branch


def inputs(T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 48, T, 4, 4, generator=g)
    control = torch.randn(1, 96, T, 4, 4, generator=g)
    context = torch.randn(1, 7, 16, generator=g)
    return x, control, context


@pytest.fixture(scope="module")
def base(tiny_dir):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(tiny_dir / "transformer").eval()


def test_branch_layout_and_base_weights_untouched(tiny_dir, base):
    bb = load_tiny(tiny_dir)
    tr = bb.transformer
    assert list(tr.config.vace_layers) == [0, 2] and tr.config.vace_in_channels == 96
    own = tr.state_dict()
    for key, value in base.state_dict().items():
        assert torch.equal(own[key], value), key
    extra = set(own) - set(base.state_dict())
    assert extra and all(k.startswith(("vace_patch_embedding.", "vace_blocks.")) for k in extra)
    assert {id(p) for p in bb.memory_branch_parameters()} == {
        id(p) for n, p in tr.named_parameters() if n.startswith("vace_")}
    for block in tr.vace_blocks:
        assert torch.count_nonzero(block.proj_out.weight) == 0 and torch.count_nonzero(block.proj_out.bias) == 0


@torch.no_grad()
def test_zero_init_branch_output_equals_base(tiny_dir, base):
    tr = load_tiny(tiny_dir).transformer
    x, control, context = inputs()
    per_frame = torch.tensor([[0.0, 0.0, 700.0, 700.0, 700.0]])
    ours = tr(x, per_frame, context, control_hidden_states=control, return_dict=False)[0]
    # diffusers' own TI2V path: one timestep per token (frame-major, 2×2 tokens per frame)
    ref = base(x, per_frame.repeat_interleave(4, dim=1), context, return_dict=False)[0]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    ours_scalar = tr(x, torch.tensor([350.0]), context, control_hidden_states=control, return_dict=False)[0]
    assert torch.equal(ours_scalar, base(x, torch.tensor([350.0]), context, return_dict=False)[0])
    # and the control input only matters once the branch output is nonzero
    randomise_branch(tr)
    moved = tr(x, per_frame, context, control_hidden_states=control, return_dict=False)[0]
    assert (moved - ours).abs().max() > 1e-3


@torch.no_grad()
def test_per_frame_timesteps_match_per_frame_reference(tiny_dir):
    """With attention outputs zeroed there is no mixing across tokens, so frame k of a mixed-t
    forward must equal frame k of diffusers' stock VACE forward at the single timestep t_k:
    this checks main blocks, branch blocks and the output norm all use each frame's own t."""
    from diffusers import WanVACETransformer3DModel

    tr = load_tiny(tiny_dir).transformer
    randomise_branch(tr)
    for name, module in tr.named_modules():
        if name.endswith(("attn1.to_out.0", "attn2.to_out.0")):
            module.weight.zero_()
            module.bias.zero_()
    ref = WanVACETransformer3DModel.from_config(dict(tr.config)).eval()
    ref.load_state_dict(tr.state_dict())
    x, control, context = inputs()
    t = torch.tensor([[0.0, 0.0, 250.0, 600.0, 999.0]])
    ours = tr(x, t, context, control_hidden_states=control, return_dict=False)[0]
    for k in range(5):
        stock = ref(x, t[:, k], context, control_hidden_states=control, return_dict=False)[0]
        torch.testing.assert_close(ours[:, :, k], stock[:, :, k], rtol=1e-5, atol=1e-5)
    uniform = tr(x, torch.zeros(1, 5), context, control_hidden_states=control, return_dict=False)[0]
    torch.testing.assert_close(uniform[:, :, :2], ours[:, :, :2], rtol=1e-5, atol=1e-5)
    assert (uniform[:, :, 2:] - ours[:, :, 2:]).abs().max() > 1e-3


def test_timestep_shape_error(tiny_dir):
    from mirage.errors import ShapeError

    bb = load_tiny(tiny_dir)
    x, control, context = inputs()
    with pytest.raises(ShapeError, match="timesteps"):
        bb.predict(x, torch.zeros(1, 4), control, context)


@torch.no_grad()
def test_memory_branch_file_roundtrip(tiny_dir, tmp_path):
    from mirage.errors import MemoryFormatError

    bb = load_tiny(tiny_dir)
    randomise_branch(bb.transformer, seed=3)
    x, control, context = inputs()
    t = torch.tensor([[0.0, 500.0, 500.0, 500.0, 500.0]])
    want = bb.predict(x, t, control, context)
    bb.save_memory_branch(tmp_path / "branch.safetensors")
    fresh = load_tiny(tiny_dir, memory_branch=tmp_path / "branch.safetensors")
    assert torch.equal(fresh.predict(x, t, control, context), want)
    assert fresh.run_info()["memory_branch"] == str(tmp_path / "branch.safetensors")
    from mirage.files import save_safetensors

    save_safetensors(tmp_path / "foreign.safetensors", {"a": torch.zeros(1)}, {"format": "other"})
    with pytest.raises(MemoryFormatError, match="not a memory-branch file"):
        fresh.load_memory_branch(tmp_path / "foreign.safetensors")


@torch.no_grad()
def test_merged_transformer_saved_with_save_pretrained_reloads(tiny_dir, tmp_path):
    import shutil

    bb = load_tiny(tiny_dir)
    randomise_branch(bb.transformer, seed=4)
    merged = tmp_path / "merged"
    shutil.copytree(tiny_dir / "vae", merged / "vae")
    bb.transformer.save_pretrained(merged / "transformer")
    again = load_tiny(merged)
    assert again.run_info()["transformer"] == "merged"
    x, control, context = inputs()
    t = torch.tensor([[0.0, 900.0, 900.0, 900.0, 900.0]])
    assert torch.equal(again.predict(x, t, control, context), bb.predict(x, t, control, context))
