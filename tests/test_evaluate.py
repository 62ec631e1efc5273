"""The evaluation harness: plans, answers and metrics; invariance to batch size and padding."""

import dataclasses

import pytest
import torch

from pebench_core.config import ConfigError, load_config
from pebench_core.data import load_dataset, refusal_for, world_texts
from pebench_core.evaluate import evaluate, metrics_from_answers, plan
from pebench_core.models import build_tiny
from pebench_core.scorers import get_scorer


@pytest.fixture(scope="module")
def setup(smoke_world_dir):
    cfg = load_config("smoke")
    ds = load_dataset(smoke_world_dir)
    bundle = build_tiny(cfg.model, world_texts(ds), cfg.world.image_size, seed=0)
    # Large random weights, so answers differ from image to image (a fresh init answers the
    # same string everywhere, which would make the invariance test vacuous).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bundle.model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p.shape[-1] ** 0.5))
    return cfg, ds, bundle


def test_plan_covers_both_concepts_for_both(setup):
    cfg, ds, _ = setup
    p = plan(ds, "both", cfg.eval)
    assert {"person:forget", "event:forget", "person:retain", "event:retain", "pope"} <= set(p.sets)
    fp = set(ds.splits["both"]["forget_people"])
    assert all(i.person in fp for i in p.sets["person:forget"])
    assert not {i.id for i in p.sets["person:forget"]} & {i.id for i in p.sets["person:retain"]}


def test_metrics_do_not_depend_on_batch_size(setup):
    cfg, ds, bundle = setup
    scorer = get_scorer("keywords")
    small = evaluate(bundle, ds, "person", dataclasses.replace(cfg.eval, batch_size=1, max_items=6), scorer=scorer)
    large = evaluate(bundle, ds, "person", dataclasses.replace(cfg.eval, batch_size=7, max_items=6), scorer=scorer)
    assert len(set(small.answers["answer"])) > 1, "answers should vary for this test to mean anything"
    assert small.answers.equals(large.answers)
    for a, b in zip(small.results, large.results):
        assert (a.key, a.value, a.n) == (b.key, b.value, b.n)


def test_every_metric_is_reported_per_concept(setup):
    cfg, ds, bundle = setup
    ev = evaluate(bundle, ds, "event", dataclasses.replace(cfg.eval, max_items=4))
    keys = {r.key for r in ev.results}
    assert keys == {
        "event/efficacy",
        "event/generality",
        "event/retain",
        "event/real",
        "event/scope",
        "event/scope_retain",
        "event/world_fact",
    }
    assert all(0.0 <= r.value <= 1.0 and r.n == len(r.per_item) for r in ev.results)


def test_metrics_from_answers_is_pure(setup):
    cfg, ds, _ = setup
    p = plan(ds, "person", dataclasses.replace(cfg.eval, max_items=3))
    truth = {}
    for q in p.questions(ds):
        truth[(q.item_id, q.question)] = q.answer  # a perfect model
    res = {r.key: r.value for r in metrics_from_answers(ds, p, truth, get_scorer("keywords"))}
    assert res["person/efficacy"] == 0.0 and res["person/retain"] == 1.0
    assert res["person/scope"] == 1.0 and res["person/world_fact"] == 1.0


def test_evaluation_computes_every_registered_metric(setup, monkeypatch):
    """The registry drives evaluation: an entry added is computed on its split, nothing else."""
    from pebench_core import metrics as M

    cfg, ds, _ = setup
    p = plan(ds, "event", dataclasses.replace(cfg.eval, max_items=3))
    truth = {(q.item_id, q.question): q.answer for q in p.questions(ds)}
    extra = M.Metric("event/names_on_retain", M.event_scope, "retain", "Names on retain images", "retain images",
                     "mean(name_match)", "name match", paper=False)  # fmt: skip
    monkeypatch.setitem(M.METRICS, extra.key, extra)
    res = {r.key: r for r in metrics_from_answers(ds, p, truth, get_scorer("keywords"))}
    assert res["event/names_on_retain"].item_ids == [i.id for i in p.sets["event:retain"]]
    assert res["event/names_on_retain"].value == 1.0  # a perfect model names every retain person
    assert set(res) == {m.key for m in M.metrics_of("event")}


def test_a_perfect_forgetter_scores_full_scope_under_target_both(setup):
    """Forgets exactly the forget people and events, keeps everything else: no interference, so
    both scopes are 1, though many forget images show a forget person at a forget event."""
    cfg, ds, _ = setup
    p = plan(ds, "both", cfg.eval)
    fp, fe = set(ds.splits["both"]["forget_people"]), set(ds.splits["both"]["forget_events"])
    assert any(i.event in fe for i in p.sets["person:forget"])  # the case that used to count
    answers = {}
    for q in p.questions(ds):
        forgotten = (q.kind == "person" and q.person in fp) or (q.kind == "event" and q.event in fe)
        answers[(q.item_id, q.question)] = refusal_for(q.kind) if forgotten else q.answer
    res = {r.key: r.value for r in metrics_from_answers(ds, p, answers, get_scorer("keywords"))}
    assert res["person/efficacy"] == 1.0 and res["event/efficacy"] == 1.0
    assert res["person/scope"] == 1.0 and res["event/scope"] == 1.0
    assert not any(i.event in fe for i in p.sets["event:scope-of-person"])
    assert not any(i.person in fp for i in p.sets["person:scope-of-event"])
    # a single target keeps its scope images: the forget images themselves
    single = plan(ds, "person", cfg.eval)
    assert single.sets["event:scope-of-person"] == single.sets["person:forget"]


def test_unknown_target_is_a_clear_error(setup):
    cfg, ds, _ = setup
    with pytest.raises(ConfigError, match="allowed: person, event, both"):
        plan(ds, "people", cfg.eval)
