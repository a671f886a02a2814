"""The exact-return metric (mirage.evaluation.metrics.exact_return / gap_closed) and its per-family
and per-path tables (mirage.evaluation.report), on hand-made tensors and records."""

from __future__ import annotations

import math

import pytest
import torch

from mirage.errors import ShapeError
from mirage.evaluation.metrics import exact_return, frame_psnr, gap_closed
from mirage.evaluation.report import (exact_return_family_table, exact_return_path_table, exact_return_paths,
                                      exact_return_summary)
from mirage.geometry import Camera
from mirage.world.trajectories import level_pose


def _cams(yaws) -> Camera:
    poses = torch.stack([level_pose(torch.zeros(3), math.radians(y)) for y in yaws]).float()
    return Camera.from_fov(poses, 16, 16, 60.0)


def test_exact_return_psnr_on_hand_made_frames():
    gt = torch.zeros(3, 3, 4, 4)
    video = gt.clone()
    video[0] += 0.01  # decoded first: MSE 1e-4 → 10·log10(4 / 1e-4) = 46.02 dB
    video[2] += 0.1   # return: MSE 1e-2 → 26.02 dB
    record = exact_return(frame_psnr(video, gt), _cams([0.0, 90.0, 0.0]))
    assert record["frame"] == 2
    assert record["return_psnr"] == pytest.approx(10 * math.log10(400.0))
    assert record["decoded_first_psnr"] == pytest.approx(10 * math.log10(40000.0))
    assert record["return_loss_db"] == pytest.approx(20.0)
    # not an exact return: a last pose 1e-5° off (within closed_loop's tolerance), or one frame
    assert exact_return(frame_psnr(video, gt), _cams([0.0, 90.0, 1e-5])) is None
    assert exact_return([30.0], _cams([0.0])) is None
    with pytest.raises(ShapeError, match="one value per camera"):
        exact_return([30.0, 20.0], _cams([0.0, 90.0, 0.0]))


def test_gap_closed():
    assert gap_closed(30.0, 20.0, 30.0) == 1.0  # the return reaches the decoded first frame
    assert gap_closed(20.0, 20.0, 30.0) == 0.0  # no better than no memory (none itself)
    assert gap_closed(27.5, 20.0, 30.0) == pytest.approx(0.75)
    assert gap_closed(18.0, 20.0, 30.0) == pytest.approx(-0.2)  # worse than none
    assert gap_closed(25.0, 30.0, 30.0) is None  # no gap to close
    assert gap_closed(25.0, 20.0, math.inf) is None


def _record(case, family, preset, seed, mode, psnrs):
    """A run record with the keys the exact-return tables read (None: the path does not return)."""
    er = None if psnrs is None else {"frame": 8, "return_psnr": psnrs[1], "decoded_first_psnr": psnrs[0],
                                     "return_loss_db": psnrs[0] - psnrs[1]}
    return {"case": case, "family": family, "scene": int(case[-2:]) if case[-2:].isdigit() else 1,
            "preset": preset, "seed": seed, "mode": mode, "exact_return": er}


@pytest.fixture()
def records():
    # (decoded first, return) per mode; room01: two seeds; courtyard02; a random walk (no return)
    runs = []
    for seed, (lat, rgb, none) in enumerate([((30.0, 29.0), (30.0, 25.0), (30.0, 20.0)),
                                              ((32.0, 32.0), (32.0, 26.0), (32.0, 24.0))]):
        for mode, v in (("latent", lat), ("rgb", rgb), ("none", none)):
            runs.append(_record("room01", "room", "loop", seed, mode, v))
    for mode, v in (("latent", (28.0, 24.0)), ("rgb", (28.0, 22.0)), ("none", (28.0, 20.0))):
        runs.append(_record("courtyard02", "courtyard", "pan-return", 0, mode, v))
    for mode in ("latent", "none"):
        runs.append(_record("room01w", "room", "random-walk", 0, mode, None))
    return runs


def test_exact_return_paths_pair_each_run_with_none(records):
    rows = exact_return_paths(records)
    assert len(rows) == 9  # the random walk is skipped
    assert [(r["family"], r["seed"], r["mode"]) for r in rows[:3]] == [("room", 0, "latent"), ("room", 0, "rgb"),
                                                                        ("room", 0, "none")]
    gap = {(r["case"], r["seed"], r["mode"]): r["gap_closed"] for r in rows}
    assert gap[("room01", 0, "latent")] == pytest.approx(0.9)  # (29 − 20) / (30 − 20)
    assert gap[("room01", 0, "rgb")] == pytest.approx(0.5)
    assert gap[("room01", 1, "latent")] == 1.0  # return = decoded first
    assert gap[("courtyard02", 0, "latent")] == pytest.approx(0.5)
    assert all(gap[k] == 0.0 for k in gap if k[2] == "none")
    assert rows[0]["return_loss_db"] == 1.0 and rows[0]["none_return_psnr"] == 20.0
    # without a none run there is nothing to close
    alone = exact_return_paths([r for r in records if r["mode"] != "none"])
    assert len(alone) == 6 and all(r["gap_closed"] is None for r in alone)


def test_exact_return_summary_and_tables(records):
    summary = exact_return_summary(records)
    assert summary["families"] == ["room", "courtyard"] and summary["modes"] == ["latent", "rgb", "none"]
    room = summary["by_family"]["room"]["latent"]
    assert room["gap_closed"]["mean"] == pytest.approx(0.95) and room["gap_closed"]["seeds"] == 2
    assert room["gap_closed"]["std"] == pytest.approx(0.1 / 2**0.5)
    assert room["return_loss_db"]["mean"] == pytest.approx(0.5)
    assert summary["range"]["room"]["rgb"]["return_loss_db"] == [5.0, 6.0]
    assert summary["by_family"]["courtyard"]["rgb"]["return_psnr"]["mean"] == 22.0
    family = exact_return_family_table(summary)
    assert "| room | latent | 30.50 ± 2.12 | 31.00 ± 1.41 | 0.50 ± 0.71 | 95.0% ± 7.1% | 0.00 – 1.00 | 90.0% – 100.0% |" in family
    assert "| courtyard | none | 20.00 | 28.00 | 8.00 | 0.0% | 8.00 – 8.00 | 0.0% – 0.0% |" in family
    paths = exact_return_path_table(summary)
    assert paths.count("\n| ") == 3  # room01 × 2 seeds + courtyard02
    assert "| room | 1 | loop | 0 | 29.00 | 1.00 | 90.0% | 25.00 | 5.00 | 50.0% | 20.00 | 10.00 | 0.0% |" in paths
    assert "random-walk" not in paths
    none_returns = exact_return_summary([r for r in records if r["preset"] == "random-walk"])
    assert none_returns["paths"] == [] and "No path" in exact_return_family_table(none_returns)


def test_benchmark_script_runs_and_compares(backbone, tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "exact_return.py"
    spec = importlib.util.spec_from_file_location("exact_return_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert [c.id for c in bench.default_cases()][:3] == ["courtyard00-pan-return", "courtyard00-loop", "courtyard01-pan-return"]
    assert len(bench.default_cases()) == 16
    weights = tmp_path / "small.safetensors"
    backbone.save(weights)
    threads = torch.get_num_threads()
    out = tmp_path / "before.json"
    argv = ["--weights", str(weights), "--scenes", "7", "--families", "room", "--presets", "loop,random-walk",
            "--frames", "9", "--steps", "1", "--modes", "latent,none", "--no-progress", "--out", str(out)]
    try:
        assert bench.main(argv) == 0
        result = json.loads(out.read_text())
        assert result["cases"] == ["room07-loop", "room07-random-walk"] and len(result["runs"]) == 4
        rows = result["exact_return"]["paths"]
        assert [(r["case"], r["mode"]) for r in rows] == [("room07-loop", "latent"), ("room07-loop", "none")]
        run = next(r for r in result["runs"] if r["id"] == "room07-loop-latent-s0")
        assert rows[0]["return_psnr"] == run["psnr"][-1] and rows[0]["decoded_first_psnr"] == run["psnr"][0]
        assert "| room | 7 | loop | 0 |" in out.with_suffix(".md").read_text()
        capsys.readouterr()
        assert bench.main([*argv[:-1], str(tmp_path / "after.json"), "--before", str(out)]) == 0
        loss = f"{rows[0]['return_loss_db']:.2f}"
        assert f"| room | 7 | loop | 0 | {loss} | {loss} |" in capsys.readouterr().out  # same weights: same figures
    finally:
        torch.set_num_threads(threads)
