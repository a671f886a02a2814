"""Import contracts: the layering of docs/design.md §8 and the project's house rules, checked in a fresh
interpreter each (a test process has already imported everything)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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


def test_data_reads_cameras_without_the_world_and_knows_no_training():
    """`data` sits below `train`: it builds samples through the pipeline's public API and reads
    camera files through `mirage.cameras`, never the procedural world, the trainers or the CLI."""
    modules = imported_after("import mirage.data, mirage.data.importers, mirage.data.import_sources, "
                             "mirage.data.clips, mirage.data.samples, mirage.data.build, mirage.data.shards")
    assert under(modules, "mirage.world", "mirage.train", "mirage.cli", "mirage.explore", "mirage.evaluation") == []


def test_train_sits_above_data_and_below_the_cli():
    modules = imported_after("import mirage.train, mirage.train.tiny, mirage.train.tiny_data, mirage.train.wan, "
                             "mirage.train.model_card")
    assert under(modules, "mirage.cli", "mirage.explore", "mirage.evaluation") == []


def test_camera_files_depend_on_geometry_errors_and_files_only():
    modules = imported_after("import mirage.cameras")
    assert sorted(set(under(modules, "mirage")) - set(under(modules, "mirage.cameras"))) == [
        "mirage", "mirage.errors", "mirage.files", "mirage.geometry"]


def test_a_world_scene_is_a_start_scene():
    """The pipeline types a start's scene by a protocol of its own, which the world's Scene meets."""
    from mirage.pipeline.inputs import StartScene
    from mirage.world import generate_scene

    assert isinstance(generate_scene("room", 0), StartScene) and not isinstance(object(), StartScene)


# -- the import graph between packages --------------------------------------------------------
SRC = Path(__file__).resolve().parents[1] / "src" / "mirage"


def _node(module: str) -> str | None:
    """The package a module belongs to: ``mirage.X`` for ``mirage.X.anything`` (a top-level
    module such as ``mirage.geometry`` is its own node); None outside mirage or for the root."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mirage" and len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    """{package: the packages its modules import}, from every import statement in src/mirage,
    those inside functions included (a lazy import is still a dependency)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = ("mirage",) + path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts[:-1])
        source = _node(module)
        if source is None:
            continue
        edges = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names] if base == "mirage" else [base]
            else:
                continue
            for target in targets:
                t = _node(target)
                if t is not None and t != source:
                    edges.add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_cycle_between_packages():
    graph = import_graph()
    assert {"mirage.pipeline", "mirage.memory", "mirage.data", "mirage.train", "mirage.cameras"} <= set(graph)
    assert "mirage.world" in graph["mirage.cli"] and "mirage.pipeline" in graph["mirage.data"]  # it sees edges
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_train_uses_the_pipeline_through_its_public_api():
    """No module of `train` or `data` imports a pipeline submodule: only ``mirage.pipeline``."""
    reach_ins = []
    for package in ("train", "data"):
        for path in (SRC / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                reach_ins += [f"{path.name}: {n}" for n in names if n.startswith("mirage.pipeline.")]
    assert reach_ins == []
