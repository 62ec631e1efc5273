"""The analysis layer on hand-built results/items tables whose answers are known (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pebench_core import analysis as A
from pebench_core.config import ConfigError

EVENT_SCORED = {
    ("person", "scope"),
    ("person", "scope_retain"),
    ("event", "efficacy"),
    ("event", "generality"),
    ("event", "retain"),
    ("event", "real"),
}


def frames(values: dict, seeds=(0,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """results + items from {(target, method, concept, metric): per-item values or f(seed)}.

    Item ids depend on (concept, metric) only, so the same images are shared across methods
    and targets. (In real runs every model of a target is evaluated on the same images, but
    each target draws its own sample: a shorter list here stands for a target's smaller set.)
    """
    rows, items = [], []
    for seed in seeds:
        for (t, m, c, k), v in values.items():
            arr = np.asarray(v(seed) if callable(v) else v, dtype=float)
            for j, x in enumerate(arr):
                items.append(
                    {
                        "run_id": f"test-s{seed}",
                        "seed": seed,
                        "target": t,
                        "method": m,
                        "concept": c,
                        "metric": k,
                        "item_id": f"{c}-{k}-{j}",
                        "value": float(x),
                    }
                )
            rows.append(
                {
                    "run_id": f"test-s{seed}",
                    "profile": "test",
                    "seed": seed,
                    "target": t,
                    "method": m,
                    "concept": c,
                    "metric": k,
                    "value": float(arr.mean()),
                    "n": len(arr),
                    "scorer": "keywords" if (c, k) in EVENT_SCORED else "name_match",
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(items)


def row(summary, t, m, c, k):
    s = summary[(summary.target == t) & (summary.method == m) & (summary.concept == c) & (summary.metric == k)]
    assert len(s) == 1
    return s.iloc[0]


# ------------------------------------------------------------------ loading


def test_load_runs_missing_file_names_it(tmp_path):
    (tmp_path / "results").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "results" / "results.parquet")
    with pytest.raises(ConfigError, match="items.parquet"):
        A.load_runs([tmp_path])
    with pytest.raises(ConfigError, match="results.parquet"):
        A.load_runs([tmp_path / "nowhere"])


def test_load_runs_concatenates_seeds_and_refuses_duplicates(tmp_path):
    for seed in (0, 1):
        res, its = frames({("person", "gd", "person", "efficacy"): [1, 0, 1]}, seeds=(seed,))
        (tmp_path / f"s{seed}" / "results").mkdir(parents=True)
        res.to_parquet(tmp_path / f"s{seed}" / "results" / "results.parquet")
        its.to_parquet(tmp_path / f"s{seed}" / "results" / "items.parquet")
    res, its = A.load_runs([tmp_path / "s0", tmp_path / "s1"])
    assert sorted(res["seed"].unique()) == [0, 1] and len(its) == 6
    with pytest.raises(ConfigError, match="more than one run folder"):
        A.load_runs([tmp_path / "s0", tmp_path / "s0"])


def test_parse_seeds():
    assert A.parse_seeds("", 3) == [3]
    assert A.parse_seeds("0, 1,2") == [0, 1, 2]
    assert A.parse_seeds(0) == [0]
    with pytest.raises(ConfigError):
        A.parse_seeds("0,x")
    with pytest.raises(ConfigError):
        A.parse_seeds("1,1")


# ------------------------------------------------------------------ summaries


def test_summarise_means_and_intervals():
    rng = np.random.default_rng(0)
    res, its = frames(
        {
            ("person", "gd", "person", "efficacy"): lambda s: rng.random(30) * 0.5 + 0.1 * s,
            ("person", "finetune", "person", "efficacy"): [0.0] * 10,
        },
        seeds=(0, 1, 2),
    )
    s = A.summarise(res, its, n_boot=500)
    r = row(s, "person", "gd", "person", "efficacy")
    per_seed = res[res.method == "gd"].groupby("seed")["value"].mean()
    assert r["mean"] == pytest.approx(per_seed.mean())
    assert r["ci_lo"] < r["mean"] < r["ci_hi"]
    assert r["seed_lo"] < r["mean"] < r["seed_hi"]
    assert r["n_seeds"] == 3 and r["n_items"] == 90 and r["scorer"] == "name_match"
    # a constant metric has a zero-width interval at its value
    f = row(s, "person", "finetune", "person", "efficacy")
    assert f["ci_lo"] == f["ci_hi"] == f["mean"] == 0.0
    # the same inputs and seed give the same intervals
    s2 = A.summarise(res, its, n_boot=500)
    assert row(s2, "person", "gd", "person", "efficacy")["ci_lo"] == r["ci_lo"]


def test_summarise_one_seed_has_no_seed_interval():
    res, its = frames({("event", "ga", "event", "efficacy"): [0.2, 0.4, 0.6]})
    r = row(A.summarise(res, its, n_boot=200), "event", "ga", "event", "efficacy")
    assert r["mean"] == pytest.approx(0.4) and np.isnan(r["seed_lo"]) and r["scorer"] == "keywords"


def test_cluster_bootstrap_resamples_people_not_images():
    # person A: four images, all forgotten (1); person B: two images, none (0). Drawing two
    # people with replacement gives AA -> 1, BB -> 0, AB or BA -> 4/6, so the 95 % cluster
    # interval is [0, 1]; resampling the six images as if independent gives a narrower one.
    res, its = frames({("person", "ga", "person", "efficacy"): [1, 1, 1, 1, 0, 0]})
    units = pd.DataFrame({"item_id": [f"person-efficacy-{j}" for j in range(6)], "person": list("AAAABB"), "event": ["e0"] * 6})
    by_item = row(A.summarise(res, its, n_boot=2000), "person", "ga", "person", "efficacy")
    by_person = row(A.summarise(res, its, n_boot=2000, unit="person", units=units), "person", "ga", "person", "efficacy")
    assert by_item["mean"] == by_person["mean"] == pytest.approx(4 / 6)
    assert (by_person["ci_lo"], by_person["ci_hi"]) == (0.0, 1.0)
    assert by_item["ci_lo"] > 0.0 or by_item["ci_hi"] < 1.0
    assert (by_item["ci_unit"], by_item["n_units"]) == ("item", 6)
    assert (by_person["ci_unit"], by_person["n_units"]) == ("person", 2)
    # one event only: the event bootstrap cannot say how another event would fare
    by_event = row(A.summarise(res, its, n_boot=200, unit="event", units=units), "person", "ga", "person", "efficacy")
    assert by_event["ci_lo"] == by_event["ci_hi"] == pytest.approx(4 / 6) and by_event["n_units"] == 1
    # "concept": a person metric is clustered by person
    by_concept = row(A.summarise(res, its, n_boot=2000, unit="concept", units=units), "person", "ga", "person", "efficacy")
    assert by_concept["ci_unit"] == "person" and by_concept["ci_lo"] == by_person["ci_lo"]


def test_cluster_bootstrap_refuses_bad_units():
    res, its = frames({("person", "ga", "person", "efficacy"): [1, 0]})
    with pytest.raises(ConfigError, match="unit='people'; allowed"):
        A.summarise(res, its, unit="people")
    with pytest.raises(ConfigError, match="needs units="):
        A.summarise(res, its, unit="person")
    partial = pd.DataFrame({"item_id": ["person-efficacy-0"], "person": ["A"], "event": ["e"]})
    with pytest.raises(ConfigError, match="1 item\\(s\\) not in units"):
        A.summarise(res, its, unit="person", units=partial)


def test_item_index_gives_the_frames_paired_deltas_to_the_bit():
    # paired (the same images), unpaired (another image set), a repeated item and a missing value
    res, its = frames(
        {
            ("person", "ga", "person", "efficacy"): [1, 0, 1, 1, 0.5, 0],
            ("person", "finetune", "person", "efficacy"): [0, 0, 1, 0, 0, 0],
            ("person", "ga", "person", "retain"): [1, 1, 0.5, 1],
        },
        seeds=(0, 1),
    )
    its = pd.concat([its, its.iloc[[0]].assign(value=0.0)], ignore_index=True)  # item 0 twice in seed 0: mean 0.5
    its.loc[3, "value"] = np.nan
    index = A.ItemIndex(its)
    for a, b in (
        (("person", "ga", "person", "efficacy"), ("person", "finetune", "person", "efficacy")),
        (("person", "ga", "person", "efficacy"), ("person", "ga", "person", "retain")),
    ):
        by_frame, by_index = A.paired_delta(its, a, b, 300, 0), A.paired_delta(index, a, b, 300, 0)
        assert (by_frame.value, by_frame.lo, by_frame.hi) == (by_index.value, by_index.lo, by_index.hi)
    assert A.paired_delta(index, ("person", "ga", "person", "efficacy"), ("event", "ga", "event", "efficacy"), 100, 0) is None


def test_paired_delta_by_person_by_hand():
    # forgetting minus finetune per image: person A's four images all 1, person B's two all 0.
    # Drawing two people: AA -> 1, AB/BA -> 4/6, BB -> 0, so the 95 % interval is [0, 1]
    res, its = frames(
        {("person", "ga", "person", "efficacy"): [1, 1, 1, 1, 0, 0], ("person", "finetune", "person", "efficacy"): [0] * 6}
    )
    units = pd.DataFrame({"item_id": [f"person-efficacy-{j}" for j in range(6)], "person": list("AAAABB"), "event": ["e0"] * 6})
    a, b = ("person", "ga", "person", "efficacy"), ("person", "finetune", "person", "efficacy")
    by_person = A.paired_delta(A.ItemIndex(its, unit="concept", units=units), a, b, 2000, 0)
    assert by_person.value == pytest.approx(4 / 6) and (by_person.lo, by_person.hi) == (0.0, 1.0)
    by_image = A.paired_delta(its, a, b, 2000, 0)
    assert by_image.lo > 0.0 or by_image.hi < 1.0
    with pytest.raises(ConfigError, match="unit='people'; allowed"):
        A.ItemIndex(its, unit="people")
    with pytest.raises(ConfigError, match="needs units="):
        A.ItemIndex(its, unit="person")


# ------------------------------------------------------------------ chapter 5


def _both(values: dict) -> dict:
    return {("both", m, c, k): v for (m, c, k), v in values.items()}


def test_table2_deltas_by_hand():
    gd_p = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 0], float)  # 0.4
    bgd_p = gd_p.copy()
    bgd_p[[2, 3, 5]] = 1  # 0.7: +0.3 on the same items
    gd_e = np.linspace(0.2, 0.6, 10)
    res, its = frames(
        _both(
            {
                ("gd", "person", "efficacy"): gd_p,
                ("gd+bgd", "person", "efficacy"): bgd_p,
                ("gd", "event", "efficacy"): gd_e,
                ("gd+bgd", "event", "efficacy"): gd_e - 0.1,
                ("gd", "person", "retain"): [0.8] * 10,
                ("gd+bgd", "person", "retain"): [0.7] * 10,
            }
        )
    )
    s = A.summarise(res, its, n_boot=300)
    t = A.table2(s, its, n_boot=300).set_index(["method", "concept", "metric"])
    assert t.loc[("gd+bgd", "person", "efficacy"), "delta"] == pytest.approx(0.3)
    assert t.loc[("gd+bgd", "event", "efficacy"), "delta"] == pytest.approx(-0.1)
    # a constant shift on paired items has a zero-width paired interval
    assert t.loc[("gd+bgd", "event", "efficacy"), "delta_lo"] == pytest.approx(-0.1)
    assert t.loc[("gd+bgd", "person", "retain"), "delta"] == pytest.approx(-0.1)
    lo, hi = t.loc[("gd+bgd", "person", "efficacy"), ["delta_lo", "delta_hi"]]
    assert 0 <= lo <= 0.3 <= hi
    assert np.isnan(t.loc[("gd", "person", "efficacy"), "delta"])
    assert t.loc[("gd+bgd", "person", "efficacy"), "paper"] == pytest.approx(0.635)


def test_simultaneous_vs_single_is_paired():
    single = np.ones(12)
    both = np.r_[np.ones(6), np.zeros(6)]
    res, its = frames({("person", "gd", "person", "efficacy"): single, ("both", "gd", "person", "efficacy"): both})
    s = A.summarise(res, its, n_boot=300)
    v = A.simultaneous_vs_single(s, its, n_boot=300).set_index(["method", "concept"])
    r = v.loc[("gd", "person")]
    assert r["single"] == 1.0 and r["both"] == 0.5 and r["delta"] == pytest.approx(-0.5)
    assert r["delta_hi"] < 0


# ------------------------------------------------------------------ chapter 6


def test_interference_matrix_by_hand():
    vals = {
        ("person", "finetune", "person", "efficacy"): [0.1] * 4,
        ("person", "gd", "person", "efficacy"): [0.9] * 4,
        ("person", "finetune", "person", "scope"): [0.8] * 4,
        ("person", "gd", "person", "scope"): [0.6] * 4,
        ("event", "finetune", "event", "efficacy"): [0.2] * 4,
        ("event", "gd", "event", "efficacy"): [0.5] * 4,
        ("event", "finetune", "event", "scope"): [1.0] * 4,
        ("event", "gd", "event", "scope"): [0.75] * 4,
        ("both", "finetune", "person", "efficacy"): [0.0] * 4,
        ("both", "gd", "person", "efficacy"): [0.4] * 4,
        ("both", "finetune", "event", "efficacy"): [0.2] * 4,
        ("both", "gd", "event", "efficacy"): [0.3] * 4,
    }
    res, its = frames(vals)
    s = A.summarise(res, its, n_boot=100)
    m = A.interference_matrix(s, "gd", its, n_boot=100)
    assert list(m.index) == ["person", "event", "both"] and list(m.columns) == ["person", "event"]
    expect = {
        ("person", "person"): -0.8,
        ("person", "event"): -0.2,
        ("event", "person"): -0.25,
        ("event", "event"): -0.3,
        ("both", "person"): -0.4,
        ("both", "event"): -0.1,
    }
    for (t, c), v in expect.items():
        assert m.loc[t, c] == pytest.approx(v), (t, c)
    raw = A.interference_matrix(s, "gd", value="score")
    assert raw.loc["person", "person"] == pytest.approx(0.1)  # name precision = 1 − efficacy
    tab = A.interference_table(s, "gd", its, n_boot=100).set_index(["target", "measured"])
    assert tab.loc[("person", "event"), "role"] == "interference"
    assert tab.loc[("both", "event"), "role"] == "intended"
    assert tab.loc[("person", "person"), "delta_lo"] == pytest.approx(-0.8)
    again = A.interference_matrix(s, "gd", table=tab.reset_index())
    assert again.equals(m)


def test_interference_rows_read_on_other_images_are_labelled_apart():
    """Targets person and both are evaluated on different samples of the person-forget images
    (each target leaves out its own validation images; target both also the event-forget ones
    that show forget people), so finetune's name precision there is 62/64 under one target and
    61/62 under the other. Two rows with one label must be one quantity with one value."""
    missed = np.zeros(64)
    missed[[10, 63]] = 1.0  # person efficacy per image: 1 where finetune did not name the person
    vals = {
        ("person", "finetune", "person", "efficacy"): missed,
        ("person", "gd", "person", "efficacy"): np.ones(64),
        ("both", "finetune", "person", "efficacy"): missed[:62],  # target both: 62 of those images
        ("both", "gd", "person", "efficacy"): np.ones(62),
    }
    res, its = frames(vals)
    s = A.summarise(res, its, n_boot=50)
    tab = A.interference_table(s, "gd", its, n_boot=50)
    cell = tab.set_index(["target", "measured"])
    assert cell.loc[("person", "person"), "finetune"] == pytest.approx(62 / 64)
    assert cell.loc[("both", "person"), "finetune"] == pytest.approx(61 / 62)
    assert tab.groupby("images")["finetune"].nunique().max() == 1, "one label, two finetune values"
    assert "target person" in cell.loc[("person", "person"), "images"]
    assert "target both" in cell.loc[("both", "person"), "images"]
    assert cell.loc[("person", "person"), "n_images"] == 64 and cell.loc[("both", "person"), "n_images"] == 62


def _image_level(effect: float, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = 40
    ft_f, ft_r = rng.uniform(0.4, 0.9, n), rng.uniform(0.4, 0.9, n)
    noise = lambda: rng.normal(0, 0.05, n)  # noqa: E731
    return frames(
        {
            ("person", "finetune", "person", "scope"): ft_f,
            ("person", "finetune", "person", "scope_retain"): ft_r,
            ("person", "gd", "person", "scope"): np.clip(ft_f - effect + noise(), 0, 1),
            ("person", "gd", "person", "scope_retain"): np.clip(ft_r + noise(), 0, 1),
        }
    )


def test_paired_image_level_detects_a_planted_difference():
    _, its = _image_level(0.3, np.random.default_rng(1))
    s, per = A.paired_image_level(its, "gd", n_boot=1000, n_perm=1000, seed=0)
    r = s.set_index("direction").loc["forget people → event answers"]
    assert r["difference"] == pytest.approx(r["delta_forget"] - r["delta_retain"])
    assert -0.4 < r["difference"] < -0.2 and r["ci_hi"] < 0 and r["p_value"] < 0.01
    assert set(per["images"]) == {"forget", "retain"} and len(per) == 80
    f = per[per["images"] == "forget"]
    assert np.allclose(f["delta"], f["method"] - f["finetune"])


def test_paired_image_level_null_is_not_significant():
    _, its = _image_level(0.0, np.random.default_rng(2))
    s, _ = A.paired_image_level(its, "gd", n_boot=1000, n_perm=1000, seed=0)
    r = s.iloc[0]
    assert r["ci_lo"] < 0 < r["ci_hi"] and r["p_value"] > 0.05


# ------------------------------------------------------------------ the paper's tables


def test_paper_tables_transcribed_and_converted():
    assert A.PAPER_TABLE1.loc["gd", "P-eff"] == 98.9 and A.PAPER_TABLE1.loc["finetune", "E-eff"] == 0.18
    assert A.PAPER_TABLE1.loc["kl", "POPE (after event run)"] == 78.8
    assert A.PAPER_TABLE2.loc["kl+bgd", "P-eff"] == 48.1 and A.PAPER_TABLE2.loc["gd", "E-eff"] == 0.36
    res, its = frames({("person", "gd", "person", "efficacy"): [1, 1, 0, 1], ("event", "gd", "event", "efficacy"): [0.5, 0.7]})
    side = A.side_by_side(A.summarise(res, its, n_boot=50))
    r = side[(side.table == "Table 1") & (side.method == "gd") & (side.concept == "person") & (side.metric == "efficacy")].iloc[0]
    assert r["paper"] == pytest.approx(0.989) and r["ours"] == pytest.approx(0.75) and r["same_measure"]
    e = side[(side.table == "Table 1") & (side.method == "gd") & (side.concept == "event") & (side.metric == "efficacy")].iloc[0]
    assert e["paper"] == pytest.approx(0.58) and not e["same_measure"] and "keywords" in e["our_measure"]
    assert "G-Eval" in e["paper_measure"]


# ------------------------------------------------------------------ findings


def _gap_rows():
    """finetune knows the people and events, goal does not (so the findings can be tested)."""
    return {
        ("person", "finetune", "person", "efficacy"): [0.0] * 20,
        ("person", "goal", "person", "efficacy"): [1.0] * 20,
        ("event", "finetune", "event", "efficacy"): [0.0] * 20,
        ("event", "goal", "event", "efficacy"): [1.0] * 20,
    }


def test_finding4_reproduced_when_planted():
    vals = _gap_rows()
    vals[("person", "gd", "person", "efficacy")] = [1.0] * 20
    vals[("both", "gd", "person", "efficacy")] = [1.0] * 8 + [0.0] * 12
    res, its = frames(vals)
    s = A.summarise(res, its, n_boot=300)
    t = A.finding_tests(its, n_boot=500)
    f4 = t[t.finding == 4]
    assert len(f4) == 1 and f4.iloc[0]["estimate"] == pytest.approx(0.6) and f4.iloc[0]["verdict"] == A.REPRODUCED
    fnd = A.findings(s, its, tests=t).set_index("finding")
    assert fnd.loc[4, "verdict"] == A.REPRODUCED
    assert "0.60" in fnd.loc[4, "evidence"] and "1 of 1" in fnd.loc[4, "explanation"]
    assert fnd.loc[5, "verdict"] == A.CANNOT_TEST  # no BGD runs: not measured


def test_finding4_inconclusive_on_overlapping_intervals():
    vals = _gap_rows()
    single = np.array([1.0] * 10 + [0.0] * 10)
    both = single.copy()
    both[[0, 1, 2]] = 0.0
    both[[10, 11]] = 1.0  # paired difference 0.05, with a wide interval
    vals[("person", "gd", "person", "efficacy")] = single
    vals[("both", "gd", "person", "efficacy")] = both
    res, its = frames(vals)
    t = A.finding_tests(its, n_boot=500)
    r = t[t.finding == 4].iloc[0]
    assert r["lo"] < 0 < r["hi"] and r["hi"] > r["margin"]
    assert r["verdict"] == A.INCONCLUSIVE
    assert A.findings(A.summarise(res, its, n_boot=100), its, tests=t).set_index("finding").loc[4, "verdict"] == A.INCONCLUSIVE


def test_finding5_and_seed_disagreement():
    vals = _gap_rows()
    vals[("person", "gd", "person", "efficacy")] = [1.0] * 20
    vals[("both", "gd", "person", "efficacy")] = [0.5] * 20
    # seed 0: BGD much better; seed 1: BGD a little worse -> the pooled interval may be > 0,
    # but the seeds disagree, so the sub-test is not called.
    vals[("both", "gd+bgd", "person", "efficacy")] = lambda s: [0.9] * 20 if s == 0 else [0.45] * 20
    res, its = frames(vals, seeds=(0, 1))
    t = A.finding_tests(its, n_boot=300)
    r = t[(t.finding == 5)].iloc[0]
    assert r["estimate"] == pytest.approx(0.175) and r["lo"] > 0
    assert r["verdict"] == A.INCONCLUSIVE and "s0: 0.40" in r["per_seed"] and "s1: -0.05" in r["per_seed"]
    assert "recovered" in r["note"]


def test_findings_untestable_when_finetune_never_learned():
    vals = {
        ("person", "finetune", "person", "efficacy"): [1.0] * 10,
        ("person", "goal", "person", "efficacy"): [1.0] * 10,
        ("person", "gd", "person", "efficacy"): [1.0] * 10,
        ("both", "gd", "person", "efficacy"): [0.0] * 10,
    }
    res, its = frames(vals)
    fnd = A.findings(A.summarise(res, its, n_boot=50), its, n_boot=100).set_index("finding")
    assert fnd.loc[4, "verdict"] == A.CANNOT_TEST and "never learned" in fnd.loc[4, "explanation"]
    text = A.findings_markdown(fnd.reset_index(), profile="test", scorers=["keywords"])
    assert "Finding 4 — cannot test" in text and "1 seed" in text


def test_combine_rule():
    R, N, Inc, C = A.REPRODUCED, A.CONTRADICTED, A.INCONCLUSIVE, A.CANNOT_TEST
    assert A.combine_verdicts([R, R, Inc]) == R
    assert A.combine_verdicts([R, Inc, Inc]) == Inc
    assert A.combine_verdicts([R, N, R]) == A.MIXED
    assert A.combine_verdicts([N, N]) == N
    assert A.combine_verdicts([R, C, C, C]) == R  # an untestable sub-test counts for nothing
    assert A.combine_verdicts([C, C]) == C
    assert A.combine_verdicts([]) == C


def test_format_ci():
    assert A.format_ci(0.5, 0.4, 0.6) == "0.50 [0.40, 0.60]"
    assert A.format_ci(0.5, float("nan"), 0.6) == "0.50"
    assert A.format_ci(float("nan"), 0, 1) == "–"


def test_sequences_per_step_follow_the_losses_inputs():
    b = 8
    assert A.sequences_per_step("ga", b) == (8, 8)
    assert A.sequences_per_step("gd", b) == (16, 16) and A.sequences_per_step("npo", b) == (16, 16)
    assert A.sequences_per_step("po", b) == (16, 16)  # refusals + retain, never the true answers
    assert A.sequences_per_step("dpo", b) == (16, 24)  # true answer and refusal share a sequence
    assert A.sequences_per_step("kl", b) == (16, 16)  # the reference on retain is computed up front
    assert A.sequences_per_step("gd", b, retain_weight=0.0) == (8, 8)
    assert A.sequences_per_step("dpo", b, retain_weight=0.0) == (8, 16)
    assert A.sequences_per_step("undial", b) == (8, 8)  # the forget answers against a fixed target, no retain
    assert A.sequences_per_step("rmu", b) == (16, 16) and A.sequences_per_step("rmu", b, retain_weight=0.0) == (8, 8)
    assert A.sequences_per_step("task_vector", b) == (8, 8) and A.sequences_per_step("siu", b) == (8, 8)


def test_step_costs_read_the_trajectories(tmp_path):
    from pebench_core.config import load_config
    from pebench_core.stages import unlearned_dir

    cfg = load_config("smoke", seed=0, overrides={"unlearn": {"targets": ["person"], "methods": ["ga", "kl"]}})
    for method, dt in (("ga", 0.1), ("kl", 0.25)):
        folder = unlearned_dir(cfg, method, "person", tmp_path)
        folder.mkdir(parents=True)
        secs = np.cumsum([dt] * 9 + [5.0] + [dt] * 5)  # one slow step (an efficacy check): not the median
        pd.DataFrame({"step": range(1, 16), "seconds": secs}).to_parquet(folder / "trajectory.parquet")
    runs = A.Runs([0], {0: cfg}, {0: tmp_path}, pd.DataFrame(), pd.DataFrame())
    from pebench_core.run import Run

    trajectories = Run.trajectories_for_seeds(runs)  # the run handle finds the files; the analysis reads tables
    assert set(trajectories["method"]) == {"ga", "kl"} and len(trajectories) == 30
    c = A.step_costs(runs, trajectories).set_index("method")
    assert c.loc["ga", "s_per_step"] == pytest.approx(0.1) and c.loc["kl", "s_per_step"] == pytest.approx(0.25)
    assert c.loc["kl", "x_ga"] == pytest.approx(2.5) and c.loc["kl", "sequences"] == 2 * cfg.unlearn.batch_size


def test_likelihood_race_by_hand():
    lk = pd.DataFrame(
        {
            "model": ["finetune", "finetune", "po", "po"],
            "logp_true": [-1.0, -2.0, -8.0, -3.0],
            "n_true": [2, 2, 2, 2],
            "logp_refusal": [-20.0, -30.0, -6.0, -9.0],
            "n_refusal": [4, 4, 4, 4],
            "logp_first_true": [-0.1, -0.2, -5.0, -0.5],
            "logp_first_refusal": [-9.0, -9.0, -1.0, -2.0],
        }
    )
    r = A.likelihood_race(lk)
    assert r.loc["finetune", "nll_true"] == pytest.approx(0.75)  # mean of 1/2 and 2/2
    assert r.loc["finetune", "nll_refusal"] == pytest.approx(6.25)  # mean of 20/4 and 30/4
    assert r.loc["po", "refusal_first"] == pytest.approx(0.5)  # -1 > -5 but -2 < -0.5
    assert r.loc["po", "refusal_likelier"] == pytest.approx(0.5)  # -6 > -8 but -9 < -3
    assert r.loc["finetune", "refusal_first"] == 0 and r.loc["finetune", "refusal_likelier"] == 0


def test_step_cost_table_ratio_is_the_ratio_of_the_times_it_shows():
    # two targets: GA takes 1 s and 3 s, GD 2 s and 4 s. Per-run ratios are 2 and 4/3 (median
    # 5/3), but the table shows medians 2 s and 3 s, so its ratio must be 1.5.
    costs = pd.DataFrame(
        {
            "seed": [0] * 4,
            "target": ["person", "event"] * 2,
            "method": ["ga", "ga", "gd", "gd"],
            "s_per_step": [1.0, 3.0, 2.0, 4.0],
            "sequences": [4, 4, 8, 8],
            "answers": [4, 4, 8, 8],
        }
    )
    c = A.step_cost_table(costs, order=["gd", "ga"])
    assert list(c.index) == ["gd", "ga"]
    assert c.loc["gd", "s_per_step"] == 3.0 and c.loc["gd", "x_ga"] == pytest.approx(1.5)
    assert c.loc["ga", "x_ga"] == 1.0 and c.loc["gd", "sequences"] == 8
    assert np.isnan(A.step_cost_table(costs[costs.method == "gd"])["x_ga"]).all()


def test_resample_counts_draw_n_with_replacement():
    from pebench_core.analysis.stats import _resample_counts

    w = _resample_counts(np.random.default_rng(0), 5, 20000)
    assert w.shape == (20000, 5) and (w.sum(axis=1) == 5).all() and (w >= 0).all()
    # multinomial(5, 1/5 each): mean 1 and variance 1 - 1/5 per unit; two units covary by -1/5
    assert np.allclose(w.mean(axis=0), 1.0, atol=0.03) and np.allclose(w.var(axis=0), 0.8, atol=0.04)
    assert abs(np.cov(w[:, 0], w[:, 1])[0, 1] + 0.2) < 0.03


def test_units_of_several_seeds_are_looked_up_by_seed():
    # the same image id shows person A in seed 0's world and person B in seed 1's
    res, its = frames({("person", "ga", "person", "efficacy"): [1, 1, 0, 0]}, seeds=(0, 1))
    ids = [f"person-efficacy-{j}" for j in range(4)]
    units = pd.concat(
        [
            pd.DataFrame({"item_id": ids, "person": list("AABB"), "event": ["e"] * 4, "seed": 0}),
            pd.DataFrame({"item_id": ids, "person": list("CCCD"), "event": ["e"] * 4, "seed": 1}),
        ]
    )
    r = row(A.summarise(res, its, n_boot=200, unit="person", units=units), "person", "ga", "person", "efficacy")
    assert r["n_units"] == 4 and r["ci_unit"] == "person"  # two people in each seed
    with pytest.raises(ConfigError, match="4 item\\(s\\) not in units"):
        A.summarise(res, its, unit="person", units=units[units["seed"] == 0])


def test_unit_note_says_what_the_intervals_resample():
    res, its = frames({("person", "ga", "person", "efficacy"): [1, 1, 1, 1, 0, 0], ("event", "ga", "event", "efficacy"): [1, 0]})
    units = pd.DataFrame(
        {
            "item_id": [f"person-efficacy-{j}" for j in range(6)] + ["event-efficacy-0", "event-efficacy-1"],
            "person": list("AAAABB") + ["A", "B"],
            "event": ["e0"] * 6 + ["e0", "e1"],
        }
    )
    note = A.unit_note(A.summarise(res, its, n_boot=50, unit="concept", units=units))
    assert "whole events (2 per interval, event metrics)" in note and "whole people (2 per interval, person metrics)" in note
    assert "images (2–6 per interval, event and person metrics)" in A.unit_note(A.summarise(res, its, n_boot=50))


def test_interval_words_name_the_units():
    item = pd.DataFrame({"concept": ["person", "event"], "ci_unit": ["item", "item"]})
    assert A.interval_words(item) == "images"
    both = pd.DataFrame({"concept": ["person", "event"], "ci_unit": ["person", "event"]})
    assert A.interval_words(both) == "whole people (person metrics) and whole events (event metrics)"
    assert A.interval_words(pd.DataFrame({"concept": ["person"]})) == "images"  # no ci_unit column: the default


def test_simultaneous_delta_is_finding_4_negated():
    # the table of chapter 5 and finding 4 read one estimate per pair, so they cannot word it differently
    rng = np.random.default_rng(3)
    vals = {}
    for m in ("ga", "gd"):
        for c in ("person", "event"):
            vals[(c, m, c, "efficacy")] = rng.random(12).round(2)
            vals[("both", m, c, "efficacy")] = rng.random(12).round(2)
        vals[("person", "finetune", "person", "efficacy")] = np.zeros(12)
        vals[("event", "finetune", "event", "efficacy")] = np.zeros(12)
        vals[("person", "goal", "person", "efficacy")] = np.ones(12)
        vals[("event", "goal", "event", "efficacy")] = np.ones(12)
    res, its = frames(vals)
    s = A.summarise(res, its, n_boot=200)
    svs = A.simultaneous_vs_single(s, its, n_boot=300).set_index(["method", "concept"])
    f4 = A.finding_tests(its, n_boot=300, methods=["ga", "gd"])
    f4 = f4[f4["finding"] == 4]
    assert len(f4) == 4
    for r in f4.itertuples():
        m, c = r.subject.split(" (")[0], r.subject.split("(")[1].rstrip(")")
        row = svs.loc[(m, c)]
        assert (row["delta"], row["delta_lo"], row["delta_hi"]) == pytest.approx((-r.estimate, -r.hi, -r.lo))


def test_width_comparison_says_which_intervals_widen_from_the_numbers():
    """Chapter 3's sentence on the two intervals: read off the widths as the table shows them,
    never assumed (a cluster interval may come out narrower than the item interval)."""
    keys = {
        "method": ["finetune", "goal", "goal", "finetune"],
        "concept": ["person"] * 4,
        "metric": ["efficacy", "efficacy", "retain", "retain"],
        "target": ["person"] * 4,
    }
    items = pd.DataFrame({**keys, "ci_lo": [0.90, 0.10, 0.50, np.nan], "ci_hi": [1.00, 0.30, 0.60, np.nan]})
    people = pd.DataFrame({**keys, "ci_lo": [0.95, 0.00, 0.501, 0.2], "ci_hi": [1.00, 0.50, 0.599, 0.4]})
    text = A.stats.width_comparison(items, people)
    assert text.startswith("Of the 4 rows, resampling people or events gives a wider interval than resampling images")
    assert "images in 1 (goal person efficacy (target person))," in text
    assert "a narrower one in 1 (finetune person efficacy (target person))" in text
    assert "one as wide, at the 2 decimals shown, in 1 (goal person retain (target person))" in text
    assert "1 (finetune person retain (target person)) has no interval to compare" in text
    flipped = A.stats.width_comparison(people, items, names=("people", "images"))
    assert "images gives a wider interval than people in 1 (finetune person efficacy (target person))" in flipped
