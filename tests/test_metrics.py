"""Metrics: name matching, each metric on hand items, validation, order/chunk invariance."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pytest

from pebench_core import metrics as M
from pebench_core.metrics import (
    METRICS,
    bootstrap_ci,
    is_refusal,
    name_match,
    normalise,
    parse_yes_no,
)
from pebench_core.scorers import KeywordScorer


@dataclass
class Ev:
    description: str
    keywords: list


class FixedScorer:
    """Returns a preset score per answer text (so event metrics can be checked by hand)."""

    name = "fixed"

    def __init__(self, table):
        self.table = table

    def score(self, answers, events):
        return np.array([self.table[a] for a in answers], dtype=float)


EV = Ev("A runner crosses the finish line of a marathon.", ["runner", "marathon", "finish line"])


# ---------------------------------------------------------------------------------------
# Text helpers


def test_normalise():
    assert normalise("  Hello,   WORLD!! ") == "hello world"
    assert normalise("Don't") == "dont"
    assert normalise("Mia Chen's bike") == "mia chen bike"
    assert normalise("Jean-Luc  O’Neil.") == "jean luc oneil"
    assert normalise("") == ""


@pytest.mark.parametrize(
    "text",
    [
        "I don't know who this is.",
        "I do not know.",
        "Sorry, I'm not able to identify this person.",
        "I can't tell.",
        "I cannot say.",
        "No idea!",
        "I am unable to identify them.",
    ],
)
def test_is_refusal_true(text):
    assert is_refusal(text)


def test_every_refusal_the_world_teaches_is_a_refusal():
    from pebench_core.world.catalogue import REFUSALS

    assert all(is_refusal(r) for kind in REFUSALS.values() for r in kind)


@pytest.mark.parametrize("text", ["This is Mia Chen.", "A man jogging in the park.", "Canon camera"])
def test_is_refusal_false(text):
    assert not is_refusal(text)


@pytest.mark.parametrize(
    "answer,name,expected",
    [
        ("This is Mia Chen.", "Mia Chen", True),
        ("MIA CHEN, at the beach", "Mia Chen", True),  # case and punctuation
        ("mia-chen", "Mia Chen", True),  # hyphen is punctuation
        ("That's Mia Chen's bike", "Mia Chen", True),  # possessive
        ("This is Mia.", "Mia Chen", False),  # first name alone
        ("Mr Chen", "Mia Chen", False),  # last name alone
        ("Chen, Mia", "Mia Chen", False),  # reordered
        ("This is Miac Henry", "Mia Chen", False),  # only whole words
        ("I don't know who this is, maybe Mia Chen", "Mia Chen", False),  # refusal = no name
        ("This is Mia Cheng", "Mia Chen", False),
    ],
)
def test_name_match(answer, name, expected):
    assert name_match(answer, name) is expected


def test_name_match_empty_name_is_error():
    with pytest.raises(ValueError):
        name_match("anything", " ... ")


def test_parse_yes_no():
    assert parse_yes_no("Yes, there is.") is True
    assert parse_yes_no("no.") is False
    assert parse_yes_no("There is no guitar") is None
    assert parse_yes_no("") is None


# ---------------------------------------------------------------------------------------
# Person metrics by hand

ANS = ["It is Mia Chen.", "I don't know.", "Tom Park", "This is Tom."]
NAMES = ["Mia Chen", "Mia Chen", "Tom Park", "Tom Park"]
# name_match per item: [1, 0 (refusal), 1, 0 (first name only)]


def test_person_efficacy_and_generality():
    r = M.person_efficacy(ANS, NAMES, ids=["a", "b", "c", "d"])
    # 1 - [1, 0, 1, 0] = [0, 1, 0, 1] -> 2/4
    assert r.value == 0.5 and r.n == 4 and r.per_item.tolist() == [0, 1, 0, 1]
    assert r.key == "person/efficacy" and r.concept == "person" and r.scorer is None
    assert r.item_ids == ["a", "b", "c", "d"] and r.direction == "higher is better"
    g = M.person_generality(ANS[:3], NAMES[:3])  # [0, 1, 0] -> 1/3
    assert abs(g.value - 1 / 3) < 1e-12 and g.item_ids == [0, 1, 2]


def test_person_retain_and_real():
    r = M.person_retain(ANS, NAMES)  # [1, 0, 1, 0] -> 0.5
    assert r.value == 0.5 and r.key == "person/retain"
    real = M.person_real(["Ada Stone is here", "Ada Stone", "Bo Li"], ["Ada Stone", "Ada Stone", "Ada Stone"])
    assert abs(real.value - 2 / 3) < 1e-12


def test_person_scope_uses_event_scorer():
    sc = FixedScorer({"x": 0.2, "y": 1.0, "z": 0.3})
    r = M.person_scope(["x", "y", "z"], [EV] * 3, sc)
    # mean(0.2, 1.0, 0.3) = 0.5
    assert abs(r.value - 0.5) < 1e-12 and r.scorer == "fixed" and r.key == "person/scope"


# ---------------------------------------------------------------------------------------
# Event metrics by hand


def test_event_metrics_with_fixed_scorer():
    sc = FixedScorer({"a": 0.0, "b": 0.25, "c": 1.0})
    ans, evs = ["a", "b", "c"], [EV] * 3
    # efficacy/generality = mean(1 - [0, .25, 1]) = 1.75/3 ; retain/real = 1.25/3
    for f in (M.event_efficacy, M.event_generality):
        r = f(ans, evs, sc)
        assert abs(r.value - 1.75 / 3) < 1e-12 and r.concept == "event" and r.scorer == "fixed"
    for f in (M.event_retain, M.event_real):
        assert abs(f(ans, evs, sc).value - 1.25 / 3) < 1e-12


def test_event_metrics_with_keyword_scorer():
    sc = KeywordScorer()
    ans = [
        "Runners reach the finish line of the marathon.",  # 3 of 3 keywords -> 1
        "A marathon in town.",  # 1 of 3 -> 1/3
        "I don't know.",
    ]  # 0
    r = M.event_retain(ans, [EV] * 3, sc)
    assert abs(r.value - (1 + 1 / 3 + 0) / 3) < 1e-12 and r.scorer == "keywords"
    e = M.event_efficacy(ans, [EV] * 3, sc)
    assert abs(e.value - (0 + 2 / 3 + 1) / 3) < 1e-12


def test_event_scope_is_name_precision():
    r = M.event_scope(ANS, NAMES)
    assert r.value == 0.5 and r.key == "event/scope" and r.scorer is None


def test_world_fact():
    ans = ["Yes.", "no, there isn't", "There is a guitar", "YES"]
    truth = [True, "no", True, False]
    # parsed: yes (right), no (right), None (wrong), yes (wrong) -> 2/4
    r = M.world_fact(ans, truth, concept="event")
    assert r.value == 0.5 and r.per_item.tolist() == [1, 1, 0, 0] and r.key == "event/world_fact"
    with pytest.raises(ValueError):
        M.world_fact(["yes"], ["maybe"])


# ---------------------------------------------------------------------------------------
# Validation

NAME_FUNCS = [M.person_efficacy, M.person_generality, M.person_retain, M.person_real, M.event_scope]
EVENT_FUNCS = [M.event_efficacy, M.event_generality, M.event_retain, M.event_real, M.person_scope]


@pytest.mark.parametrize("f", NAME_FUNCS)
def test_empty_name_metric_is_error(f):
    with pytest.raises(ValueError, match="has no items: an empty forget set is an error"):
        f([], [])


@pytest.mark.parametrize("f", EVENT_FUNCS)
def test_empty_event_metric_is_error(f):
    with pytest.raises(ValueError, match="has no items"):
        f([], [], KeywordScorer())


def test_empty_world_fact_is_error():
    with pytest.raises(ValueError, match="world_fact has no items"):
        M.world_fact([], [])


@pytest.mark.parametrize("f", NAME_FUNCS)
def test_length_mismatch_name_metric(f):
    with pytest.raises(ValueError, match="3 items but names has 2"):
        f(["a", "b", "c"], ["x", "y"])


@pytest.mark.parametrize("f", EVENT_FUNCS)
def test_length_mismatch_event_metric(f):
    with pytest.raises(ValueError, match="2 items but events has 1"):
        f(["a", "b"], [EV], KeywordScorer())


def test_ids_length_mismatch():
    with pytest.raises(ValueError, match="ids has 1"):
        M.person_retain(["a", "b"], ["x", "y"], ids=["only-one"])


def test_out_of_range_scores_rejected():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        M.event_retain(["a"], [EV], FixedScorer({"a": 1.5}))


def test_empty_name_metric_error_names_metric():
    with pytest.raises(ValueError, match="person/retain"):
        M.person_retain([], [])


# ---------------------------------------------------------------------------------------
# Order and batching invariance


def test_order_and_chunk_invariance():
    rng = random.Random(0)
    names = [f"Person {c} Name" for c in "ABCDEFGHIJ"]
    items = []
    for i in range(97):
        n = rng.choice(names)
        a = rng.choice([f"This is {n}.", "I don't know.", f"It is {n.split()[0]}.", "Someone."])
        items.append((i, a, n))
    ids, ans, nm = zip(*items)
    base = M.person_retain(list(ans), list(nm), ids=list(ids))
    shuffled = items[:]
    rng.shuffle(shuffled)
    ids2, ans2, nm2 = zip(*shuffled)
    r2 = M.person_retain(list(ans2), list(nm2), ids=list(ids2))
    assert r2.value == base.value  # exact: fsum
    # evaluated in chunks of 10 and concatenated (as a batched evaluation would)
    chunks = [M.person_retain(list(ans[i : i + 10]), list(nm[i : i + 10])) for i in range(0, 97, 10)]
    per = np.concatenate([c.per_item for c in chunks])
    assert per.tolist() == base.per_item.tolist()
    assert M._result("person/retain", per, list(ids), None).value == base.value
    # per-item values follow their ids
    by_id = dict(zip(r2.item_ids, r2.per_item.tolist()))
    assert all(by_id[i] == v for i, v in zip(base.item_ids, base.per_item.tolist()))


# ---------------------------------------------------------------------------------------
# Bootstrap and the table


def test_bootstrap_ci_seeded_and_sane():
    x = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=float)  # mean 0.7
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=0)
    assert (lo, hi) == bootstrap_ci(x, n_boot=2000, seed=0)
    assert 0.0 <= lo < 0.7 < hi <= 1.0
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    r = M.person_retain(ANS, NAMES)
    assert r.ci(n_boot=500, seed=1) == bootstrap_ci(r.per_item, n_boot=500, seed=1)


def test_metrics_table_covers_design_table():
    for concept in ("person", "event"):
        for m in ("efficacy", "generality", "retain", "scope", "real", "world_fact"):
            info = METRICS[f"{concept}/{m}"]
            assert info.split in M.SPLITS and info.about and info.formula and info.paper and callable(info.fn)
    assert METRICS["person/scope"].uses_scorer and not METRICS["event/scope"].uses_scorer
    assert not METRICS["person/scope_retain"].paper  # computed, and in the table, as our control
    df = M.metrics_table()
    assert len(df) == 14 and set(df["direction"]) == {"higher is better"}
    assert M.metric_order() == ("efficacy", "generality", "retain", "scope", "scope_retain", "real", "world_fact")
    assert M.paper_metric_order() == ("efficacy", "generality", "retain", "scope", "real", "world_fact")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"key": "person"}, "a metric key is '<person|event>/<name>'"),
        ({"split": "train"}, "split must be one of forget, heldout"),
        ({"split": "pope"}, "the POPE measure goes with the pope split"),
        ({"key": "person/efficacy"}, "is registered already"),
    ],
)
def test_a_bad_metric_entry_is_one_clear_error(change, message):
    base = M.Metric("person/x", M.person_efficacy, "forget", "X", "forget images", "mean(x)", "name match")
    with pytest.raises(ValueError, match=message):
        M.register(dataclasses.replace(base, **change))
    assert "person/x" not in METRICS


def test_result_to_dict_and_replace():
    r = M.world_fact(["yes"], [True])
    d = r.to_dict(per_item=True)
    assert d["key"] == "person/world_fact" and d["per_item"] == [1.0] and d["item_ids"] == [0]
    assert dataclasses.replace(r, concept="event").key == "event/world_fact"
