"""The real-data path end to end: a PEBench folder (here the smoke world exported in the
release's layout) through the pipeline with the tiny model and with a local checkpoint, the
folder's minimums, and stage keys that follow the folder's content."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import pytest

from pebench_core.config import ConfigError, load_config
from pebench_core.data import load_dataset, load_pebench_folder, split_sets, world_texts, write_pebench_folder
from pebench_core.run import Run
from pebench_core.stages import get_unlearned, model_key, world_key

sys.path.insert(0, str(Path(__file__).parent))
from model_families import build_checkpoint  # noqa: E402

SMALL = {"unlearn": {"targets": ["person"], "methods": ["ga"]}}


@pytest.fixture(scope="module")
def folder(smoke_world_dir, tmp_path_factory) -> Path:
    return write_pebench_folder(load_dataset(smoke_world_dir), tmp_path_factory.mktemp("real") / "pebench")


def _copy(folder: Path, dest: Path, keep=lambda row: True) -> Path:
    """A copy of ``folder`` whose CSV keeps only the rows ``keep`` accepts."""
    shutil.copytree(folder, dest)
    with (dest / "annotations.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    with (dest / "annotations.csv").open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *[r for r in rows[1:] if keep(r)]])
    return dest


def test_an_exported_world_reads_back_as_a_pebench_folder(smoke_world_dir, folder):
    ds, real = load_dataset(smoke_world_dir), load_pebench_folder(folder)
    assert [p.name for p in real.people] == sorted(p.name for p in ds.people)
    assert [e.name for e in real.events] == [e.name for e in ds.events]
    assert len(real.items) == len(ds.items_where(role=("train", "heldout")))
    # every (person, event) pair has a training and a held-out render: the loader holds one out
    assert real.has_heldout and len(real.items_where(role="heldout")) == len(ds.items_where(role="heldout"))
    assert real.people[0].age is not None and real.events[0].keywords == ds.events[0].keywords
    with pytest.raises(ConfigError, match="not empty"):
        write_pebench_folder(ds, folder)


def test_a_pretraining_group_is_set_aside_for_a_model_built_from_scratch(folder):
    plain = load_pebench_folder(folder, seed=3, forget_share=0.2)
    ds = load_pebench_folder(folder, seed=3, forget_share=0.2, pretrain_people=3)
    assert len(ds.real_people) == 3 and all(p.real and p.id.startswith("r") for p in ds.real_people)
    assert len(ds.people) == len(plain.people) - 3
    known = {p.id for p in ds.real_people}
    roles = {i.role for i in ds.items if i.person in known}
    assert roles == {"pretrain", "pretrain_eval"}
    assert not {i.role for i in ds.items if i.person not in known} & roles
    for target in ("person", "event", "both"):
        assert not set(split_sets(ds, target).forget_people) & known
    # without the group, the ids, splits and roles are those of the plain reading
    assert load_pebench_folder(folder, seed=3, forget_share=0.2, pretrain_people=0).splits == plain.splits
    assert load_pebench_folder(folder, seed=3, forget_share=0.2, pretrain_people=3).splits == ds.splits


@pytest.mark.parametrize(
    ("keep", "pretrain", "message"),
    [
        (lambda r: True, 9, r"lists 10 people; at least 11 are needed: 2 \(one to forget, one to keep\) \+ 9"),
        (lambda r: r[2] == "media interview", 0, r"lists 1 event \(media interview\); at least 2 are needed"),
    ],
    ids=["too-few-people-for-the-group", "one-event"],
)
def test_a_folder_too_small_for_a_forget_split_is_refused_with_the_minimum(folder, tmp_path, keep, pretrain, message):
    small = _copy(folder, tmp_path / "small", keep)
    with pytest.raises(ConfigError, match=message):
        load_pebench_folder(small, pretrain_people=pretrain)


def test_a_one_person_folder_is_refused(folder, tmp_path):
    with (folder / "annotations.csv").open(newline="") as f:
        first = list(csv.reader(f))[1][1]
    small = _copy(folder, tmp_path / "one", lambda r: r[1] == first)
    with pytest.raises(ConfigError, match=r"lists 1 person; at least 2 are needed"):
        load_pebench_folder(small)


def test_a_folder_below_the_findings_floor_stops_before_any_training(folder, tmp_path):
    """The folder's counts are known once it is read: a forget set below findings.min_people
    stops at the world, naming the parameter, the folder and the smallest share that would do."""
    from pebench_core.stages import get_world

    cfg = load_config("smoke", overrides={**SMALL, "world": {"data_dir": str(folder)}, "findings": {"min_people": 3}})
    with pytest.raises(ConfigError, match=r"forgets 1 of the 7 people of .*fewer than findings.min_people=3.*at least 0\.36"):
        get_world(cfg, tmp_path)
    assert not (tmp_path / "models").exists()


def test_the_stage_keys_follow_the_folder_content(folder, tmp_path):
    copy = _copy(folder, tmp_path / "copy")
    cfg = load_config("smoke", overrides={"world": {"data_dir": str(copy)}})
    before = world_key(cfg), model_key(cfg, "finetune")
    assert (world_key(cfg), model_key(cfg, "finetune")) == before  # stable while nothing changes
    image = next(copy.rglob("*.png"))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a photograph replaced
    after = world_key(cfg), model_key(cfg, "finetune")
    assert after[0] != before[0] and after[1] != before[1]
    _copy(folder, tmp_path / "other", lambda r: "-e00-" not in r[0])  # the CSV without the first event
    assert world_key(load_config("smoke", overrides={"world": {"data_dir": str(tmp_path / "other")}})) != after[0]


def test_the_tiny_model_runs_end_to_end_on_a_real_folder(folder, tmp_path):
    cfg = load_config("smoke", overrides={**SMALL, "world": {"data_dir": str(folder)}})
    get_unlearned(cfg, "ga", "person", tmp_path, progress=False)
    run = Run(cfg, tmp_path)
    assert len(run.world.real_people) == cfg.world.n_real_people
    results = run.unlearned("ga", "person").results
    # the pre-training group gives the tiny model its utility measurement back
    assert {"efficacy", "generality", "retain", "real"} <= set(results["metric"])
    assert results["value"].notna().all()


def test_a_local_checkpoint_runs_end_to_end_on_a_real_folder(folder, tmp_path):
    ds = load_pebench_folder(folder)
    checkpoint = build_checkpoint("llava", tmp_path / "llava", world_texts(ds), image_size=32, seed=0)
    over = {**SMALL, "world": {"data_dir": str(folder)}, "model": {"kind": "local", "path": str(checkpoint)}}
    cfg = load_config("smoke", overrides=over)
    get_unlearned(cfg, "ga", "person", tmp_path / "run", progress=False)
    run = Run(cfg, tmp_path / "run")
    assert run.world.real_people == []  # a checkpoint brings its own pre-training
    results = run.unlearned("ga", "person").results
    assert {"efficacy", "generality", "retain"} <= set(results["metric"]) and "real" not in set(results["metric"])
