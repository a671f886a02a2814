"""`mirage data import`: the three camera formats round-trip a procedural clip exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mirage.data.importers import ImportConfig, clip_windows, import_clips
from mirage.errors import FileFormatError
from mirage.cameras import load_geometry_npz
from tests.data.conftest import StandInRelativeModel, read_json

LAYOUTS = {  # format → (cameras, images, depth-dir) relative to the format's root
    "realestate10k": ("cameras/seq.txt", "frames", "depth"),
    "transforms": ("transforms.json", None, "depths"),
    "colmap": ("sparse/0", "images", "depth"),
    "colmap-text": ("text/0", "images", "depth"),
}
ROOTS = {"realestate10k": "re10k", "transforms": "nerf", "colmap": "colmap", "colmap-text": "colmap"}


def _run(formats, fmt, out, **kw):
    root = formats[ROOTS[fmt]]
    cams, images, depth = LAYOUTS[fmt]
    kw.setdefault("depth_dir", root / depth)
    return import_clips(root / cams, out, ImportConfig(**kw.pop("config", {})),
                        images=root / images if images else None, progress=False, **kw)


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_round_trip_cameras_frames_and_depth(formats, rendered, tmp_path, fmt):
    index = _run(formats, fmt, tmp_path / "out")
    assert index["complete"] and index["skipped"] == [] and len(index["clips"]) == 1
    clip = index["clips"][0]
    archive = load_geometry_npz(tmp_path / "out" / clip["name"] / "geometry.npz")
    K_err = float((archive.cameras.K.double() - rendered.cameras.K.double()).abs().max())
    pose_err = float((archive.cameras.cam2world.double() - rendered.cameras.cam2world.double()).abs().max())
    assert K_err < 1e-4 and pose_err < 1e-5, (K_err, pose_err)
    assert archive.cameras.hw == rendered.cameras.hw
    np.testing.assert_array_equal(archive.frames, rendered.frames)
    tol = 5e-4 if fmt == "transforms" else 0.0  # 16-bit PNG holds millimetres
    np.testing.assert_allclose(archive.depths, rendered.depths, rtol=0, atol=tol)
    assert clip["depth"] == {"source": "depth-dir"}
    if fmt == "realestate10k":
        np.testing.assert_allclose(archive.times, rendered.timestamps * 1e-6)


def test_relative_depth_model_is_aligned_to_colmap_points_within_1_percent(formats, rendered, tmp_path):
    model = StandInRelativeModel(rendered)
    index = _run(formats, "colmap", tmp_path / "out", depth_dir=None, depth_model=model)
    assert model.calls == 1 and index["skipped"] == []
    clip = index["clips"][0]
    depth = load_geometry_npz(tmp_path / "out" / clip["name"] / "geometry.npz").depths
    rel = np.abs(depth - rendered.depths) / rendered.depths
    assert rel.max() < 0.01, rel.max()
    assert clip["depth"]["reference"] == "colmap sparse points"
    assert clip["depth"]["fit_residual_max"] < 1e-4
    # the per-frame scale recovers the model's unknown one (a_k) exactly up to rounding
    np.testing.assert_allclose(clip["depth"]["scale"], [1 / (3.0 + 0.5 * k) for k in range(9)], rtol=1e-3)


def test_relative_depth_without_sparse_points_uses_triangulated_matches(tmp_path):
    from tests.data.conftest import render_clip, write_formats

    clip = render_clip(frames=9, height=96, width=128)
    roots = write_formats(clip, tmp_path / "f")
    index = import_clips(roots["re10k"] / "cameras" / "seq.txt", tmp_path / "out", ImportConfig(size=(48, 64)),
                         images=roots["re10k"] / "frames", depth_model=StandInRelativeModel(clip), progress=False)
    assert index["skipped"] == [], index["skipped"]
    rec = index["clips"][0]["depth"]
    assert rec["reference"] == "triangulated matches" and rec["reference_points_min"] >= 8
    depth = load_geometry_npz(tmp_path / "out" / "seq" / "geometry.npz").depths  # (9, 48, 64)
    from mirage.data.importers import _resize_depth

    truth = _resize_depth(clip.depths, (48, 64))
    rel = np.abs(depth - truth) / truth
    print("triangulated alignment: median relative depth error", float(np.median(rel)), rec["fit_residual"])
    assert np.median(rel) < 0.05 and rec["fit_residual_max"] < 0.1, (np.median(rel), rec)


def test_resize_rescales_intrinsics_by_the_design_rule(formats, rendered, tmp_path):
    index = _run(formats, "colmap", tmp_path / "out", config={"size": (24, 32)})
    archive = load_geometry_npz(tmp_path / "out" / index["clips"][0]["name"] / "geometry.npz")
    torch.testing.assert_close(archive.cameras.K, rendered.cameras.scaled(24, 32).K)
    assert archive.frames.shape == (9, 24, 32, 3) and archive.depths.shape == (9, 24, 32)
    np.testing.assert_array_equal(archive.depths, rendered.depths[:, 1::2, 1::2])  # nearest pixel centre


def test_clip_windows_and_resume(formats, tmp_path):
    assert clip_windows(9, 4, 1) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert clip_windows(9, 2, 2) == [[0, 2], [4, 6]] and clip_windows(9, 0, 3) == [[0, 3, 6]]
    out = tmp_path / "out"
    first = _run(formats, "colmap", out, config={"clip_frames": 3})
    names = [c["name"] for c in first["clips"]]
    assert names == ["colmap-000", "colmap-001", "colmap-002"]
    # a killed run: the last clip's index record is lost, a temporary file is left behind
    index = read_json(out / "index.json")
    index["clips"] = index["clips"][:1]
    index["complete"] = False
    (out / "index.json").write_text(json.dumps(index))
    (out / "colmap-002" / "geometry.npz").unlink()
    (out / "colmap-002" / ".geometry.npz.abc.tmp").write_bytes(b"half")
    stamp = (out / "colmap-000" / "geometry.npz").stat().st_mtime_ns
    again = _run(formats, "colmap", out, config={"clip_frames": 3})
    assert [c["name"] for c in again["clips"]] == names and again["complete"]
    assert (out / "colmap-000" / "geometry.npz").stat().st_mtime_ns == stamp  # not redone
    assert sorted(p.name for p in (out / "colmap-002").iterdir()) == ["geometry.npz"]


def test_a_single_unreadable_camera_file_raises_before_writing(tmp_path):
    bad = tmp_path / "seq.txt"
    bad.write_text("https://x\n1000 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1\n")  # 18 columns
    (tmp_path / "d").mkdir()
    with pytest.raises(FileFormatError, match=r"line 2: .*must have 19 columns .* but has 18"):
        import_clips(bad, tmp_path / "out", images=tmp_path, depth_dir=tmp_path / "d", progress=False)
    assert not (tmp_path / "out").exists()


def _clip_dirs(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def test_bad_inputs_are_skipped_with_a_reason_and_nothing_half_written(formats, rendered, tmp_path):
    import shutil

    from mirage.cameras import write_realestate10k

    re = formats["re10k"]
    cams = tmp_path / "cams"
    cams.mkdir()
    shutil.copy(re / "cameras" / "seq.txt", cams / "good.txt")
    lines = (re / "cameras" / "seq.txt").read_text().splitlines()
    (cams / "columns.txt").write_text("\n".join(lines[:3] + [lines[3] + " 0.0"] + lines[4:]) + "\n")
    nan = rendered.cameras.cam2world.clone()
    write_realestate10k(cams / "nanpose.txt", rendered.cameras, rendered.timestamps)
    text = (cams / "nanpose.txt").read_text().splitlines()
    cols = text[5].split()
    cols[10] = "nan"
    text[5] = " ".join(cols)
    (cams / "nanpose.txt").write_text("\n".join(text) + "\n")
    assert nan.isfinite().all()
    shutil.copy(re / "cameras" / "seq.txt", cams / "baddepth.txt")
    shutil.copy(re / "cameras" / "seq.txt", cams / "noframes.txt")
    frames, depth = tmp_path / "frames", tmp_path / "depth"
    for name in ("good", "nanpose", "baddepth", "noframes"):
        shutil.copytree(re / "frames" / "seq", frames / name)
        shutil.copytree(re / "depth" / "seq", depth / name)
    (frames / "noframes" / f"{rendered.timestamps[4]}.png").unlink()
    np.save(depth / "baddepth" / f"{rendered.timestamps[2]}.npy", np.ones((10, 12), np.float32))
    shutil.copytree(re / "frames" / "seq", frames / "columns")
    index = import_clips(cams, tmp_path / "out", images=frames, depth_dir=depth, progress=False)
    reasons = {s.get("clip", s.get("sequence")): s["reason"] for s in index["skipped"]}
    assert [c["name"] for c in index["clips"]] == ["good"]
    assert "line 4" in reasons["columns"] and "19 columns" in reasons["columns"] and "has 20" in reasons["columns"]
    assert "non-finite" in reasons["nanpose"] and str(rendered.timestamps[4]) in reasons["nanpose"]
    assert "10x12" in reasons["baddepth"] and "48x64" in reasons["baddepth"]
    assert "missing" in reasons["noframes"] and str(rendered.timestamps[4]) in reasons["noframes"]
    assert _clip_dirs(tmp_path / "out") == ["good"]  # nothing half-written for the skipped ones
    log = (tmp_path / "out" / "import.log").read_text()
    assert all(name in log for name in ("columns", "nanpose", "baddepth", "noframes"))


def test_transforms_with_a_missing_frame_and_colmap_without_images(formats, tmp_path):
    import shutil

    nerf = tmp_path / "nerf"
    shutil.copytree(formats["nerf"], nerf)
    (nerf / "images" / "frame_00003.png").unlink()
    index = import_clips(nerf / "transforms.json", tmp_path / "a", depth_dir=nerf / "depths", progress=False)
    assert index["clips"] == [] and "'images/frame_00003.png' is missing" in index["skipped"][0]["reason"]
    assert _clip_dirs(tmp_path / "a") == []
    empty = tmp_path / "noimages"
    empty.mkdir()
    index = import_clips(formats["colmap"] / "sparse" / "0", tmp_path / "b", images=empty,
                         depth_dir=formats["colmap"] / "depth", progress=False)
    assert index["clips"] == [] and "'frame_00000.png' is missing" in index["skipped"][0]["reason"]
    assert _clip_dirs(tmp_path / "b") == []


def test_distortion_and_non_pinhole_cameras_are_refused(formats, tmp_path):
    data = json.loads((formats["nerf"] / "transforms.json").read_text())
    data["k1"] = 0.1
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    (tmp_path / "d").mkdir()
    with pytest.raises(FileFormatError, match=r"lens distortion \{'k1': 0.1\}.*undistort"):
        import_clips(tmp_path / "transforms.json", tmp_path / "out", images=formats["nerf"],
                     depth_dir=tmp_path / "d", progress=False)
    assert not (tmp_path / "out").exists()


def test_written_clips_feed_data_build(formats, tmp_path):
    from mirage.data import SampleIndex, build_dataset
    from tests.train.wan_standin import StandInWan

    _run(formats, "colmap", tmp_path / "clips", config={"size": (48, 64)})
    index = build_dataset(tmp_path / "clips", StandInWan(), tmp_path / "built", progress=False)
    assert index["skipped"] == [] and index["samples"] == 2  # 9 frames → 3 latent frames → starts 0, 1
    tensors, meta = SampleIndex(tmp_path / "built")[0]
    assert meta["clip"] == "colmap" and meta["hw"] == [48, 64] and tensors["first"].shape == (4, 6, 8)


def test_a_colmap_model_without_its_images_file_is_an_error(formats, tmp_path):
    import shutil

    from mirage.errors import ConfigError

    model = tmp_path / "sparse" / "0"
    shutil.copytree(formats["colmap"] / "text" / "0", model)
    (model / "images.txt").unlink()
    with pytest.raises(FileFormatError, match="images.bin/.txt"):
        import_clips(model, tmp_path / "out", images=formats["colmap"] / "images",
                     depth_dir=formats["colmap"] / "depth", progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        import_clips(tmp_path / "nothing", tmp_path / "out", depth_dir=formats["colmap"] / "depth", progress=False)
    with pytest.raises(FileFormatError, match="images.bin/.txt"):
        import_clips(model, tmp_path / "out", ImportConfig(format="colmap"), images=formats["colmap"] / "images",
                     depth_dir=formats["colmap"] / "depth", progress=False)
    assert not (tmp_path / "out").exists()
