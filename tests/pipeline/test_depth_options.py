"""The update-depth options of `mirage generate` / `explore` / `eval` (mirage.cli.depth): every bad
value and impossible combination has a one-line error naming the flag; good ones reach run.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mirage.cli import main
from mirage.errors import ConfigError


def cli(weights, out, *extra):
    return main(["generate", "--weights", str(weights), "--size", "64x64", "--out", str(out),
                 "--no-progress", "--steps", "1", *extra])


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--depth-estimator", "midas"], "`--depth-estimator` must be one of ('tiny', 'oracle', 'oracle-relative')"),
    (["--depth-align", "maybe"], "`--depth-align` must be one of ('on', 'off') but is 'maybe'"),
    (["--depth-align", "off"], "`--depth-align` applies to relative depth"),
    (["--depth-estimator", "oracle", "--depth-align", "off"], "but the update depth is 'oracle', which is metric"),
    (["--depth-model", "/no/such/folder"], "`--depth-model` must be an existing model folder but '/no/such/folder'"),
    (["--depth-model", ".", "--depth-estimator", "tiny"], "give either `--depth-model` or `--depth-estimator`"),
    (["--depth-model", "."], "`--depth-model` must be a local transformers model folder with a config.json"),
])
def test_bad_depth_options_fail_before_anything_is_written(weights, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert cli(weights, out, "--frames", "9", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("mirage: error: ")
    assert not out.exists()


@pytest.mark.parametrize("name", ["oracle", "oracle-relative"])
def test_oracles_need_a_scene(weights, tmp_path, image, capsys, name):
    assert cli(weights, tmp_path / "run", "--frames", "9", "--image", str(image), "--depth-estimator", name) == 2
    assert f"`--depth-estimator {name}` is an ablation that needs `--scene`" in capsys.readouterr().err


def test_oracle_relative_reaches_run_json(weights, tmp_path):
    for align in ("on", "off"):
        out = tmp_path / align
        assert cli(weights, out, "--frames", "17", "--scene", "3", "--depth-estimator", "oracle-relative",
                   "--depth-align", align) == 0
        run = json.loads((out / "run.json").read_text())
        assert run["config"]["update_depth"].startswith("oracle-relative (ABLATION")
        assert run["config"]["depth_kind"] == "relative" and run["config"]["depth_align"] is (align == "on")
        [record] = run["depth_alignment"]
        if align == "on":
            assert record["chunk"] == 0 and record["status"] in ("aligned", "partial")
            assert [f["frame"] for f in record["frames"]] == [4, 8, 12, 16]
            assert set(record["frames"][0]) == {"frame", "status", "scale", "shift", "residual", "points", "inliers",
                                                "coverage", "span", "reason"}
        else:
            assert record == {"chunk": 0, "status": "unaligned", "frames": []}


def test_default_run_records_no_alignment(weights, tmp_path):
    assert cli(weights, tmp_path / "a", "--frames", "9") == 0
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["depth_alignment"] == [None] and run["config"]["depth_kind"] == "metric"
    assert run["config"]["update_depth"] == "tiny" and run["config"]["depth_align"] is True


def test_explore_eval_and_data_build_check_their_depth_options(tmp_path, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    missing = str(tmp_path / "missing")
    for argv, message in ((["explore", "--depth-model", missing, "--port", "0"], "`--depth-model` must be an existing"),
                          (["explore", "--depth-align", "off", "--port", "0"], "`--depth-align` applies to relative"),
                          (["eval", "--depth-model", missing, "--out", str(tmp_path / "e")], "`--depth-model` must be"),
                          (["data", "build", "--clips", str(tmp_path), "--out", str(tmp_path / "d"), "--depth-model",
                            missing], "`depth_model` must be an existing model folder")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="`depth_align` must be True or False but is 'off'"):
        from mirage.pipeline import PipelineConfig

        PipelineConfig(depth_align="off")
