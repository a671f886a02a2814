import json

import pytest

from mirage.bench.memory import MemoryBenchConfig, format_table, run_memory_bench
from mirage.cli import main
from mirage.errors import ConfigError


def test_small_run_reports_every_figure():
    config = MemoryBenchConfig(height=32, width=64, chunks=3, channels=8, vae=False, repeats=1,
                               period=40)
    result = run_memory_bench(config, progress=False)
    rows, s = result["chunks"], result["summary"]
    assert [r["chunk"] for r in rows] == [0, 1, 2]
    assert all(r["kernel_matches_sort"] for r in rows)
    # Bytes: the RGB cache stores one point per pixel, the latent ones one per latent cell.
    assert all(r["bytes_rgb"] > r["bytes_latent_append"] >= r["bytes_latent_voxel"] for r in rows)
    assert [r["bytes_latent_append"] for r in rows] == sorted(r["bytes_latent_append"] for r in rows)
    assert s["bytes_rgb_over_latent_voxel"] > 10
    assert s["throughput_mpoint_proj_per_s"] > 0
    assert "vae_encode_s_per_chunk" in s and s["vae_encode_s_per_chunk"] is None
    table = format_table(result)
    assert "kernel vs sort-per-view" in table and "bytes rgb / latent-voxel" in table
    json.dumps(result)  # JSON-ready


def test_latent_only_run():
    config = MemoryBenchConfig(height=32, width=64, chunks=2, channels=4, rgb=False, repeats=1)
    result = run_memory_bench(config, progress=False)
    assert "bytes_rgb" not in result["chunks"][0]
    assert "bytes_rgb_over_latent_voxel" not in result["summary"]
    assert "bytes rgb" not in format_table(result)


def test_cli_writes_json_and_table(tmp_path, capsys):
    code = main(["bench", "memory", "--size", "32x64", "--chunks", "2", "--channels", "4",
                 "--no-vae", "--repeats", "1", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "memory_bench.json").read_text())
    assert data["config"]["latent_hw"] == [2, 4]
    assert "latent read per chunk" in capsys.readouterr().out


@pytest.mark.parametrize("size", ["30x64", "0", "abc", "16x16x16"])
def test_bad_sizes_are_one_line_errors(size, capsys):
    assert main(["bench", "memory", "--size", size, "--no-vae"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirage: error:") and "size" in err


def test_config_validation():
    with pytest.raises(ConfigError, match="chunks"):
        MemoryBenchConfig(chunks=0)
