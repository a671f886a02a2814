"""benchmarks/wan_chunk.py: arguments and the full 5B configuration (meta device, no run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "wan_chunk.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("wan_chunk", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_builds_the_5b_config(bench, capsys):
    assert bench.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "base DiT 5.000 B params" in out and "704x1280" in out
    args = bench.parse_args(["--cpu-small"])
    assert args.size == (64, 128) and args.steps == 2


@pytest.mark.parametrize("argv, message", [(["--frames", "34"], "4·k\\+1"), (["--size", "700x1280"], "divisible by 32")])
def test_bad_arguments(bench, capsys, argv, message):
    import re

    assert bench.main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
