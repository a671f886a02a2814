from __future__ import annotations

from mirage.cli import main


def test_data_build_errors_name_the_argument(tmp_path, capsys):
    assert main(["data", "build", "--clips", str(tmp_path / "nope"), "--weights", "w", "--out", str(tmp_path / "o")]) == 2
    assert "`--clips`" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "build", "--clips", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no clip" in capsys.readouterr().err


def test_data_build_needs_wan_weights(tmp_path, capsys):
    from tests.train.wan_standin import render_clips

    render_clips(tmp_path / "clips", count=1, frames=9, size=32)
    assert main(["data", "build", "--clips", str(tmp_path / "clips"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "`--weights`" in err and "transformer/" in err
    assert not (tmp_path / "o").exists()
