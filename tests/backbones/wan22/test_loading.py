"""Loading a Wan2.2-layout directory: components, latent normalisation, text, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from mirage.errors import ConfigError

from .conftest import load_tiny


def test_loads_through_real_path_and_warns_without_text(tiny_dir):
    from mirage.backbones.base import Backbone
    from mirage.backbones.wan22 import Wan22Backbone, load_wan22
    from mirage.backbones.wan22.transformer import MemoryWanTransformer

    with pytest.warns(UserWarning, match="zero embedding"):
        bb = load_wan22(tiny_dir, device="cpu")
    assert isinstance(bb, Wan22Backbone) and isinstance(bb, Backbone)
    assert isinstance(bb.transformer, MemoryWanTransformer)
    assert (bb.spatial_stride, bb.temporal_stride, bb.latent_channels, bb.max_frames, bb.text_dim) == (16, 4, 48, 33, 16)
    assert bb.dtype == torch.float32 and bb.size_multiple == 32
    ctx = bb.encode_text(["a room"])
    assert ctx.shape == (1, 512, 16) and torch.count_nonzero(ctx) == 0
    assert "UniPC" in bb.run_info()["sampler"] and "5.0" in bb.run_info()["sampler"]


@torch.no_grad()
def test_encode_normalises_like_diffusers(tiny_dir):
    bb = load_tiny(tiny_dir)
    video = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = bb.encode(video)
    assert z.shape == (1, 48, 3, 4, 4)
    raw = bb.vae.encode(video).latent_dist.mode()
    mean = torch.tensor(bb.vae.config.latents_mean).view(1, 48, 1, 1, 1)
    std = torch.tensor(bb.vae.config.latents_std).view(1, 48, 1, 1, 1)
    assert std.std() > 0.05  # the tiny config has non-trivial statistics
    torch.testing.assert_close(z, (raw - mean) / std)
    out = bb.decode(z)
    assert out.shape == (1, 3, 9, 64, 64) and out.abs().max() <= 1.0
    torch.testing.assert_close(out, bb.vae.decode(raw).sample.clamp(-1, 1))


def test_text_encoder_context(tiny_text_dir):
    import warnings

    from mirage.backbones.wan22 import load_wan22

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "zero embedding" warning with a text encoder
        bb = load_wan22(tiny_text_dir, device="cpu", offload="model")
    ctx = bb.encode_text(["a room with red walls", "camera turns"])
    assert ctx.shape == (2, 512, 16)
    norms = ctx.abs().sum(-1)
    assert (norms[0, :6] > 0).all() and (norms[0, 6:] == 0).all()  # 5 words + </s>, then zeros
    assert (norms[1, :3] > 0).all() and (norms[1, 3:] == 0).all()
    assert not torch.allclose(ctx[0, :3], ctx[1, :3])
    assert torch.equal(bb.encode_text(["camera turns"])[0], ctx[1])  # cached, same values
    empty = bb.encode_text(None)  # no prompt: the empty prompt, as diffusers encodes it
    assert torch.equal(empty, bb.encode_text([""])) and torch.count_nonzero(empty[0, 0]) > 0
    assert bb.run_info()["text_encoder"] is True and bb.run_info()["guidance"] == 5.0


@pytest.mark.parametrize("case", ["none", "not a dir", "no transformer", "no vae", "branch file", "lora file"])
def test_missing_weights_errors_name_what_is_needed(tiny_dir, tmp_path, case):
    from mirage.backbones.wan22 import load_wan22

    partial = tmp_path / "partial"
    if case in ("no transformer", "no vae"):
        shutil.copytree(tiny_dir, partial)
        shutil.rmtree(partial / ("transformer" if case == "no transformer" else "vae"))
    args = {"none": (None, {}), "not a dir": (tmp_path / "nope", {}), "no transformer": (partial, {}),
            "no vae": (partial, {}), "branch file": (tiny_dir, {"memory_branch": tmp_path / "b.safetensors"}),
            "lora file": (tiny_dir, {"lora": tmp_path / "l.safetensors"})}[case]
    message = {"none": "`--weights` is required.*transformer/ and vae/",
               "not a dir": "not a directory.*transformer/ and vae/", "no transformer": "no transformer/config.json",
               "no vae": "no vae/config.json", "branch file": "`--memory-branch`.*does not exist.*safetensors",
               "lora file": "`--lora`.*does not exist.*safetensors"}[case]
    with pytest.raises(ConfigError, match=message):
        load_wan22(args[0], device="cpu", **args[1])


def test_cli_missing_weights_prints_error_without_traceback(tmp_path, capsys):
    from mirage.cli import main

    out = tmp_path / "out"
    assert main(["generate", "--backbone", "wan22", "--weights", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirage: error:") and "transformer/ and vae/" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["generate", "--lora", str(tmp_path / "x.safetensors"), "--out", str(out)]) == 2
    assert "need `--backbone wan22`" in capsys.readouterr().err


def test_bad_config_values(tiny_dir):
    from mirage.backbones.wan22 import Wan22Config

    with pytest.raises(ConfigError, match="`offload`"):
        Wan22Config(offload="disk")
    with pytest.raises(ConfigError, match="`guidance`"):
        Wan22Config(guidance=0.5)
    with pytest.raises(ConfigError, match="`sampler`"):
        Wan22Config(sampler="ddim")
    with pytest.raises(ConfigError, match="`height`"):
        Wan22Config(height=48)


@torch.no_grad()
def test_offload_and_tiling_options_give_same_latents(tiny_dir):
    plain = load_tiny(tiny_dir)
    off = load_tiny(tiny_dir, offload="model", vae_tiling=True)
    assert off.vae.use_tiling and not plain.vae.use_tiling
    assert off.run_info()["offload"] == "model" and next(off.vae.parameters()).device.type == "cpu"
    video = torch.rand(1, 3, 5, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(off.encode(video), plain.encode(video))  # 64 px: below the tile size
