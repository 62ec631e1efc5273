"""The method registry is the one list of methods: configuration, the pipeline, the book and
the analysis read it, and a method registered in user code runs like a built-in one, from
``pebench run`` to its own chapter."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pebench_core import analysis, book, methods
from pebench_core.config import ConfigError, load_config
from pebench_core.methods import Method, register
from pebench_core.ranges import POSITIVE
from pebench_core.stages import methods_for

ROOT = Path(__file__).resolve().parent.parent

# A reader's own method, as a module they would write: gradient ascent that stops pushing an
# answer once its NLL passes a cap (a different loss from GA, not a rescaling: Adam would undo that).
PLUGIN = """
from dataclasses import dataclass

from pebench_core.losses import LossOutput, sequence_nll
from pebench_core.methods import Exercise, Method, MethodNotes, register, setting
from pebench_core.ranges import POSITIVE


@dataclass(frozen=True)
class Settings:
    cap: float = setting(2.0, POSITIVE, "the NLL past which an answer is no longer pushed")


def capped_ga_loss(inp, *, retain_weight=1.0, beta=0.1, state=None, cap=2.0):
    nll = sequence_nll(inp.forget_logp_sum, inp.forget_n_tokens)
    loss = -nll.clamp(max=cap).mean()
    return LossOutput(loss=loss, parts={"forget_nll": float(nll.mean()), "loss": float(loss)})


register(Method(
    "capped-ga",
    loss=capped_ga_loss,
    title="Capped gradient ascent",
    summary="Gradient ascent until each answer's NLL reaches the cap",
    formula=r"\\mathcal{L} = -\\mathbb{E}_{D_f}\\min(\\mathrm{NLL}_i, c)",
    about="A reader's method: **capped gradient ascent**, registered from a module of their own.",
    targets=("person", "event"),
    settings=Settings,
    notes=MethodNotes(
        "Watch the forget NLL stop at the cap.",
        (Exercise("Where the push stops", "What is the gradient past the cap?", "Zero: clamp has none."),
         Exercise("A higher cap", "Run with unlearn.capped-ga.cap=5.", "It pushes further.", "run")),
    ),
))
"""


# A reader's own metric, as one entry in a module of their own: the share of the forget
# images answered with a refusal (what a refusal-trained method should raise).
METRIC_PLUGIN = """
from pebench_core import metrics as M


def person_refusal(answers, names, ids=None):
    per_item = [float(M.is_refusal(a)) for a in answers]
    return M.MetricResult("refusal", "person", sum(per_item) / len(per_item), len(per_item),
                          __import__("numpy").asarray(per_item), list(ids if ids is not None else range(len(answers))))


M.register(M.Metric("person/refusal", person_refusal, "forget", "Refusal rate",
                    "forget images (forget people)", "mean(is_refusal)", "name match", paper=False))
"""


@pytest.fixture
def mine():
    """A method registered for one test, and gone afterwards."""

    def loss(inp, **_):
        raise AssertionError("not run in these tests")

    yield register(Method("mine", loss=loss, title="Mine", summary="a test method", formula="x", targets=("person",)))
    methods.METHODS.pop("mine")


def test_every_list_of_methods_reads_the_registry(mine):
    cfg = load_config("smoke", overrides={"unlearn": {"methods": ["ga", "mine", "gd+bgd"]}})  # validation knows it
    assert methods_for(cfg, "person") == ["ga", "mine"] and methods_for(cfg, "both") == ["ga", "gd+bgd"]
    assert "mine" in analysis.unlearn_methods() and analysis.method_order()[-2:] == ["mine", "goal"]
    assert analysis.bgd_base() == {"gd+bgd": "gd", "kl+bgd": "kl"}
    # the profiles' default run is the built-ins; a reader's method runs when named
    assert load_config("smoke").unlearn.methods == methods.BUILT_IN
    # one chapter per method that has one, titled by its entry
    assert [c.output for c in book.CHAPTERS if c.source == "04_method.ipynb"] == [
        f"04_{m}" for m in methods.BUILT_IN if methods.METHODS[m].chapter
    ]
    assert all(c.title == methods.METHODS[c.parameters["method"]].title for c in book.CHAPTERS if "method" in c.parameters)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "ga"}, "'ga' is registered already"),
        ({"name": "a,b"}, "without commas"),
        ({"targets": ("people",)}, "targets must be among person, event, both"),
        ({"balances": "sgd"}, "balances 'sgd', which is not a registered method"),
        ({"loss": "not_a_function"}, "loss must be a function"),
    ],
)
def test_a_bad_registration_is_one_clear_error(change, message):
    entry = {"name": "new", "loss": lambda inp, **_: None, "title": "t", "summary": "s", "formula": "f", **change}
    with pytest.raises(ConfigError, match=message):
        register(Method(**entry))
    assert "new" not in methods.METHODS


@dataclasses.dataclass
class _Loose:  # not frozen: a run's settings must not change under it
    cap: float = methods.setting(2.0, POSITIVE)


@dataclasses.dataclass(frozen=True)
class _NoRange:
    cap: float = 2.0


@dataclasses.dataclass(frozen=True)
class _Cap:
    cap: float = methods.setting(2.0, POSITIVE, "a cap")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"settings": _Loose}, "settings must be a frozen dataclass"),
        ({"settings": _NoRange}, "setting 'cap' needs a range"),
        ({"needs_hidden": True}, r"read the setting\(s\) depth, steer, which its settings do not hold"),
        ({"needs_adjusted_kl": True, "settings": _Cap}, r"read the setting\(s\) strength"),
        ({"settings": _Cap, "settings_name": "simnpo"}, "settings name 'simnpo' is taken by method 'simnpo', with another"),
        ({"finish": "negate"}, "finish must be a function"),
    ],
)
def test_a_method_s_settings_are_checked_when_it_is_registered(change, message):
    entry = {"name": "new", "loss": lambda inp, **_: None, "title": "t", "summary": "s", "formula": "f", **change}
    with pytest.raises(ConfigError, match=message):
        register(Method(**entry))
    assert "new" not in methods.METHODS


def test_a_method_s_own_settings_are_set_checked_and_given_to_its_loss():
    """``unlearn.<method>.<field>``: from a command line, checked against the field's range with
    every other setting, given by name to a loss that takes it, recorded with the run."""
    cfg = load_config("smoke", overrides=["unlearn.simnpo.gamma=0.5", "unlearn.bgd.max_weight=2"])
    assert methods.settings_of("simnpo", cfg.unlearn).gamma == 0.5
    assert methods.get("simnpo").loss_kwargs(cfg.unlearn) == {"retain_weight": 1.0, "beta": 0.1, "gamma": 0.5}
    assert methods.get("gd+bgd").loss_kwargs(cfg.unlearn)["max_weight"] == 2.0  # the two variants share bgd.*
    assert methods.settings_record("kl+bgd", cfg.unlearn) == {"bgd.max_weight": 2.0}
    assert methods.get("ga").loss_kwargs(cfg.unlearn) == {"retain_weight": 1.0, "beta": 0.1}  # none of its own
    # UNDIAL's strength builds the loop's target: recorded, not given to a loss that does not take it
    assert "strength" not in methods.get("undial").loss_kwargs(cfg.unlearn)
    for bad, message in (
        ("unlearn.simnpo.gamma=-1", "unlearn.simnpo.gamma must be non-negative, got -1.0"),
        ("unlearn.simnpo.margin=1", "unknown setting unlearn.simnpo.margin; the settings of 'simnpo': gamma"),
        ("unlearn.gamma=1", "unknown field unlearn.gamma; .* a method's own settings, unlearn.<method>.<setting>: simnpo.gamma"),
        ("unlearn.rmu.depth=abc", "unlearn.rmu.depth: expected a finite number, got 'abc'"),
        ("unlearn.ga.x.y=1", "too many dots"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config("smoke", overrides=[bad])


def test_every_input_a_loss_reads_has_one_producer():
    """One table says where each loss input comes from and computes it: every field of
    LossInputs has its entry, and a method is given every setting its inputs read."""
    from pebench_core.inputs import INPUTS
    from pebench_core.losses import LossInputs

    assert set(INPUTS) == {f.name for f in dataclasses.fields(LossInputs)}
    assert all(callable(i.compute) for i in INPUTS.values())
    assert all(i.set is not None for i in INPUTS.values() if i.keep is not None or i.step)  # a pass needs a set
    for m in methods.BUILT_IN:
        own = methods.settings_of(m, load_config("smoke").unlearn)
        for name in methods.get(m).required_inputs(1.0):
            assert all(hasattr(own, s) for s in INPUTS[name].settings), (m, name)


def test_an_unknown_method_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unlearn.methods has unknown method\(s\) \['sgd'\]; allowed: ga, gd, kl"):
        load_config("smoke", overrides=["unlearn.methods=sgd"])


def _env(tmp_path: Path, plugin: str) -> dict:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
        "PEBENCH_PLUGINS": plugin,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    (tmp_path / "broken_methods.py").write_text("raise RuntimeError('typo in my module')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pebench_core.cli", "run", "--profile", "smoke", "--out", str(tmp_path / "out")],
        env=_env(tmp_path, "broken_methods"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "pebench run: error: PEBENCH_PLUGINS names 'broken_methods', which cannot be imported: RuntimeError: typo in my module"
    )


@pytest.mark.notebooks
def test_a_method_and_a_metric_registered_in_user_code_run_end_to_end_into_their_chapters(tmp_path, monkeypatch):
    """A method is one file, and so is a metric: each reaches ``pebench run``, the results
    table and its chapter (the method its own, the metric chapter 3's tables)."""
    (tmp_path / "my_methods.py").write_text(PLUGIN)
    (tmp_path / "my_metrics.py").write_text(METRIC_PLUGIN)
    env = _env(tmp_path, "my_methods,my_metrics")
    out = tmp_path / "run"
    argv = ["run", "--profile", "smoke", "--set", "unlearn.methods=ga,capped-ga", "--set", "unlearn.targets=person",
            "--set", "unlearn.capped-ga.cap=1.5"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pebench_core.cli", *argv, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    results = pd.read_parquet(out / "results" / "results.parquet")
    assert set(results["method"]) == {"finetune", "goal", "ga", "capped-ga"} and results["value"].notna().all()
    refusal = results[results["metric"] == "refusal"]
    assert set(refusal["method"]) == {"finetune", "goal", "ga", "capped-ga"} and (refusal["concept"] == "person").all()
    ga, capped = (
        pd.read_parquet(next((out / "unlearn" / f"{m}-person").glob("*/trajectory.parquet"))) for m in ("ga", "capped-ga")
    )
    assert len(ga) == len(capped) and not ga["forget_nll"].equals(capped["forget_nll"])  # another loss, another path
    marker = json.loads(next((out / "unlearn" / "capped-ga-person").glob("*/.complete.json")).read_text())
    assert marker["hparams"]["capped-ga.cap"] == 1.5  # its own setting, as set, recorded with the run
    # its chapter: the same parameterised notebook, -p method half-ga
    import papermill as pm

    for key in ("PEBENCH_PLUGINS", "PYTHONPATH", "TQDM_DISABLE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("MPLBACKEND", raising=False)
    executed = tmp_path / "04_capped-ga.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "04_method.ipynb"),
        str(executed),
        parameters={
            "method": "capped-ga",
            "profile": "smoke",
            "run_dir": str(out),
            "overrides": ["unlearn.targets=person", "unlearn.capped-ga.cap=1.5"],
        },  # fmt: skip
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    nb = json.loads(executed.read_text())
    shown = "".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", ""))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )
    assert "capped gradient ascent" in shown and "def capped_ga_loss" in shown
    assert "Where the push stops" in shown and "Watch the forget NLL stop at the cap." in shown  # its notes
    # chapter 3: the metric in the table of metrics and in the bounds' table
    measured = tmp_path / "03_measuring.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "03_measuring.ipynb"),
        str(measured),
        parameters={"profile": "smoke", "run_dir": str(out), "overrides": ["unlearn.targets=person"]},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    html = "".join(
        "".join(o.get("data", {}).get("text/html", ""))
        for c in json.loads(measured.read_text())["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )
    assert "person metric" in html and "mean(is_refusal)" in html  # the table of the person metrics
    assert html.count(">refusal<") >= 2  # a column of the bounds' table (and the metric column above)
    assert "capped-ga" not in methods.METHODS  # nothing leaked into this process
