"""Seeded mutation tests: thousands of malformed camera and trajectory files per format, each
either a valid load or a project error, never anything else, under a 4 GiB address-space cap.

Each format runs in its own interpreter (``tests/cameras/fuzz_worker.py``) so that the cap
applies to it alone; the worker stops at the first case that raises anything but a
:class:`~mirage.errors.MirageError`, or whose readers (the `generate --trajectory` path and the
`data import` path) disagree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = {"ours": 3000, "transforms": 3000, "realestate10k": 3000, "geometry.npz": 3000, "colmap": 1500,
         "colmap-text": 1500}


@pytest.mark.parametrize("fmt", list(CASES))
def test_every_mutated_file_loads_or_is_refused_with_a_project_error(fmt):
    done = subprocess.run([sys.executable, "-m", "tests.cameras.fuzz_worker", fmt, str(CASES[fmt]), "2026"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    print(fmt, outcomes)
    assert outcomes["cases"] == CASES[fmt] == outcomes["loaded"] + outcomes["refused"]
    # both outcomes are exercised: the mutations reach past the first check, and most break the file
    assert outcomes["refused"] > CASES[fmt] // 10 and outcomes["loaded"] > CASES[fmt] // 100
