"""The book's one verdict rule (pebench_core.analysis.rule), on hand-made estimates and on
hand-made result frames read by the findings: a ceiling or a floor cannot test a claim, an
interval across the margin is inconclusive, one split decides alone, splits that disagree
decide nothing."""

import numpy as np
import pytest

from pebench_core import analysis as A
from pebench_core.analysis.rule import FINDING, SURVIVAL
from pebench_core.analysis.stats import Estimate

from test_analysis import _gap_rows, frames


def est(value, lo, hi, per_seed=None):
    return Estimate(value, lo, hi, per_seed=per_seed or {})


@pytest.mark.parametrize(
    "e, margin, want",
    [
        (est(0.30, 0.10, 0.50), 0.05, A.REPRODUCED),  # above 0
        (est(-0.20, -0.40, 0.01), 0.05, A.CONTRADICTED),  # below the margin
        (est(0.02, -0.10, 0.20), 0.05, A.INCONCLUSIVE),  # straddles the margin
        (est(0.00, -0.01, 0.05), 0.05, A.INCONCLUSIVE),  # touches it: not below
        (est(np.nan, np.nan, np.nan), 0.05, A.CANNOT_TEST),  # undefined
        (None, 0.05, A.CANNOT_TEST),
    ],
)
def test_decide_on_intervals(e, margin, want):
    assert A.decide(e, margin) == want


def test_room_overrides_any_interval():
    assert A.decide(est(0.9, 0.8, 1.0), 0.05, room="at the ceiling") == A.CANNOT_TEST
    assert A.decide(est(0.9, 0.8, 1.0), 0.1, claim=SURVIVAL, room="forgot too little") == A.CANNOT_TEST


def test_survival_words_need_the_effect_to_reach_the_margin():
    assert A.decide(est(0.30, 0.10, 0.50), 0.1, claim=SURVIVAL) == A.BREAKS
    assert A.decide(est(0.05, 0.01, 0.08), 0.1, claim=SURVIVAL) == A.HOLDS
    assert A.decide(est(0.06, 0.01, 0.20), 0.1, claim=SURVIVAL) == A.INCONCLUSIVE  # above 0, below the margin
    assert A.decide(est(0.06, 0.01, 0.20), 0.05, claim=FINDING) == A.REPRODUCED


def test_seeds_or_splits_must_agree():
    one = est(0.3, 0.1, 0.5, {0: 0.3})
    three_agree = est(0.3, 0.1, 0.5, {0: 0.2, 1: 0.3, 2: 0.4})
    three_disagree = est(0.3, 0.1, 0.5, {0: 0.6, 1: 0.4, 2: -0.1})
    assert A.decide(one, 0.05) == A.REPRODUCED
    assert A.decide(three_agree, 0.05) == A.REPRODUCED
    assert A.decide(three_disagree, 0.05) == A.INCONCLUSIVE
    below = est(-0.2, -0.3, -0.1, {0: -0.2, 1: -0.1, 2: 0.2})
    assert A.decide(below, 0.05) == A.INCONCLUSIVE


def test_at_bound():
    assert A.at_bound(1.0, floor=False) and A.at_bound(0.985, floor=False) and not A.at_bound(0.95, floor=False)
    assert A.at_bound(0.0, floor=True) and A.at_bound(0.01, floor=True) and not A.at_bound(0.05, floor=True)
    assert not A.at_bound(float("nan"), floor=True)


def test_decided_share():
    assert A.decided([A.REPRODUCED, A.INCONCLUSIVE, A.CANNOT_TEST, A.CONTRADICTED]) == 0.5
    assert A.decided([]) == 0.0


# ---- the rule as the findings apply it, on hand-made result frames
def _f4(single, both, seeds=(0,)):
    vals = _gap_rows()
    vals[("person", "gd", "person", "efficacy")] = single
    vals[("both", "gd", "person", "efficacy")] = both
    res, its = frames(vals, seeds=seeds)
    t = A.finding_tests(its, n_boot=300)
    return t[t.finding == 4].iloc[0]


def test_finding4_at_the_ceiling_cannot_test():
    r = _f4([1.0] * 20, [1.0] * 20)  # forgets everything alone and together: no room below
    assert r["verdict"] == A.CANNOT_TEST and "no room below" in r["note"]


def test_finding4_at_the_floor_cannot_test():
    r = _f4([0.0] * 20, [0.0] * 20)  # forgets nothing even alone: no efficacy to lose
    assert r["verdict"] == A.CANNOT_TEST and "forgot too little of the person alone" in r["note"]
    r = _f4([0.2] * 20, [0.0] * 20)  # forgets a little alone: still below the floor of what counts as forgetting
    assert r["verdict"] == A.CANNOT_TEST and "+0.20 over finetune" in r["note"]


def test_finding4_straddling_is_inconclusive_and_a_clear_loss_is_reproduced():
    single = np.array([1.0] * 10 + [0.0] * 10)
    both = single.copy()
    both[[0, 1, 2]] = 0.0
    both[[10, 11]] = 1.0
    assert _f4(single, both)["verdict"] == A.INCONCLUSIVE
    assert _f4([0.9] * 20, [0.3] * 20)["verdict"] == A.REPRODUCED
    assert _f4([0.3] * 20, [0.6] * 20)["verdict"] == A.CONTRADICTED


def test_finding4_three_splits_that_disagree_decide_nothing():
    single = lambda s: [0.9] * 20  # noqa: E731
    both = lambda s: {0: [0.2] * 20, 1: [0.3] * 20, 2: [0.95] * 20}[s]  # noqa: E731  split 2 shows the opposite
    r = _f4(single, both, seeds=(0, 1, 2))
    assert r["estimate"] == pytest.approx(0.9 - (0.2 + 0.3 + 0.95) / 3)
    assert r["verdict"] == A.INCONCLUSIVE
    agree = _f4(single, lambda s: {0: [0.2] * 20, 1: [0.3] * 20, 2: [0.4] * 20}[s], seeds=(0, 1, 2))
    assert agree["verdict"] == A.REPRODUCED


def test_finding5_without_a_loss_to_recover_cannot_test():
    vals = _gap_rows()
    vals[("person", "gd", "person", "efficacy")] = [0.5] * 20
    vals[("both", "gd", "person", "efficacy")] = [0.5] * 20  # nothing lost by forgetting both
    vals[("both", "gd+bgd", "person", "efficacy")] = [0.9] * 20
    res, its = frames(vals)
    t = A.finding_tests(its, n_boot=200)
    r = t[t.finding == 5].iloc[0]
    assert r["verdict"] == A.CANNOT_TEST and "no simultaneous loss" in r["note"]
    fnd = A.findings(A.summarise(res, its, n_boot=50), its, tests=t).set_index("finding")
    assert fnd.loc[5, "verdict"] == A.CANNOT_TEST
    assert "gd+bgd vs gd (person) (no simultaneous loss" in fnd.loc[5, "explanation"]


def test_finding5_interval_is_table2s():
    vals = _gap_rows()
    vals[("person", "gd", "person", "efficacy")] = [1.0] * 20
    vals[("both", "gd", "person", "efficacy")] = [0.0] * 10 + [1.0] * 10
    vals[("both", "gd+bgd", "person", "efficacy")] = [0.0] * 4 + [1.0] * 16
    res, its = frames(vals)
    s = A.summarise(res, its, n_boot=1000)
    t = A.finding_tests(its, n_boot=1000).query("finding == 5").iloc[0]
    t2 = A.table2(s, its).query("method == 'gd+bgd' and concept == 'person' and metric == 'efficacy'").iloc[0]
    assert (t["estimate"], t["lo"], t["hi"]) == (t2["delta"], t2["delta_lo"], t2["delta_hi"])


def test_finding3_without_forgetting_cannot_test_and_its_interval_is_chapter_6s():
    vals = _gap_rows()
    vals[("person", "finetune", "person", "scope")] = [1.0] * 20
    vals[("person", "ga", "person", "efficacy")] = [0.1] * 20  # forgot 0.1 of the people: too little
    vals[("person", "ga", "person", "scope")] = [1.0] * 20
    vals[("person", "gd", "person", "efficacy")] = [1.0] * 20
    vals[("person", "gd", "person", "scope")] = [1.0] * 10 + [0.0] * 10
    res, its = frames(vals)
    t = A.finding_tests(its, n_boot=500).query("finding == 3 and part == 'interference'").set_index("subject")
    assert t.loc["ga (person target)", "verdict"] == A.CANNOT_TEST
    assert "forgot too little" in t.loc["ga (person target)", "note"]
    assert t.loc["gd (person target)", "verdict"] == A.REPRODUCED
    cell = A.interference_table(A.summarise(res, its, n_boot=100), "gd", its, n_boot=500)
    cell = cell[(cell["target"] == "person") & (cell["measured"] == "event")].iloc[0]
    gd = t.loc["gd (person target)"]
    assert (gd["estimate"], gd["lo"], gd["hi"]) == (-cell["delta"], -cell["delta_hi"], -cell["delta_lo"])


def test_finding2_for_a_method_that_forgot_neither_concept_cannot_test():
    vals = _gap_rows()
    vals[("person", "npo", "person", "efficacy")] = [0.05] * 20
    vals[("event", "npo", "event", "efficacy")] = [0.0] * 20
    vals[("person", "gd", "person", "efficacy")] = [1.0] * 20
    vals[("event", "gd", "event", "efficacy")] = [0.2] * 20
    res, its = frames(vals)
    t = A.finding_tests(its, n_boot=300).query("finding == 2").set_index("subject")
    assert t.loc["npo", "verdict"] == A.CANNOT_TEST and "forgot too little" in t.loc["npo", "note"]
    assert t.loc["gd", "verdict"] == A.REPRODUCED


def test_the_discussion_counts_what_the_sub_tests_decide():
    t = A.finding_tests(frames({**_gap_rows(), ("person", "gd", "person", "efficacy"): [0.9] * 20,
                                ("both", "gd", "person", "efficacy"): [0.3] * 20})[1], n_boot=200)  # fmt: skip
    res, its = frames(_gap_rows())
    fnd = A.findings(A.summarise(res, its, n_boot=50), its, tests=t)
    text = A.findings_markdown(fnd, tests=t)
    n = len(t[t.verdict != "reported"])
    decided = int(t.verdict.isin([A.REPRODUCED, A.CONTRADICTED]).sum())
    assert f"Of the {n} sub-tests, {decided} decide something" in text
