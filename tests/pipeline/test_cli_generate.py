from __future__ import annotations

import json

import numpy as np
import pytest

from mirage.cli import main


def cli(weights, out, *extra):
    return main(["generate", "--weights", str(weights), "--size", "32x32", "--out", str(out),
                 "--no-progress", "--steps", "1", *extra])


def test_scene_run_writes_everything(tmp_path, weights, capsys):
    out = tmp_path / "run"
    assert cli(weights, out, "--frames", "25", "--scene", "2", "--family", "courtyard") == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["memory.safetensors", "run.json", "side_by_side.mp4", "video.mp4"]
    run = json.loads((out / "run.json").read_text())
    assert [(c["start_frame"], c["end_frame"]) for c in run["plan"]] == [(0, 16), (16, 24)]
    assert set(run["timings"]["chunks"][0]) == {"read", "denoise", "decode", "depth", "update"}
    assert run["config"]["update_depth"] == "tiny" and run["config"]["first_frame_depth"] == "given"
    assert len(run["references"]) == 2 and run["metrics"]["revisit_frames"]
    assert "revisit PSNR" in capsys.readouterr().out


def test_none_mode_writes_no_memory(tmp_path, weights):
    out = tmp_path / "none"
    assert cli(weights, out, "--frames", "9", "--memory", "none") == 0
    assert not (out / "memory.safetensors").exists() and (out / "run.json").exists()


def test_paste_reads_option_reaches_the_run(tmp_path, weights):
    assert cli(weights, tmp_path / "a", "--frames", "9") == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["config"]["paste_reads"] == 0.1
    assert cli(weights, tmp_path / "b", "--frames", "9", "--paste-reads", "off") == 0
    assert json.loads((tmp_path / "b" / "run.json").read_text())["config"]["paste_reads"] is None


def test_memory_input_options_reach_the_run(tmp_path, weights):
    assert cli(weights, tmp_path / "a", "--frames", "9") == 0
    config = json.loads((tmp_path / "a" / "run.json").read_text())["config"]
    assert config["memory_input"] == "branch" and config["memory_dtype"] == "float32"  # the tiny model's defaults
    assert cli(weights, tmp_path / "b", "--frames", "9", "--memory-input", "inject", "--inject-until", "0.25") == 0
    config = json.loads((tmp_path / "b" / "run.json").read_text())["config"]
    assert config["memory_input"] == "inject" and config["inject_until"] == 0.25


@pytest.mark.parametrize("extra, match", [
    (("--memory-input", "paste"), "--memory-input"),
    (("--memory-input", "inject", "--inject-until", "1.5"), "--inject-until"),
    (("--memory-input", "inject", "--inject-until", "nan"), "--inject-until"),
    (("--memory-input", "branch", "--inject-until", "0.5"), "injects nothing"),
    (("--memory-input", "inject", "--memory", "none"), "keeps no memory"),
    (("--memory-input", "both", "--memory", "none"), "keeps no memory"),
])
def test_bad_memory_input_options_are_refused_before_any_work(tmp_path, weights, capsys, extra, match):
    assert cli(weights, tmp_path / "x", "--frames", "9", *extra) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_image_with_depth_and_trajectory_file(tmp_path, weights):
    from PIL import Image

    from mirage.world import generate_scene, make_trajectory
    from mirage.cameras import save_trajectory_json

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "d.npy", np.full((48, 40), 2.0, dtype=np.float32))
    cams = make_trajectory("orbit", generate_scene("room", 1), 9, 48, 40)
    save_trajectory_json(tmp_path / "traj.json", cams)
    out = tmp_path / "img"
    assert cli(weights, out, "--image", str(tmp_path / "a.png"), "--depth", str(tmp_path / "d.npy"),
               "--trajectory", str(tmp_path / "traj.json")) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["frames"] == 9 and run["metrics"] is None
    out2 = tmp_path / "img2"  # no depth: estimated; a preset path around the image
    assert cli(weights, out2, "--image", str(tmp_path / "a.png"), "--frames", "9", "--intrinsics", "40,40,20,24") == 0
    assert json.loads((out2 / "run.json").read_text())["config"]["first_frame_depth"] == "tiny estimator"


def bad_inputs(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "ok.png").write_bytes(b"")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    depth = np.ones((32, 32), dtype=np.float32)
    depth[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", depth)
    return {
        "unreadable image": (["--image", str(tmp_path / "bad.png")], "not a readable image"),
        "missing image": (["--image", str(tmp_path / "nope.png")], "does not exist"),
        "trajectory format": (["--trajectory", str(tmp_path / "bad.json")], "neither a mirage trajectory"),
        "frame count": (["--frames", "32"], r"4·k\+1.*5, 9, 13"),
        "nan depth": (["--image", str(tmp_path / "ok.png"), "--depth", str(tmp_path / "nan.npy")], "NaN"),
        "memory mode": (["--memory", "voxel"], "--memory"),
        "fusion": (["--fusion", "hash"], "fusion"),
        "paste reads": (["--paste-reads", "always"], "--paste-reads"),
        "paste reads range": (["--paste-reads", "0.7"], "paste_reads"),
        "oracle without scene": (["--image", str(tmp_path / "ok.png"), "--depth-estimator", "oracle"], "--scene"),
    }


@pytest.mark.parametrize("case", [
    "unreadable image", "missing image", "trajectory format", "frame count", "nan depth", "memory mode",
    "fusion", "paste reads", "paste reads range", "oracle without scene"])
def test_bad_input_clear_error_and_no_output(tmp_path, weights, capsys, case):
    args, message = bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    assert cli(weights, out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirage: error:")
    import re

    assert re.search(message, err), err
    assert not out.exists()  # nothing written, not even the folder


def test_interrupted_run_leaves_marker(tmp_path, weights, monkeypatch):
    import mirage.pipeline

    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(mirage.pipeline, "generate", boom)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError):
        cli(weights, out, "--frames", "9")
    assert (out / "INCOMPLETE").exists() and not (out / "run.json").exists()


def test_trajectory_chunks_are_replayed(tmp_path, weights, capsys):
    """A trajectory JSON with chunks (an exported session walk) sets the chunk plan and seeds;
    chunks the backbone cannot generate fail before anything is written."""
    from mirage.world import generate_scene, make_trajectory
    from mirage.cameras import save_trajectory_json

    cams = make_trajectory("pan-return", generate_scene("room", 2), 25, 32, 32)
    chunks = [{"frames": 4, "seed": 0}, {"frames": 12, "seed": 9}, {"frames": 8, "seed": None}]
    save_trajectory_json(tmp_path / "walk.json", cams, chunks=chunks)
    out = tmp_path / "walk"
    assert cli(weights, out, "--scene", "2", "--trajectory", str(tmp_path / "walk.json")) == 0
    run = json.loads((out / "run.json").read_text())
    assert [(c["start_frame"], c["end_frame"]) for c in run["plan"]] == [(0, 4), (4, 16), (16, 24)]
    assert run["config"]["chunks"] == chunks
    save_trajectory_json(tmp_path / "bad.json", cams, chunks=[{"frames": 2, "seed": 0}, {"frames": 22, "seed": 0}])
    assert cli(weights, tmp_path / "bad", "--scene", "2", "--trajectory", str(tmp_path / "bad.json")) != 0
    assert "`chunks[0].frames` must hold a number of new frames in [4, 8, 12, 16]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_run_json_records_the_fusion_and_far_field_used(tmp_path, weights):
    used = {}
    for name, extra in (("latent", []), ("rgb", ["--memory", "rgb"]), ("rgb-far", ["--memory", "rgb", "--far-field"]),
                        ("append", ["--fusion", "append", "--no-far-field"]), ("none", ["--memory", "none"])):
        assert cli(weights, tmp_path / name, "--frames", "9", *extra) == 0
        config = json.loads((tmp_path / name / "run.json").read_text())["config"]
        used[name] = (config["fusion"], config["far_field"])
    assert used == {"latent": ("voxel", True), "rgb": ("append", False), "rgb-far": ("append", True),
                    "append": ("append", False), "none": (None, None)}


def test_side_by_side_has_labelled_panels_and_magenta_where_nothing_was_read(tmp_path, weights):
    import imageio.v2 as imageio

    from mirage.video import LABEL_HEIGHT

    assert cli(weights, tmp_path / "none", "--frames", "9", "--memory", "none") == 0
    frames = np.stack(imageio.mimread(tmp_path / "none" / "side_by_side.mp4")).astype(float)
    # 32x32 panels enlarged to 128: generated | memory read | ground truth, under a label strip
    assert frames.shape == (9, LABEL_HEIGHT + 128, 3 * 128, 3)
    assert frames[:, :LABEL_HEIGHT].mean() < 80 and frames[:, :LABEL_HEIGHT].max() > 200  # text on dark
    read = frames[1:, LABEL_HEIGHT:, 128:256].mean(axis=(0, 1, 2))  # no memory: nothing covered
    assert read[0] > read[1] + 60 and read[2] > read[1] + 60, read  # magenta, not the decoded green


def test_frame_coverage_maps_latent_reads_to_pixel_frames():
    import torch

    from mirage.cli.generate import frame_coverage

    mask = torch.zeros(3, 2, 2, dtype=torch.bool)
    mask[1, 0, 0] = True
    mask[2, 1, 1] = True
    cover = frame_coverage(mask, 4)
    assert cover.shape == (9, 2, 2) and cover[0].all()  # frame 0 is the input, shown whole
    assert all(torch.equal(cover[f], mask[1]) for f in range(1, 5))
    assert all(torch.equal(cover[f], mask[2]) for f in range(5, 9))
