"""Malformed camera files give one-line project errors that name the field, through
`generate --trajectory` (load_trajectory) and `data import` (import_clips) alike."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mirage.data.importers import import_clips
from mirage.errors import FileFormatError, MirageError
from mirage.world import load_trajectory


def _ours(**override):
    data = {"format": "mirage-trajectory", "version": 1, "height": 16, "width": 24, "fps": 8,
            "frames": [{"K": [[20.0, 0, 11.5], [0, 20.0, 7.5], [0, 0, 1]], "cam2world": np.eye(4).tolist()}]}
    return {**data, **override}


def _transforms(frame=None, **override):
    frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()} if frame is None else frame
    return {"w": 24, "h": 16, "fl_x": 20.0, **override, "frames": [frame]}


NESTED = "[" * 100_000 + "]" * 100_000
HUGE_INT = "1" * 4301  # one past Python's limit for int(str)

CASES = {  # name → (file text, what the message must name)
    "nested": (NESTED, "nested too deeply"),
    "nested-in-frames": ('{"format": "mirage-trajectory", "frames": ' + NESTED + "}", "nested too deeply"),
    "huge-int": ('{"format": "mirage-trajectory", "version": 1, "height": ' + HUGE_INT + "}", "not valid JSON"),
    "huge-int-entry": (json.dumps(_ours()).replace("20.0", HUGE_INT[:400], 1), "frames[0].K[0][0]"),
    "height-4300-digits": (json.dumps(_ours()).replace('"height": 16', '"height": ' + "1" * 4300),
                           "`height` must be an integer in [1, 1048576] but is an integer of 14282 bits"),
    "height-true": (json.dumps(_ours(height=True)), "`height` must be an integer in [1, 1048576] but is true"),
    "height-str": (json.dumps(_ours(height="64")), "`height` must be an integer in [1, 1048576] but is '64'"),
    "height-float": (json.dumps(_ours(height=64.5)), "`height` must be an integer in [1, 1048576] but is 64.5"),
    "fps-nan": (json.dumps(_ours(fps=float("nan"))), "`fps` must be a finite number but is nan"),
    "fps-zero": (json.dumps(_ours(fps=0)), "`fps` must be a number > 0"),
    "frame-null": (json.dumps(_ours(frames=[None])), "`frames[0]` must be an object but is null"),
    "K-str": (json.dumps(_ours(frames=[{"K": "x", "cam2world": np.eye(4).tolist()}])), "`frames[0].K`"),
    "version-list": (json.dumps(_ours(version=[1])), "`version` must be one of (1, 2)"),
    "t-frame-null": (json.dumps(_transforms(frame=None) | {"frames": [None]}), "`frames[0]` must be an object but is null"),
    "t-fl_x-str": (json.dumps(_transforms(fl_x="x")), "`fl_x` must be a number but is 'x'"),
    "t-angle-zero": (json.dumps({k: v for k, v in _transforms(camera_angle_x=0).items() if k != "fl_x"}),
                     "`camera_angle_x` must be a number > 0 but is 0"),
    "t-angle-pi": (json.dumps({k: v for k, v in _transforms(camera_angle_x=3.2).items() if k != "fl_x"}),
                   "`camera_angle_x` must be a number < 3.14159"),
    "t-h-true": (json.dumps(_transforms(h=True)), "`h` must be an integer in [1, 1048576] but is true"),
    "t-w-float": (json.dumps(_transforms(w=24.5)), "`w` must be an integer in [1, 1048576] but is 24.5"),
    "t-cx-nan": (json.dumps(_transforms(cx=float("nan"))), "`cx` must be a finite number"),
    "t-k1-str": (json.dumps(_transforms(k1="x")), "`k1` must be a number but is 'x'"),
    "t-model": (json.dumps(_transforms(camera_model=["FISHEYE"])), "`camera_model`"),
    "t-matrix-ragged": (json.dumps(_transforms(frame={"transform_matrix": [[1, 0], [0, 1]]})), "transform_matrix"),
    "t-matrix-bool": (json.dumps(_transforms(frame={"transform_matrix": [[True] * 4] * 4})),
                      "`transform_matrix[0][0]` must be a number but is true"),
    "t-file-path": (json.dumps(_transforms(frame={"transform_matrix": np.eye(4).tolist(), "file_path": 3})),
                    "`file_path` must be a string"),
    "not-utf8": (b"\xff\xfe{}", "must be UTF-8 text"),
}


def _write(tmp_path, name, text):
    path = tmp_path / f"{name}.json"
    if name.startswith("t-"):
        path = tmp_path / name / "transforms.json"
        path.parent.mkdir()
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("name", list(CASES))
def test_generate_trajectory_gives_one_line_errors(tmp_path, name):
    text, needle = CASES[name]
    with pytest.raises(FileFormatError) as err:
        load_trajectory(_write(tmp_path, name, text), height=16, width=24)
    assert needle in _one_line(err.value)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("t-") or n in ("nested", "not-utf8")])
def test_data_import_gives_the_same_one_line_errors(tmp_path, name):
    text, needle = CASES[name]
    path = _write(tmp_path, name, text)
    if not name.startswith("t-"):
        path = path.rename(path.with_name("transforms.json"))
    (tmp_path / "depth").mkdir()
    with pytest.raises(FileFormatError) as err:
        import_clips(path, tmp_path / "out", depth_dir=tmp_path / "depth", progress=False)
    assert needle in _one_line(err.value)


def test_unreadable_and_oversized_files(tmp_path):
    from mirage.cameras import fields

    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(FileFormatError, match="must be a COLMAP model folder"):
        load_trajectory(folder)
    from mirage.cameras import read_transforms

    with pytest.raises(FileFormatError, match="must be a file"):
        read_transforms(folder)
    locked = tmp_path / "locked.json"
    locked.write_text(json.dumps(_ours()))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions do not lock the file")
        with pytest.raises(FileFormatError, match="unreadable"):
            load_trajectory(locked)
    finally:
        locked.chmod(0o644)
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(fields.MAX_TEXT_BYTES + 1)
    with pytest.raises(FileFormatError, match=f"at most {fields.MAX_TEXT_BYTES} bytes"):
        load_trajectory(big, height=16, width=24)


@pytest.mark.parametrize("line,needle", [
    ("x" + " 0" * 18, "timestamp must be an integer"),
    ("1" * 30 + " 0" * 18, "timestamp must be an integer"),
    ("5 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 one 0", "one"),
    ("5 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1", "19 columns"),
    ("5 -0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0", "fx > 0"),
    ("5 0.5 0.5 0.5 0.5 0 0 nan 0 0 0 0 1 0 0 0 0 1 0", "finite"),
])
def test_realestate10k_lines_give_one_line_errors(tmp_path, line, needle):
    path = tmp_path / "seq.txt"
    path.write_text("https://example.invalid\n" + line + "\n")
    with pytest.raises(MirageError) as err:
        load_trajectory(path, height=16, width=24)
    assert needle in _one_line(err.value)


def test_a_geometry_npz_that_claims_gigabytes_is_refused_before_allocating(tmp_path):
    """A 1 KiB archive whose `depths` header declares (10⁶, 10⁴, 10⁴) float32 is refused from
    its header; nothing of that size is allocated."""
    from tests.cameras.mutations import geometry_npz_bytes, with_member_header

    data = with_member_header(geometry_npz_bytes(), "depths", "(1000000, 10000, 10000)")
    (tmp_path / "g.npz").write_bytes(data)
    with pytest.raises(FileFormatError, match="declares shape"):
        load_trajectory(tmp_path / "g.npz")


@pytest.mark.parametrize("name", ["nested", "huge-int", "t-frame-null", "t-fl_x-str", "t-angle-zero", "height-str",
                                  "fps-nan"])
def test_both_commands_print_one_line_and_no_traceback(tmp_path, capsys, name):
    from mirage.cli import main

    text, needle = CASES[name]
    path = _write(tmp_path, name, text)
    assert main(["generate", "--trajectory", str(path), "--scene", "0", "--size", "16x24",
                 "--out", str(tmp_path / "gen")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirage: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "gen").exists()
    if name.startswith("t-") or name == "nested":
        camera_file = path if name.startswith("t-") else path.rename(path.with_name("transforms.json"))
        (tmp_path / "depth").mkdir()
        assert main(["data", "import", "--cameras", str(camera_file), "--out", str(tmp_path / "imp"),
                     "--depth-dir", str(tmp_path / "depth")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mirage: error: ") and err.count("\n") == 1 and needle in err, err
