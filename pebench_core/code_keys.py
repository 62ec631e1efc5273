"""What code a stage runs, as a hash: the part of a stage key that changes when its code does.

A cached stage must be rebuilt when the code that produced it changes, and only then.
Hashing whole module files does the first but not the second: a comment fixed in
``train.py`` re-trained every model. :func:`code_key` hashes instead the *functions a stage
runs*, found by following names from the stage's entry points through the package:

* each function or class contributes its syntax tree without docstrings (comments are
  not in the tree), so rewording a comment or a docstring, or reformatting, keeps the key;
* every name it uses that resolves to a function or class of ``pebench_core`` (as a global,
  an attribute of an imported package module, or an import inside the function) is
  followed, so editing a helper three calls down re-keys the stage;
* a module-level value it uses (a constant, a table, a registry) contributes its content,
  and the package functions that content holds are followed in turn;
* anything outside the package (torch, transformers) is not hashed, and is named by the name
  the code uses for it rather than by what that name resolves to (``tqdm.auto.tqdm`` is
  another class in a notebook kernel): its version is part of every result row's provenance.

A module-level cache that a process fills as it runs is not code: mark it with
:func:`state` and it is left out (else the key would depend on what ran before).
A registry that would pull every method into every run can be named ``opaque``: its
content is then left out, and the caller adds the one entry the stage uses (an unlearning
run depends on its own loss only).

The rule this relies on, for contributors: stage code reaches other package code **by
name** (a call, an attribute of an imported module, a registry value), never by building
a name at run time (``getattr(module, "f" + x)``), which no static reading can follow.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Iterable

PACKAGE = __name__.rpartition(".")[0]


def code_key(*entries: Any, opaque: Iterable[Any] = (), length: int = 12) -> str:
    """A short hash of the code reachable from ``entries`` (functions, classes or values).

    ``opaque`` names module-level values (e.g. a registry dict) whose content is left out.
    """
    opaque = tuple(opaque)
    memo = (tuple(map(id, entries)), tuple(map(id, opaque)), length)
    if memo not in _MEMO:  # the objects are kept with the key, so their ids stay theirs
        parts = _Walk(opaque).run(entries)
        blob = json.dumps(sorted(parts.items()), separators=(",", ":"))
        _MEMO[memo] = (hashlib.sha256(blob.encode()).hexdigest()[:length], entries, opaque)
    return _MEMO[memo][0]


def reachable(*entries: Any, opaque: Iterable[Any] = ()) -> list[str]:
    """The qualified names of every package function and class ``entries`` reach, sorted:
    what :func:`code_key` hashes (for a reader who wants to see why a stage re-ran)."""
    return sorted(_Walk(tuple(opaque)).run(entries))


def state(obj: Any) -> Any:
    """Mark a module-level value as run-time state (a cache a process fills), not code:
    :func:`code_key` leaves it out. Returns ``obj``, so ``_CACHE = state({})`` reads well."""
    _STATE.add(id(obj))
    return obj


_MEMO: dict[tuple, tuple[str, tuple, tuple]] = {}
_STATE: set[int] = set()


def _in_package(obj: Any) -> bool:
    mod = getattr(obj, "__module__", None) if not isinstance(obj, types.ModuleType) else obj.__name__
    return isinstance(mod, str) and (mod == PACKAGE or mod.startswith(PACKAGE + "."))


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node):
        self.generic_visit(node)
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


@functools.lru_cache(maxsize=None)
def _module_defs(module: str) -> dict[str, ast.AST]:
    """Every top-level function and class of a module, and the methods of its classes, by
    qualified name, docstrings stripped (one parse per module: much faster than
    ``inspect.getsource`` per object; stripped once here rather than on a deep copy per
    object, which took half of a process's key time). The trees are only read, never changed."""
    tree = _StripDocstrings().visit(ast.parse(Path(inspect.getfile(sys.modules[module])).read_text()))
    defs: dict[str, ast.AST] = {}

    def visit(body: list, prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[prefix + node.name] = node
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return defs


def _source_tree(obj: Any) -> tuple[str, ast.AST | None]:
    node = _module_defs(obj.__module__).get(obj.__qualname__)
    if node is not None:
        return "", node
    src = textwrap.dedent(inspect.getsource(obj))
    try:
        return src, _StripDocstrings().visit(ast.parse(src))
    except SyntaxError:  # a lambda inside a larger expression: its lines do not parse alone
        return src, None


@functools.lru_cache(maxsize=None)
def _parsed(obj: Any) -> tuple[str, tuple[tuple[str, ...], ...], tuple[tuple[str, str, str | None], ...]]:
    """``(tree dump, name chains used, imports made inside)`` of one function or class."""
    src, tree = _source_tree(obj)
    if tree is None:
        return src, tuple((n,) for n in sorted(obj.__code__.co_names)), ()
    chains: set[tuple[str, ...]] = set()
    imports: set[tuple[str, str, str | None]] = set()  # (local name, module, attribute or None)
    package = sys.modules[obj.__module__].__package__ or ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            cur: ast.AST = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chains.add((cur.id, *reversed(chain)))
        elif isinstance(node, ast.Name):
            chains.add((node.id,))
        elif isinstance(node, ast.ImportFrom):
            module = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else (node.module or "")
            )
            for a in node.names:
                imports.add((a.asname or a.name, module, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                imports.add((a.asname, a.name, None) if a.asname else (a.name.partition(".")[0], a.name.partition(".")[0], None))
    return ast.dump(tree, annotate_fields=False), tuple(sorted(chains)), tuple(sorted(imports))


_NAMED = object()  # a name outside the package, hashed by the name the code uses


@functools.lru_cache(maxsize=None)
def _uses(obj: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``(tree dump, what it uses)`` of a package function or class: each name chain it uses
    that reaches package code or a module-level value, as ``(label, value)``, or
    ``(label, _NAMED)`` for an attribute of an outside module (``torch.where``). Resolved
    once per object per process: every stage key walks much the same code, and rebuilding
    each function's namespace on every walk was most of a process's key time."""
    dump, chains, imports = _parsed(obj)
    namespace = dict(vars(sys.modules[obj.__module__]))
    for local, module, attr in imports:
        if module == PACKAGE or module.startswith(PACKAGE + "."):
            mod = importlib.import_module(module)
            if attr is None:
                namespace[local] = mod
            elif hasattr(mod, attr):
                namespace[local] = getattr(mod, attr)
            else:  # a submodule imported by name: ``from . import train``
                try:
                    namespace[local] = importlib.import_module(f"{module}.{attr}")
                except ImportError:  # a name the module lacks: the call itself would fail
                    continue
    uses: list[tuple[str, Any]] = []
    for chain in chains:
        if chain[0] not in namespace or chain[0].startswith("__"):  # a local, a builtin, ``__file__``
            continue
        target, label = namespace[chain[0]], chain[0]
        for attr in chain[1:]:  # ``module.attr``, followed through package modules only
            if not (isinstance(target, types.ModuleType) and _in_package(target)) or not hasattr(target, attr):
                break
            target, label = getattr(target, attr), f"{label}.{attr}"
        if isinstance(target, types.ModuleType):
            if not _in_package(target) and len(chain) > 1:
                uses.append((f"{label}.{chain[1]}", _NAMED))  # torch.where: named, not hashed
            continue
        uses.append((label, target))
    return dump, tuple(uses)


class _Walk:
    def __init__(self, opaque: tuple):
        self.opaque = {id(o) for o in opaque}
        self.parts: dict[str, str] = {}

    def run(self, entries: Iterable[Any]) -> dict[str, str]:
        for e in entries:
            self.value(e, "entry")
        return self.parts

    def code(self, obj: Any) -> str:
        """Add a package function or class (and what it uses); returns its qualified name."""
        obj = inspect.unwrap(obj) if callable(obj) and not isinstance(obj, type) else obj
        name = _qualname(obj)
        if name in self.parts:
            return name
        dump, uses = _uses(obj)
        self.parts[name] = dump  # set before following, so recursion ends
        used = [label if target is _NAMED else f"{label}={self.value(target, label)}" for label, target in uses]
        self.parts[name] = dump + "|" + ";".join(sorted(used))
        return name

    def value(self, obj: Any, label: str, depth: int = 0) -> str:
        """A stable token for a value a function uses (package code is followed)."""
        if id(obj) in self.opaque:
            return f"<opaque {label}>"
        if id(obj) in _STATE:
            return f"<state {label}>"
        if depth > 6:
            return "<deep>"
        if isinstance(obj, (str, int, float, bool, bytes, type(None))):
            return repr(obj)
        if isinstance(obj, enum.Enum):
            return f"{type(obj).__qualname__}.{obj.name}"
        if isinstance(obj, (types.FunctionType, type)) or (callable(obj) and hasattr(obj, "__wrapped__")):
            base = inspect.unwrap(obj) if not isinstance(obj, type) else obj
            if getattr(base, "__module__", None) == __name__:  # this walker is not stage code
                return f"<{__name__}.{base.__qualname__}>"
            if _in_package(base):
                return self.code(base)
            # Outside the package: named by the name the code uses, not by what it resolves to.
            # ``tqdm.auto.tqdm`` is one class in a terminal and another in a notebook kernel, and
            # a key that followed it would make every chapter rebuild what ``pebench run`` built.
            return f"<external {label}>"
        if isinstance(obj, functools.partial):
            return (
                f"partial({self.value(obj.func, label, depth + 1)},{self.value(obj.args, label, depth + 1)},"
                f"{self.value(obj.keywords, label, depth + 1)})"
            )
        if isinstance(obj, dict):
            return (
                "{"
                + ",".join(
                    f"{self.value(k, label, depth + 1)}:{self.value(v, label, depth + 1)}"
                    for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))
                )
                + "}"
            )
        if isinstance(obj, (list, tuple)):
            return "[" + ",".join(self.value(v, label, depth + 1) for v in obj) + "]"
        if isinstance(obj, (set, frozenset)):
            return "{" + ",".join(sorted(self.value(v, label, depth + 1) for v in obj)) + "}"
        if dataclasses.is_dataclass(obj):
            cls = self.value(type(obj), label, depth + 1)
            return (
                cls
                + "("
                + ",".join(f"{f.name}={self.value(getattr(obj, f.name), label, depth + 1)}" for f in dataclasses.fields(obj))
                + ")"
            )
        if isinstance(obj, re.Pattern):
            return repr(obj)
        if isinstance(obj, Path):  # a location (the checkout's root), not code
            return "<path>"
        if _in_package(type(obj)):  # an instance of a package class: its class's code
            return self.value(type(obj), label, depth + 1)
        return f"<external {label}>"
