import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from mirage.cli import main
from mirage.cli.options import parse_size
from mirage.errors import ConfigError, ShapeError
from mirage.video import write_mp4
from mirage.world import generate_scene, make_trajectory, render
from mirage.world.dataset import DatasetConfig, plan_clips, write_dataset
from mirage.cameras import load_geometry_npz
from mirage.world.io import load_scene


def test_parse_size():
    assert parse_size("128") == (128, 128)
    assert parse_size("704x1280") == (704, 1280)
    for bad in ("0", "12x0", "-3x4", "big", "1x2x3", ""):
        with pytest.raises(ConfigError, match="--size"):
            parse_size(bad)


def test_world_render_writes_matching_video_geometry_and_scene(tmp_path):
    out = tmp_path / "clip"
    rc = main(["world", "render", "--scene", "4", "--family", "courtyard", "--trajectory", "loop",
               "--frames", "5", "--size", "24x33", "--out", str(out)])
    assert rc == 0
    assert {"video.mp4", "geometry.npz", "scene.json", "trajectory.json", "render.json"} <= {p.name for p in out.iterdir()}
    scene = generate_scene("courtyard", 4)
    assert load_scene(out / "scene.json") == scene
    geo = load_geometry_npz(out / "geometry.npz")
    assert geo.frames.shape == (5, 24, 33, 3) and geo.depths.shape == (5, 24, 33)
    # Frame by frame the same as rendering the same (scene, trajectory, frames, size) directly.
    cams = make_trajectory("loop", scene, 5, 24, 33)
    assert torch.equal(geo.cameras.cam2world, cams.cam2world)
    direct = render(scene, cams, torch.arange(5) / 16)
    expected = ((direct.rgb.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(geo.frames, expected)
    assert np.array_equal(geo.depths, direct.depth.numpy())
    assert np.array_equal(geo.sky_masks, direct.sky.numpy()) and geo.sky_masks.any()
    video = imageio.mimread(out / "video.mp4")
    assert len(video) == 5 and video[0].shape == (24, 34, 3)  # odd width padded for yuv420p
    assert np.abs(video[2][:, :33].astype(int) - geo.frames[2]).mean() < 12


def test_world_render_from_a_trajectory_file_lines_up(tmp_path):
    main(["world", "render", "--scene", "2", "--trajectory", "orbit", "--frames", "4", "--size", "16", "--out", str(tmp_path / "a")])
    main(["world", "render", "--scene", "2", "--trajectory", str(tmp_path / "a" / "trajectory.json"),
          "--size", "16", "--out", str(tmp_path / "b")])
    a, b = load_geometry_npz(tmp_path / "a" / "geometry.npz"), load_geometry_npz(tmp_path / "b" / "geometry.npz")
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.depths, b.depths)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--family", "attic"], "--family"),
        (["--size", "0"], "--size"),
        (["--size=-4x8"], "--size"),
        (["--frames", "0"], "--frames"),
        (["--scene", "x"], "--scene"),
        (["--trajectory", "spiral"], "trajectory"),
    ],
)
def test_world_render_bad_inputs_exit_2_with_one_line(tmp_path, capsys, args, message):
    rc = main(["world", "render", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mirage: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o" / "render.json").exists()


def test_world_render_malformed_trajectory_file(tmp_path, capsys):
    bad = tmp_path / "traj.json"
    bad.write_text('{"format": "mirage-trajectory", "version": 1, "frames": [{"K": 1}]}')
    assert main(["world", "render", "--trajectory", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "traj.json" in capsys.readouterr().err


def test_dataset_writes_index_with_seeds_and_resumes(tmp_path):
    out = tmp_path / "ds"
    rc = main(["world", "dataset", "--scenes", "3", "--frames", "3", "--size", "12x16", "--out", str(out),
               "--first-seed", "10", "--no-progress"])
    assert rc == 0
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and [c["seed"] for c in index["clips"]] == [10, 11, 12]
    assert [c["family"] for c in index["clips"]] == ["room", "courtyard", "room"]
    first = load_geometry_npz(out / index["clips"][1]["path"] / "geometry.npz")
    assert first.frames.shape == (3, 12, 16, 3) and first.sky_masks.any()

    # Simulate an interruption: one clip lost, debris of a half-written one left behind.
    config = DatasetConfig(scenes=3, frames=3, height=12, width=16, first_seed=10)
    lost = out / "clips" / plan_clips(config)[2].name
    kept = out / "clips" / plan_clips(config)[0].name
    before = (kept / "geometry.npz").stat().st_mtime_ns
    for f in lost.iterdir():
        f.unlink()
    lost.rmdir()
    (out / "clips" / f".tmp-{lost.name}").mkdir()
    (out / "clips" / f".tmp-{lost.name}" / "geometry.npz").write_text("half")
    index = write_dataset(out, config, progress=False)
    assert len(index) == 3 and lost.exists() and not (out / "clips" / f".tmp-{lost.name}").exists()
    assert (kept / "geometry.npz").stat().st_mtime_ns == before  # finished clips are skipped
    assert load_geometry_npz(lost / "geometry.npz").frames.shape == (3, 12, 16, 3)

    with pytest.raises(ConfigError, match="fresh folder"):
        write_dataset(out, DatasetConfig(scenes=3, frames=4, height=12, width=16, first_seed=10), progress=False)


def test_dataset_config_validates():
    with pytest.raises(ConfigError, match="scenes"):
        DatasetConfig(scenes=0, frames=3, height=8, width=8)
    with pytest.raises(ConfigError, match="families"):
        DatasetConfig(scenes=1, frames=3, height=8, width=8, families=("attic",))
    with pytest.raises(ConfigError, match="trajectories"):
        DatasetConfig(scenes=1, frames=3, height=8, width=8, trajectories=("spiral",))


def test_write_mp4_pads_odd_sizes_and_rejects_bad_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 9, 11, 3), dtype=np.uint8)
    write_mp4(tmp_path / "v.mp4", frames, fps=8)
    video = imageio.mimread(tmp_path / "v.mp4")
    assert len(video) == 3 and video[0].shape == (10, 12, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary left behind
    with pytest.raises(ShapeError):
        write_mp4(tmp_path / "w.mp4", frames.astype(np.float32))
    with pytest.raises(ShapeError):
        write_mp4(tmp_path / "w.mp4", frames[0])
