"""Import contracts: the layering of docs/design.md §8 and the project's house rules, checked in a fresh
interpreter each (a test process has already imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("diffusers", "transformers", "peft", "accelerate")  # the wan22 adapter's dependencies
OPTIONAL = ("cv2", "matplotlib", "fastapi", "uvicorn", "playwright", "selenium")


def imported_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def under(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_pipeline_imports_neither_world_nor_evaluation():
    """docs/design.md §3 / issue 18: the pipeline is driven by protocols; the world and the metrics sit
    above it (the oracle estimators live in mirage.world.oracle, the metrics in evaluation)."""
    modules = imported_after("import mirage.pipeline, mirage.pipeline.session_file, mirage.pipeline.inputs")
    assert under(modules, "mirage.world", "mirage.evaluation") == []


def test_pipeline_knows_backbones_only_by_their_protocol():
    """docs/design.md §4.1: the pipeline knows nothing about a backbone but the protocol in backbones.base."""
    modules = imported_after("import mirage.pipeline, mirage.pipeline.session_file")
    assert under(modules, "mirage.backbones") == ["mirage.backbones", "mirage.backbones.base"]


def test_memory_is_below_the_pipeline():
    """The memory kernels and stores import no pipeline, backbone, world or evaluation code."""
    modules = imported_after("import mirage.memory, mirage.memory.format")
    assert under(modules, "mirage.pipeline", "mirage.backbones", "mirage.world", "mirage.evaluation",
                 "mirage.train", "mirage.data", "mirage.cli", "mirage.explore") == []


def test_geometry_depends_on_errors_only():
    modules = imported_after("import mirage.geometry")
    assert under(modules, "mirage") == ["mirage", "mirage.errors", "mirage.geometry"]


PACKAGES = ("mirage", "mirage.cli", "mirage.pipeline", "mirage.memory", "mirage.world", "mirage.evaluation",
            "mirage.backbones", "mirage.backbones.wan22")


def test_heavy_dependencies_are_imported_inside_their_adapters():
    """docs/design.md §8: `import mirage` stays fast and never imports diffusers; no package imports
    the wan22 stack, nor an optional dependency, until the adapter that needs it runs. One
    interpreter imports the packages in turn; what each adds is charged to it."""
    code = f"""
import importlib, json, sys
added = {{}}
for name in {PACKAGES!r}:
    before = set(sys.modules)
    importlib.import_module(name)
    added[name] = sorted(set(sys.modules) - before)
print(json.dumps(added))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    added = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(added) == set(PACKAGES)
    for package, modules in added.items():
        assert under(modules, *HEAVY) == [], package
        if package != "mirage.backbones.wan22":  # its adapter may use what it needs, lazily or not
            assert under(modules, *OPTIONAL) == [], package


def test_importing_sets_no_global_state():
    """House rule: no state set at import time (torch defaults, random state, threads, sys.path)."""
    code = """
import sys, torch
before = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state().clone(),
          list(sys.path), torch.are_deterministic_algorithms_enabled())
import mirage, mirage.cli, mirage.pipeline, mirage.memory, mirage.world, mirage.evaluation, mirage.backbones
after = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state(), list(sys.path),
         torch.are_deterministic_algorithms_enabled())
assert before[0] == after[0] and before[1] == after[1] and torch.equal(before[2], after[2]), "torch state"
assert before[3] == after[3], "sys.path"
assert before[4] == after[4], "deterministic algorithms"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
