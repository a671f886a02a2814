"""`mirage data build` over 2 torchrun processes (gloo, CPU) gives the samples of 1 process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from mirage.data import BuildConfig, SampleIndex, build_dataset
from tests.train.wan_standin import StandInWan, render_clips

WORKER = Path(__file__).with_name("dist_build_worker.py")


def _samples(root):
    data = SampleIndex(root)
    return [data[i] for i in range(len(data))]


def test_two_ranks_build_the_samples_of_one_and_resume(tmp_path):
    clips = render_clips(tmp_path / "clips", count=3, frames=9, size=32)
    shutil.copytree(clips / "clip0", clips / "clip3")
    with open(clips / "clip3" / "geometry.npz", "r+b") as fh:  # a clip that must be skipped
        fh.truncate(100)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(clips),
                          str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    one = build_dataset(clips, StandInWan(), tmp_path / "one", BuildConfig(clips_per_shard=1), progress=False)
    two = json.loads((tmp_path / "two" / "index.json").read_text())
    assert two == one and two["complete"] and two["samples"] == 6  # 3 good clips × 2 chunk starts
    assert [s["clip"] for s in two["skipped"]] == ["clip3"]
    log = (tmp_path / "two" / "build.log").read_text()
    assert "rank 1: 1 clips built, 1 skipped" in log and "2 process(es)" in log  # rank 1 took groups 1 and 3
    a, b = _samples(tmp_path / "one"), _samples(tmp_path / "two")
    assert [m for _, m in a] == [m for _, m in b]
    for (ta, _), (tb, _) in zip(a, b):
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)

    # a killed run lost rank 1's first shard: a rerun (any number of processes) redoes only that one
    (tmp_path / "two" / "shard-00001.tar").unlink()
    kept = (tmp_path / "two" / "shard-00002.tar").stat().st_mtime_ns
    again = build_dataset(clips, StandInWan(), tmp_path / "two", BuildConfig(clips_per_shard=1), progress=False)
    assert again == one and (tmp_path / "two" / "shard-00002.tar").stat().st_mtime_ns == kept
