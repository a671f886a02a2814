from __future__ import annotations

import json

import pytest
import torch

from mirage.backbones import Backbone, ChunkConditioning, load_backbone
from mirage.backbones.tiny import TinyBackbone, TinyConfig
from mirage.backbones.tiny.denoiser import TinyDenoiser
from mirage.backbones.tiny.flow import add_noise, sample_euler, sampling_times
from mirage.backbones.tiny.vae import ResBlock
from mirage.errors import ConfigError, MemoryFormatError, ShapeError
from mirage.geometry import Camera

from .conftest import SMALL, small_backbone


def cams(n: int, hw=(32, 32)) -> Camera:
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.arange(n, dtype=torch.float32) * 0.1
    return Camera.from_fov(c2w, *hw)


def conditioning(backbone, n=2, P=1, R=1, steps=2, covered=False) -> ChunkConditioning:
    C = backbone.latent_channels
    g = torch.Generator().manual_seed(1)
    return ChunkConditioning(
        first_latent=torch.randn(C, 4, 4, generator=g),
        memory_features=torch.randn(n, C, 4, 4, generator=g),
        memory_mask=torch.full((n, 4, 4), covered),
        preceding=torch.randn(P, C, 4, 4, generator=g),
        references=torch.randn(R, C, 4, 4, generator=g),
        first_camera=cams(1),
        target_cameras=cams(n),
        preceding_cameras=cams(P) if P else None,
        reference_cameras=cams(R) if R else None,
        steps=steps,
    )


def test_protocol_and_shapes(backbone):
    assert isinstance(backbone, Backbone)
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    z = backbone.encode(video)
    assert z.shape == (2, SMALL.latent_channels, 3, 4, 4)
    assert backbone.decode(z).shape == (2, 3, 9, 32, 32)
    with pytest.raises(ShapeError, match="4·k\\+1"):
        backbone.encode(torch.zeros(1, 3, 8, 32, 32))


def test_latent_k_encodes_its_keyframe_only(backbone):
    """Keyframe latents: latent k depends on pixel frame τk alone; the decoder fills in between."""
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    changed = video.clone()
    changed[:, :, [1, 2, 3, 5, 6, 7]] = 0.0  # every in-between frame
    torch.testing.assert_close(backbone.encode(video), backbone.encode(changed))
    changed[:, :, 4] = 0.0  # the keyframe of latent 1
    a, b = backbone.encode(video), backbone.encode(changed)
    torch.testing.assert_close(a[:, :, [0, 2]], b[:, :, [0, 2]])
    assert not torch.allclose(a[:, :, 1], b[:, :, 1])


def test_keyframes_decode_from_their_own_latent(backbone):
    """Frame τk depends on latent k alone and equals frame 0's decode when latent k = latent 0
    (an exact return decodes to the first frame); the in-between frames come from the pair."""
    vae = backbone.vae
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, SMALL.latent_channels, 4, 4, 4, generator=g)
    z[:, :, 3] = z[:, :, 0]
    with torch.no_grad():
        frames = backbone.decode(z)[0]  # (3, 13, H, W)
        changed = z.clone()
        changed[:, :, 2] = torch.randn(SMALL.latent_channels, 4, 4, generator=g)
        other = backbone.decode(changed)[0]
        raw = vae.denormalize(z[0].permute(1, 0, 2, 3))  # (T, C, h, w)
        pairs = vae.decode_groups(torch.cat([raw[:1], raw[:-1]]), raw).clamp(-1, 1)  # (T, 3τ, H, W)
    torch.testing.assert_close(frames[:, 12], frames[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(other[:, [0, 4, 12]], frames[:, [0, 4, 12]], rtol=0, atol=0)
    assert not torch.allclose(other[:, 8], frames[:, 8])  # latent 2's own keyframe
    assert not torch.allclose(other[:, 9:12], frames[:, 9:12])  # between latents 2 and 3
    H, W = frames.shape[-2:]
    between = pairs[1:].reshape(3, 4, 3, H, W)[:, :3]  # groups 1..3, frames 1..3 of each
    torch.testing.assert_close(frames[:, [1, 2, 3, 5, 6, 7, 9, 10, 11]].permute(1, 0, 2, 3),
                               between.reshape(9, 3, H, W), rtol=1e-5, atol=1e-6)


def test_sample_keeps_first_latent_and_is_deterministic(backbone):
    cond = conditioning(backbone)
    a = backbone.sample(cond, torch.Generator().manual_seed(0))
    b = backbone.sample(cond, torch.Generator().manual_seed(0))
    c = backbone.sample(cond, torch.Generator().manual_seed(1))
    assert a.shape == (1, SMALL.latent_channels, 3, 4, 4)
    torch.testing.assert_close(a[0, :, 0], cond.first_latent)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_untrained_denoiser_copies_a_full_memory_read():
    """The x₀ prediction is a residual on the memory read; with a zero output layer it is a copy."""
    model = TinyBackbone(SMALL)  # output layer initialised to zero
    cond = conditioning(model, covered=True)
    out = model.sample(cond, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0, :, 1:].permute(1, 0, 2, 3), cond.memory_features)


def test_padding_slots_do_not_change_valid_outputs(backbone):
    den = backbone.denoiser
    g = torch.Generator().manual_seed(0)
    B, S, C = 1, 3, SMALL.latent_channels
    args = dict(x=torch.randn(B, S, C, 4, 4, generator=g), memory=torch.randn(B, S, C, 4, 4, generator=g),
                mask=torch.rand(B, S, 4, 4, generator=g) > 0.5, t=torch.rand(B, S, generator=g),
                pose=torch.randn(B, S, 12, generator=g), slot=torch.tensor([[1, 0, 0]]),
                valid=torch.ones(B, S, dtype=torch.bool))
    with torch.no_grad():
        ref = den(**args)
        padded = {k: torch.cat([v, v[:, :1]], dim=1) for k, v in args.items()}
        padded["valid"][:, -1] = False
        out = den(**padded)
    torch.testing.assert_close(out[:, :S], ref, atol=1e-5, rtol=1e-5)


def test_conditioning_validates_shapes(backbone):
    cond = conditioning(backbone)
    with pytest.raises(ShapeError, match="target_cameras"):
        ChunkConditioning(**{**vars(cond), "target_cameras": cams(3)})
    with pytest.raises(ShapeError, match="memory_mask"):
        ChunkConditioning(**{**vars(cond), "memory_mask": torch.zeros(2, 5, 4, dtype=torch.bool)})


def test_flow_sampler_lands_on_prediction():
    times = sampling_times(4)
    assert times[0] == 1 and times[-1] == 0 and (times[1:] < times[:-1]).all()
    x0 = torch.randn(3, 5)
    noise = torch.randn(3, 5)
    torch.testing.assert_close(add_noise(x0, noise, torch.zeros(3)), x0)
    torch.testing.assert_close(add_noise(x0, noise, torch.ones(3)), noise)
    out = sample_euler(lambda x, t: x0, noise, times)  # a perfect denoiser
    torch.testing.assert_close(out, x0)


def test_save_load_roundtrip(tmp_path, backbone):
    path = tmp_path / "tiny.safetensors"
    backbone.save(path, {"note": "test"})
    loaded = load_backbone("tiny", path)
    assert loaded.config == backbone.config and loaded.metadata == {"note": "test"}
    for (k, a), (_, b) in zip(backbone.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(MemoryFormatError):
        TinyBackbone.load(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="do not exist"):
        TinyBackbone.load(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="backbone"):
        load_backbone("wan99")


def test_config_validation():
    with pytest.raises(ConfigError, match="max_frames"):
        TinyConfig(temporal_stride=4, max_frames=16)
    with pytest.raises(ConfigError, match="divisible by spatial_stride·patch = 8"):
        TinyConfig(height=60)
    with pytest.raises(ConfigError, match="spatial_stride"):
        TinyConfig(spatial_stride=16)
    assert TinyConfig.from_json(SMALL.to_json()) == SMALL
    with pytest.raises(ConfigError, match="vae_blocks"):
        TinyConfig(vae_blocks=0)
    with pytest.raises(ConfigError, match="vae_full_res_block"):
        TinyConfig(vae_full_res_block=1)
    # weights written before the VAE-depth options existed load with the old architecture
    old = {k: v for k, v in vars(SMALL).items() if k not in ("vae_blocks", "vae_full_res_block")}
    assert TinyConfig.from_json(json.dumps(old)).vae_blocks == 1


def test_tau1_model_one_latent_per_frame_with_deeper_vae():
    """τ = 1: every frame is its own keyframe; latent k sees frame k only."""
    cfg = TinyConfig(height=32, width=32, latent_channels=4, vae_widths=(8, 8, 16, 16), dim=32,
                     spatial_stride=8, patch=1, layers=1, heads=2, depth_widths=(8, 8, 8, 8), steps=2,
                     temporal_stride=1, max_frames=5, vae_blocks=3, vae_full_res_block=True)
    torch.manual_seed(0)
    model = TinyBackbone(cfg)
    # stride 8: 3 dilated blocks at 1/8, one block at 1/4 and at 1/2, one at full resolution
    assert len([m for m in model.vae.dec if isinstance(m, ResBlock)]) == 3 + 2 + 1
    dilations = [m.conv1.dilation[0] for m in model.vae.dec[:3]]
    assert dilations == [1, 2, 4]
    video = torch.rand(1, 3, 6, 32, 32) * 2 - 1
    z = model.encode(video)
    assert z.shape == (1, 4, 6, 4, 4)
    assert model.decode(z).shape == (1, 3, 6, 32, 32)
    changed = video.clone()
    changed[:, :, 3] = 0.0
    a, b = z, model.encode(changed)
    torch.testing.assert_close(a[:, :, [0, 1, 2, 4, 5]], b[:, :, [0, 1, 2, 4, 5]])
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])


def test_depth_estimate_shapes(backbone):
    depth, valid = backbone.estimate_depth(torch.zeros(2, 3, 32, 32))
    assert depth.shape == valid.shape == (2, 32, 32)
    assert torch.isinf(depth[~valid]).all() and (depth[valid] > 0).all()


def test_stride4_patch2_model_shapes_and_copy():
    cfg = TinyConfig(height=32, width=32, latent_channels=4, vae_widths=(8, 8, 16, 16), dim=32,
                     spatial_stride=4, patch=2, layers=1, heads=2, depth_widths=(8, 8, 8, 8), steps=2,
                     temporal_stride=4, max_frames=17)
    model = TinyBackbone(cfg)
    z = model.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1)
    assert z.shape == (1, 4, 3, 8, 8)
    assert model.decode(z).shape == (1, 3, 9, 32, 32)
    g = torch.Generator().manual_seed(0)
    cond = ChunkConditioning(
        first_latent=torch.randn(4, 8, 8, generator=g), memory_features=torch.randn(2, 4, 8, 8, generator=g),
        memory_mask=torch.rand(2, 8, 8, generator=g) > 0.5, preceding=torch.zeros(0, 4, 8, 8),
        references=torch.zeros(0, 4, 8, 8), first_camera=cams(1), target_cameras=cams(2))
    out = model.sample(cond, torch.Generator().manual_seed(0))[0, :, 1:].permute(1, 0, 2, 3)
    m = cond.memory_mask[:, None].expand_as(out)
    # zero-initialised output layer: covered cells copy the read exactly, patch by patch
    torch.testing.assert_close(out[m], cond.memory_features[m])
    assert (out[~m] == 0).all()


def test_offsets_model_feeds_the_sub_cell_offset_to_the_denoiser():
    """With ``memory_offsets`` the offsets change the sample (they are an input), only where the
    memory covers a cell's patch matters, and old configs (no offsets) still build their layer."""
    from dataclasses import replace

    assert TinyDenoiser(SMALL).inp.in_features == 2 * SMALL.latent_channels + 1
    cfg = replace(SMALL, memory_offsets=True)
    assert TinyDenoiser(cfg).inp.in_features == 2 * SMALL.latent_channels + 3
    torch.manual_seed(0)
    model = TinyBackbone(cfg)
    torch.nn.init.normal_(model.denoiser.out.weight, std=0.05)
    g = torch.Generator().manual_seed(1)
    base = replace(conditioning(model), memory_mask=torch.rand(2, 4, 4, generator=g) > 0.5)
    offset = torch.rand(2, 2, 4, 4, generator=g) - 0.5
    with_offset = replace(base, memory_offset=offset)
    a = model.sample(base, torch.Generator().manual_seed(0))  # None = zero offsets
    b = model.sample(replace(base, memory_offset=torch.zeros_like(offset)), torch.Generator().manual_seed(0))
    c = model.sample(with_offset, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    # Offsets of uncovered cells are masked out, like the read itself.
    uncovered = replace(base, memory_offset=offset * base.memory_mask[:, None])
    torch.testing.assert_close(model.sample(uncovered, torch.Generator().manual_seed(0)), c, rtol=0, atol=0)
    with pytest.raises(ShapeError, match="memory_offset"):
        replace(base, memory_offset=torch.zeros(2, 3, 4, 4))
    with pytest.raises(ConfigError, match="memory_offsets"):
        TinyConfig(memory_offsets=1)
