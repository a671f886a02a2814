"""`mirage generate --jobs` and `mirage eval` over 2 torchrun ranks (gloo, CPU) give the outputs of 1
process; a killed batch resumes without redoing finished jobs; bad jobs lines get one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mirage.cli import main
from tests.backbones.conftest import small_backbone

TIMING_KEYS = {  # what differs between any two runs of the same job
    "timings", "timing", "total_s", "memory_share", "seconds", "s_per_frame", "wall_seconds", "peak_memory_bytes",
    "peak_memory_kind", "rank", "time_split_s_per_frame", "read_s", "update_s", "denoise_s", "decode_s", "depth_s",
    "memory_s", "init_s"}
JOBS = [
    {"scene": 1, "frames": 9, "memory": "latent", "out": "runs/1-latent"},
    {"scene": 2, "family": "courtyard", "trajectory": "loop", "frames": 9, "memory": "rgb", "out": "runs/2-rgb"},
    {"scene": 1, "frames": 9, "memory": "none", "seed": 3, "out": "runs/1-none"},
    {"scene": 3, "frames": 17, "memory": "latent", "references": 0, "out": "runs/3-latent"},
]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _launch(nproc: int, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``mirage ARGV`` in ``nproc`` torchrun processes (1: a plain process)."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "mirage", *argv]
    else:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(nproc),
               "-m", "mirage", *argv]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _strip(value):
    """A JSON value without its timing fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMING_KEYS and not k.startswith("share_")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _safetensors(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _jobs_dir(root: Path, weights: Path) -> Path:
    root.mkdir(parents=True)
    (root / "w.safetensors").write_bytes(weights.read_bytes())
    lines = [json.dumps({**job, "weights": "w.safetensors"}) for job in JOBS]
    (root / "jobs.jsonl").write_text("\n".join(lines[:2] + ["", "# a comment"] + lines[2:]) + "\n")
    return root / "jobs.jsonl"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    small_backbone().save(path)
    return path


def test_generate_jobs_two_ranks_equal_one_and_resume(weights, tmp_path, capsys):
    one, two = _jobs_dir(tmp_path / "one", weights), _jobs_dir(tmp_path / "two", weights)
    _launch(1, "generate", "--jobs", str(one), "--no-progress", cwd=tmp_path)
    run2 = _launch(2, "generate", "--jobs", str(two), "--no-progress", cwd=tmp_path)
    # a progress line per job and rank; rank 0 took lines 1-2, rank 1 lines 5-6
    assert "[rank 0/2] job 1/2 (line 1)" in run2.stderr and "[rank 1/2] job 2/2 (line 6)" in run2.stderr
    for job in JOBS:
        a, b = one.parent / job["out"], two.parent / job["out"]
        ra, rb = (json.loads((d / "run.json").read_text()) for d in (a, b))
        assert ra["config"].pop("weights") == str(one.parent / "w.safetensors")  # relative to the file
        assert rb["config"].pop("weights") == str(two.parent / "w.safetensors")
        assert _strip(ra) == _strip(rb) and ra["metrics"]["psnr_per_frame"]  # same frames, same memory stats
        assert ra["config"]["frames"] == job["frames"] and ra["config"]["memory_mode"] == job["memory"]
        assert (a / "video.mp4").read_bytes() == (b / "video.mp4").read_bytes()
        if job["memory"] != "none":
            (ta, ma), (tb, mb) = (_safetensors(d / "memory.safetensors") for d in (a, b))
            assert ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    s1, s2 = (json.loads(p.with_suffix(".summary.json").read_text()) for p in (one, two))
    assert s1["processes"] == 1 and s2["processes"] == 2
    assert [j["rank"] for j in s2["jobs"]] == [0, 0, 1, 1] and [j["line"] for j in s2["jobs"]] == [1, 2, 5, 6]
    assert _strip(s1["jobs"]) == _strip(s2["jobs"])
    assert [j["out"] for j in s2["jobs"]] == [j["out"] for j in JOBS]

    # Killed during job 3: its folder holds the INCOMPLETE marker and no run.json. A rerun (here
    # in this process) redoes job 3 only and ends with the same outputs.
    killed = two.parent / JOBS[2]["out"]
    before = (killed / "run.json").read_text()
    (killed / "run.json").unlink()
    (killed / "INCOMPLETE").write_text("interrupted\n")
    kept = {j["out"]: (two.parent / j["out"] / "run.json").stat().st_mtime_ns for j in JOBS if j is not JOBS[2]}
    capsys.readouterr()
    assert main(["generate", "--jobs", str(two), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "1 generated, 3 complete before" in printed.out and "(line 5) " in printed.err
    assert all((two.parent / out / "run.json").stat().st_mtime_ns == t for out, t in kept.items())
    assert _strip(json.loads((killed / "run.json").read_text())) == _strip(json.loads(before))
    assert not (killed / "INCOMPLETE").exists()
    statuses = [j["status"] for j in json.loads(two.with_suffix(".summary.json").read_text())["jobs"]]
    assert statuses == ["complete before", "complete before", "generated", "complete before"]


@pytest.mark.parametrize("line, message", [
    ('{"scene": 1, "out": "a"', "not valid JSON"),
    ('[1, 2]', "must be a JSON object of generate options but is list"),
    ('{"scene": 1, "colour": "red", "out": "a"}', "unknown option 'colour'"),
    ('{"scene": "seven", "out": "a"}', "`scene` must be an int but is 'seven'"),
    ('{"scene": 1}', "every job needs its own `out` folder"),
    ('{"scene": 1, "vae-tiling": "yes", "out": "a"}', "`vae-tiling` must be true or false"),
    ('{"scene": 1, "memory": "voxels", "out": "a"}', "`--memory` must be one of"),
    ('{"scene": 1, "out": "runs/x"}', "`out` 'runs/x' is also the `out` of line 1"),
])
def test_bad_jobs_lines_name_the_line(tmp_path, capsys, line, message):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"scene": 0, "out": "runs/x"}\n\n' + line + "\n")
    assert main(["generate", "--jobs", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mirage: error: {path}:3: ") and message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_jobs_paths_are_relative_to_the_file(tmp_path):
    from mirage.cli.generate import generate_parser
    from mirage.cli.ranks import read_jobs

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "path.json").write_text("{}")
    (tmp_path / "sub" / "jobs.jsonl").write_text(
        '{"image": "im.png", "trajectory": "path.json", "out": "o", "far_field": false, "memory_branch": "/abs/b"}\n'
        '{"trajectory": "loop", "out": "/elsewhere/p", "vae_tiling": true}\n')
    defaults = generate_parser().parse_args(["--weights", "w", "--steps", "3"])
    (n1, a), (n2, b) = read_jobs(tmp_path / "sub" / "jobs.jsonl", generate_parser(), defaults)
    root = (tmp_path / "sub").resolve()
    assert (n1, n2) == (1, 2)
    assert a.image == str(root / "im.png") and a.trajectory == str(root / "path.json") and a.out == str(root / "o")
    assert a.far_field is False and a.memory_branch == "/abs/b" and a.steps == 3 and a.weights == "w"
    assert b.trajectory == "loop" and b.out == "/elsewhere/p" and b.vae_tiling is True


def test_eval_two_ranks_equal_one_and_resume(weights, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = ["eval", "--weights", str(weights), "--scenes", "1", "--first-scene", "5", "--presets", "pan-return,loop",
            "--frames", "9", "--seeds", "0", "--steps", "1", "--no-proxies", "--no-progress"]
    _launch(1, *args, "--out", str(tmp_path / "one"), cwd=tmp_path)
    two = _launch(2, *args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert "[rank 1/2] 6 runs over 2 paths done" in two.stderr  # 4 paths × 3 modes, 2 paths per rank
    names = sorted(p.name for p in (tmp_path / "one" / "runs").iterdir())
    assert len(names) == 24 and names == sorted(p.name for p in (tmp_path / "two" / "runs").iterdir())
    for name in names:
        a, b = tmp_path / "one" / "runs" / name, tmp_path / "two" / "runs" / name
        if name.endswith(".json"):
            assert _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text())), name
        else:
            import numpy as np

            with np.load(a) as fa, np.load(b) as fb:
                assert sorted(fa.files) == sorted(fb.files) and all(np.array_equal(fa[k], fb[k]) for k in fa.files)
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert m2["info"]["processes"] == 2 and sum(m2["info"]["runs_by_rank"]) == 12 and m2["info"]["runs_by_rank"][1] > 0
    m1.pop("info"), m2.pop("info")
    assert _strip(m1) == _strip(m2)

    # killed before its last run was written: a rerun does that run only, and the report is the same
    for suffix in (".json", ".npz"):
        (tmp_path / "two" / "runs" / f"room05-loop-rgb-s0{suffix}").unlink()
    kept = (tmp_path / "two" / "runs" / "room05-loop-latent-s0.json").stat().st_mtime_ns
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--out", str(tmp_path / "two")]) == 0
    finally:
        torch.set_num_threads(threads)  # `mirage eval --threads` sets it for the process
    assert "1 runs now, 11 reused" in capsys.readouterr().out
    assert (tmp_path / "two" / "runs" / "room05-loop-latent-s0.json").stat().st_mtime_ns == kept
    again = json.loads((tmp_path / "two" / "metrics.json").read_text())
    again.pop("info")
    assert _strip(again) == _strip(m1)
