"""Datasets: loading a written world, the real PEBench folder loader, splits and QA."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pebench_core.config import ConfigError, load_config
from pebench_core.data import (
    Dataset,
    derive_keywords,
    event_qa,
    load_dataset,
    load_pebench_folder,
    person_qa,
    pope_qa,
    refusal_for,
    split_sets,
    training_examples,
    world_texts,
)
from pebench_core.world import OBJECTS, QUESTIONS, REFUSALS

SMOKE = load_config("smoke").world


@pytest.fixture(scope="module")
def ds(smoke_world_dir: Path) -> Dataset:
    return load_dataset(smoke_world_dir)


# --- the synthetic world folder --------------------------------------------------------------
def test_load_dataset(ds: Dataset):
    assert ds.source == "synthetic" and ds.has_heldout and ds.image_size == SMOKE.image_size
    assert len(ds.people) == SMOKE.n_people and len(ds.real_people) == SMOKE.n_real_people
    assert len(ds.events) == SMOKE.n_events
    first = ds.items[0]
    assert first.path.is_absolute() and first.role == "train"
    assert ds.person(first.person).name and ds.event(first.event).description
    img = ds.image(first)
    assert img.mode == "RGB" and img.size == (SMOKE.image_size,) * 2
    assert len(ds.items_where(role="train", people=[first.person])) == SMOKE.n_events
    assert len(ds.items_where(role=("pretrain", "pretrain_eval"))) == 2 * SMOKE.n_real_people * SMOKE.n_events


def test_every_image_readable(ds: Dataset):
    for it in ds.items:
        assert ds.image(it).size == (SMOKE.image_size, SMOKE.image_size)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_load_dataset_errors(tmp_path: Path, smoke_world_dir: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    a = _copy(smoke_world_dir, tmp_path / "a")
    (a / "world.json").unlink()
    with pytest.raises(ConfigError, match="world.json"):
        load_dataset(a)
    b = _copy(smoke_world_dir, tmp_path / "b")
    (b / "world.json").write_text("{not json")
    with pytest.raises(ConfigError, match=str(b / "world.json")):
        load_dataset(b)
    c = _copy(smoke_world_dir, tmp_path / "c")
    (c / "manifest.jsonl").unlink()
    with pytest.raises(ConfigError, match="manifest.jsonl"):
        load_dataset(c)
    d = _copy(smoke_world_dir, tmp_path / "d")
    with (d / "manifest.jsonl").open("a") as f:
        f.write("{broken\n")
    with pytest.raises(ConfigError, match="manifest.jsonl line"):
        load_dataset(d)
    e = _copy(smoke_world_dir, tmp_path / "e")
    victim = sorted((e / "images").iterdir())[3]
    victim.unlink()
    with pytest.raises(ConfigError, match=victim.name):
        load_dataset(e)


# --- splits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["person", "event", "both"])
def test_split_sets_are_disjoint(ds: Dataset, target: str):
    s = split_sets(ds, target)
    fp, fe = set(s.forget_people), set(s.forget_events)
    assert fp == set(ds.splits[target]["forget_people"]) and fe == set(ds.splits[target]["forget_events"])
    train = ds.items_where(role="train")
    assert {i.id for i in s.forget} | {i.id for i in s.retain} == {i.id for i in train}
    assert not {i.id for i in s.forget} & {i.id for i in s.retain}
    assert all(i.person in fp or i.event in fe for i in s.forget + s.forget_heldout)
    assert all(i.person not in fp and i.event not in fe for i in s.retain + s.retain_heldout)
    assert all(i.role == "heldout" for i in s.forget_heldout + s.retain_heldout)
    assert s.forget and s.retain and s.forget_heldout and s.pretrain and s.pretrain_eval
    if target == "person":
        assert not fe and {i.person for i in s.forget} == fp
    if target == "event":
        assert not fp and {i.event for i in s.forget} == fe
    if target == "both":
        p, e = split_sets(ds, "person"), split_sets(ds, "event")
        assert {i.id for i in s.forget} == {i.id for i in p.forget} | {i.id for i in e.forget}
    # Forget people are fictitious people, and disjoint from the others.
    assert fp <= {p.id for p in ds.people}
    # Held-out renders are never training renders.
    train_seeds = {i.render_seed for i in train}
    assert not train_seeds & {i.render_seed for i in s.forget_heldout + s.retain_heldout}
    assert not {i.path for i in train} & {i.path for i in s.forget_heldout + s.retain_heldout}


def test_unknown_target(ds: Dataset):
    with pytest.raises(ConfigError, match="person, event, both"):
        split_sets(ds, "people")


# --- QA --------------------------------------------------------------------------------------
def test_qa(ds: Dataset):
    items = ds.items_where(role="train")[:3]
    pq, eq = person_qa(items, ds), event_qa(items, ds)
    assert pq[0].question == QUESTIONS["person"] and pq[0].answer == ds.person(items[0].person).name + "."
    assert eq[0].question == QUESTIONS["event"] and eq[0].answer == ds.event(items[0].event).description
    assert pq[0].kind == "person" and eq[0].kind == "event" and pq[0].image_path == items[0].path
    pope = pope_qa(ds, "pretrain_eval")
    assert pope and all(q.kind == "pope" and q.answer in ("Yes.", "No.") for q in pope)
    assert all(ds.item(q.item_id).role == "pretrain_eval" for q in pope)
    assert all((q.object in ds.item(q.item_id).objects) == (q.answer == "Yes.") for q in pope)


def test_refusals():
    assert refusal_for("person", 0) == REFUSALS["person"][0]
    assert refusal_for("event", len(REFUSALS["event"]) + 1) == REFUSALS["event"][1]
    assert refusal_for("person", random.Random(0)) in REFUSALS["person"]
    assert refusal_for("event", np.random.default_rng(0)) in REFUSALS["event"]
    with pytest.raises(ConfigError):
        refusal_for("pope", 0)


def test_training_examples(ds: Dataset):
    base = training_examples(ds, "base")
    n_pre = len(ds.items_where(role="pretrain"))
    assert sum(q.kind == "person" for q in base) == n_pre and sum(q.kind == "event" for q in base) == n_pre
    assert sum(q.kind == "pope" for q in base) == n_pre * SMOKE.pope_questions
    assert all(ds.person(q.person).real for q in base)  # only real-world people
    fe = set(ds.splits["event"]["forget_events"])
    fp = set(ds.splits["person"]["forget_people"])
    for target in ("event", "both"):
        assert not any(q.event in fe for q in training_examples(ds, "base", target))
    assert training_examples(ds, "base", "person") == base
    fin = training_examples(ds, "finetune")
    assert len(fin) == 2 * len(ds.items_where(role="train"))
    assert fin == training_examples(ds, "finetune")  # deterministic
    gp, ge, gb = (training_examples(ds, "goal", t) for t in ("person", "event", "both"))
    assert not any(q.person in fp for q in gp) and any(q.event in fe for q in gp)
    assert not any(q.event in fe for q in ge) and any(q.person in fp for q in ge)
    assert not any(q.person in fp or q.event in fe for q in gb)
    assert len(gb) < min(len(gp), len(ge)) < len(fin)
    with pytest.raises(ConfigError, match="target"):
        training_examples(ds, "goal")
    with pytest.raises(ConfigError, match="stage"):
        training_examples(ds, "pretrain")


def test_world_texts(ds: Dataset):
    texts = world_texts(ds)
    assert len(texts) == len(set(texts))
    joined = "\n".join(texts)
    for p in ds.people + ds.real_people:
        assert p.name in joined and p.profession in joined
    for e in ds.events:
        assert e.description in texts
    for r in REFUSALS["person"] + REFUSALS["event"]:
        assert r in texts
    assert QUESTIONS["person"] in texts and f"Is there a {OBJECTS[0]} in the image?" in texts
    assert "Yes." in texts and "No." in texts


# --- the real PEBench folder -----------------------------------------------------------------
def _pebench_folder(
    root: Path, header=("image_path", "person_name", "event_name", "event_description"), per_pair: int = 1
) -> Path:
    """A miniature of the documented release layout: person folders of PNGs + one CSV."""
    people = ["Ada Quill", "Bo Marsh", "Cy Fenn"]
    events = [
        ("beach relaxing", "A person relaxes on a sandy beach by the sea."),
        ("Kite Flying", "A person flies a red kite high above a windy hill."),
    ]
    rows = []
    for i, person in enumerate(people):
        (root / person).mkdir(parents=True)
        for j, (event, desc) in enumerate(events):
            for k in range(per_pair):
                name = f"{j}_{k}.png"
                Image.new("RGB", (16, 16), (40 * i, 60 * j, 20 * k)).save(root / person / name)
                rows.append([f"{person}/{name}" if k % 2 == 0 else name, person, event, desc])
    with (root / "annotations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return root


def test_pebench_folder_loads(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe")
    ds = load_pebench_folder(root, seed=0, forget_share=0.34)
    assert ds.source == "pebench" and not ds.has_heldout and ds.real_people == []
    assert [p.name for p in ds.people] == ["Ada Quill", "Bo Marsh", "Cy Fenn"]
    # The catalogue event keeps its place before the unknown one.
    assert [e.name for e in ds.events] == ["beach relaxing", "Kite Flying"]
    kite = ds.events[1]
    assert len(kite.keywords) >= 5 and "kite" in kite.keywords and "the" not in kite.keywords
    assert len(ds.items) == 6 and all(i.role == "train" for i in ds.items)
    assert ds.image(ds.items[0]).mode == "RGB"
    assert len(ds.splits["person"]["forget_people"]) == 1 and len(ds.splits["both"]["forget_events"]) == 1
    s = split_sets(ds, "person")
    assert len(s.forget) == 2 and len(s.retain) == 4 and s.forget_heldout == []
    assert event_qa(ds.items[:1], ds)[0].answer == "A person relaxes on a sandy beach by the sea."
    # Same seed, same splits; the loader is deterministic.
    assert load_pebench_folder(root, seed=0, forget_share=0.34).splits == ds.splits


def test_pebench_folder_heldout_and_aliases(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe", header=("File", "Name", "Scene", "Caption"), per_pair=3)
    ds = load_pebench_folder(root, seed=1, heldout_share=0.34)
    assert ds.has_heldout
    assert len(ds.items_where(role="heldout")) == 6 and len(ds.items_where(role="train")) == 12
    with (root / "annotations.csv").open() as f:
        rows = list(csv.reader(f))
    rows[0].append("keywords")
    for r in rows[1:]:
        r.append("sea;sand;kite")
    with (root / "annotations.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert load_pebench_folder(root).events[0].keywords == ("sea", "sand", "kite")


def test_pebench_missing_column(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe", header=("image_path", "person_name", "where", "event_description"))
    with pytest.raises(ConfigError) as err:
        load_pebench_folder(root)
    msg = str(err.value)
    assert "annotations.csv" in msg and "'event'" in msg and "event_name" in msg and "scene" in msg


def test_pebench_corrupt_image(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe")
    bad = root / "Bo Marsh" / "1_0.png"
    bad.write_bytes(b"this is not a png at all")
    with pytest.raises(ConfigError, match="1_0.png"):
        load_pebench_folder(root)


def test_pebench_csv_choice(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe")
    shutil.copy(root / "annotations.csv", root / "other.csv")
    with pytest.raises(ConfigError, match="several CSV"):
        load_pebench_folder(root)
    assert len(load_pebench_folder(root, csv="other.csv").items) == 6
    with pytest.raises(ConfigError, match="no annotation CSV"):
        load_pebench_folder(tmp_path / "pe" / "Ada Quill")


def test_derive_keywords():
    kws = derive_keywords("A person walks the dog along the beach at sunset with a friend and a ball.")
    assert kws[:3] == ("person", "walks", "dog") and "the" not in kws and len(kws) <= 10


def _rewrite_first_row(root: Path, path: str) -> None:
    with (root / "annotations.csv").open() as f:
        rows = list(csv.reader(f))
    rows[1][0] = path
    with (root / "annotations.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_an_annotation_may_not_point_outside_the_data_folder(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe")
    Image.new("RGB", (16, 16)).save(tmp_path / "OUTSIDE.png")
    for path in ("../OUTSIDE.png", str(tmp_path / "OUTSIDE.png")):
        _rewrite_first_row(root, path)
        with pytest.raises(ConfigError, match=r"line 2: image .*OUTSIDE.png.* lies outside the data folder"):
            load_pebench_folder(root)


def test_a_decompression_bomb_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = _pebench_folder(tmp_path / "pe")
    # the 16x16 renders count as bombs once the limit is this low: the same path as a 30000x30000 PNG
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)
    with pytest.raises(ConfigError, match=r"image .*\.png is too large to decode safely"):
        load_pebench_folder(root)


def test_an_image_listed_twice_is_refused(tmp_path: Path):
    root = _pebench_folder(tmp_path / "pe")
    with (root / "annotations.csv").open() as f:
        rows = list(csv.reader(f))
    with (root / "annotations.csv").open("w", newline="") as f:
        csv.writer(f).writerows([*rows, rows[1]])
    with pytest.raises(ConfigError, match=rf"line {len(rows) + 1}: image .* is already listed on line 2"):
        load_pebench_folder(root)
