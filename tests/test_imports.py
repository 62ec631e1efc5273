"""The package's imports run one way: no cycle, and no module imports one of a layer above its
own, the layers being the rows of the table in ``book/design.md`` (design: The layers). Every
import counts, inside a function too; one made for type hints only (under ``TYPE_CHECKING``)
does not, since it never runs."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pebench_core

PACKAGE = Path(pebench_core.__file__).resolve().parent
DESIGN = PACKAGE.parent / "book" / "design.md"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        tree = ast.parse(path.read_text())
        hints = {
            id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }  # fmt: skip
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in hints:
                continue
            if isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[m] |= {t for t in targets if t in mods and t != m}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _layers(mods: dict[str, Path]) -> dict[str, int]:
    """Module -> its row in the design's layer table (0 is the top row: the leaves)."""
    text = DESIGN.read_text()
    table = text[text.index("| layer | modules | holds |") :].split("\n\n")[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    layer: dict[str, int] = {}
    for k, row in enumerate(rows):
        cell = row.split("|")[2]
        cell = re.sub(r"\([^)]*\)", "", cell)  # a package's modules, in parentheses
        for name in re.findall(r"`([\w/]+)`", cell):
            prefix = "pebench_core." + name.rstrip("/").replace("/", ".")
            for m in mods:
                if m == prefix or m.startswith(prefix + "."):
                    layer[m] = k
    return layer


def test_the_import_graph_has_no_cycle():
    assert _cycles(_edges(_modules())) == []


def test_every_module_has_a_layer_and_imports_none_above_it():
    mods = _modules()
    layer = _layers(mods)
    missing = sorted(m for m in mods if m not in layer and m != "pebench_core")
    assert not missing, f"modules the design's layer table does not name: {missing}"
    up = sorted(
        f"{a} (row {layer[a]}) imports {b} (row {layer[b]})"
        for a, targets in _edges(mods).items() if a != "pebench_core"
        for b in targets if b != "pebench_core" and layer[b] > layer[a]
    )  # fmt: skip
    assert not up, "imports that run up the layers:\n" + "\n".join(up)


def test_the_checks_see_a_cycle_and_an_arrow_up():
    """The checks themselves: a cycle and an import up the table are found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    mods = _modules()
    layer = _layers(mods)
    assert layer["pebench_core.errors"] < layer["pebench_core.config"] < layer["pebench_core.stages.keys"]
    assert layer["pebench_core.analysis.stats"] < layer["pebench_core.run"] < layer["pebench_core.cli"]
