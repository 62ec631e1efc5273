"""The synthetic world: catalogues, generation, rendering, atomic and deterministic writing."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pebench_core import world as W
from pebench_core.world import io as world_io
from pebench_core.config import ConfigError, load_config
from pebench_core.world.settings import forget_count
from pebench_core.world import (
    CITIES,
    EVENTS,
    OBJECT_ZONES,
    OCCUPATION_CATEGORIES,
    REFUSALS,
    expected_counts,
    generate_world,
    keyword_words,
    objects_in,
    render,
    trait_distance,
    world_digest,
    write_world,
)

SMOKE = load_config("smoke").world
TINY = load_config("tiny").world


# --- catalogues ----------------------------------------------------------------------------
def test_events_catalogue():
    names = [e.name for e in EVENTS]
    assert len(EVENTS) == 40 and len(set(names)) == 40
    assert names[0] == "media interview" and names[12] == "concert attendance" and names[-1] == "city walk"
    assert [e.id for e in EVENTS] == [f"e{i:02d}" for i in range(40)]
    for e in EVENTS:
        words = keyword_words(e.description)
        assert 12 <= len(words) <= 20 and e.description.endswith("."), e.name
        assert len(e.keywords) == 10 and len(set(e.keywords)) == 10, e.name
        assert all(k == k.lower() and k.isalpha() for k in e.keywords), e.name
        assert sum(k in words for k in e.keywords) >= 5, e.name
        assert 2 <= len(e.props) <= 4 and all(p in OBJECT_ZONES for p in e.props), e.name
    # Every scene has its own look: no two events share layout and near-identical colours.
    for a, b in itertools.combinations(EVENTS, 2):
        dist = (
            np.abs(np.subtract(a.palette["sky"], b.palette["sky"])).sum()
            + np.abs(np.subtract(a.palette["ground"], b.palette["ground"])).sum()
        )
        assert a.layout != b.layout or dist > 60, (a.name, b.name)


def test_profiles_catalogues():
    assert len(OCCUPATION_CATEGORIES) == 17 and all(len(v) >= 3 for v in OCCUPATION_CATEGORIES.values())
    assert len(CITIES) == 7
    cities = [c for cs in CITIES.values() for c in cs]
    assert len(cities) == 55 and len(set(cities)) == 55
    assert 25 <= len(OBJECT_ZONES) <= 60


def test_refusals_say_nothing():
    keywords = {k for e in EVENTS for k in e.keywords}
    w = generate_world(TINY, 0)
    names = {part.lower() for p in w.people + w.real_people for part in p.name.split()}
    for kind in ("person", "event"):
        assert len(REFUSALS[kind]) >= 3
        for r in REFUSALS[kind]:
            assert not set(keyword_words(r)) & keywords, r
            assert not set(keyword_words(r)) & names, r


def test_every_object_can_be_drawn():
    w = generate_world(SMOKE, 0)
    ev = dataclasses.replace(EVENTS[0], props=())
    from PIL import ImageDraw

    img = Image.new("RGB", (64, 64))
    for name in OBJECT_ZONES:
        W.draw_prop(ImageDraw.Draw(img), name, 32, 60, 20)
    assert render(w, w.people[0], ev, 1, 32).size == (32, 32)


def test_every_event_prop_has_a_drawing():
    named = {p for e in EVENTS for p in e.props}
    assert named and not named - set(W.PROPS), sorted(named - set(W.PROPS))
    assert set(W.PROPS) == set(OBJECT_ZONES)  # the table draws the catalogue's objects, no more


def test_unknown_prop_is_a_clear_error():
    from PIL import ImageDraw

    img = Image.new("RGB", (64, 64))
    with pytest.raises(ConfigError, match=r"no drawing for object 'unicorn'; drawable objects: airplane, apple, "):
        W.draw_prop(ImageDraw.Draw(img), "unicorn", 32, 60, 20)


# --- generation ----------------------------------------------------------------------------
def test_world_structure_and_splits():
    w = generate_world(TINY, 0)
    assert len(w.people) == 20 and len(w.real_people) == 6 and len(w.events) == 40
    assert [e.name for e in w.events] == [e.name for e in EVENTS]
    assert [p.id for p in w.people] == [f"p{i:03d}" for i in range(20)]
    everyone = w.people + w.real_people
    assert len({p.name for p in everyone}) == len(everyone)
    assert all(p.real for p in w.real_people) and not any(p.real for p in w.people)
    for p in everyone:
        assert p.occupation_category in OCCUPATION_CATEGORIES
        assert p.profession in OCCUPATION_CATEGORIES[p.occupation_category]
        assert p.birthplace in CITIES[p.region] and 18 <= p.age <= 80 and p.gender in ("female", "male")
    n_fp, n_fe = forget_count(20, TINY.forget_share), forget_count(40, TINY.forget_share)
    s = w.splits
    assert len(s["person"]["forget_people"]) == n_fp and s["person"]["forget_events"] == []
    assert len(s["event"]["forget_events"]) == n_fe and s["event"]["forget_people"] == []
    assert s["both"]["forget_people"] == s["person"]["forget_people"]
    assert s["both"]["forget_events"] == s["event"]["forget_events"]
    assert set(s["person"]["forget_people"]) <= {p.id for p in w.people}


def test_people_differ_in_at_least_three_traits():
    cfg = dataclasses.replace(TINY, n_people=200, n_real_people=20)  # the paper's size
    w = generate_world(cfg, 0)
    everyone = w.people + w.real_people
    dists = [trait_distance(a.traits, b.traits) for a, b in itertools.combinations(everyone, 2)]
    assert min(dists) >= W.MIN_TRAIT_DISTANCE
    assert len({tuple(sorted(p.traits.items())) for p in everyone}) == len(everyone)


def test_generation_is_seeded():
    a, b, c = generate_world(SMOKE, 0), generate_world(SMOKE, 0), generate_world(SMOKE, 1)
    assert a.to_dict() == b.to_dict()
    assert [p.name for p in a.people] != [p.name for p in c.people]
    assert a.to_dict() != c.to_dict()


def test_counts_per_profile(checkpoint_folder):
    smoke = expected_counts(SMOKE)
    assert smoke["train"] == 10 * 10 and smoke["heldout"] == 100
    assert smoke["pretrain"] == 3 * 10 and smoke["pope"] == 60 * SMOKE.pope_questions
    tiny = expected_counts(TINY)
    assert tiny["train"] == 800 and tiny["heldout"] == 800 and tiny["pretrain"] == 240
    assert tiny["unseen"] == 2 * 40 + 20 * 4  # the never-seen group: 2 people at every event, everyone at 4 events
    assert tiny["images"] == 2080 + 160
    paper = expected_counts(load_config("paper", overrides=[f"model.path={checkpoint_folder}"]).world)
    assert paper["train"] == 8000
    tiny_plan = W.plan_images(generate_world(TINY, 0))
    assert len(tiny_plan) == tiny["images"]
    assert len({j.render_seed for j in tiny_plan}) == len(tiny_plan)  # seeds never reused


# --- rendering -----------------------------------------------------------------------------
def test_render_is_deterministic_and_varies():
    w = generate_world(SMOKE, 0)
    p, e = w.people[0], w.events[0]
    a, b, c = render(w, p, e, 7, 64), render(w, p, e, 7, 64), render(w, p, e, 8, 64)
    assert a.mode == "RGB" and a.size == (64, 64)
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert render(w, p, e, 7, 96).size == (96, 96)


def test_objects_in_matches_scene():
    w = generate_world(TINY, 0)
    for e in w.events:
        for s in range(20):
            objs = objects_in(w, e, s)
            assert set(e.props) <= set(objs), e.name  # iconic props always drawn
            assert set(objs) <= set(OBJECT_ZONES)


def test_render_speed():
    import time

    w = generate_world(TINY, 0)
    t = time.perf_counter()
    for k in range(100):
        render(w, w.people[k % 20], w.events[k % 40], k, 64)
    per_image = (time.perf_counter() - t) / 100
    assert per_image < 0.02  # target is < 5 ms; loose bound for busy CI machines


# --- writing -------------------------------------------------------------------------------
def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_write_layout_and_contents(smoke_world_dir: Path):
    root = smoke_world_dir
    world = json.loads((root / "world.json").read_text())
    assert world["seed"] == 0 and world["generator_version"] == W.GENERATOR_VERSION
    assert world["config"]["n_people"] == SMOKE.n_people
    assert len(world["events"][0]["keywords"]) == 10 and world["events"][0]["description"]
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    counts = expected_counts(SMOKE)
    assert len(rows) == counts["images"]
    for role in ("train", "heldout", "pretrain", "pretrain_eval"):
        assert sum(r["role"] == role for r in rows) == counts[role]
    assert _files(root) == {"world.json", "manifest.jsonl", "pope.jsonl", ".complete.json"} | {r["path"] for r in rows}
    for r in rows:
        with Image.open(root / r["path"]) as im:
            assert im.size == (SMOKE.image_size, SMOKE.image_size) and im.mode == "RGB"
    pope = [json.loads(line) for line in (root / "pope.jsonl").read_text().splitlines()]
    assert len(pope) == counts["pope"]
    by_id = {r["id"]: r for r in rows}
    for q in pope:
        img = by_id[q["image"]]
        assert img["role"] in ("pretrain", "pretrain_eval")
        assert (q["object"] in img["objects"]) == (q["answer"] == "yes")
    assert sum(q["answer"] == "yes" for q in pope) * 2 == len(pope)


def test_heldout_never_training(smoke_world_dir: Path):
    rows = [json.loads(line) for line in (smoke_world_dir / "manifest.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["role"] == "train"]
    held = [r for r in rows if r["role"] == "heldout"]
    assert {r["render_seed"] for r in train}.isdisjoint(r["render_seed"] for r in held)
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in held)
    assert {r["path"] for r in train}.isdisjoint(r["path"] for r in held)
    # Held-out renders cover the same pairs as the training renders.
    assert {(r["person"], r["event"]) for r in train} == {(r["person"], r["event"]) for r in held}


def test_write_is_byte_identical_and_cached(tmp_path: Path, smoke_world_dir: Path):
    w = generate_world(SMOKE, 0)
    again = write_world(w, tmp_path / "a", progress=False)
    assert world_digest(again) == world_digest(smoke_world_dir)
    mtime = (again / "world.json").stat().st_mtime_ns
    assert write_world(w, again, progress=False) == again  # cache hit: nothing rewritten
    assert (again / "world.json").stat().st_mtime_ns == mtime
    other = write_world(generate_world(SMOKE, 1), tmp_path / "b", progress=False)
    assert world_digest(other) != world_digest(again)


def test_parallel_write_is_identical(tmp_path: Path, smoke_world_dir: Path):
    cfg = dataclasses.replace(SMOKE, n_people=4, n_events=3, n_real_people=1)
    w = generate_world(cfg, 0)
    one = write_world(w, tmp_path / "one", progress=False, workers=1)
    two = write_world(w, tmp_path / "two", progress=False, workers=2)
    assert world_digest(one) == world_digest(two)


def test_existing_different_world_is_refused(tmp_path: Path, smoke_world_dir: Path):
    with pytest.raises(ConfigError, match="another --out|delete"):
        write_world(generate_world(SMOKE, 5), smoke_world_dir, progress=False)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=str(stray)):
        write_world(generate_world(SMOKE, 0), stray, progress=False)
    assert (stray / "notes.txt").read_text() == "mine"


def test_out_dir_is_a_file(tmp_path: Path):
    f = tmp_path / "world"
    f.write_text("x")
    with pytest.raises(ConfigError, match=str(f)):
        write_world(generate_world(SMOKE, 0), f, progress=False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_out_dir_unwritable(tmp_path: Path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=str(parent / "w")):
            write_world(generate_world(SMOKE, 0), parent / "w", progress=False)
    finally:
        parent.chmod(0o700)


def test_out_dir_unwritable_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Root ignores chmod, so also simulate a refused mkdtemp.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(ConfigError, match=str(tmp_path / "w")):
        write_world(generate_world(SMOKE, 0), tmp_path / "w", progress=False)


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_render, calls = W.render, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("disk on fire")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(world_io, "render", flaky)  # write_world renders through the io module
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_world(generate_world(SMOKE, 0), tmp_path / "w", progress=False, workers=1)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp folder


def test_stale_temp_of_dead_process_is_removed(tmp_path: Path):
    stale = tmp_path / ".w.tmp-999999999-abc"  # no such pid
    (stale / "images").mkdir(parents=True)
    out = write_world(
        generate_world(dataclasses.replace(SMOKE, n_people=2, n_events=2, n_real_people=1), 0), tmp_path / "w", progress=False
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_config_rejects_bad_forget_share():
    with pytest.raises(ConfigError, match="forget_share"):
        load_config("tiny", overrides=["world.forget_share=1.5"])


def test_tiny_world_written_once(tmp_path: Path):
    """The book's default world: right counts, every image 64 px, written in seconds."""
    import time

    t = time.perf_counter()
    root = write_world(generate_world(TINY, 0), tmp_path / "tiny", progress=False)
    elapsed = time.perf_counter() - t
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    counts = expected_counts(TINY)
    assert len(rows) == counts["images"] == 2240
    assert {r["role"]: sum(x["role"] == r["role"] for x in rows) for r in rows} == {
        k: counts[k] for k in ("train", "heldout", "pretrain", "pretrain_eval", "unseen")
    }
    for r in rows[::7]:
        with Image.open(root / r["path"]) as im:
            assert im.size == (64, 64)
    assert elapsed < 60  # about 5 s on 2 cores; the budget is 30 s


def test_read_world_round_trip(smoke_world_dir: Path):
    w = W.read_world(smoke_world_dir)
    assert w.to_dict() == generate_world(SMOKE, 0).to_dict()
    assert len({*w.people, *w.events}) == len(w.people) + len(w.events)  # hashable by id
    with pytest.raises(ConfigError, match="world.json"):
        W.read_world(smoke_world_dir / "images")


def test_pope_no_questions_are_unambiguous(smoke_world_dir: Path):
    rows = {json.loads(line)["id"]: json.loads(line) for line in (smoke_world_dir / "manifest.jsonl").open()}
    events = {e.id: e for e in EVENTS}
    for line in (smoke_world_dir / "pope.jsonl").open():
        q = json.loads(line)
        if q["answer"] == "no":
            img = rows[q["image"]]
            assert q["object"] not in W.LAYOUT_LOOKALIKES.get(events[img["event"]].layout, ())
            assert all(q["object"] not in W.LOOKALIKES.get(o, ()) for o in img["objects"])
