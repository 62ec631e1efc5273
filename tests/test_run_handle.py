"""The run handle the chapters hold (``run.Run``) and the text they generate (``narrate``).

The handle must read exactly what the stages wrote (through the same functions, so the same
keys), build a missing stage on first access, and ``Run.for_seeds`` must give what
``analysis.load_runs`` reads back. The narration functions are checked on small hand-made frames.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pebench_core import analysis as A
from pebench_core import narrate as N
from pebench_core.config import load_config
from pebench_core.run import Outcome, Run, UnlearningOutcome, answers_side_by_side, comparison
from pebench_core.stages import collect_results, default_run_dir, get_eval, get_unlearned, model_dir, stage_info, unlearned_dir
from pebench_core.results import read_results
from pebench_core.storage import MARKER, is_complete, read_marker

SMALL = {"unlearn": {"targets": ["person"], "methods": ["ga"]}}  # one target, one method: a short build


@pytest.fixture(scope="module")
def cfg():
    return load_config("smoke", seed=0, overrides=SMALL)


@pytest.fixture(scope="module")
def run(cfg, tmp_path_factory):
    return Run(cfg, tmp_path_factory.mktemp("handle") / "run")


# ------------------------------------------------------------------ the handle
def test_the_run_folder_is_resolved_once(cfg, tmp_path, monkeypatch):
    assert Run(cfg).dir == Run(cfg, "").dir == Run(cfg, None).dir == default_run_dir(cfg)
    assert Run(cfg, tmp_path / "x").dir == tmp_path / "x"
    monkeypatch.chdir(tmp_path)
    assert Run(cfg, "rel").dir == tmp_path / "rel"  # absolute: a later chdir does not move it
    assert "smoke" in repr(Run(cfg, tmp_path))


def test_a_missing_stage_is_built_on_first_access(cfg, tmp_path):
    run = Run(cfg, tmp_path / "fresh")
    init = model_dir(cfg, "init", None, run.dir)
    assert not is_complete(init)
    ds = run.world
    assert run.world is ds  # built once, then kept by the handle
    assert len(ds.people) == cfg.world.n_people
    bundle = run.model("init")
    assert is_complete(init) and hasattr(bundle, "model")
    assert run.stage_info("init") == read_marker(init)


def test_an_unlearning_run_is_built_on_first_access_and_read_back(run, cfg):
    folder = unlearned_dir(cfg, "ga", "person", run.dir)
    assert not is_complete(folder)
    u = run.unlearned("ga", "person")
    assert isinstance(u, UnlearningOutcome) and (u.model, u.target) == ("ga", "person")
    assert u.folder == folder == get_unlearned(cfg, "ga", "person", run.dir, progress=False)
    assert is_complete(folder)
    for name in ("results", "items", "answers", "trajectory"):
        pd.testing.assert_frame_equal(getattr(u, name), pd.read_parquet(folder / f"{name}.parquet"))
    assert u.meta == read_marker(folder)
    assert (folder / MARKER).is_file()
    assert u.hparams == u.meta["hparams"] and u.hparams
    assert u.status == u.meta["status"] == "ok"
    assert set(u.results["method"]) == {"ga"} and set(u.results["target"]) == {"person"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.model = "gd"


def test_the_learning_rate_grid_picks_the_run_and_every_row_says_so(run, cfg):
    """smoke tunes over unlearn.lr × (1, 3) on the full budget: the kept grid run is the final
    run (the same adapter bytes, not trained again), and every result row carries its rate
    and the rule."""
    from pebench_core.stages import get_tuning
    from pebench_core.tuning import rates, rule_text

    u = run.unlearned("ga", "person")
    grid = run.tuning("ga", "person")
    assert list(grid["lr"]) == rates(cfg.unlearn) and grid["kept"].sum() == 1
    assert {"efficacy/person", "retain/person", "criterion", "status", "seconds"} <= set(grid.columns)
    assert (grid["criterion"] == (grid["efficacy/person"] + grid["retain/person"]) / 2).all()
    kept = grid[grid["kept"]].iloc[0]
    tune = get_tuning(cfg, "ga", "person", run.dir, progress=False)
    assert read_marker(tune)["lr"] == kept["lr"]
    same = tune / f"lr{int(kept['point'])}" / "adapter" / "adapter_model.safetensors"
    assert same.read_bytes() == (u.folder / "adapter" / "adapter_model.safetensors").read_bytes()
    assert set(u.results["lr"]) == {kept["lr"]} and set(u.results["lr_rule"]) == {rule_text(cfg.unlearn, cfg.eval)}
    assert u.hparams["lr"] == kept["lr"] and u.hparams["lr_selection"] == rule_text(cfg.unlearn, cfg.eval)
    assert run.evaluation("finetune", "person").results["lr"].isna().all()


def test_the_papers_protocol_evaluates_the_grids_run_at_the_fixed_rate(run, cfg):
    """The paper's protocol (one rate, unlearn.lr, untuned) for ga on person: the grid ran that
    rate for the whole budget, so its adapter is evaluated, not trained again. Its rows state
    the fixed rate and the protocol, and equal a fresh run at that rate trained with the grid off."""
    from pebench_core.stages import FIXED_RATE_RULE, fixed_rate_jobs, get_fixed_rate

    assert fixed_rate_jobs(cfg) == [("ga", "person")]
    folder = get_fixed_rate(cfg, "ga", "person", run.dir, progress=False)
    meta = read_marker(folder)
    assert meta["from_grid"] is True and meta["lr"] == cfg.unlearn.lr
    res, items = run.fixed_rate()
    assert set(res["lr"]) == {cfg.unlearn.lr} and set(res["lr_rule"]) == {FIXED_RATE_RULE}
    assert set(res["method"]) == {"ga"} and len(items)
    # the same numbers as the one-rate protocol run on its own (the grid off: a fresh run)
    alone = load_config("smoke", seed=0, overrides={**SMALL, "unlearn": {**SMALL["unlearn"], "lr_factors": [1.0]}})
    fresh = Run(alone, run.dir).unlearned("ga", "person").results  # the same models; its own unlearning stage
    key = ["concept", "metric"]
    pd.testing.assert_series_equal(
        res.sort_values(key)["value"].reset_index(drop=True), fresh.sort_values(key)["value"].reset_index(drop=True)
    )
    untuned = Run(dataclasses.replace(cfg, unlearn=dataclasses.replace(cfg.unlearn, lr_factors=(1.0,))), run.dir)
    assert untuned.tuning("ga", "person") is None


def test_an_evaluation_reads_what_the_files_hold(run, cfg):
    for model in ("finetune", "goal"):
        ev = run.evaluation(model, "person")
        assert type(ev) is Outcome and ev.folder == get_eval(cfg, model, "person", run.dir, progress=False)
        for name in ("results", "items", "answers"):
            pd.testing.assert_frame_equal(getattr(ev, name), pd.read_parquet(ev.folder / f"{name}.parquet"))
        assert ev.meta == read_marker(ev.folder) and ev.meta["questions"] > 0
        assert set(ev.results["method"]) == {model}
    with pytest.raises(ValueError):
        run.evaluation("base", "person")


def test_the_helpers_are_the_pipeline_functions(run, cfg):
    pd.testing.assert_frame_equal(run.comparison("ga", "person"), comparison(cfg, "ga", "person", run.dir, progress=False))
    pd.testing.assert_frame_equal(run.answers_side_by_side("ga", "person"), answers_side_by_side(cfg, "ga", "person", run.dir))
    side = run.answers_side_by_side("ga", "person")
    assert {"item_id", "question", "finetune", "ga", "goal"} <= set(side.columns)
    res, items = run.collect()
    ref_res, ref_items = collect_results(cfg, run.dir)
    pd.testing.assert_frame_equal(res, ref_res)
    pd.testing.assert_frame_equal(items, ref_items)
    on_disk = read_results(run.dir)
    pd.testing.assert_frame_equal(res, on_disk[0])
    pd.testing.assert_frame_equal(items, on_disk[1])
    assert set(res["method"]) == {"finetune", "goal", "ga"}
    assert run.stage_info("finetune") == stage_info(cfg, "finetune", None, run.dir)
    lk = run.answer_likelihoods("ga", "person")
    assert set(lk["model"]) == {"finetune", "ga"}
    # stored by the two stages: what the saved adapter, loaded again, gives with the adapter off
    # (the finetune model, stored by its evaluation) and on
    from pebench_core.likelihoods import answer_likelihoods as likelihoods
    from pebench_core.models import reference_mode, remove_lora
    from pebench_core.stages import load_unlearned_model

    unlearned = load_unlearned_model(cfg, "ga", "person", run.dir)
    try:
        with reference_mode(unlearned.model):
            before = likelihoods(unlearned, run.world, "person", cfg.seed).assign(model="finetune")
        after = likelihoods(unlearned, run.world, "person", cfg.seed).assign(model="ga")
    finally:
        remove_lora(unlearned.model)
    pd.testing.assert_frame_equal(lk, pd.concat([before, after], ignore_index=True))
    full = load_config("smoke")
    assert Run(full, run.dir).methods_for("person") == [m for m in full.unlearn.methods if not m.endswith("+bgd")]
    assert Run(full, run.dir).methods_for("both") == list(full.unlearn.methods)


def test_for_seeds_gives_the_collected_tables(run, cfg):
    ref_res, ref_items = collect_results(cfg, run.dir)
    one = Run.for_seeds("smoke", run_dir=run.dir, overrides=SMALL)
    assert isinstance(one, A.Runs)
    assert one.seeds == [0] and one.dirs == {0: run.dir} and one.cfgs == {0: cfg} and one.cfg == cfg
    pd.testing.assert_frame_equal(one.results, ref_res.assign(run_dir=str(run.dir)))
    pd.testing.assert_frame_equal(one.items, ref_items)
    res, items = A.load_runs([run.dir])  # the tables it wrote, read back
    pd.testing.assert_frame_equal(one.results, res)
    pd.testing.assert_frame_equal(one.items, items)
    # `--seeds 0` over a folder that `pebench run --out DIR` (no --seeds) wrote reads DIR itself
    assert not (run.dir / "s0").exists()
    assert Run.for_seeds("smoke", seeds="0", run_dir=run.dir, overrides=SMALL).dirs == {0: run.dir}
    handle = Run.of_seed(one)
    assert handle.dir == run.dir and handle.cfg == cfg


def test_importing_the_analysis_does_not_import_the_models_or_the_pipeline():
    """Reading results needs no model: the analysis and the narration import neither the models,
    the training loops, the stages nor the run handle (the method registry they read for names
    and titles does import torch: each method's module holds its loss)."""
    code = (
        "import sys, pebench_core.analysis, pebench_core.narrate; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in [['pebench_core', n] for n in "
        "('models', 'train', 'unlearn', 'trainer', 'forward', 'pipeline', 'stages', 'run')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent
    ).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------ narration, chapter 4
def test_likelihood_race_markdown():
    race = pd.DataFrame(
        {
            "nll_true": [1.0, 3.5, 2.0, 2.25],
            "nll_refusal": [6.0, 1.5, 5.0, 4.0],
            "refusal_first": [0.0, 0.75, 0.1, 0.2],
            "refusal_likelier": [0.0, 0.5, 0.0, 0.0],
        },
        index=pd.MultiIndex.from_tuples(
            [("person", "finetune"), ("person", "dpo"), ("event", "finetune"), ("event", "dpo")], names=["target", "model"]
        ),
    )
    trajs = {"person": pd.DataFrame({"loss": [2.0, 0.1234], "margin": [0.5, 12.34]}), "event": pd.DataFrame({"loss": [3.0, 1.5]})}
    assert N.likelihood_race_markdown(race, "dpo", trajs) == (
        "* **person**: the loss ended at 0.123, a margin of 12.3 nats over the reference. The true answer went from "
        "1.00 to 3.50 nats per token and the refusal from 6.00 to 1.50; the refusal's first token now wins on 75% of "
        "the forget questions (finetune 0%).\n"
        "* **event**: the loss ended at 1.5. The true answer went from 2.00 to 2.25 nats per token and the refusal "
        "from 5.00 to 4.00; the refusal's first token now wins on 20% of the forget questions (finetune 10%)."
    )
    trajs["event"]["margin"] = [1.0, np.nan]  # a margin that was not logged at the last step is left out
    assert "event**: the loss ended at 1.5. The true" in N.likelihood_race_markdown(race, "dpo", trajs)


def test_method_result_markdown():
    rows = [
        ("person", m, "person", k, v)
        for m, vals in {"finetune": (0.0, 1.0, 0.9), "ga": (0.8, 0.5, 0.25), "goal": (1.0, 0.95, 0.9)}.items()
        for k, v in zip(("efficacy", "retain", "scope"), vals)
    ]
    rows.append(("person", "ga", "event", "efficacy", 0.0))  # another concept: not read for target person
    res = pd.DataFrame(rows, columns=["target", "method", "concept", "metric", "value"])
    assert N.method_result_markdown(res, "ga", ["person", "event"]) == (
        "* **person**: efficacy 0.80 (finetune 0.00, goal 1.00); retain 0.50 (finetune 1.00); scope 0.25 (finetune 0.90).\n"
        "* **event**: efficacy nan (finetune nan, goal nan); retain nan (finetune nan); scope nan (finetune nan)."
    )


def test_paper_comparison_markdown_reads_table1_for_the_method_and_says_when_there_is_none():
    rows = [
        ("person", m, "person", k, v)
        for m, vals in {"finetune": (0.0, 1.0), "ga": (0.75, 0.5), "goal": (1.0, 0.95)}.items()
        for k, v in zip(("efficacy", "retain"), vals)
    ]
    res = pd.DataFrame(rows, columns=["target", "method", "concept", "metric", "value"])
    text = N.paper_comparison_markdown(res, "ga", ["person"])
    # Table 1, GA: P-eff 100, P-ret 3.9; finetune 0.0 / 97.5; goal 100 (all % → /100)
    assert "efficacy 0.75 here, 1.00 in the paper (bounds here 0.00 → 1.00, paper 0.00 → 1.00)" in text
    assert "retain 0.50 here, 0.04 in the paper (finetune 1.00 here, 0.97 there)" in text
    assert "is not in the paper's Table 1" in N.paper_comparison_markdown(res, "npo", ["person"])


# ------------------------------------------------------------------ narration, chapter 5
def _t2(rows):
    return pd.DataFrame(rows, columns=["method", "base", "concept", "metric", "delta", "delta_lo", "delta_hi"])


def test_bgd_retain_markdown_says_what_each_interval_shows():
    t2 = _t2(
        [
            ("gd", "", "person", "retain", np.nan, np.nan, np.nan),  # a base row: not a BGD change
            ("gd+bgd", "gd", "person", "retain", -0.1, -0.2, -0.05),
            ("gd+bgd", "gd", "event", "retain", 0.0, 0.0, 0.0),
            ("kl+bgd", "kl", "person", "retain", 0.1, 0.05, 0.2),
            ("kl+bgd", "kl", "event", "retain", 0.01, -0.02, 0.03),
            ("kl+bgd", "kl", "event", "efficacy", 0.3, 0.2, 0.4),
        ]
    )
    assert N.bgd_retain_markdown(t2) == (
        "* **gd+bgd** vs gd, person retain: -0.10 [-0.20, -0.05] — lower retain (interval below 0).\n"
        "* **gd+bgd** vs gd, event retain: 0.00 [0.00, 0.00] — no change at all on these images.\n"
        "* **kl+bgd** vs kl, person retain: 0.10 [0.05, 0.20] — higher retain (interval above 0).\n"
        "* **kl+bgd** vs kl, event retain: 0.01 [-0.02, 0.03] — no change distinguishable from zero."
    )
    assert N.bgd_retain_markdown(t2[t2["base"] == ""]) == "No BGD runs in this configuration."


def test_simultaneous_markdown():
    svs = pd.DataFrame(
        [
            ("ga", "person", -0.3, -0.4, -0.2),
            ("ga", "event", 0.0, -0.1, 0.1),
            ("gd", "person", 0.2, 0.1, 0.3),
            ("gd+bgd", "person", -0.5, -0.6, -0.4),
        ],  # BGD: not counted
        columns=["method", "concept", "delta", "delta_lo", "delta_hi"],
    )
    t2 = _t2(
        [
            ("gd+bgd", "gd", "person", "efficacy", 0.2, 0.1, 0.3),
            ("gd+bgd", "gd", "event", "efficacy", -0.2, -0.3, -0.1),
            ("kl+bgd", "kl", "person", "efficacy", 0.0, -0.1, 0.1),
            ("kl+bgd", "kl", "person", "retain", 0.5, 0.4, 0.6),
        ]
    )
    assert N.simultaneous_markdown(svs, t2, n_seeds=3) == (
        "Forgetting both concepts at once **lowered** efficacy, with an interval below zero, for 1 of 3 method × concept "
        "pairs: ga (person, -0.30). It **raised** it, with an interval above zero, for 1: gd (person, +0.20).\n"
        "* gd+bgd against gd, person efficacy: gained 0.20 [0.10, 0.30].\n"
        "* gd+bgd against gd, event efficacy: lost -0.20 [-0.30, -0.10].\n"
        "* kl+bgd against kl, person efficacy: changed, with an interval across zero, by 0.00 [-0.10, 0.10].\n"
        "\n(3 seed(s); intervals are 95 % bootstraps over images; they are the leaderboard chapter's intervals for "
        "the same quantities.)"
    )
    none = N.simultaneous_markdown(svs.iloc[1:2], t2.iloc[0:0], n_seeds=1)
    assert none.startswith(
        "Forgetting both concepts at once **lowered** efficacy, with an interval below zero, for 0 of 1 "
        "method × concept pairs: none. It **raised** it, with an interval above zero, for 0: none.\n"
    )


def test_simultaneous_markdown_words_finding_4_as_the_leaderboard_does():
    from pebench_core.analysis.verdicts import count_line

    svs = pd.DataFrame([("ga", "person", 0.0, -0.02, 0.02)], columns=["method", "concept", "delta", "delta_lo", "delta_hi"])
    tests = pd.DataFrame(
        {
            "finding": [4, 4, 4, 1],
            "subject": ["ga (person)", "ga (event)", "npo (person)", "ga"],
            "margin": [0.05, 0.05, 0.05, 0.0],
            "verdict": ["contradicted", "inconclusive", "cannot test", "reproduced"],
        }
    )
    text = N.simultaneous_markdown(svs, _t2([]), n_seeds=1, tests=tests)
    line = count_line(tests[tests["finding"] == 4], "method × concept pairs")
    assert line == (
        "0 of 3 method × concept pairs support it (none); 1 contradicts it (ga (person)); 1 is inconclusive "
        "(ga (event)); 1 cannot test it (npo (person))"
    )
    assert line in text and "contradicted when it lies below 0.05" in text
    # one rule, one wording: no second reading of the same pairs that could disagree with it
    assert "cannot be told from zero" not in text and "**lowered**" not in text


# ------------------------------------------------------------------ narration, chapter 6
def test_interference_markdown():
    cols = ["method", "target", "measured", "images", "role", "finetune", "delta", "delta_lo", "delta_hi"]
    ev = ("person", "event", "event score on the person-forget images", "interference", 0.8)
    nm = ("event", "person", "name precision on the event-forget images", "interference", 0.9)
    cells = pd.DataFrame(
        [
            ("ga", *ev, -0.3, -0.4, -0.2),
            ("gd", *ev, -0.1, -0.2, 0.05),
            ("po", *ev, 0.1, 0.05, 0.2),
            ("ga", *nm, 0.0, 0.0, 0.0),
            ("gd", *nm, 0.0, 0.0, 0.0),
            ("ga", "person", "person", "name precision on the person-forget images", "intended", 1.0, -1.0, -1.0, -1.0),
        ],
        columns=cols,
    )
    tests = pd.DataFrame(
        [
            ("ga", "forget people → event answers", -0.2, 0.01),
            ("gd", "forget people → event answers", -0.1, 0.2),
            ("ga", "forget events → name answers", 0.1, 0.5),
        ],
        columns=["method", "direction", "ci_hi", "p_value"],
    )
    assert N.interference_markdown(cells, tests, n_seeds=1) == (
        "* **event score on the person-forget images** (finetune 0.80): lower than finetune, with a paired interval "
        "below 0, for 1 of 3 methods (ga); higher for 1; least affected: po (+0.10).\n"
        "* **name precision on the event-forget images** (finetune 0.90): lower than finetune, with a paired interval "
        "below 0, for 0 of 2 methods (none); higher for 0; least affected: all methods tie (+0.00).\n"
        "* **Image level**: the other concept suffered significantly more on the forget images than on the retain "
        "images (interval below 0 and p < 0.05) in 1 of 3 method × direction tests: ga (forget people → event answers).\n"
        "\n(1 seed(s); the cells' paired intervals resample images. "
        "The leaderboard chapter turns this into a verdict on the paper's finding 3.)"
    )
    no_sig = N.interference_markdown(cells, tests.iloc[1:], n_seeds=2)
    assert "in 0 of 2 method × direction tests.\n\n(2 seed(s);" in no_sig
    unmeasured = cells.assign(delta=np.nan, delta_lo=np.nan, delta_hi=np.nan)  # no finite change: no crash
    assert "least affected: none (no change could be computed)." in N.interference_markdown(unmeasured, tests, n_seeds=1)
    f3 = pd.DataFrame(
        {
            "finding": [3, 3, 3],
            "part": ["interference", "interference", "least for PO"],
            "subject": ["ga (person target)", "gd (event target)", "po vs best other"],
            "margin": [0.05, 0.05, 0.0],
            "verdict": ["reproduced", "cannot test", "contradicted"],
        }
    )
    read = N.interference_markdown(cells, tests, n_seeds=1, tests=f3)
    assert (
        "Read as the paper's finding 3** (*Cross-concept interference" in read
        and "1 of 2 method × target tests supports it (ga (person target)); 1 cannot test it (gd (event target))" in read
    )


# ------------------------------------------------------------------ narration, chapter 7
def test_run_overview_markdown():
    summary = pd.DataFrame({"n_items": [12, 30, 24]})
    assert N.run_overview_markdown(summary, [0], "tiny", ["keywords"]) == (
        "* **seeds**: 1 (0); profile `tiny`\n"
        "* **event scorer**: keywords; names are matched exactly (full name, normalised)\n"
        "* **images per number** (summed over seeds): 12 to 30\n"
        "* **intervals**: 95 % bootstrap over images (resampled within each seed); with one seed they say nothing "
        "about seed-to-seed variation"
    )
    several = N.run_overview_markdown(summary, [0, 1, 2], "paper", [])
    assert several.startswith("* **seeds**: 3 (0, 1, 2); profile `paper`\n* **event scorer**: none;")
    assert several.endswith("; with several seeds, a t-interval over seeds is shown too")


def test_step_cost_markdown():
    even = pd.DataFrame({"s_per_step": [0.1, 0.24], "sequences": [8, 16]}, index=["ga", "gd"])
    assert N.step_cost_markdown(even) == (
        "Seconds per sequence range from 0.0125 to 0.0150, a factor of 1.20: the sequences a step runs explain most of "
        "its cost, not the method's arithmetic. (Wall-clock times on the machine that built the runs, medians over "
        "targets and seeds.)"
    )
    uneven = even.assign(s_per_step=[0.1, 0.4])
    assert (
        "a factor of 2.00: more than the sequences alone explain; the loss's own arithmetic matters here."
        in N.step_cost_markdown(uneven)
    )
