"""`mirage generate` (and friends) with hostile or oversized input files: one-line errors, the
frame count checked before any ground truth is rendered, paths that say where they start, a
named extra when one is missing, and a memory cap that every probe stays under (``ulimit -v``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mirage.cli import main
from tests.pipeline.bombs import png_header, zero_npz, zero_png

ROW = "0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
MEMORY_CAP_KB = 2_000_000  # `generate` runs (and refuses every probe) within 2 GB of address space


def realestate(path: Path, lines: int) -> Path:
    with open(path, "w") as f:
        f.write("https://example.invalid/video\n")
        for i in range(lines):
            f.write(f"{i} {ROW}\n")
    return path


def generate(tmp_path, *args) -> list[str]:
    return ["generate", "--out", str(tmp_path / "out"), "--no-progress", "--steps", "1", *args]


@pytest.fixture
def no_rendering(monkeypatch):
    """Fail the test if the world renders anything (ground truth of a refused path)."""
    import mirage.world

    def render(*args, **kwargs):
        raise AssertionError("ground truth was rendered for a path that should be refused first")

    monkeypatch.setattr(mirage.world, "render", render)


@pytest.mark.parametrize("lines", [5000, 300_000])
def test_a_long_realestate_file_is_refused_before_parsing_or_rendering(tmp_path, capsys, no_rendering, lines):
    path = realestate(tmp_path / "long.txt", lines)
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("4097 are allowed" in err or "MiB" in err), err
    assert not (tmp_path / "out").exists()


def test_a_long_json_path_is_refused_before_rendering(tmp_path, capsys, no_rendering):
    from mirage.geometry import Camera
    from mirage.cameras import save_trajectory_json

    cams = Camera.from_fov(torch.eye(4).expand(4101, 4, 4).clone(), 32, 32, 60.0)
    save_trajectory_json(tmp_path / "long.json", cams)
    assert main(generate(tmp_path, "--trajectory", str(tmp_path / "long.json"))) == 2
    assert "holds 4101 frames but at most 4097 are allowed" in capsys.readouterr().err


def test_max_frames_bounds_presets_and_can_be_raised(tmp_path, capsys, no_rendering):
    assert main(generate(tmp_path, "--frames", "33", "--max-frames", "17")) == 2
    assert "`--frames` holds 33 frames but at most 17" in capsys.readouterr().err
    assert main(generate(tmp_path, "--max-frames", "2")) == 2
    assert "`--max-frames` must be an int ≥ 5" in capsys.readouterr().err


def test_a_geometry_archive_path_is_checked_from_its_headers(tmp_path, capsys, no_rendering):
    from tests.pipeline.bombs import npz_claiming

    npz_claiming(tmp_path / "g.npz", "poses_c2w", (10**6, 4, 4))
    assert main(generate(tmp_path, "--trajectory", str(tmp_path / "g.npz"))) == 2
    assert "holds 1000000 frames" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["huge image", "bomb image", "bomb depth", "wrong depth shape",
                                  "16-bit depth bomb"])
def test_oversized_images_and_depth_get_one_line(tmp_path, capsys, case):
    from PIL import Image

    Image.new("RGB", (40, 24)).save(tmp_path / "ok.png")
    args = {
        "huge image": lambda: (png_header(tmp_path / "h.png", 20000, 20000), ["--image", str(tmp_path / "h.png")]),
        "bomb image": lambda: (zero_png(tmp_path / "b.png", 12000, 12000), ["--image", str(tmp_path / "b.png")]),
        "bomb depth": lambda: (zero_npz(tmp_path / "d.npz", "depth", (8192, 8192)),
                               ["--image", str(tmp_path / "ok.png"), "--depth", str(tmp_path / "d.npz")]),
        "wrong depth shape": lambda: (np.save(tmp_path / "d.npy", np.ones((40, 24), np.float32)),
                                      ["--image", str(tmp_path / "ok.png"), "--depth", str(tmp_path / "d.npy")]),
        "16-bit depth bomb": lambda: (zero_png(tmp_path / "d.png", 13000, 13000, "I;16"),
                                      ["--image", str(tmp_path / "ok.png"), "--depth", str(tmp_path / "d.png")]),
    }[case]()[1]
    assert main(generate(tmp_path, *args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mirage: error: `--") and len(err.splitlines()) == 1, err


# -- paths that say where they start ---------------------------------------------------------------
def _exported(tmp_path, start: dict | None) -> Path:
    from mirage.geometry import Camera
    from mirage.world import generate_scene, make_trajectory
    from mirage.cameras import save_trajectory_json

    cams = make_trajectory("forward-back", generate_scene("room", 0), 9, 64, 64)
    save_trajectory_json(tmp_path / "path.json", Camera(cams.K, cams.cam2world, 64, 64), fps=16.0,
                         chunks=[{"frames": 4, "seed": None}, {"frames": 4, "seed": 3}])
    data = json.loads((tmp_path / "path.json").read_text())
    if start is not None:
        data["start"] = start
    (tmp_path / "path.json").write_text(json.dumps(data))
    return tmp_path / "path.json"


def test_an_image_walk_is_refused_from_a_scene(tmp_path, capsys, no_rendering):
    from PIL import Image

    from mirage.pipeline.start_record import image_record

    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "photo.png")
    path = _exported(tmp_path, image_record(tmp_path / "photo.png", name="photo.png"))
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "0")) == 2
    err = capsys.readouterr().err
    assert "was walked from the image 'photo.png'" in err and "starts from scene 0 (room)" in err
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "other.png")  # another picture
    assert main(generate(tmp_path, "--trajectory", str(path), "--image", str(tmp_path / "other.png"))) == 2
    assert "the image 'other.png'" in capsys.readouterr().err


def test_a_scene_walk_replays_from_its_scene_only(tmp_path, capsys):
    path = _exported(tmp_path, {"scene": 0, "family": "room"})
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "1")) == 2
    assert "walked from scene 0 (room) but this run starts from scene 1 (room)" in capsys.readouterr().err
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "0", "--family", "courtyard")) == 2
    capsys.readouterr()
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "0")) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["frames"] == 9


def test_an_image_walk_replays_from_the_same_bytes_under_another_name(tmp_path, capsys):
    from PIL import Image

    from mirage.pipeline.start_record import image_record

    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "photo.png")
    path = _exported(tmp_path, image_record(tmp_path / "photo.png", name="photo.png"))
    (tmp_path / "renamed.png").write_bytes((tmp_path / "photo.png").read_bytes())
    assert main(generate(tmp_path, "--trajectory", str(path), "--image", str(tmp_path / "renamed.png"))) == 0


def test_an_older_path_without_a_start_still_loads(tmp_path):
    path = _exported(tmp_path, None)
    assert main(generate(tmp_path, "--trajectory", str(path), "--scene", "3")) == 0


@pytest.mark.parametrize("start", [{"scene": "0", "family": "room"}, {"image": "x", "sha256": "nothex"},
                                   [1, 2], {"scene": -1, "family": "room"}, "room"])
def test_a_malformed_start_record_gets_one_line(tmp_path, capsys, start):
    path = _exported(tmp_path, start)
    assert main(generate(tmp_path, "--trajectory", str(path))) == 2
    assert "`start` must be" in capsys.readouterr().err


# -- a missing extra ----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["wan", "tiny-random", "--out", "{tmp}/w"],
                                  ["generate", "--backbone", "wan22", "--weights", "{tmp}", "--out", "{tmp}/o"],
                                  ["train", "wan", "--weights", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/t", "--stage", "branch",
                                   "--max-steps", "1"]])
def test_a_missing_wan_extra_is_named_in_one_line(tmp_path, capsys, monkeypatch, argv):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("diffusers", "accelerate", "peft") else real(name, *a))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'mirage-world[wan]'" in err and "diffusers" in err, err


# -- the memory cap ------------------------------------------------------------------------------------
def _capped(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = f"import sys; from mirage.cli import main; sys.exit(main({args!r}))"
    return subprocess.run(["bash", "-c", f'ulimit -v {MEMORY_CAP_KB}; exec "$0" -c "$1"', sys.executable, code],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_every_probe_is_refused_within_the_memory_cap_and_a_normal_run_fits(tmp_path):
    from PIL import Image

    realestate(tmp_path / "million.txt", 10**6)  # the 10^6-line file (49 MB)
    png_header(tmp_path / "huge.png", 20000, 20000)
    zero_png(tmp_path / "bomb.png", 12000, 12000)
    zero_npz(tmp_path / "bomb.npz", "depth", (16384, 16384))  # 1 MB on disk, 1 GiB inflated
    zero_png(tmp_path / "bomb16.png", 13000, 13000, "I;16")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    probes = [
        ["--trajectory", "million.txt", "--scene", "0"],
        ["--image", "huge.png"],
        ["--image", "bomb.png"],
        ["--image", "ok.png", "--depth", "bomb.npz"],
        ["--image", "ok.png", "--depth", "bomb16.png"],
    ]
    for probe in probes:
        run = _capped(["generate", "--out", "out", "--no-progress", *probe], tmp_path)
        assert run.returncode == 2, (probe, run.stderr[-2000:])
        assert run.stderr.startswith("mirage: error: ") and len(run.stderr.strip().splitlines()) == 1, run.stderr
    run = _capped(["generate", "--out", "out", "--no-progress", "--frames", "9", "--steps", "1"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
