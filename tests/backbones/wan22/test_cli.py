"""`mirage generate --backbone wan22` end to end on a tiny random directory (two chunks)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mirage.cli import main


def run_cli(weights, out, *extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["generate", "--backbone", "wan22", "--weights", str(weights), "--frames", "65",
                     "--size", "64x64", "--steps", "2", "--scene", "1", "--out", str(out), "--no-progress", *extra])


def check_run(out, mode):
    run = json.loads((out / "run.json").read_text())
    assert [(c["start_frame"], c["end_frame"]) for c in run["plan"]] == [(0, 32), (32, 64)]
    assert run["config"]["backbone"] == "wan22" and run["config"]["memory_mode"] == mode
    info = run["config"]["backbone_info"]
    assert info["transformer"] == "base + zero-init branch" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert "tiny" in info["depth_network"] and run["config"]["update_depth"] == "tiny"
    assert len(run["metrics"]["psnr_per_frame"]) == 65
    files = {p.name for p in out.iterdir()}
    assert {"video.mp4", "side_by_side.mp4", "run.json"} <= files and "INCOMPLETE" not in files
    assert ("memory.safetensors" in files) == (mode != "none")
    return run


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_generate_two_chunks_every_memory_mode(tiny_dir, tmp_path, mode):
    out = tmp_path / mode
    assert run_cli(tiny_dir, out, "--memory", mode) == 0
    run = check_run(out, mode)
    assert (run["memory"][-1]["points"] > 0) == (mode != "none")
    assert run["memory"][-1]["frames"] == (0 if mode == "none" else 17)
    # chunk 2 reads what chunk 1 wrote (none: nothing)
    assert (run["memory"][1]["read_coverage"] > 0) == (mode != "none")
    # without a trained branch Wan2.2 injects the read (the branch would ignore it); its memory
    # keeps half-precision tokens unless told otherwise
    assert run["config"]["memory_input"] == "inject" and run["config"]["memory_dtype"] == "float16"
    if mode == "latent":
        from mirage.memory import LatentSpatialMemory

        assert LatentSpatialMemory.load(out / "memory.safetensors").features.dtype == torch.float16


def test_the_memory_input_is_chosen_and_recorded(tiny_dir, tmp_path):
    out = tmp_path / "both"
    assert run_cli(tiny_dir, out, "--memory-input", "both", "--inject-until", "0.5") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["memory_input"] == "both" and run["config"]["inject_until"] == 0.5
    with pytest.warns(UserWarning, match="ignores the memory read"):
        main(["generate", "--backbone", "wan22", "--weights", str(tiny_dir), "--frames", "5", "--size", "64x64",
              "--steps", "1", "--scene", "1", "--out", str(tmp_path / "branch"), "--no-progress",
              "--memory-input", "branch"])


def test_tiny_random_cli(tmp_path, capsys):
    assert main(["wan", "tiny-random", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "transformer" / "config.json").is_file()
    assert (tmp_path / "w" / "vae" / "config.json").is_file()
    cfg = json.loads((tmp_path / "w" / "transformer" / "config.json").read_text())
    assert cfg["_class_name"] == "WanTransformer3DModel" and cfg["in_channels"] == 48
    assert "wrote a tiny random Wan2.2 directory" in capsys.readouterr().out
