from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from mirage.data import BuildConfig, SampleIndex, ShardReader, ShardWriter, build_dataset, read_clip
from mirage.data.samples import to_conditioning
from mirage.errors import ConfigError
from tests.train.wan_standin import MAX_FRAMES, StandInWan, render_clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return render_clips(tmp_path_factory.mktemp("clips"), count=2, frames=17, size=32)


def _bad_copies(clips, root):
    """The good clips plus one clip per failure: no depth, NaN poses, too short."""
    for name in ("clip0", "clip1"):
        shutil.copytree(clips / name, root / name)
    (root / "clip0" / "caption.txt").write_text("a room with red walls\n")
    (root / "captions.json").write_text(json.dumps({"clip1": "a courtyard"}))
    with np.load(clips / "clip0" / "geometry.npz") as npz:
        data = dict(npz)
    variants = {
        "bad-nodepth": {k: v for k, v in data.items() if k != "depths"},
        "bad-nanpose": {**data, "poses_c2w": np.where(np.arange(17)[:, None, None] == 5, np.nan, data["poses_c2w"])},
        "bad-short": {k: v[:5] for k, v in data.items()},  # every array is per frame
    }
    for name, arrays in variants.items():
        (root / name).mkdir()
        np.savez(root / name / "geometry.npz", **arrays)
    return root


def test_bad_clips_are_skipped_with_a_reason(clips, tmp_path):
    root = _bad_copies(clips, tmp_path / "clips")
    index = build_dataset(root, StandInWan(), tmp_path / "out", BuildConfig(clips_per_shard=2), progress=False)
    reasons = {s["clip"]: s["reason"] for s in index["skipped"]}
    assert set(reasons) == {"bad-nodepth", "bad-nanpose", "bad-short"}
    assert "missing depth" in reasons["bad-nodepth"]
    assert "non-finite" in reasons["bad-nanpose"] and "poses_c2w" in reasons["bad-nanpose"] and "[5]" in reasons["bad-nanpose"]
    assert "too short" in reasons["bad-short"] and f"at least {MAX_FRAMES}" in reasons["bad-short"]
    log = (tmp_path / "out" / "build.log").read_text()
    assert all(f"skipped {name}" in log for name in reasons)
    # the good clips: 17 frames → 5 latent frames → a sample at starts 0..3 each
    built = [k for shard in index["shards"] for k in shard["keys"]]
    assert len(built) == 8 and index["complete"] and index["samples"] == 8
    assert sorted({k.rsplit("-s", 1)[0] for k in built}) == ["clip0", "clip1"]
    data = SampleIndex(tmp_path / "out")
    captions = {data[i][1]["clip"]: data[i][1]["caption"] for i in range(len(data))}
    assert captions == {"clip0": "a room with red walls", "clip1": "a courtyard"}
    assert to_conditioning(*data[0]).text == "a room with red walls"


def test_build_resumes_and_refuses_another_config(clips, tmp_path):
    out = tmp_path / "out"
    cfg = BuildConfig(clips_per_shard=1)
    first = build_dataset(clips, StandInWan(), out, cfg, progress=False)
    shard = out / "shard-00000.tar"
    stamp = shard.stat().st_mtime_ns
    # an interrupted build: the second shard's record was never written
    index = json.loads((out / "index.json").read_text())
    index["shards"] = index["shards"][:1]
    index["complete"] = False
    (out / "index.json").write_text(json.dumps(index))
    (out / "shard-00001.tar").unlink()
    again = build_dataset(clips, StandInWan(), out, cfg, progress=False)
    assert shard.stat().st_mtime_ns == stamp  # the finished shard was skipped, not rewritten
    assert (out / "shard-00001.tar").exists() and again["complete"]
    assert [s["keys"] for s in again["shards"]] == [s["keys"] for s in first["shards"]]
    with pytest.raises(ConfigError, match="fresh folder"):
        build_dataset(clips, StandInWan(), out, BuildConfig(clips_per_shard=1, references=2), progress=False)


def test_shards_are_plain_tars_read_back_exactly(tmp_path):
    t = {"a": torch.randn(2, 3), "m": torch.rand(4) > 0.5, "e": torch.zeros(0, 4, 2, 2)}
    with ShardWriter(tmp_path / "s.tar") as w:
        w.write("k0", t, {"caption": "a room", "ids": [1, 2]})
        w.write("k1", {"a": torch.ones(1)}, {})
    with tarfile.open(tmp_path / "s.tar") as tar:  # webdataset layout: key.ext members
        assert tar.getnames() == ["k0.safetensors", "k0.json", "k1.safetensors", "k1.json"]
    r = ShardReader(tmp_path / "s.tar")
    tensors, meta = r["k0"]
    assert meta == {"caption": "a room", "ids": [1, 2]} and r.keys == ["k0", "k1"]
    for k in t:
        assert torch.equal(tensors[k], t[k]) and tensors[k].dtype == t[k].dtype


def test_samples_hold_the_chunk_and_convert_back(clips, tmp_path):
    bb = StandInWan()
    index = build_dataset(clips, bb, tmp_path / "out", BuildConfig(preceding=2, references=1), progress=False)
    data = SampleIndex(tmp_path / "out")
    assert len(data) == index["samples"] == 8
    clip = read_clip(clips / "clip0", temporal_stride=4, spatial_stride=8, min_frames=9)
    z = bb.encode(clip.video.permute(1, 0, 2, 3)[None])[0].permute(1, 0, 2, 3)  # (5, C, h, w)
    for i in range(4):
        tensors, meta = data[i]
        s = meta["start"]
        assert meta["ids"]["first"] == [s] and meta["ids"]["targets"] == list(range(s + 1, min(s + 2, 4) + 1))
        assert meta["ids"]["preceding"] == list(range(max(0, s - 2), s))
        torch.testing.assert_close(tensors["first"], z[s])
        torch.testing.assert_close(tensors["targets"], z[meta["ids"]["targets"]])
        cond = to_conditioning(tensors, meta)
        assert cond.num_targets == len(meta["ids"]["targets"])
        torch.testing.assert_close(cond.target_cameras.cam2world, clip.cameras.cam2world[[4 * k for k in meta["ids"]["targets"]]])
        inputs = bb.assemble(cond)
        assert inputs.layout[-cond.num_targets - 1] == "first" and inputs.layout.count("preceding") == len(meta["ids"]["preceding"])
