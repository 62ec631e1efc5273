"""Tests of knowledge injection (pebench_core.train) at smoke scale: encoding, the fast loss,
loss decrease, determinism, the frozen vision tower, vision pre-training, replay, inject."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest
import torch

from pebench_core import train as T
from pebench_core import trainer as TR
from pebench_core import vision_pretraining as VP
from pebench_core.config import load_config
from pebench_core.data import load_dataset, training_examples, world_texts
from pebench_core.models import build_tiny, encode_train

torch.set_num_threads(min(2, torch.get_num_threads()))

CFG = load_config("smoke", overrides={"model": {"device": "cpu", "dtype": "float32"}})


@pytest.fixture(scope="module")
def ds(smoke_world_dir):
    return load_dataset(smoke_world_dir)


def _bundle(ds, seed: int = 0):
    return build_tiny(CFG.model, world_texts(ds), CFG.world.image_size, seed)


@pytest.fixture(scope="module")
def qa(ds):
    ex = training_examples(ds, "base")
    # a few of each kind (person, event, POPE), images shared between questions
    return (
        [q for q in ex if q.kind == "person"][:6]
        + [q for q in ex if q.kind == "event"][:6]
        + [q for q in ex if q.kind == "pope"][:4]
    )


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_encode_qa_collate_round_trip(ds, qa):
    b = _bundle(ds)
    load = T.image_loader(ds)
    enc = T.encode_qa(b, qa, load, chunk=5)  # chunks that split items of one image
    assert len(enc) == len(qa)
    # each distinct image is stored once; items of the same image share its row
    assert len(enc.pixel_values) == len({q.image_path for q in qa}) < len(qa)
    idx = [3, 0, 7, 12, 15]
    got = T.collate(enc, idx, b.pad_token_id)
    ref = encode_train(b, [load(qa[i]) for i in idx], [qa[i].question for i in idx], [qa[i].answer for i in idx])
    for k in ("input_ids", "attention_mask", "labels", "pixel_values"):
        assert torch.equal(got[k], ref[k]), k
    sub = enc.subset(idx)
    again = T.collate(sub, range(len(idx)), b.pad_token_id)
    assert all(torch.equal(again[k], got[k]) for k in got)


def test_fast_loss_equals_model_loss(ds, qa):
    b = _bundle(ds)
    enc = T.encode_qa(b, qa, T.image_loader(ds))
    batch = T.collate(enc, list(range(len(qa))), b.pad_token_id)
    with torch.no_grad():
        ref = b.model(**batch).loss
        full = TR.answer_loss(b.model, batch, None)
        feats = T.image_features(b, enc.pixel_values)[enc.rows(range(len(qa)))]
        cached = TR.answer_loss(b.model, batch, feats)
        per_seq = TR.answer_loss(b.model, batch, feats, per_sequence=True)
    assert torch.allclose(full, ref, atol=1e-5) and torch.allclose(cached, ref, atol=1e-5)
    assert torch.isfinite(per_seq) and not torch.allclose(per_seq, ref)


def test_loss_decreases_and_vision_frozen(ds, qa):
    b = _bundle(ds)
    enc = T.encode_qa(b, qa, T.image_loader(ds))
    before = _state(b.model)
    T.set_vision_trainable(b, False)
    assert not T.vision_trainable(b)
    batch = T.collate(enc, list(range(len(qa))), b.pad_token_id)
    with torch.no_grad():
        first = float(b.model(**batch).loss)
    h = T.train_model(b, enc, epochs=24, lr=3e-3, batch_size=8, seed=0, progress=False)
    assert enc.features is not None  # frozen tower: encoder output computed once
    assert len(h) == 24 * 2 and all(math.isfinite(x["loss"]) for x in h)
    with torch.no_grad():
        last = float(b.model(**batch).loss)  # the whole set's loss, not one noisy step's
    assert last < 0.7 * first, (first, last)
    after = b.model.state_dict()
    vis = [k for k in after if "vision_tower" in k]
    rest = [k for k in after if "vision_tower" not in k]
    assert vis and all(torch.equal(before[k], after[k]) for k in vis)
    assert any(not torch.equal(before[k], after[k]) for k in rest)
    # unfrozen, the tower trains too
    T.set_vision_trainable(b, True)
    mid = _state(b.model)
    T.train_model(b, enc, epochs=1, lr=3e-3, batch_size=8, seed=0, progress=False)
    assert any(not torch.equal(mid[k], b.model.state_dict()[k]) for k in vis)


def test_same_seed_same_weights(ds, qa):
    runs = []
    for _ in range(2):
        b = _bundle(ds)
        enc = T.encode_qa(b, qa, T.image_loader(ds))
        T.train_model(b, enc, epochs=1, lr=3e-3, batch_size=4, seed=5, progress=False)
        runs.append(b.model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    b = _bundle(ds)
    enc = T.encode_qa(b, qa, T.image_loader(ds))
    T.train_model(b, enc, epochs=1, lr=3e-3, batch_size=4, seed=6, progress=False)
    assert any(not torch.equal(runs[0][k], b.model.state_dict()[k]) for k in runs[0])


def test_render_crowd_is_seeded_and_general(ds):
    events = VP.scene_events(ds, exclude_events=[ds.events[0].id])
    assert ds.events[0].name not in [e.name for e in events] and len(events) == len(ds.events) - 1
    a = T.render_crowd(events, 12, 32, seed=3)
    b = T.render_crowd(events, 12, 32, seed=3)
    assert torch.equal(a.pixel_values, b.pixel_values) and torch.equal(a.labels, b.labels)
    assert a.pixel_values.shape == (12, 3, 32, 32) and a.labels.shape == (12, len(a.tasks))
    assert a.tasks[-1] == "scene" and a.events == tuple(e.name for e in events)
    assert (a.objects.sum(1) >= 1).all()  # every scene draws its props


def test_pretrain_vision_trains_only_the_tower_deterministically(ds, tmp_path):
    tcfg = dataclasses.replace(CFG.train, vision_images=64, vision_epochs=1, vision_batch_size=32)
    states = []
    for _ in range(2):
        b = _bundle(ds)
        before = _state(b.model)
        h = T.pretrain_vision(b, ds, tcfg, seed=0, progress=False)
        after = b.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in after if "vision_tower" not in k)
        assert any(not torch.equal(before[k], after[k]) for k in after if "vision_tower" in k)
        states.append(after)
        assert len(h) == 2 and "heldout_accuracy" in h[-1] and "scene" in h[-1]["heldout_accuracy"]
        assert T.vision_trainable(b)  # trainability restored
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # the disk cache gives the same weights without training again, and only for the same inputs
    b = _bundle(ds)
    T.pretrain_vision(b, ds, tcfg, seed=0, progress=False, cache=tmp_path)
    (folder,) = list(tmp_path.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == [".complete.json", "vision.safetensors"]
    b2 = _bundle(ds)
    h2 = T.pretrain_vision(b2, ds, tcfg, seed=0, progress=False, cache=tmp_path)
    assert h2[-1].get("cached") and all(torch.equal(states[0][k], b2.model.state_dict()[k]) for k in states[0])
    h3 = T.pretrain_vision(_bundle(ds), ds, tcfg, seed=1, progress=False, cache=tmp_path)
    assert not h3[-1].get("cached") and len(list(tmp_path.iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_damaged_vision_cache_is_retrained_not_loaded(ds, tmp_path, capsys):
    tcfg = dataclasses.replace(CFG.train, vision_images=64, vision_epochs=1, vision_batch_size=32)
    b = _bundle(ds)
    T.pretrain_vision(b, ds, tcfg, seed=0, progress=False, cache=tmp_path)
    trained = {k: v.clone() for k, v in b.model.state_dict().items()}
    (folder,) = list(tmp_path.iterdir())
    weights = folder / "vision.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: safetensors alone would raise deep inside
    again = _bundle(ds)
    h = T.pretrain_vision(again, ds, tcfg, seed=0, progress=False, cache=tmp_path)
    assert "cannot be reused: vision.safetensors has 100 bytes" in capsys.readouterr().out
    assert not h[-1].get("cached") and all(torch.equal(trained[k], again.model.state_dict()[k]) for k in trained)
    assert weights.stat().st_size > 100  # and stored again, whole


def test_replay_and_stage_examples(ds):
    fe = set(ds.splits["event"]["forget_events"])
    full = T.replay_examples(ds, None, 1.0, 0)
    assert full == training_examples(ds, "base")
    half = T.replay_examples(ds, None, 0.5, 0)
    assert len(half) == round(len(full) * 0.5) and half == T.replay_examples(ds, None, 0.5, 0)
    assert T.replay_examples(ds, None, 0.0, 0) == []
    for target in ("event", "both"):
        r = T.replay_examples(ds, target, 1.0, 0)
        assert r and not any(q.event in fe for q in r)
        ex, rep = T.stage_examples(ds, "goal", target, CFG.train, 0)
        assert not any(q.event in fe for q in ex + rep)
    ex, rep = T.stage_examples(ds, "base", None, CFG.train, 0)
    plain = training_examples(ds, "base")
    assert rep == [] and ex[: len(plain)] == plain  # plus train.pope_extra POPE questions per image
    assert len(ex) > len(plain) and {q.kind for q in ex[len(plain) :]} == {"pope"}
    ex, rep = T.stage_examples(ds, "finetune", None, CFG.train, 0)
    assert len(rep) == round(len(T.base_examples(ds, None, CFG.train, 0)) * CFG.train.replay_share)


def test_inject_smoke_is_fast_and_complete(ds):
    b = _bundle(ds)
    info = T.inject(b, ds, "base", None, CFG, progress=False)
    assert info["vision"]["steps"] > 0 and info["examples"] == len(T.base_examples(ds, None, CFG.train, 0))
    assert {h["phase"] for h in info["history"]} == {"vision", "llava"}
    assert T.vision_trainable(b)  # the freeze is only for the duration of the stage
    vis = {k: v.clone() for k, v in b.model.state_dict().items() if "vision_tower" in k}
    info = T.inject(b, ds, "finetune", None, CFG, progress=False)
    assert info["replay"] == round(len(T.base_examples(ds, None, CFG.train, 0)) * CFG.train.replay_share)
    assert "vision" not in info
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in vis.items())  # frozen in fine-tuning


def test_mixed_batches_cover_each_item_once_sorted_within_micro_batches():
    import random

    lengths = np.array([5, 30, 7, 12, 30, 6, 9, 31, 8, 10, 4])
    plan = T.mixed_batches(lengths, batch_size=4, micro_batches=2, rng=random.Random(0))
    flat = [i for groups in plan for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))
    assert [sum(len(g) for g in groups) for groups in plan] == [4, 4, 3]
    for groups in plan:
        assert len(groups) == 2
        joined = [i for g in groups for i in g]
        assert [lengths[i] for i in joined] == sorted(lengths[i] for i in joined)


def test_micro_batches_add_up_to_the_batch_gradient(ds, qa):
    """Cutting a step's batch into micro-batches changes padding, not the step: the summed
    micro-batch gradients are the batch's (to float rounding), and so is the training.

    The weights after training are compared at 1e-4: AdamW divides each update by the root
    of its running squared gradient, which turns the last-bit differences of a different
    summation order into ~3e-5 on parameters whose gradient is nearly zero (measured, with
    the code before micro-batches were distributed too)."""
    b = _bundle(ds)
    T.set_vision_trainable(b, False)
    enc = T.encode_qa(b, qa, T.image_loader(ds))
    feats = T.image_features(b, enc.pixel_values)
    idx = list(range(8))
    total = float(sum(int((enc.labels[i] != -100).sum()) for i in idx))
    grads = []
    for groups in ([idx], [idx[:3], idx[3:6], idx[6:]]):
        b.model.zero_grad(set_to_none=True)
        for g in groups:
            TR.answer_loss(b.model, T.collate(enc, g, b.pad_token_id), feats[enc.rows(g)], total=total).backward()
        grads.append({n: p.grad.clone() for n, p in b.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5) for n in grads[0])

    states = []
    for mb in (1, 3):
        b = _bundle(ds)
        T.set_vision_trainable(b, False)
        enc = T.encode_qa(b, qa, T.image_loader(ds))
        T.train_model(b, enc, epochs=2, lr=3e-3, batch_size=8, seed=0, progress=False, micro_batches=mb)
        states.append(_state(b.model))
    assert all(torch.allclose(states[0][k], states[1][k], atol=1e-4) for k in states[0])
