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


# A chapter's prose states no number a run produced unless a code cell computed it on the page
# (the chapter's generated Markdown, or a printed line): a duration or an approximate value
# typed into a markdown cell goes stale with the next run, the next machine or the next change.
# Settings, definitions, formulas and quotes of the paper are fine; math ($...$) and code
# spans are left out. The measured times live in the README's Budgets section.
_NUMBER = r"\d+(?:[.,]\d+)?(?:\s?[–-]\s?\d+(?:[.,]\d+)?)?"
_NUMBER_WORDS = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|ninety"
    r"|a\s+few|several|a\s+couple\s+of)"
)
_MEASURED = {
    "a duration": (
        rf"(?<![\w.]){_NUMBER}\s?(?:minutes?|mins?|seconds?|secs?|hours?|hrs?|s|h)\b"
        rf"|\b{_NUMBER_WORDS}[\s-]+(?:minutes?|mins?|seconds?|secs?|hours?)\b"
        r"|\b(?:quarter|half)\s+(?:of\s+)?an\s+hour\b"
    ),
    "an approximate value": r"(?:≈|~|\b(?:about|around|roughly|near|nearly|approximately|circa)\s)\s*[±+−-]?\s*\d*\.\d+",
}
_NOT_PROSE = r"\$\$.*?\$\$|\$[^$\n]+\$|```.*?```|`[^`\n]*`"


def measured_claims(markdown: str) -> list[str]:
    """Durations ("505 s", "twenty minutes", "a quarter of an hour") and approximate values
    ("≈ 0.79", "about 0.79") in markdown prose, outside math and code spans."""
    import re

    prose = re.sub(_NOT_PROSE, " ", markdown, flags=re.S)
    return [f"{what}: {m.group(0)!r}" for what, pattern in _MEASURED.items() for m in re.finditer(pattern, prose, flags=re.I)]


def test_the_measured_claims_check_catches_what_it_should_and_nothing_else():
    for text in (
        "the tiny model stayed near 0.68",
        "raised it to about 0.79 (`benchmarks/bench_injection.py`)",
        "finetune POPE ≈ 0.79",
        "the six injection stages took\n505 s in the benchmark (the default: 443–461 s)",
        "On a two-core laptop this takes about twenty minutes.",
        "the whole book must build on two CPU cores in a quarter of\nan hour",
        "each chapter in 12.3s, the stages in 10 min",
    ):
        assert measured_claims(text), text
    for text in (
        r"half weight at $\mathrm{NLL} = \ln 3/\beta \approx 11$ nats, about $-1.1$ at $\beta = 1$",
        "re-run with `unlearn.steps=80` or `-p seeds 0,1,2`; `about 0.5 s`",
        "A second `make book` reuses the cache; PEBench's 40 events, 200 people, about 5,000 images",
        "a 95 % interval; forget share 0.2; 64 px renders; ten keywords; 2 seeds",
    ):
        assert not measured_claims(text), text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_cells_state_no_measured_duration_or_approximate_value(path):
    nb = json.loads(path.read_text())
    found = [
        f"cell {c.get('id', k)}: {hit}"
        for k, c in enumerate(nb["cells"])
        if c["cell_type"] == "markdown"
        for hit in measured_claims("".join(c["source"]))
    ]
    assert not found, (
        f"{path.name} types measured results into its prose (compute them in a code cell, or state the "
        f"setting instead; measured times belong in the README's Budgets): {found}"
    )
