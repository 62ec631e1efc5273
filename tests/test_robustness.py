"""The robustness probes (``pebench_core.probes``), their stage and their reading.

The pure parts against values worked out by hand (AUC placements, Min-K%, bf16 rounding, a
linear probe on separable points, seeded perturbations); the never-seen group of the world
(it changes nothing else, and no model trains on it); the probe stage on the smoke profile
(every metric for the bounds and a method, cached, the probed model left as it was); bad input;
and the wording rule of ``analysis.robustness``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pebench_core import analysis as A
from pebench_core import probes as R
from pebench_core.probes import context as probe_context
from pebench_core.analysis.stats import Estimate
from pebench_core.config import ConfigError, load_config
from pebench_core.data import STAGES, load_dataset, training_examples
from pebench_core.run import Run
from pebench_core.stages import collect_robustness, get_robustness, probed_model
from pebench_core.results import ITEM_COLUMNS, RESULT_COLUMNS
from pebench_core.storage import read_marker
from pebench_core.world import generate_world, plan_images


# ------------------------------------------------------------------ pure parts
def _image(seed: int = 0, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("kind", list(R.PERTURBATIONS))
def test_a_perturbation_is_seeded_keeps_the_size_and_changes_the_image(kind):
    img = _image()
    a, b = R.perturb(img, kind, 0.5, seed="x"), R.perturb(img, kind, 0.5, seed="x")
    assert a.size == img.size and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()  # the same seed, the same image
    diff = np.abs(np.asarray(a, dtype=float) - np.asarray(img, dtype=float)).mean()
    assert diff > 0.5, f"{kind} left the image (almost) as it was"


@pytest.mark.parametrize("kind", ["blur", "noise", "jpeg"])
def test_a_stronger_perturbation_changes_the_image_more(kind):
    img = _image(1, 48)
    base = np.asarray(img, dtype=float)
    weak, strong = (np.abs(np.asarray(R.perturb(img, kind, s, 3), dtype=float) - base).mean() for s in (0.2, 1.0))
    assert strong > weak


def test_perturb_refuses_an_unknown_kind_or_a_strength_out_of_range():
    with pytest.raises(ConfigError, match="robust.perturbations: unknown perturbation 'smear'; allowed: blur"):
        R.perturb(_image(), "smear", 0.5)
    for s in (0.0, 1.5):
        with pytest.raises(ConfigError, match="robust.strength must be > 0 and <= 1"):
            R.perturb(_image(), "blur", s)


def test_auc_placements_by_hand():
    # member 3 outranks all three non-members; member 1 outranks 0 and ties 1: (1 + ½) / 3
    p = R.auc_placements([3.0, 1.0], [2.0, 1.0, 0.0])
    assert p.tolist() == pytest.approx([1.0, 0.5])
    assert p.mean() == pytest.approx(0.75)
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    m, n = rng.normal(1, 1, 30), rng.normal(0, 1, 40)
    m[:5] = n[:5]  # ties
    assert R.auc_placements(m, n).mean() == pytest.approx(roc_auc_score([1] * 30 + [0] * 40, np.r_[m, n]))
    with pytest.raises(ValueError, match="members and non-members"):
        R.auc_placements([], [1.0])


def test_min_k_by_hand():
    lp = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    rows = torch.tensor([0, 0, 0, 1])
    # row 0: ⌈0.4·3⌉ = 2 least likely tokens, (−3 − 2)/2; row 1: its one token
    assert R.min_k_scores(lp, rows, 2, 0.4).tolist() == pytest.approx([-2.5, -4.0])
    assert R.min_k_scores(lp, rows, 2, 1.0).tolist() == pytest.approx([-2.0, -4.0])  # the loss attack
    assert R.min_k_scores(lp, rows, 3, 1.0)[2].isnan()  # a sequence without tokens
    with pytest.raises(ConfigError, match="robust.mink_share"):
        R.min_k_scores(lp, rows, 2, 0.0)


def test_a_linear_probe_on_separable_points_is_always_right_and_needs_two_classes():
    x = np.array([[0.0, 0.1], [0.1, 0.0], [5.0, 5.1], [5.1, 5.0]])
    y = ["a", "a", "b", "b"]
    hit = R.probe_accuracy(x, y, x + 0.05, y)
    assert hit.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert R.probe_accuracy(x, y, x, ["b", "b", "a", "a"]).tolist() == [0.0] * 4  # the labels swapped
    with pytest.raises(ConfigError, match="at least two classes"):
        R.probe_accuracy(x, ["a"] * 4, x, y)


def test_bf16_rounding_by_hand_and_the_original_is_left_alone():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1 + 2**-10, 3.0]]))  # bf16 keeps 8 bits: 1 + 2⁻¹⁰ becomes 1
    out = R.rounded_bf16(lin)
    assert out.weight.dtype == torch.float32
    assert out.weight.tolist() == [[1.0, 3.0]]
    assert lin.weight[0, 0].item() == 1 + 2**-10


def test_int8_weights_by_hand_per_row_and_the_original_is_left_alone():
    lin = torch.nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        # row 0: scale 1.27 / 127 = 0.01, so 0.004 rounds to 0 and 0.636 to 64 steps (0.64);
        # row 1: its own scale 2.54 / 127 = 0.02, so -0.03 rounds to -2 steps (-0.04; half-way rounds to even)
        lin.weight.copy_(torch.tensor([[1.27, 0.004, 0.636], [2.54, -0.03, 0.0]]))
        lin.bias.copy_(torch.tensor([0.1234567, 0.0]))
    out = R.int8_weights(lin)
    want = torch.tensor([[1.27, 0.0, 0.64], [2.54, -0.04, 0.0]])
    assert torch.allclose(out.weight, want, atol=1e-6)
    assert out.bias[0].item() == lin.bias[0].item()  # biases stay as they are
    assert lin.weight[0, 1].item() == pytest.approx(0.004)


def test_int8_weights_answers_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    q = R.int8_weights(net)
    x = torch.randn(8, 16)
    together = q(x)
    alone = torch.cat([q(x[k : k + 1]) for k in range(8)])
    assert torch.allclose(together, alone, atol=1e-6)  # dynamic quantisation's activation scale would differ
    ref = net(x)
    assert (together - ref).abs().max() / ref.abs().max() < 0.05 and not torch.equal(together, ref)


def test_probe_metrics_name_every_measure_and_refuse_an_unknown_probe():
    cfg = load_config("smoke")
    assert R.probe_metrics("relearn", cfg) == ("relearn@0", "relearn@2")
    assert R.probe_metrics("perturb", cfg) == tuple(f"perturb_{k}" for k in cfg.robust.perturbations)
    with pytest.raises(ConfigError, match="unknown probe 'x'"):
        R.probe_metrics("x", cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("robust.probes=relearn,psychic", "robust.probes has unknown probe(s) ['psychic']; allowed: relearn, paraphrase"),
        ("robust.probes=mia,mia", "robust.probes names mia more than once"),
        ("robust.relearn_steps=10,5", "robust.relearn_steps must list the curve's step counts in increasing order"),
        ("robust.relearn_steps=0,-5", "robust.relearn_steps must be between 0 and 10000 steps"),
        ("robust.relearn_share=1", "robust.relearn_share must be strictly between 0 and 1"),
        ("robust.strength=0", "robust.strength must be > 0 and <= 1"),
        ("robust.perturbations=blur,fog", "robust.perturbations has unknown perturbation(s) ['fog']"),
        ("robust.mink_share=0", "robust.mink_share must be"),
        ("world.n_unseen_events=5", "world.n_unseen_events must be between 0 and 4"),
    ],
)
def test_bad_probe_settings_are_refused_with_the_parameter_named(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config("smoke", overrides=[override])
    assert message in str(exc.value)


# ------------------------------------------------------------------ the never-seen group
def test_the_never_seen_group_changes_nothing_else_in_the_world():
    cfg = load_config("smoke").world
    none = dataclasses.replace(cfg, n_unseen_people=0, n_unseen_events=0)
    a, b = generate_world(cfg, 3), generate_world(none, 3)
    assert [p.to_dict() for p in a.people] == [p.to_dict() for p in b.people]
    assert [p.to_dict() for p in a.real_people] == [p.to_dict() for p in b.real_people]
    assert a.splits == b.splits and [e.id for e in a.events] == [e.id for e in b.events]
    ja, jb = plan_images(a), plan_images(b)
    assert ja[: len(jb)] == jb  # every other image keeps its name and render seed
    extra = ja[len(jb) :]
    assert {j.role for j in extra} == {"unseen"} and len(extra) == 2 * 10 + 10 * 2
    assert len({j.render_seed for j in ja}) == len(ja)
    names = {p.name for p in [*a.people, *a.real_people]}
    assert len(a.unseen_people) == 2 and not names & {p.name for p in a.unseen_people}
    assert {e.id for e in a.unseen_events}.isdisjoint(e.id for e in a.events)


def test_no_model_ever_trains_on_the_never_seen_group(smoke_world_dir):
    ds = load_dataset(smoke_world_dir)
    unseen = {i.id for i in ds.items_where(role="unseen")}
    assert len(unseen) == 40
    for stage in STAGES:
        for target in (None,) if stage == "finetune" else ("person", "event", "both"):
            seen = {q.item_id for q in training_examples(ds, stage, target)}
            assert not seen & unseen, (stage, target)
    assert ds.person(ds.unseen_people[0].id).name == ds.unseen_people[0].name
    assert ds.event(ds.unseen_events[0].id).description


def test_probe_sets_split_the_forget_images_and_are_the_same_for_every_model(smoke_world_dir):
    cfg = load_config("smoke")
    ds = load_dataset(smoke_world_dir)
    s = R.probe_sets(ds, "both", cfg)
    for c in ("person", "event"):
        train, ev = {i.id for i in s.relearn_train[c]}, {i.id for i in s.relearn_eval[c]}
        assert train and ev and not train & ev
        assert ev <= {i.id for i in s.forget[c]}  # relearning reads on the forget sample, so step 0 is its clean answers
        assert len(s.forget[c]) == cfg.robust.items and s.unseen[c]
        assert {i.role for i in s.probe_test[c]} == {"heldout"} and {i.role for i in s.probe_train[c]} == {"train"}
    assert all(i.person in {p.id for p in ds.unseen_people} for i in s.unseen["person"])
    assert all(i.event in {e.id for e in ds.unseen_events} for i in s.unseen["event"])
    again = R.probe_sets(ds, "both", cfg)
    assert [i.id for i in again.relearn_eval["event"]] == [i.id for i in s.relearn_eval["event"]]


# ------------------------------------------------------------------ the stage
SMALL = {"unlearn": {"targets": ["person"], "methods": ["ga"]}}


@pytest.fixture(scope="module")
def cfg():
    return load_config("smoke", seed=0, overrides=SMALL)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("robust") / "run"


def test_every_probe_writes_every_metric_for_the_bounds_and_a_method(cfg, run_dir):
    wanted = {"clean_efficacy", "clean_retain", *(m for p in cfg.robust.probes for m in R.probe_metrics(p, cfg))}
    res, items = collect_robustness(cfg, run_dir)
    assert list(res.columns) == RESULT_COLUMNS and list(items.columns) == ITEM_COLUMNS
    for model in ("finetune", "ga", "goal"):
        got = res[res["method"] == model]
        assert set(got["metric"]) == wanted, model
        assert (got["concept"] == "person").all() and (got["target"] == "person").all()
        for _, row in got.iterrows():  # per-item values behind every row, and their mean is the row
            v = items[(items["method"] == model) & (items["metric"] == row["metric"])]["value"]
            assert len(v) == row["n"] and v.mean() == pytest.approx(row["value"])
    assert (run_dir / "results" / "robustness.parquet").is_file()
    ga = res[res["method"] == "ga"]
    assert ga["lr"].notna().all() and (ga["lr_rule"] != "").all()
    # the finetune model saw the forget names, the goal model never did: their AUCs differ
    auc = res[res["metric"] == "mia_loss"].set_index("method")["value"]
    assert auc["finetune"] != auc["goal"]


def test_the_probe_stage_is_cached_and_records_its_time(cfg, run_dir, capsys):
    folder = get_robustness(cfg, "ga", "person", run_dir)
    assert "cached" in capsys.readouterr().out
    meta = read_marker(folder)
    assert set(meta["seconds_probe"]) >= {"relearn", "mia", "quant", "probe"}
    out = Run(cfg, run_dir).robustness("ga", "person")
    assert out.folder == folder and not out.results.empty


def test_probing_leaves_the_probed_model_as_it_was(cfg, run_dir):
    bundle = probed_model(cfg, "finetune", "person", run_dir)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    ds = Run(cfg, run_dir).world
    R.run_probes(bundle, ds, "person", cfg, log=lambda *_: None)  # relearning adds and removes its own LoRA
    after = bundle.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_membership_inference_without_a_never_seen_group_says_what_to_set(cfg, run_dir):
    bundle = probed_model(cfg, "finetune", "person", run_dir)
    ds = dataclasses.replace(Run(cfg, run_dir).world, unseen_people=[], _index={})
    only = dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, probes=("mia",)))
    with pytest.raises(ConfigError, match=r"'mia' on target 'person' needs never-seen persons .*world\.n_unseen_people"):
        R.run_probes(bundle, ds, "person", only, log=lambda *_: None)


def test_an_empty_probe_list_is_refused(cfg, run_dir):
    empty = dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, probes=()))
    with pytest.raises(ConfigError, match="robust.probes is empty"):
        get_robustness(empty, "finetune", "person", run_dir)


# ------------------------------------------------------------------ reading them
def test_the_wording_rule():
    assert A.robustness.verdict(Estimate(0.02, -0.05, 0.08)) == A.HOLDS
    assert A.robustness.verdict(Estimate(0.3, 0.1, 0.5)) == A.BREAKS
    assert A.robustness.verdict(Estimate(0.05, 0.01, 0.2)) == A.INCONCLUSIVE  # above 0, yet below the margin
    assert A.robustness.verdict(Estimate(0.2, -0.1, 0.5)) == A.INCONCLUSIVE
    assert A.robustness.verdict(None) == A.CANNOT_TEST
    assert A.robustness.verdict(Estimate(0.3, 0.1, 0.5), why=A.FORGOT_TOO_LITTLE) == A.CANNOT_TEST


def _items(values: dict) -> pd.DataFrame:
    rows = []
    for (method, metric), vals in values.items():
        for k, v in enumerate(vals):
            rows.append({"seed": 0, "target": "person", "method": method, "concept": "person", "metric": metric,
                         "item_id": f"i{k}", "value": v})  # fmt: skip
    return pd.DataFrame(rows)


def test_survival_reads_a_recovery_against_its_reference():
    ones, zeros = [1.0] * 8, [0.0] * 8
    items = _items(
        {
            ("finetune", "clean_efficacy"): zeros,
            ("ga", "clean_efficacy"): ones,
            ("ga", "paraphrase_efficacy"): zeros,  # every name back under a paraphrase
            ("ga", "perturb_blur"): ones,  # none back under blur
            ("po", "clean_efficacy"): [0.1] * 8,  # po forgot nothing
            ("po", "paraphrase_efficacy"): [0.1] * 8,
            ("po", "perturb_blur"): [0.1] * 8,
        }
    )
    s = A.survival(items, n_boot=200).set_index(["method", "measure"])
    assert s.loc[("ga", "paraphrase_efficacy"), "verdict"] == A.BREAKS
    assert s.loc[("ga", "paraphrase_efficacy"), "d"] == pytest.approx(1.0)
    assert s.loc[("ga", "perturb_blur"), "verdict"] == A.HOLDS
    assert s.loc[("po", "perturb_blur"), "verdict"] == A.CANNOT_TEST
    assert s.loc[("po", "perturb_blur"), "why"] == A.FORGOT_TOO_LITTLE
    m = A.survival_matrix(A.survival(items, n_boot=200))
    assert m.loc["ga", "paraphrase"] == "0/1/0" and m.loc["po", "perturb"] == "–"
    # a paraphrase the fine-tuned model cannot answer either shows nothing
    blind = _items({("finetune", "clean_efficacy"): zeros, ("finetune", "paraphrase_efficacy"): ones,
                    ("ga", "clean_efficacy"): ones, ("ga", "paraphrase_efficacy"): zeros})  # fmt: skip
    assert A.survival(blind, n_boot=100)[["verdict", "why"]].values.tolist() == [[A.CANNOT_TEST, A.UNINFORMATIVE]]


def test_shared_asks_are_generated_once_and_relearning_starts_from_the_clean_answers(cfg, run_dir, monkeypatch):
    bundle = probed_model(cfg, "finetune", "person", run_dir)
    ds = Run(cfg, run_dir).world
    asked: list[int] = []
    real = probe_context.generate
    monkeypatch.setattr(
        probe_context, "generate", lambda b, images, *a, **k: asked.append(len(images)) or real(b, images, *a, **k)
    )
    only = dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, probes=("relearn",), relearn_steps=(0,)))
    results, _ = R.run_probes(bundle, ds, "person", only, log=lambda *_: None)
    out = {r.name: r for r in results}
    sets = R.probe_sets(ds, "person", only)
    assert asked == [len(sets.forget["person"]) + len(sets.retain["person"])]  # relearn@0 added no generation
    clean = dict(zip(out["clean_efficacy"].item_ids, out["clean_efficacy"].per_item, strict=True))
    start = out["relearn@0"]
    assert start.item_ids == [i.id for i in sets.relearn_eval["person"]]
    assert [clean[i] for i in start.item_ids] == list(start.per_item)


def test_probe_results_do_not_depend_on_the_probe_batch_size(cfg, run_dir):
    bundle = probed_model(cfg, "ga", "person", run_dir)
    ds = Run(cfg, run_dir).world

    def at(batch_size):
        c = dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, batch_size=batch_size))
        return {(r.name, r.concept): list(r.per_item) for r in R.run_probes(bundle, ds, "person", c, log=lambda *_: None)[0]}

    one, many = at(1), at(64)
    assert one.keys() == many.keys()
    for k in one:  # answers: equal; likelihoods and probe features: equal to float rounding
        assert one[k] == pytest.approx(many[k], abs=1e-6), k


def test_a_probe_added_as_one_entry_runs_and_keys_its_stage(cfg, run_dir, monkeypatch):
    """A probe is one entry: registered with its code as functions, it runs with the others
    (its generation asks in the shared call, its own run after), writes the metrics it names,
    and its code is in the probe stage's key."""
    from pebench_core import stages
    from pebench_core.probes import context

    from pebench_core.world import QUESTIONS

    def echo_asks(ctx, concept):  # in the shared call: the training question on the forget images, read as retain
        items = ctx.sets.forget[concept]
        return [context.Planned(concept, "echo_retain", False, items, context.plain(ctx.ds, items, QUESTIONS[concept]))]

    def echo_run(ctx):  # a generation call of its own: efficacy on the retain images
        items = ctx.sets.retain["person"]
        plan = [context.Planned("person", "echo_count", True, items, context.plain(ctx.ds, items, QUESTIONS["person"]))]
        return context.answer_plan(ctx, ctx.bundle, plan)

    mine = R.Probe("echo", "Echo", "Does the model answer as it did?", lambda r: ("echo_retain", "echo_count"),
                   asks=echo_asks, run=echo_run)  # fmt: skip
    with pytest.raises(ConfigError, match="neither asks nor run"):
        R.register(dataclasses.replace(mine, asks=None, run=None))
    monkeypatch.setitem(R.PROBES, "echo", mine)
    only = dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, probes=("paraphrase", "echo")))
    before = stages.robust_key(
        dataclasses.replace(cfg, robust=dataclasses.replace(cfg.robust, probes=("paraphrase",))), "ga", "person"
    )
    assert stages.robust_key(only, "ga", "person") != before  # the entry's code is in the key
    bundle = stages.probed_model(cfg, "finetune", "person", run_dir)
    results, seconds = R.run_probes(bundle, Run(cfg, run_dir).world, "person", only, log=lambda *_: None)
    names = {r.name for r in results}
    assert {"echo_retain", "echo_count", "paraphrase_efficacy"} <= names and "echo" in seconds
    assert R.probe_metrics("echo", only) == ("echo_retain", "echo_count")
