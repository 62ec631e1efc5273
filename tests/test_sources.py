"""The committed sources stay as the project keeps them: notebooks without outputs (papermill
writes the executed copies into book/), each with one cell tagged `parameters` that takes the
same `overrides` as `pebench --set`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_the_book_runs_each():
    from pebench_core.book import CHAPTERS

    assert NOTEBOOKS
    assert {c.source for c in CHAPTERS} == {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), f"{path.name} has outputs; clear them before committing"
    assert not any(c.get("execution_count") for c in code), f"{path.name} has execution counts"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: {len(params)} cells tagged 'parameters'"
    assert "overrides = []" in "".join(params[0]["source"])


def _design_sections() -> set[str]:
    text = (ROOT / "book" / "design.md").read_text(encoding="utf-8")
    return {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("##")}


def test_code_cites_the_design_page_by_sections_that_exist():
    """Comments cite book/design.md as "(design: Section; Other section)", never a file that
    is not in the repository."""
    import re

    sections = _design_sections()
    cited: dict[str, str] = {}
    for path in [*(ROOT / "pebench_core").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "DESIGN §" not in text, f"{path.relative_to(ROOT)} cites DESIGN §N, which is not in the repository"
        for m in re.finditer(r"design: ([^)\n]+)\)", text):
            for name in m.group(1).split("; "):
                cited[name.strip()] = str(path.relative_to(ROOT))
    assert cited, "no citation of the design page found"
    missing = {name: where for name, where in cited.items() if name not in sections}
    assert not missing, f"cited sections not in book/design.md: {missing}"
