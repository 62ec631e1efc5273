"""Fast checks of the book's configuration and hand-written pages (no notebook execution).

These catch the mistakes that would otherwise only show up as a failed `jupyter-book build -W`
at the end of a long `make book`: a YAML typo, a page missing from book/, a citation key
that is not in references.bib, a glossary term that does not exist.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BIB = BOOK / "references.bib"

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ps}`a` ... (MyST role syntax)
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
# {term}`text <Target>` or {term}`Target`
TERM_ROLE = re.compile(r"\{term\}`([^`]+)`")


def _load_yaml(name: str):
    path = ROOT / name
    assert path.is_file(), f"{name} is missing at the repository root"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} must hold a mapping at the top level"
    return data


def _toc_files(node) -> list[str]:
    """Every `file:` entry of a sphinx-external-toc tree (root excluded)."""
    out: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            out.append(str(node["file"]))
        for value in node.values():
            if isinstance(value, (dict, list)):
                out.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_toc_files(item))
    return out


def _bib_keys() -> list[str]:
    text = BIB.read_text(encoding="utf-8")
    return re.findall(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", text, flags=re.MULTILINE)


def _book_markdown() -> list[Path]:
    return sorted(BOOK.glob("*.md"))


def _notebook_markdown() -> list[tuple[str, str]]:
    """(name, markdown source) of every markdown cell of the source notebooks, if any."""
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        data = json.loads(nb.read_text(encoding="utf-8"))
        for i, cell in enumerate(data.get("cells", [])):
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                out.append((f"{nb.name} cell {i}", "".join(src) if isinstance(src, list) else src))
    return out


def _texts() -> list[tuple[str, str]]:
    pages = [(p.name, p.read_text(encoding="utf-8")) for p in _book_markdown()]
    return pages + _notebook_markdown()


# --------------------------------------------------------------------------- config


def test_config_parses_and_builds_offline():
    cfg = _load_yaml("_config.yml")
    assert cfg.get("title"), "_config.yml needs a title"
    assert cfg.get("execute", {}).get("execute_notebooks") == "off", (
        "chapters are executed by papermill beforehand; the book build must not execute them"
    )
    assert cfg.get("only_build_toc_files") is True
    assert "book/references.bib" in cfg.get("bibtex_bibfiles", [])
    excluded = set(cfg.get("exclude_patterns", []))
    for pattern in (".venv", "runs", "notebooks", "_build", "tests", "pebench_core"):
        assert pattern in excluded, f"_config.yml exclude_patterns should contain {pattern!r}"
    extensions = set(cfg.get("parse", {}).get("myst_enable_extensions", []))
    assert {"dollarmath", "amsmath", "colon_fence", "deflist"} <= extensions


def test_toc_parses_and_hand_written_pages_exist():
    toc = _load_yaml("_toc.yml")
    assert toc.get("format") == "jb-book"
    assert toc.get("root") == "book/intro"
    files = [toc["root"], *_toc_files(toc)]
    assert len(files) == len(set(files)), f"_toc.yml lists a file twice: {files}"
    for entry in files:
        assert not entry.endswith((".md", ".ipynb")), f"_toc.yml entries carry no extension: {entry}"
        if entry.startswith("book/chapters/"):
            continue  # executed notebooks, written by papermill (`pebench book`)
        assert entry.startswith("book/"), f"_toc.yml entry outside book/: {entry}"
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


def test_toc_ends_with_glossary_and_bibliography():
    toc = _load_yaml("_toc.yml")
    files = _toc_files(toc)
    assert "book/glossary" in files and "book/bibliography" in files
    assert "{bibliography}" in (BOOK / "bibliography.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- bibliography


def test_bib_has_entries_and_no_duplicate_keys():
    keys = _bib_keys()
    assert keys, "references.bib holds no entries"
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert not dupes, f"duplicate BibTeX keys in references.bib: {dupes}"


def test_bib_is_balanced():
    text = BIB.read_text(encoding="utf-8")
    # strip comment lines (%), then braces must balance entry by entry
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("%"))
    for chunk in re.split(r"(?=^\s*@)", body, flags=re.MULTILINE):
        if chunk.strip().startswith("@"):
            assert chunk.count("{") == chunk.count("}"), f"unbalanced braces in entry: {chunk[:60]!r}"


def test_every_cited_key_is_in_the_bib():
    keys = set(_bib_keys())
    missing = []
    for where, text in _texts():
        for group in CITE_ROLE.findall(text):
            for key in (k.strip() for k in group.split(",")):
                if key and key not in keys:
                    missing.append(f"{where}: {key}")
    assert not missing, "citation keys not in book/references.bib:\n" + "\n".join(missing)


def test_the_paper_is_cited_from_the_intro():
    assert "xu2025pebench" in (BOOK / "intro.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- glossary


def _glossary_terms() -> set[str]:
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    match = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.DOTALL)
    assert match, "book/glossary.md has no {glossary} block"
    terms = set()
    for line in match.group(1).splitlines():
        if line and not line[0].isspace() and not line.startswith(":"):
            terms.add(line.strip().lower())
    return terms


def test_glossary_terms_are_unique_and_cover_the_basics():
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.DOTALL).group(1)
    heads = [ln.strip().lower() for ln in block.splitlines() if ln and not ln[0].isspace() and not ln.startswith(":")]
    assert len(heads) == len(set(heads)), "a glossary term is defined twice"
    for term in (
        "machine unlearning",
        "forget set",
        "retain set",
        "efficacy",
        "generality",
        "scope",
        "cross-concept interference",
        "ga",
        "gd",
        "kl",
        "po",
        "dpo",
        "npo",
        "bgd",
        "lora",
        "reference model",
        "config hash",
    ):
        assert term in heads, f"glossary is missing {term!r}"


def test_every_term_reference_resolves():
    terms = _glossary_terms()
    missing = []
    for where, text in _texts():
        for ref in TERM_ROLE.findall(text):
            m = re.match(r".*<([^>]+)>\s*$", ref, flags=re.DOTALL)
            target = (m.group(1) if m else ref).strip().lower()
            if target not in terms:
                missing.append(f"{where}: {target}")
    assert not missing, "{term} references with no glossary entry:\n" + "\n".join(missing)


# --------------------------------------------------------------------------- make / CI / README


def test_makefile_has_the_documented_targets():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z_][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))
    for target in ("venv", "world", "run", "book", "test", "clean"):
        assert target in targets, f"Makefile has no '{target}' target"
    assert "HF_HUB_OFFLINE" in text
    assert "torch==2.13.0" in text, "the Makefile must pin torch before installing the rest"


def test_ci_runs_make_test():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    assert text.startswith("#!"), ".ci/run needs a shebang"
    assert re.search(r"^\s*make test\s*$", text, flags=re.MULTILINE), ".ci/run must call `make test`"


def test_ci_script_is_executable():
    assert os.access(ROOT / ".ci" / "run", os.X_OK), ".ci/run must be executable (chmod +x)"


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make book" in text and "make test" in text
    assert "_build/html" in text


def test_environment_yml_parses():
    env = _load_yaml("environment.yml")
    assert env.get("name") == "pebench-book"
    deps = env.get("dependencies", [])
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip[0] == "torch==2.13.0"
