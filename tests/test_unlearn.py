"""The unlearning loop: every registered method runs, signs are right, guards hold."""

import dataclasses

import pandas as pd
import pytest
import torch

from pebench_core import methods
from pebench_core.config import ConfigError, load_config
from pebench_core.methods import BUILT_IN
from pebench_core.data import load_dataset, world_texts
from pebench_core.statistics import answer_logprobs
from pebench_core.models import build_tiny, remove_lora
from pebench_core.encoding import collate, encode_qa
from pebench_core.unlearn import run_unlearning, unlearn_sets


@pytest.fixture(scope="module")
def setup(smoke_world_dir):
    cfg = load_config("smoke")
    ds = load_dataset(smoke_world_dir)
    bundle = build_tiny(cfg.model, world_texts(ds), cfg.world.image_size, seed=0)
    return cfg, ds, bundle


def _forget_nll(bundle, ds, target):
    sets = unlearn_sets(ds, target)
    enc = encode_qa(bundle, sets.forget[:8], lambda q: ds.image(q.item_id))
    b = collate(enc, list(range(len(enc))), bundle.pad_token_id)
    with torch.no_grad():
        logits = bundle.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values=b["pixel_values"]).logits
    lp, n, _ = answer_logprobs(logits, b["labels"])
    return float((-lp / n).mean())


def test_the_runs_of_a_grid_encode_the_sets_once(setup, monkeypatch):
    """A learning-rate grid hands every run the same (at first empty) dict: the first run
    encodes the sets into it, the later ones find them there and train on the same steps."""
    import pebench_core.unlearn as U

    cfg, ds, bundle = setup
    calls = []
    real = U.encode_qa
    monkeypatch.setattr(U, "encode_qa", lambda *a, **k: calls.append(1) or real(*a, **k))
    u = dataclasses.replace(cfg.unlearn, steps=2, eval_every=10**9)
    shared: dict = {}
    losses_seen = []
    for _ in range(2):
        run = run_unlearning(bundle, ds, "person", "gd", u, cfg.eval, progress=False, log=lambda *_: None, encoded=shared)
        remove_lora(run.model)
        losses_seen.append(list(run.trajectory["loss"]))
    assert len(calls) == 2 and set(shared) == {"forget", "retain"}  # GD: forget and retain, once each
    assert losses_seen[0] == losses_seen[1]


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_runs_and_logs_a_trajectory(setup, method):
    cfg, ds, bundle = setup
    target = methods.get(method).targets[0]
    u = dataclasses.replace(cfg.unlearn, steps=2, eval_every=2)
    run = run_unlearning(bundle, ds, target, method, u, cfg.eval, progress=False, log=lambda *_: None)
    try:
        assert run.status == "ok" and run.steps_done == 2
        assert list(run.trajectory["step"]) == [1, 2]
        assert "loss" in run.trajectory and "forget_loss" in run.trajectory
        assert any(c.startswith("efficacy/") for c in run.trajectory.columns)
        assert not any("vision_tower" in n and "lora_" in n for n, _ in run.model.named_parameters())
    finally:
        remove_lora(run.model)


def test_gradient_ascent_raises_the_forget_nll(setup):
    cfg, ds, bundle = setup
    before = _forget_nll(bundle, ds, "person")
    u = dataclasses.replace(cfg.unlearn, steps=6, lr=5e-3, eval_every=100)
    run = run_unlearning(bundle, ds, "person", "ga", u, cfg.eval, progress=False, log=lambda *_: None)
    try:
        after = _forget_nll(bundle.with_model(run.model), ds, "person")
    finally:
        remove_lora(run.model)
    assert after > before
    assert _forget_nll(bundle, ds, "person") == pytest.approx(before, abs=1e-5)  # base untouched


@pytest.mark.parametrize("method", ["kl", "dpo", "npo", "undial", "rmu", "siu"])
def test_reference_outputs_match_the_model_at_the_first_step(setup, method):
    """LoRA starts at θ = ref, so at step 1 KL's precomputed reference gives KL = 0, DPO's
    loss is log 2, NPO's is (2/β)·log 2, UNDIAL's at strength 0 (the target is the
    reference itself) is 0, RMU's retain term (the reference's own activations) and SIU's dual
    masked KL are 0: the
    cached reference outputs line up with the items the step trains on."""
    import math

    cfg, ds, bundle = setup
    u = dataclasses.replace(cfg.unlearn, steps=1, eval_every=100, retain_weight=1.0, settings={"undial": {"strength": 0.0}})
    run = run_unlearning(bundle, ds, "both", method, u, cfg.eval, progress=False, log=lambda *_: None)
    remove_lora(run.model)
    first = run.trajectory.iloc[0]
    want = {
        "kl": ("retain_loss", 0.0),
        "dpo": ("forget_loss", math.log(2)),
        "npo": ("forget_loss", 2 / u.beta * math.log(2)),
        "undial": ("forget_loss", 0.0),
        "rmu": ("retain_loss", 0.0),
        "siu": ("retain_loss", 0.0),
    }[method]
    assert first[want[0]] == pytest.approx(want[1], abs=1e-4)
    assert run.setup_seconds > 0


@pytest.mark.parametrize("method", ["kl", "dpo", "undial", "rmu", "siu"])
def test_reference_once_equals_the_reference_every_step(setup, method):
    """The one-off reference pass before training is a saving, not an approximation: the
    usual design (the reference run on every step's batch) gives the same losses at every
    step and the same adapter, to float precision."""
    cfg, ds, bundle = setup
    u = dataclasses.replace(cfg.unlearn, steps=3, eval_every=100, retain_weight=1.0, settings={"undial": {"strength": 1.0}})
    runs = {}
    for mode in ("once", "every_step"):
        run = run_unlearning(bundle, ds, "both", method, u, cfg.eval, progress=False, log=lambda *_: None, reference=mode)
        lora = {k: v.detach().clone() for k, v in run.model.state_dict().items() if "lora_" in k}
        remove_lora(run.model)
        runs[mode] = (run, lora)
    (once, w1), (each, w2) = runs["once"], runs["every_step"]
    assert once.setup_seconds > 0
    cols = [c for c in once.trajectory.columns if c.endswith("loss")]
    assert "loss" in cols and "forget_loss" in cols
    for c in cols:
        assert each.trajectory[c].tolist() == pytest.approx(once.trajectory[c].tolist(), abs=1e-6), c
    assert w1.keys() == w2.keys() and all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)


@pytest.mark.parametrize("method", ["ga", "task_vector"])  # task_vector: a finish (negation) before every check
def test_checks_asked_later_from_a_reloaded_adapter_are_the_checks_asked_during_the_run(setup, method, monkeypatch, tmp_path):
    """A grid asks its trajectory checks only for the rate it keeps, after the run, from the
    saved adapter and the run's snapshots: the checks must see the weights they would have
    seen during the run (the check is also made to report the adapter's weights it sees)."""
    from pebench_core import unlearn as U
    from pebench_core.models import load_adapter, save_adapter

    cfg, ds, bundle = setup
    real = U.quick_efficacy

    def seen(ub, sets, ds_, idx, eval_cfg):
        w = sum(float(v.double().sum()) for k, v in ub.model.state_dict().items() if "lora_B" in k)
        return {**real(ub, sets, ds_, idx, eval_cfg), "efficacy/weights_seen": w}

    monkeypatch.setattr(U, "quick_efficacy", seen)
    u = dataclasses.replace(cfg.unlearn, steps=5, eval_every=2, lr=5e-2)
    now = run_unlearning(bundle, ds, "person", method, u, cfg.eval, progress=False, log=lambda *_: None)
    remove_lora(now.model)
    later = run_unlearning(bundle, ds, "person", method, u, cfg.eval, progress=False, log=lambda *_: None, checks="later")
    try:
        assert sorted(later.snapshots) == [2, 4, 5] and not any(c.startswith("efficacy/") for c in later.trajectory)
        save_adapter(later.model, tmp_path / "adapter")
    finally:
        remove_lora(later.model)
    model = load_adapter(bundle, tmp_path / "adapter")
    try:
        before = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
        traj = U.check_trajectory(bundle, ds, "person", method, u, cfg.eval, 0, model, later.snapshots, later.trajectory)
        after = {k: v for k, v in model.state_dict().items() if "lora_" in k}
        assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left as it came
    finally:
        remove_lora(model)
    assert len(set(traj["efficacy/weights_seen"].dropna())) == 3  # the weights moved between checks
    pd.testing.assert_frame_equal(traj.drop(columns="seconds"), now.trajectory.drop(columns="seconds"))
    with pytest.raises(ValueError, match="snapshot of step 2"):
        model = load_adapter(bundle, tmp_path / "adapter")
        try:
            U.check_trajectory(bundle, ds, "person", method, u, cfg.eval, 0, model, {2: {"x.lora_A": torch.zeros(1)}},
                               later.trajectory)  # fmt: skip
        finally:
            remove_lora(model)


def test_nan_loss_stops_and_keeps_the_last_good_adapter(setup, monkeypatch):
    cfg, ds, bundle = setup
    real = methods.METHODS["ga"]
    calls = {"n": 0}

    def flaky(inputs, **kw):
        out = real.fn(inputs, **kw)
        calls["n"] += 1
        if calls["n"] == 3:
            return dataclasses.replace(out, loss=out.loss * float("nan"))
        return out

    monkeypatch.setitem(methods.METHODS, "ga", dataclasses.replace(real, loss=flaky))
    u = dataclasses.replace(cfg.unlearn, steps=5, eval_every=100)
    with pytest.warns(UserWarning, match="stopped at step 2"):
        run = run_unlearning(bundle, ds, "person", "ga", u, cfg.eval, progress=False, log=lambda *_: None)
    try:
        assert run.steps_done == 2 and run.status.startswith("stopped")
        assert all(torch.isfinite(p).all() for p in run.model.parameters())
    finally:
        remove_lora(run.model)


def test_bad_inputs_stop_before_training(setup):
    cfg, ds, bundle = setup
    with pytest.raises(ConfigError, match="allowed"):
        run_unlearning(bundle, ds, "person", "magic", cfg.unlearn, cfg.eval, progress=False)
    with pytest.raises(ConfigError, match="unlearn.lr must be positive"):
        run_unlearning(bundle, ds, "person", "ga", dataclasses.replace(cfg.unlearn, lr=0.0), cfg.eval, progress=False)
    with pytest.raises(ConfigError, match="reference must be one of once, every_step; got 'sometimes'"):
        run_unlearning(bundle, ds, "person", "kl", cfg.unlearn, cfg.eval, progress=False, reference="sometimes")
    with pytest.raises(ConfigError, match="unlearn.steps"):
        run_unlearning(bundle, ds, "person", "ga", dataclasses.replace(cfg.unlearn, steps=0), cfg.eval, progress=False)
    empty = dataclasses.replace(ds, splits={**ds.splits, "person": {"forget_people": [], "forget_events": []}})
    with pytest.raises(ConfigError, match="no forget items"):
        run_unlearning(bundle, empty, "person", "ga", cfg.unlearn, cfg.eval, progress=False)
    assert not hasattr(bundle.model, "disable_adapter")  # nothing was left attached


def test_packed_pass_equals_the_full_model(setup):
    """The loop's pass (several sets in one batch, cached encoder output, head on
    answer positions only, refusals sharing the forget items' prompts) gives each set's
    log-likelihoods as the full model on that set alone."""
    from pebench_core.statistics import packed_answer_logprobs
    from pebench_core.forward import image_features
    from pebench_core.forward import answer_pass

    cfg, ds, bundle = setup
    sets = unlearn_sets(ds, "both")
    load = lambda q: ds.image(q.item_id)  # noqa: E731
    forget, refusal = encode_qa(bundle, sets.forget[:5], load), encode_qa(bundle, sets.refusal[:5], load)
    retain = encode_qa(bundle, sets.retain[:7], load)
    fi, ri = [4, 0, 2], [6, 1, 3, 5]
    want = []
    for e, idx in ((forget, fi), (refusal, fi), (retain, ri)):
        b = collate(e, idx, bundle.pad_token_id)
        with torch.no_grad():
            logits = bundle.model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values=b["pixel_values"]
            ).logits
        want.append(answer_logprobs(logits, b["labels"])[:2])
    for cached in (False, True):
        for e in (forget, refusal, retain):
            e.features = image_features(bundle, e.pixel_values) if cached else None
        for branch in (None, {1: 0}):
            with torch.no_grad():
                out = answer_pass(
                    bundle.model,
                    [(forget, fi), (refusal, fi), (retain, ri)],
                    bundle.pad_token_id,
                    bundle.device,
                    bundle.dtype,
                    branch,
                )
            for (s, n), (ws, wn) in zip([packed_answer_logprobs(*o) for o in out], want):
                assert torch.equal(n, wn) and torch.allclose(s, ws, atol=1e-4), (cached, branch, s, ws)


def _toy_enc(rows):
    """An EncodedQA of ``(prompt ids, answer ids)`` pairs, one image per item."""
    from pebench_core.encoding import EncodedQA

    ids = [torch.tensor(p + a) for p, a in rows]
    labels = [torch.tensor([-100] * len(p) + a) for p, a in rows]
    return EncodedQA(ids, labels, torch.zeros(len(rows), 3, 2, 2), [None] * len(rows))


def test_pack_batch_by_hand():
    """Positions restart per sequence, a branch answer sees the shared prompt but not the
    other answer, and each target is predicted from the token before it in its own chain."""
    from pebench_core.forward import pack_batch

    true = _toy_enc([([1, 2], [7, 8]), ([3], [9])])
    refusal = _toy_enc([([1, 2], [5]), ([3], [6, 6])])
    row = pack_batch([(true, [0, 1]), (refusal, [0, 1])], branch_of={1: 0}, pad_id=0)
    # a row per prompt: [1 2 | 7 8 | 5] and [3 | 9 | 6 6], padded
    assert row.input_ids.tolist() == [[1, 2, 7, 8, 5], [3, 9, 6, 6, 0]]
    assert row.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    assert row.targets.tolist() == [7, 8, 5, 9, 6, 6]
    assert row.pred.tolist() == [1, 2, 1, 5, 5, 7]  # flat indices into the 2 x 5 batch
    assert row.sets.tolist() == [0, 0, 1, 0, 1, 1] and row.rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert row.image_rows == [(0, 0), (0, 1)]
    m = row.mask[:, 0].int()
    assert m[0, 4].tolist() == [1, 1, 0, 0, 1]  # the refusal sees its prompt, not "7 8"
    assert m[0, 3].tolist() == [1, 1, 1, 1, 0]
    assert m[1, 3].tolist() == [1, 0, 1, 1, 0]  # nor "9", nor the padding
    assert m[1, 4].tolist() == [0, 0, 0, 0, 1]  # padding attends to itself only
    unpaired = pack_batch([(true, [1]), (refusal, [1])])
    assert unpaired.input_ids.tolist() == [[3, 9, 0], [3, 6, 6]]
    assert unpaired.position_ids.tolist() == [[0, 1, 0], [0, 1, 2]]
    with pytest.raises(ValueError, match="does not share its prompt"):
        pack_batch([(true, [0]), (_toy_enc([([4, 2], [5])]), [0])], branch_of={1: 0})
    with pytest.raises(ValueError, match="branch"):
        pack_batch([(true, [0]), (refusal, [1])], branch_of={1: 0})


def test_answer_likelihoods_match_the_full_model(setup):
    """Each forget item's true-answer and refusal log-likelihoods (read off one shared-prompt
    pass) equal the full model's on each answer alone; a first token's log-probability is
    at least the whole answer's."""
    from pebench_core.likelihoods import answer_likelihoods

    cfg, ds, bundle = setup
    df = answer_likelihoods(bundle, ds, "person", batch_size=3)
    sets = unlearn_sets(ds, "person")
    assert len(df) == len(sets.forget) and list(df["item_id"]) == [q.item_id for q in sets.forget]
    load = lambda q: ds.image(q.item_id)  # noqa: E731
    for name, qa in (("true", sets.forget[:4]), ("refusal", sets.refusal[:4])):
        e = encode_qa(bundle, qa, load)
        b = collate(e, list(range(len(qa))), bundle.pad_token_id)
        with torch.no_grad():
            logits = bundle.model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values=b["pixel_values"]
            ).logits
        lp, n, _ = answer_logprobs(logits, b["labels"])
        assert df[f"logp_{name}"].iloc[:4].tolist() == pytest.approx(lp.tolist(), abs=1e-4)
        assert df[f"n_{name}"].iloc[:4].tolist() == n.tolist()
    assert (df["logp_first_true"] >= df["logp_true"] - 1e-5).all()
    assert (df["logp_first_refusal"] >= df["logp_refusal"] - 1e-5).all()


def test_bgd_variants_with_different_retain_terms_train_different_adapters(setup):
    """The old reconstruction amplified a near-certain concept ~5,000 times, which swamped the
    retain term: gd+bgd and kl+bgd ended on the same numbers. Without a retain term the two
    are one method (the same adapter to the bit); with it, the retain term must move the
    adapter by a visible share of the whole update."""
    cfg, ds, bundle = setup
    u = dataclasses.replace(cfg.unlearn, steps=4, eval_every=100, lr=5e-3)

    def adapter(method, **kw):
        run = run_unlearning(
            bundle, ds, "both", method, dataclasses.replace(u, **kw), cfg.eval, progress=False, log=lambda *_: None
        )
        try:
            return {k: v.detach().clone() for k, v in run.model.state_dict().items() if "lora_B" in k}, run.trajectory
        finally:
            remove_lora(run.model)

    gd0, _ = adapter("gd+bgd", retain_weight=0.0)
    kl0, _ = adapter("kl+bgd", retain_weight=0.0)
    assert all(torch.equal(gd0[k], kl0[k]) for k in gd0)
    gd1, traj = adapter("gd+bgd")
    kl1, _ = adapter("kl+bgd")
    dist = lambda a, b: float(sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5)  # noqa: E731
    update = dist(gd1, {k: torch.zeros_like(v) for k, v in gd1.items()})  # lora_B starts at zero
    assert dist(gd1, kl1) > 0.05 * update and dist(gd1, gd0) > 0.05 * update
    rho = methods.settings_of("gd+bgd", u).max_weight
    for c in ("person", "event"):
        assert traj[f"weight/{c}"].between(1 / rho, rho).all() and (traj[f"grad_norm/{c}"] > 0).all()
    assert "grad_norm_ratio" in traj and "balanced_ratio" in traj


def test_task_vector_negation_subtracts_the_adapter_it_trained(setup):
    """The loop trains τ by descent on the forget answers, then hands over θ_ft − α·τ: the
    same training with α = 2 gives exactly twice the (negated) B of α = 1, and the negated
    adapter raises the forget NLL that τ itself lowered."""
    cfg, ds, bundle = setup
    before = _forget_nll(bundle, ds, "person")
    out = {}
    for alpha in (1.0, 2.0):
        u = dataclasses.replace(cfg.unlearn, steps=4, lr=5e-3, eval_every=2, settings={"task_vector": {"scale": alpha}})
        run = run_unlearning(bundle, ds, "person", "task_vector", u, cfg.eval, progress=False, log=lambda *_: None)
        try:
            out[alpha] = {k: v.detach().clone() for k, v in run.model.state_dict().items() if "lora_B" in k}
            if alpha == 1.0:
                after = _forget_nll(bundle.with_model(run.model), ds, "person")
                assert run.trajectory["forget_nll"].iloc[-1] < run.trajectory["forget_nll"].iloc[0]  # τ learns the forget set
        finally:
            remove_lora(run.model)
    assert all(torch.allclose(out[2.0][k], 2 * out[1.0][k], atol=1e-7) for k in out[1.0])
    assert any(float(v.abs().max()) > 0 for v in out[1.0].values())
    assert after > before


def test_rmu_adapts_only_the_mlps_below_its_layer_and_steers_it(setup):
    """RMU's adapter sits on the MLPs of the layer at unlearn.rmu.depth and the two below it,
    and its forget term starts at the distance of the reference's activations from c·u."""
    from pebench_core.models import decoder_layers

    cfg, ds, bundle = setup
    n = len(decoder_layers(bundle.model))
    u = dataclasses.replace(cfg.unlearn, steps=8, lr=5e-3, eval_every=100, settings={"rmu": {"depth": 1.0}})
    run = run_unlearning(bundle, ds, "person", "rmu", u, cfg.eval, progress=False, log=lambda *_: None)
    try:
        names = [name for name, p in run.model.named_parameters() if p.requires_grad]
        assert names and all(".mlp." in name and "lora_" in name for name in names)
        layers = {int(name.split(".layers.")[1].split(".")[0]) for name in names}
        assert layers == set(range(max(0, n - 3), n))
        t = run.trajectory
        # each step has its own batch, so compare the first steps with the last ones
        assert t["forget_loss"].iloc[0] > 0 and t["forget_loss"].iloc[-3:].mean() < t["forget_loss"].iloc[:3].mean()
        assert t["retain_loss"].iloc[0] == pytest.approx(0.0, abs=1e-9) and (t["retain_loss"].iloc[1:] > 0).any()
    finally:
        remove_lora(run.model)
