"""`mirage eval` end to end on a tiny run (a small random backbone saved as weights)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from mirage.cli import main
from mirage.errors import ConfigError


@pytest.fixture()
def weights(backbone, tmp_path):
    path = tmp_path / "small.safetensors"
    backbone.save(path)
    threads = torch.get_num_threads()
    yield path
    torch.set_num_threads(threads)  # `mirage eval --threads` sets it for the process


def _args(weights, out, seeds="0,1"):
    return ["eval", "--weights", str(weights), "--scenes", "1", "--first-scene", "5", "--presets", "pan-return",
            "--frames", "25", "--seeds", seeds, "--steps", "2", "--no-proxies", "--no-progress", "--out", str(out)]


def test_eval_writes_the_report_and_resumes(weights, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    assert main(_args(weights, out)) == 0
    printed = capsys.readouterr().out
    assert "| latent |" in printed and "12 runs now, 0 reused" in printed
    for name in ("report.md", "metrics.json", "suite.json", "per_frame_psnr.png", "cache_bytes.png",
                 "time_split.png", "contact_sheet.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "runs").glob("*.json"))) == 12  # 2 families × 1 preset × 3 modes × 2 seeds
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cases"] == ["courtyard05-pan-return", "room05-pan-return"]
    assert metrics["info"]["proxies_note"] == "not computed (--no-proxies)"
    assert "not computed (--no-proxies)" in (out / "report.md").read_text()
    # the exact return per family (printed, report.md, metrics.json) and per path (report.md, metrics.json)
    er = metrics["exact_return"]
    assert er["families"] == ["room", "courtyard"] and len(er["paths"]) == 12
    run = json.loads((out / "runs" / "courtyard05-pan-return-rgb-s1.json").read_text())
    row = next(r for r in er["paths"] if r["case"] == "courtyard05-pan-return" and r["mode"] == "rgb" and r["seed"] == 1)
    assert row["return_psnr"] == run["psnr"][-1] and row["decoded_first_psnr"] == run["psnr"][0]
    assert "Exact return" in printed and "| courtyard | rgb |" in printed and "| room | latent |" in printed
    report = (out / "report.md").read_text()
    assert "| courtyard | 5 | pan-return | 1 |" in report and "| room | 5 | pan-return | 0 |" in report
    # a second invocation reuses every stored run
    assert main(_args(weights, out)) == 0
    assert "0 runs now, 12 reused" in capsys.readouterr().out
    # another suite into the same folder is refused before any work
    assert main(_args(weights, out, seeds="0,1,2")) == 2
    assert "different suite" in capsys.readouterr().err


def test_eval_rgb_far_field_adds_the_rgb_map_arm(weights, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    assert main([*_args(weights, out, seeds="0"), "--rgb-far-field"]) == 0
    printed = capsys.readouterr().out
    assert "8 runs now" in printed  # 2 families × 1 preset × 4 modes × 1 seed
    assert (out / "runs" / "courtyard05-pan-return-rgb+far-field-s0.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["modes"] == ["latent", "rgb", "rgb+far-field", "none"]
    assert "| courtyard | rgb+far-field |" in printed  # the exact return per family
    assert {r["mode"] for r in metrics["exact_return"]["paths"]} == {"latent", "rgb", "none", "rgb+far-field"}


def test_eval_rejects_bad_input(weights, tmp_path, capsys):
    assert main(["eval", "--suite", "huge", "--out", str(tmp_path / "x")]) == 2
    assert "`--suite` must be one of" in capsys.readouterr().err
    assert main(_args(weights, tmp_path / "y", seeds="0,a")) == 2
    assert "`--seeds`" in capsys.readouterr().err
    assert main([*_args(weights, tmp_path / "z"), "--frames", "24"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_missing_matplotlib_names_the_extra(monkeypatch):
    from mirage.evaluation.plots import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"mirage-world\[eval\]"):
        require_matplotlib()


def test_missing_opencv_reports_proxies_not_computed(backbone, monkeypatch):
    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import Case

    monkeypatch.setitem(sys.modules, "cv2", None)
    gt = prepare_ground_truth(backbone, Case("room", 1, "loop"), 9)
    assert "flow_roundtrip_px" not in gt.floors
    record, _ = evaluate_run(backbone, gt, "latent", 0, steps=1)
    assert record["proxies"] == "not computed (opencv not installed)"
    assert "proxy_camera" not in record
