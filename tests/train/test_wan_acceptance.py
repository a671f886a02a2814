"""Issue 7's acceptance chain on the CPU with a tiny random Wan2.2 directory (no text encoder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirage.files import load_safetensors


def _run(args, cwd, launcher=None):
    cmd = (launcher or [sys.executable, "-m"]) + ["mirage", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t = time.monotonic()
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, f"{' '.join(cmd)}\n{run.stderr[-4000:]}"
    return time.monotonic() - t


@pytest.mark.slow
def test_acceptance_chain(tmp_path):
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2", "-m"]
    times = {
        "0 tiny-random": _run(["wan", "tiny-random", "--out", "tiny"], tmp_path),
        "1 world dataset": _run(["world", "dataset", "--scenes", "3", "--frames", "65", "--size", "64x64",
                                 "--out", "raw"], tmp_path),
        "2 data build": _run(["data", "build", "--clips", "raw", "--weights", "tiny", "--out", "shards",
                              "--no-progress"], tmp_path),
        "3 train branch (torchrun x2)": _run(["train", "wan", "--weights", "tiny", "--data", "shards", "--stage",
                                              "branch", "--max-steps", "3", "--out", "run1", "--no-progress"],
                                             tmp_path, torchrun),
        "4 train lora": _run(["train", "wan", "--weights", "tiny", "--data", "shards", "--stage", "lora",
                              "--resume", "run1", "--max-steps", "2", "--out", "run2", "--no-progress"], tmp_path),
        "5 generate": _run(["generate", "--backbone", "wan22", "--weights", "tiny", "--memory-branch",
                            "run1/memory_branch.safetensors", "--lora", "run2/lora.safetensors", "--scene", "5",
                            "--frames", "65", "--size", "64x64", "--steps", "2", "--out", "gen", "--no-progress"],
                           tmp_path),
    }
    print(json.dumps(times, indent=1))
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["complete"] and not index["skipped"] and index["samples"] == 3 * 16  # 17 latents → 16 starts
    r1 = json.loads((tmp_path / "run1" / "train_report.json").read_text())
    assert r1["step"] == 3 and r1["processes"] == 2
    assert len((tmp_path / "run1" / "log.jsonl").read_text().splitlines()) == 3
    r2 = json.loads((tmp_path / "run2" / "train_report.json").read_text())
    assert r2["step"] == 2 and r2["stage"] == "lora"
    lora, meta = load_safetensors(tmp_path / "run2" / "lora.safetensors", "lora")
    assert meta["rank"] == "64" and any("lora_B" in k and v.abs().sum() > 0 for k, v in lora.items())
    run = json.loads((tmp_path / "gen" / "run.json").read_text())
    assert (tmp_path / "gen" / "video.mp4").stat().st_size > 0 and "lora" in json.dumps(run)
