"""The learning-rate grid's rule (pebench_core.tuning) and its validation subset: by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pebench_core import evaluate as E
from pebench_core.config import ConfigError, load_config
from pebench_core.data import load_dataset, refusal_for
from pebench_core.tuning import UNTUNED, choose, is_tuned, rates, rule_text


def test_the_grid_is_multiples_of_the_rate():
    u = load_config("tiny").unlearn
    assert rates(u) == pytest.approx([3e-4, 1e-3, 3e-3]) and is_tuned(u)
    assert rates(dataclasses.replace(u, lr=2e-5, lr_factors=(3.0, 1.0))) == pytest.approx([2e-5, 6e-5])
    one = dataclasses.replace(u, lr_factors=(1.0,))
    assert not is_tuned(one) and rule_text(one, load_config("tiny").eval) == UNTUNED
    text = rule_text(u, load_config("tiny").eval)
    assert "0.0003, 0.001, 0.003" in text and "40 steps" in text and "16 forget" in text and "lower rate" in text


def test_choose_takes_the_best_finished_rate_and_ties_go_low():
    pts = [
        {"lr": 3e-3, "criterion": 0.7, "status": "ok"},
        {"lr": 1e-3, "criterion": 0.7, "status": "ok"},  # a tie: the lower rate
        {"lr": 3e-4, "criterion": 0.5, "status": "ok"},
    ]
    assert choose(pts) == 1
    pts[0]["criterion"] = 0.71
    assert choose(pts) == 0
    pts[0]["status"] = "stopped at step 3"  # a run that stopped is never kept, however it scored
    assert choose(pts) == 1
    with pytest.raises(ValueError, match="no learning rate"):
        choose([{"lr": 1e-3, "criterion": math.nan, "status": "ok"}, {"lr": 3e-3, "criterion": 0.9, "status": "stopped"}])


def test_a_grid_needs_validation_items_and_positive_distinct_factors():
    with pytest.raises(ConfigError, match="eval.val_items"):
        load_config("smoke", overrides={"eval": {"val_items": 0}})
    assert not is_tuned(load_config("smoke", overrides={"eval": {"val_items": 0}, "unlearn": {"lr_factors": [1.0]}}).unlearn)
    with pytest.raises(ConfigError, match="unlearn.lr_factors"):
        load_config("smoke", overrides=["unlearn.lr_factors=1,-2"])
    with pytest.raises(ConfigError, match="more than once"):
        load_config("smoke", overrides=["unlearn.lr_factors=1,1"])
    with pytest.raises(ConfigError, match="at least one"):
        load_config("smoke", overrides={"unlearn": {"lr_factors": []}})
    assert load_config("smoke", overrides=["unlearn.lr_factors=0.5,2"]).unlearn.lr_factors == (0.5, 2.0)


@pytest.mark.parametrize("target", ["person", "event", "both"])
def test_the_final_metrics_never_see_the_validation_images(smoke_world_dir, target):
    ds = load_dataset(smoke_world_dir)
    cfg = dataclasses.replace(load_config("smoke").eval, val_items=3)
    val = E.validation_sets(ds, target, cfg.val_items, seed=0)
    ids = E.validation_ids(ds, target, cfg, seed=0)
    assert ids and all(len(v) <= 3 for v in val.values())
    assert set(val) == {f"{c}:forget" for c in E.CONCEPTS_OF[target]} | {"retain"}
    p = E.plan(ds, target, cfg, seed=0)
    for split, items in p.sets.items():
        if split != "pope":
            assert not ids & {i.id for i in items}, split
    assert E.validation_sets(ds, target, 3, seed=0) == val  # seeded
    # without a validation subset the plan is what it was
    assert E.validation_sets(ds, target, 0, seed=0) == {}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_target_samples_a_concepts_forget_images_from_one_pool(smoke_world_dir, seed):
    """Target both answers the very forget images the single targets answer (finding 4's
    comparison is paired), and no target's forget metrics see any grid's validation forget
    images (an event's validation images may show a forget person)."""
    ds = load_dataset(smoke_world_dir)
    cfg = dataclasses.replace(load_config("smoke").eval, val_items=5, max_items=6)
    plans = {t: E.plan(ds, t, cfg, seed=seed) for t in ("person", "event", "both")}
    for c in ("person", "event"):
        assert [i.id for i in plans[c].sets[f"{c}:forget"]] == [i.id for i in plans["both"].sets[f"{c}:forget"]]
    every_val = {
        i.id for t in plans for k, v in E.validation_sets(ds, t, cfg.val_items, seed).items() if k != "retain" for i in v
    }
    for t, p in plans.items():
        for split, items in p.sets.items():
            if split.endswith(":forget"):
                assert not every_val & {i.id for i in items}, (t, split)


def test_the_criterion_by_hand(smoke_world_dir, monkeypatch):
    """A model that refuses on the forget images and answers right on the retain images scores
    1; one that answers right everywhere (nothing forgotten) and one that refuses everywhere
    (forgetting by breaking) both score 0.5."""
    import random

    ds = load_dataset(smoke_world_dir)
    cfg = dataclasses.replace(load_config("smoke").eval, val_items=3)
    val = E.validation_sets(ds, "both", 3, seed=0)
    forget_ids = {i.id for k, v in val.items() if k != "retain" for i in v}
    rng = random.Random(0)

    def fake(right_on_forget: bool, right_on_retain: bool):
        def answer_all(bundle, ds_, qas, cfg_, load_image=None):
            out = {}
            for q in qas:
                right = right_on_forget if q.item_id in forget_ids else right_on_retain
                out[(q.item_id, q.question)] = q.answer if right else refusal_for(q.kind, rng)
            return out

        return answer_all

    for forget_right, retain_right, want in ((False, True, 1.0), (True, True, 0.5), (False, False, 0.5)):
        monkeypatch.setattr(E, "answer_all", fake(forget_right, retain_right))
        score = E.validation_score(None, ds, "both", cfg, seed=0)
        assert score["criterion"] == pytest.approx(want), (forget_right, retain_right)
        assert score["efficacy/person"] == (0.0 if forget_right else 1.0)
        assert score["retain/person"] == (1.0 if retain_right else 0.0)
