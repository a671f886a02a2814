"""`mirage data import` and `data build` with broken or oversized inputs: unreadable frames,
all-invalid depth and oversized maps are skipped with a reason (one line for a single source),
checked before decoding; a killed build's hidden temporaries are removed when it resumes."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest

from mirage.cli import main
from mirage.data import BuildConfig, build_dataset
from mirage.data.importers import import_clips
from tests.pipeline.bombs import png_header, zero_png
from tests.train.wan_standin import StandInWan, render_clips


def _sequences(formats, rendered, tmp_path, names):
    re = formats["re10k"]
    cams, frames, depth = tmp_path / "cams", tmp_path / "frames", tmp_path / "depth"
    cams.mkdir()
    for name in names:
        shutil.copy(re / "cameras" / "seq.txt", cams / f"{name}.txt")
        shutil.copytree(re / "frames" / "seq", frames / name)
        shutil.copytree(re / "depth" / "seq", depth / name)
    return cams, frames, depth


def test_broken_frames_and_depth_are_skipped_with_a_reason(formats, rendered, tmp_path):
    names = ["good", "unreadable", "truncated", "huge", "nandepth", "bombdepth"]
    cams, frames, depth = _sequences(formats, rendered, tmp_path, names)
    t = rendered.timestamps
    (frames / "unreadable" / f"{t[3]}.png").write_bytes(b"this is not a png")
    good_png = (frames / "good" / f"{t[3]}.png").read_bytes()
    (frames / "truncated" / f"{t[3]}.png").write_bytes(good_png[: len(good_png) // 2])
    png_header(frames / "huge" / f"{t[2]}.png", 20000, 20000)
    np.save(depth / "nandepth" / f"{t[1]}.npy", np.full((48, 64), np.nan, np.float32))
    (depth / "bombdepth" / f"{t[1]}.npy").unlink()
    zero_png(depth / "bombdepth" / f"{t[1]}.png", 13000, 13000, "I;16")
    index = import_clips(cams, tmp_path / "out", images=frames, depth_dir=depth, progress=False)
    reasons = {s.get("clip", s.get("sequence")): s["reason"] for s in index["skipped"]}
    assert [c["name"] for c in index["clips"]] == ["good"]
    assert "not a readable image" in reasons["unreadable"] and str(t[3]) in reasons["unreadable"]
    assert "not a readable image" in reasons["truncated"]
    assert "20000x20000" in reasons["huge"] or "more pixels" in reasons["huge"]
    assert "no valid depth" in reasons["nandepth"] and str(t[1]) in reasons["nandepth"]
    assert "more pixels" in reasons["bombdepth"] or "13000x13000" in reasons["bombdepth"]


@pytest.mark.parametrize("case", ["unreadable first frame", "all-NaN depth"])
def test_a_single_broken_source_gives_one_line(formats, rendered, tmp_path, capsys, case):
    cams, frames, depth = _sequences(formats, rendered, tmp_path, ["seq"])
    t = rendered.timestamps
    if case == "unreadable first frame":
        (frames / "seq" / f"{t[0]}.png").write_bytes(b"\x89PNG garbage")
    else:
        for ts in t:
            np.save(depth / "seq" / f"{ts}.npy", np.full((48, 64), np.nan, np.float32))
    rc = main(["data", "import", "--cameras", str(cams / "seq.txt"), "--images", str(frames),
               "--depth-dir", str(depth), "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) <= 2 and ("not a readable image" in captured.err or "no valid depth" in captured.err), captured.err


def test_a_resumed_build_removes_a_killed_runs_temporaries(tmp_path):
    clips = tmp_path / "clips"
    render_clips(clips)
    out = tmp_path / "out"
    cfg = BuildConfig(clips_per_shard=1)
    build_dataset(clips, StandInWan(), out, cfg, progress=False)
    (out / "shard-00001.tar").unlink()  # killed while writing shard 1: its temporaries stayed
    leftovers = []
    for prefix, suffix, where in [(".shard-00001.tar.", ".tar", out), (".shard-00001.json.", ".tmp", out / "records"),
                                  (".index.json.", ".tmp", out)]:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=where)  # as mirage.files.atomic_path names them
        with open(fd, "wb") as f:
            f.write(b"\0" * 1000)
        leftovers.append(name)
    index = build_dataset(clips, StandInWan(), out, cfg, progress=False)
    assert index["complete"] and (out / "shard-00001.tar").is_file()
    hidden = sorted(p.name for p in [*out.glob(".*"), *(out / "records").glob(".*")])
    assert hidden == [], hidden
