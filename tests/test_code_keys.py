"""Stage keys cover the code a stage runs: an edited comment or an unrelated function keeps
the cache; an edited loss, training helper or data loader re-keys exactly the stages that
run it. Each case edits a copy of the package and computes the keys in a fresh process."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pebench_core
from pebench_core import code_keys, stages

PACKAGE = Path(pebench_core.__file__).resolve().parent

KEYS = """
import json, sys

roots = json.loads(sys.argv[1])
for root in roots:  # each copy imported afresh; torch and the rest stay loaded
    for name in [m for m in sys.modules if m == "pebench_core" or m.startswith("pebench_core.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    from pebench_core import methods
    from pebench_core import stages as P
    from pebench_core.config import load_config
    cfg = load_config("smoke", seed=0)
    keys = {
        "world": P.world_key(cfg),
        "base": P.model_key(cfg, "base"),
        "finetune": P.model_key(cfg, "finetune"),
        "goal": P.model_key(cfg, "goal", "person"),
        "eval": P.eval_key(cfg, "finetune", "person"),
        "robust": P.robust_key(cfg, "finetune", "person"),
    }
    for m in methods.BUILT_IN:  # every method's unlearning run, on its first target
        keys["u:" + m] = P.unlearn_key(cfg, m, methods.get(m).targets[0])
    print(json.dumps(keys))
    sys.path.remove(root)
"""


def _keys_of(roots: list[Path]) -> list[dict[str, str]]:
    """The stage keys of each copy of the package, computed in one fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [sys.executable, "-c", KEYS, json.dumps([str(r) for r in roots])],
        cwd=roots[0].parent, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(roots), out.stdout[-3000:]
    return [json.loads(line) for line in lines]


def _keys(root: Path) -> dict[str, str]:
    return _keys_of([root])[0]


def _function(path: Path, name: str) -> ast.FunctionDef:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name} in {path}")


def _insert(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    indent = lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())]
    lines.insert(line - 1, indent + text + "\n")
    path.write_text("".join(lines))


def edit_comment(path: Path, name: str) -> None:
    """A new comment line and a reworded docstring: the syntax tree is unchanged."""
    fn = _function(path, name)
    _insert(path, fn.body[-1].lineno, "# a comment a contributor fixed")
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        lines = path.read_text().splitlines(keepends=True)
        lines[first.lineno - 1] = lines[first.lineno - 1].replace('"""', '"""Reworded. ', 1)
        path.write_text("".join(lines))


def edit_code(path: Path, name: str) -> None:
    """A real change to what the function runs."""
    fn = _function(path, name)
    _insert(path, fn.body[-1].lineno, "_edited = 0")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One copy of the package that every case starts from (the checkout may be edited meanwhile)."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(PACKAGE, root / "pebench_core", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def baseline(pristine) -> dict[str, str]:
    return _keys(pristine)


@pytest.fixture
def edited(pristine, tmp_path):
    def make(edits, folder: str = "copy") -> dict[str, str]:
        root = tmp_path / folder
        shutil.copytree(pristine / "pebench_core", root / "pebench_core", ignore=shutil.ignore_patterns("__pycache__"))
        for edit, module, name in edits:
            edit(root / "pebench_core" / module, name)
        return _keys(root)

    return make


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if a[k] != b[k]}


def test_a_comment_or_an_unrelated_function_keeps_every_key(baseline, edited):
    keys = edited(
        [
            (edit_comment, "trainer.py", "train_model"),
            (edit_comment, "methods/ga.py", "ga_loss"),
            (edit_code, "run.py", "answers_side_by_side"),
            (
                edit_code,
                "plots.py",
                next(n.name for n in ast.parse((PACKAGE / "plots.py").read_text()).body if isinstance(n, ast.FunctionDef)),
            ),
        ]
    )
    assert _changed(baseline, keys) == set()


def test_an_edited_loss_reruns_its_own_method_only(baseline, edited):
    keys = edited([(edit_code, "methods/ga.py", "ga_loss")])
    assert _changed(baseline, keys) == {"u:ga"}


def _top_functions(path: Path) -> list[str]:
    return [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)]


def _each_edited(pristine: Path, tmp_path: Path, cases: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """Per (module, function): the keys of a copy of the package with that one function edited."""
    roots = []
    for k, (module, name) in enumerate(cases):
        root = tmp_path / f"edit{k}"
        shutil.copytree(pristine / "pebench_core", root / "pebench_core", ignore=shutil.ignore_patterns("__pycache__"))
        edit_code(root / "pebench_core" / module, name)
        roots.append(root)
    return dict(zip(cases, _keys_of(roots), strict=True))


def test_every_edited_probe_function_reruns_the_probe_stages_only(pristine, baseline, tmp_path):
    """Every function of every probe module (a runner, its asks, its metric names, the pure
    parts they call) is in the probe stage's key, and in no other."""
    folder = PACKAGE / "probes"
    cases = [
        (f"probes/{f.name}", name) for f in sorted(folder.glob("*.py")) if f.name != "registry.py" for name in _top_functions(f)
    ]
    assert {"relearn_probe", "mia_probe", "quant_probe", "linear_probe", "probe_features", "min_k_scores"} <= {
        n for _, n in cases
    }
    for case, keys in _each_edited(pristine, tmp_path, cases).items():
        assert _changed(baseline, keys) == {"robust"}, case


def test_an_edited_training_helper_or_data_loader_retrains(baseline, edited):
    for edit in [("trainer.py", "train_model"), ("data.py", "training_examples")]:
        keys = edited([(edit_code, *edit)], folder=edit[1])
        # base does not read the training examples of the finetune stage, but it runs the
        # same stage code (get_model -> inject), so it is re-keyed too: the conservative side.
        units = {k for k in baseline if k.startswith("u:")}
        assert _changed(baseline, keys) == {"base", "finetune", "goal", "eval", "robust", *units}, edit


def test_a_key_does_not_depend_on_what_ran_before():
    """Caches a process fills (code_keys.state) and the walker's own memo are not code."""
    from pebench_core.config import load_config

    cfg = load_config("smoke", seed=0)
    first = code_keys.code_key(stages.get_unlearned)
    stages.world_key(cfg), stages.eval_key(cfg, "finetune", "person")
    assert code_keys.code_key(stages.get_unlearned, length=16)[:12] == first


def test_reachable_follows_calls_across_modules_and_stops_at_the_package():
    names = code_keys.reachable(stages.get_model)
    assert "pebench_core.trainer.train_model" in names  # pipeline -> train.inject -> trainer
    assert "pebench_core.data.training_examples" in names
    assert not any(n.startswith("pebench_core.plots.") for n in names)
    assert not any(n.startswith("torch") for n in names)


def test_a_key_does_not_depend_on_what_an_outside_name_resolves_to(monkeypatch):
    """In a notebook kernel ``tqdm.auto.tqdm`` is the notebook progress bar, in a terminal the
    plain one: the models ``pebench run`` built must be the ones a chapter finds."""
    from pebench_core import trainer
    from pebench_core.config import load_config

    cfg = load_config("smoke", seed=0)
    terminal = stages.model_key(cfg, "finetune")

    class NotebookBar:  # what tqdm.auto gives inside a kernel, as far as a key can tell
        pass

    monkeypatch.setattr(trainer, "tqdm", NotebookBar)
    code_keys._MEMO.clear()
    try:
        assert stages.model_key(cfg, "finetune") == terminal
    finally:
        code_keys._MEMO.clear()


def test_every_edited_loss_reruns_its_own_methods_only(pristine, baseline, tmp_path):
    """Each method's objective, in its own module, is in its own unlearning runs' keys and in no
    other stage's; so is a finish (task vectors negate what they trained)."""
    from pebench_core import methods

    owners: dict[tuple[str, str], set[str]] = {}
    for m in methods.BUILT_IN:
        spec = methods.get(m)
        for fn in (spec.fn, spec.finish):
            if fn is not None:
                where = "methods/" + fn.__module__.rsplit(".", 1)[-1] + ".py"
                owners.setdefault((where, fn.__name__), set()).add("u:" + m)
    # both BGD variants run bgd_loss, which weighs the concepts with bgd_weights
    for shared in ("bgd_loss", "bgd_weights"):
        owners[("methods/bgd.py", shared)] = owners[("methods/bgd.py", "gd_bgd_loss")] | owners[("methods/bgd.py", "kl_bgd_loss")]
    cases = sorted(owners)
    assert len(cases) >= 16 and ("methods/task_vector.py", "negate") in cases
    for case, keys in _each_edited(pristine, tmp_path, cases).items():
        assert _changed(baseline, keys) == owners[case], case


def test_a_method_setting_reruns_its_own_methods_only():
    """A method's own setting is in its runs' keys only: SimNPO's margin re-runs SimNPO, BGD's
    bound both BGD variants, and nothing else; a default spelled out changes no key."""
    from pebench_core import methods
    from pebench_core.config import load_config

    def keys(*over):
        cfg = load_config("smoke", seed=0, overrides=list(over))
        return {m: stages.unlearn_key(cfg, m, methods.get(m).targets[0]) for m in methods.BUILT_IN}

    base = keys()
    assert keys("unlearn.simnpo.gamma=0") == base
    for setting, owners in (("unlearn.simnpo.gamma=1", {"simnpo"}), ("unlearn.bgd.max_weight=2", {"gd+bgd", "kl+bgd"}),
                            ("unlearn.rmu.depth=1", {"rmu"}), ("unlearn.beta=0.5", set(base))):  # fmt: skip
        changed = keys(setting)
        assert {m for m in base if changed[m] != base[m]} == owners, setting


def test_every_edited_metric_reruns_what_evaluates_and_no_model(pristine, baseline, tmp_path):
    """Every metric function and registry entry is in the keys of the stages that evaluate (the
    evaluations and every unlearning run), and no model or world stage reruns for it."""
    from pebench_core import metrics

    names = sorted({m.fn.__name__ for m in metrics.METRICS.values()} | {"name_match", "normalise", "is_refusal"})
    units = {k for k in baseline if k.startswith("u:")}
    for (_, name), keys in _each_edited(pristine, tmp_path, [("metrics.py", n) for n in names]).items():
        changed = _changed(baseline, keys)
        assert {"eval", *units} <= changed, name
        assert not changed & {"world", "base", "finetune", "goal"}, name
