"""benchmarks/gpu_check.py --quick: every part of the GPU check runs, at a tiny size on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_quick(bench, tmp_path, capsys):
    from mirage.pipeline import PipelineConfig

    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.txt"]  # no video
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "error" not in json.dumps(result) and result["memory_device_fallback"] is None
    assert result["config"]["device"] == "cpu" and result["config"]["frames"] == 17
    arms = {a["arm"]: a for a in result["arms"]}
    expected = [f"{m} / {s}" for s in ("few-step", "unipc-2")
                for m in ("none", "latent-branch", "latent-inject", "rgb")]
    assert list(arms) == expected
    has_inject = "memory_input" in {f.name for f in fields(PipelineConfig)}
    for name, arm in arms.items():
        if "inject" in name and not has_inject:
            assert "no `memory_input` option" in arm["skipped"]
            continue
        assert "skipped" not in arm, arm
        assert arm["frames"] == 17 and arm["s_per_frame"] > 0 and arm["peak_vram_gib"] is None
        assert arm["steps"] == (3 if "few-step" in name else 2)
        assert (arm["cache_bytes"] > 0) == (arm["mode"] != "none")
    ex = result["explorer"]
    assert ex["steps_timed"] == 3 and len(ex["step_s"]) == 3 and min(ex["step_s"]) > 0
    assert ex["residency"] == {"latents": ["cpu"], "frames": ["cpu"], "reads": ["cpu"], "memory": ["cpu"]}
    md = result["memory_device"]
    assert [v["memory_device"] for v in md.values()] == ["cpu", "cpu"]
    assert all(0 < v["memory_share"] < 1 for v in md.values())
    vd = result["vae_decode"]
    assert vd["frames"] == 9 and vd["fp32_s"] > 0 and vd["bf16_s"] > 0
    assert math.isfinite(vd["psnr_bf16_vs_fp32_db"]) and vd["psnr_bf16_vs_fp32_db"] > 20  # bf16 rounding, not noise
    assert set(result["vram"]) == {"default", "offload model + vae tiling"}
    assert "explorer step (4 frames, few-step)" in (tmp_path / "gpu_check.txt").read_text()


def test_a_failing_part_is_recorded(bench, capsys):
    def broken(x):
        raise RuntimeError(f"no kernel for {x}")

    record = bench.guarded(broken, "cuda")
    assert record["error"] == "RuntimeError: no kernel for cuda" and "broken" in record["traceback"]
    assert bench.guarded(lambda x: {"ok": x}, 1) == {"ok": 1}
    assert "broken failed: RuntimeError" in capsys.readouterr().err


def test_gpu_check_arguments(bench, capsys):
    assert bench.main(["--quick", "--memory-inputs", "branch,paint"]) == 2
    assert "`--memory-inputs`" in capsys.readouterr().err
    assert bench.main(["--quick", "--timesteps", "500,700"]) == 2
    assert "`timesteps` must be strictly decreasing" in capsys.readouterr().err
    args = bench.parse_args(["--quick"])
    assert args.size == (64, 64) and args.steps == 2 and args.timesteps == (1000.0, 757.0, 522.0)
