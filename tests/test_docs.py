"""The documents in the repository stay true to it: docs/results.md is what docs/make_results.py
generates from the committed benchmark JSON, and every section of docs/design.md that the code
cites exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make_results():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "docs" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_page_equals_what_the_script_generates_from_the_json():
    make_results = _make_results()
    assert (ROOT / "docs" / "results.md").read_text() == make_results.render(), (
        "docs/results.md is stale: run `python docs/make_results.py`")
    assert make_results.main(["--check"]) == 0


def test_results_page_reads_the_json_it_names():
    text = (ROOT / "docs" / "results.md").read_text()
    named = set(re.findall(r"\(\.\./benchmarks/results/([^)]+\.json)\)", text))
    assert "eval-quick/metrics.json" in named and len(named) >= 10
    assert all((ROOT / "benchmarks" / "results" / rel).is_file() for rel in named)


def _cited_sections() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for folder in ("src", "tests", "benchmarks", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md") and path.is_file():
                for number in re.findall(r"design\.md\s+§(\d+(?:\.\d+)*)", path.read_text()):
                    cited.setdefault(number, []).append(str(path.relative_to(ROOT)))
    return cited


def test_every_cited_design_section_exists():
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)*)\.? ", (ROOT / "docs" / "design.md").read_text(), re.M))
    cited = _cited_sections()
    assert len(cited) >= 10  # the code does cite the design
    missing = {n: files for n, files in cited.items() if n not in headings}
    assert not missing, f"docs/design.md has no section {sorted(missing)}: cited in {missing}"


def test_no_reference_to_a_design_document_outside_the_repository():
    stale = [str(p.relative_to(ROOT)) for folder in ("src", "tests", "benchmarks")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md") and p.is_file()
             and p.name != "test_docs.py" and re.search("DESIGN " + "§|STYLE rule", p.read_text())]
    assert stale == []
