from __future__ import annotations

import pytest
import torch

from mirage.backbones.tiny import TinyConfig
from mirage.geometry import Camera
from mirage.pipeline.memory_modes import FIRST_FRAME_CONFIDENCE, GENERATED_CONFIDENCE, LatentMode
from mirage.train.install import install_weights
from mirage.train.tiny import TinyTrainConfig, train_tiny
from mirage.pipeline import build_memory_samples
from mirage.train.tiny_data import DataConfig, clip_spec

from .conftest import SMALL


def test_samples_are_built_like_inference():
    """Each sample's read equals a fresh memory that holds exactly latents 0..s, written at the
    pipeline's confidences (frame 0 given, later frames generated) and read the same way."""
    from mirage.world import generate_scene, make_trajectory, render

    scene = generate_scene("room", 1001)
    cams = make_trajectory("pan-return", scene, 17, 32, 32, angle_deg=50.0)
    idx = list(range(0, 17, 4))
    cams = Camera(cams.K[idx], cams.cam2world[idx], 32, 32)
    gt = render(scene, cams)
    depth = torch.where(gt.sky, torch.inf, gt.depth)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(5, 4, 4, 4, generator=g)
    samples = build_memory_samples(latents, depth, gt.sky, cams, targets=2, preceding=1, references=1)
    assert [s["start"] for s in samples] == [0, 1, 2, 3]
    assert samples[3]["targets"] == [4] and samples[0]["targets"] == [1, 2]
    for s in samples:
        mode = LatentMode(4)
        for k in range(s["start"] + 1):
            mode.write(latents[k:k + 1], None, depth[k:k + 1], cams[k], gt.sky[k:k + 1], [k],
                       confidence=FIRST_FRAME_CONFIDENCE if k == 0 else GENERATED_CONFIDENCE)
        t = s["targets"]
        read = mode.memory.read(Camera(cams.K[t], cams.cam2world[t], 32, 32), (4, 4))
        torch.testing.assert_close(s["features"], read.features)
        assert torch.equal(s["mask"], read.mask)
        assert s["preceding"] == list(range(max(0, s["start"] - 1), s["start"]))
        assert s["start"] not in s["references"] and not set(s["preceding"]) & set(s["references"])
    assert samples[0]["mask"].any()


def test_clip_specs_use_training_seeds():
    cfg = DataConfig()
    specs = [clip_spec(i, cfg) for i in range(50)]
    assert all(seed >= 1000 for _, seed, _, _ in specs)
    assert {fam for fam, _, _, _ in specs} == {"room", "courtyard"}
    assert len({preset for _, _, preset, _ in specs}) >= 4


STRIDE4 = TinyConfig(height=32, width=32, latent_channels=4, vae_widths=(8, 8, 16, 16), dim=32,
                     spatial_stride=4, patch=2, layers=1, heads=2, depth_widths=(8, 8, 8, 8), steps=2,
                     temporal_stride=4, max_frames=17)
# τ = 1 (one latent per frame, 5-frame chunks) with the deeper VAE options.
TAU1 = TinyConfig(height=32, width=32, latent_channels=4, vae_widths=(8, 8, 16, 16), dim=32,
                  spatial_stride=8, patch=1, layers=1, heads=2, depth_widths=(8, 8, 8, 8), steps=2,
                  temporal_stride=1, max_frames=5, vae_blocks=2, vae_full_res_block=True)


@pytest.mark.parametrize("model", [SMALL, STRIDE4, TAU1], ids=["stride8", "stride4-patch2", "tau1"])
def test_recipe_runs_resumes_and_installs(tmp_path, monkeypatch, model):
    cfg = TinyTrainConfig(data=DataConfig(clips=2, frames=17, height=32, width=32), model=model,
                          vae_steps=2, depth_steps=2, denoiser_steps=2, vae_batch=1, depth_batch=2,
                          denoiser_batch=2, minutes=5)
    trained = train_tiny(tmp_path / "run", cfg, progress=False, log=lambda s: None)
    report = trained.metadata["train"]
    assert report["vae"]["step"] == 2 and report["denoiser"]["step"] == 2
    assert (tmp_path / "run" / "tiny.safetensors").exists()
    assert float(trained.vae.latent_std.min()) > 0  # latent normalisation fitted
    again = train_tiny(tmp_path / "run", cfg, progress=False, log=lambda s: None)  # all stages done
    for a, b in zip(trained.parameters(), again.parameters()):
        torch.testing.assert_close(a, b)
    machines = again.metadata["train"]["machines"]  # one per session of the run
    assert len(machines) == 2 and all(m["matmul_gflops"] > 0 and m["threads"] == 2 for m in machines)
    import mirage.backbones.tiny.model as tiny_model

    target = tmp_path / "pkg" / "tiny.safetensors"
    monkeypatch.setattr(tiny_model, "SHIPPED_WEIGHTS", target)
    assert install_weights(tmp_path / "run") == target
    assert target.exists() and (target.parent / "MODEL_CARD.md").exists()
    assert "GFLOP/s" in (target.parent / "MODEL_CARD.md").read_text()


def test_init_from_reuses_vae_and_depth_and_trains_an_offsets_denoiser(tmp_path, monkeypatch):
    from dataclasses import replace

    from mirage.errors import ConfigError

    data = DataConfig(clips=2, frames=17, height=32, width=32)
    base = TinyTrainConfig(data=data, model=STRIDE4, vae_steps=2, depth_steps=2, denoiser_steps=2,
                           vae_batch=1, depth_batch=2, denoiser_batch=2, minutes=5)
    first = train_tiny(tmp_path / "base", base, progress=False, log=lambda s: None)
    cfg = replace(base, model=replace(STRIDE4, memory_offsets=True), denoiser_steps=3,
                  init_from=str(tmp_path / "base" / "tiny.safetensors"))
    second = train_tiny(tmp_path / "offsets", cfg, progress=False, log=lambda s: None)
    for part in ("vae", "depth"):
        for (name, a), b in zip(getattr(first, part).state_dict().items(), getattr(second, part).state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    report = second.metadata["train"]
    assert "vae" not in report["stage_seconds"] and report["denoiser"]["step"] == 3
    assert report["init_from"]["vae"]["step"] == 2
    from mirage.train.tiny import _load_tensors

    samples = _load_tensors(tmp_path / "offsets" / "samples.safetensors")
    assert samples["offset"].shape[2] == 2 and samples["offset"].abs().max() <= 0.5
    assert samples["offset"].abs().max() > 0  # reads of moved views are misaligned
    import mirage.backbones.tiny.model as tiny_model

    target = tmp_path / "pkg" / "tiny.safetensors"
    monkeypatch.setattr(tiny_model, "SHIPPED_WEIGHTS", target)
    install_weights(tmp_path / "offsets")
    card = (target.parent / "MODEL_CARD.md").read_text()
    assert "vae (reused)" in card and "--init-from" in card and "sub-cell offset" in card
    # A VAE that does not match is refused, saying which fields differ.
    with pytest.raises(ConfigError, match="latent_channels"):
        train_tiny(tmp_path / "bad", replace(cfg, model=replace(cfg.model, latent_channels=8)),
                   progress=False, log=lambda s: None)


def test_cli_train_tiny_options(tmp_path, monkeypatch, capsys):
    """`--init-from` must name tiny weights (the error says what to give); `--memory-offsets`
    and `--init-from` reach the recipe's config."""
    from mirage.cli import main
    import mirage.train.tiny as tiny

    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--init-from", str(tmp_path / "nope")]) == 2
    assert "tiny.safetensors" in capsys.readouterr().err
    seen = {}
    monkeypatch.setattr(tiny, "train_tiny", lambda out, cfg, resume: seen.setdefault("cfg", cfg))
    weights = tmp_path / "w" / "tiny.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--init-from", str(weights.parent),
                 "--no-memory-offsets"]) == 0
    assert seen["cfg"].init_from == str(weights.resolve()) and seen["cfg"].model.memory_offsets is False
    assert seen["cfg"].threads == 2  # the recipe's default: the 2 cores to itself
    seen.clear()
    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--threads", "1"]) == 0
    assert seen["cfg"].threads == 1
    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_cli_train_tiny_stride_options(tmp_path, monkeypatch, capsys):
    """`--temporal-stride` and `--chunk-frames` set the model's τ and chunk length; a chunk
    length that is not τ·k+1 is refused with the rule in the message."""
    from mirage.cli import main
    import mirage.train.tiny as tiny

    seen = {}
    monkeypatch.setattr(tiny, "train_tiny", lambda out, cfg, resume: seen.setdefault("cfg", cfg))
    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--temporal-stride", "2",
                 "--chunk-frames", "17"]) == 0
    assert seen["cfg"].model.temporal_stride == 2 and seen["cfg"].model.max_frames == 17
    assert seen["cfg"].model.memory_offsets is True  # the recipe's other choices stay
    assert main(["train", "tiny", "--out", str(tmp_path / "r"), "--temporal-stride", "2",
                 "--chunk-frames", "16"]) == 2
    assert "τ·k+1" in capsys.readouterr().err


def test_machine_info_leaves_the_global_generator_alone():
    from mirage.train.machine import machine_info

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    info = machine_info(1)
    assert torch.equal(torch.rand(3), expected)
    assert info["matmul_gflops"] > 0 and info["cpus"] >= 1
