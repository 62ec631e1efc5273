"""Atomic writes, the stage cache, and the long-format results table."""

from dataclasses import dataclass, field

import pandas as pd
import pytest

from pebench_core.config import ConfigError
from pebench_core.results import StageCache, atomic_dir, atomic_write_json, ensure_writable_dir, result_rows


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "stage"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_cache_builds_once_and_rebuilds_on_new_key(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def build(d):
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"answer": 42}

    p1 = cache.get_or_build("s", "k1", build, log=None)
    p2 = cache.get_or_build("s", "k1", build, log=None)
    assert p1 == p2 and len(calls) == 1 and cache.meta("s", "k1")["answer"] == 42
    cache.get_or_build("s", "k2", build, log=None)
    assert len(calls) == 2


def test_interrupted_stage_resumes(tmp_path):
    cache = StageCache(tmp_path)

    def broken(d):
        (d / "out.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("s", "k", broken, log=None)
    assert not cache.has("s", "k")
    cache.get_or_build("s", "k", lambda d: (d / "out.txt").write_text("done") and None, log=None)
    assert (cache.path("s", "k") / "out.txt").read_text() == "done"


def test_unwritable_output_is_a_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        ensure_writable_dir(f)
    with pytest.raises(ConfigError, match="is not a folder"):
        atomic_write_json(f / "x.json", {})


@dataclass
class _R:
    name: str
    concept: str
    value: float
    n: int
    per_item: list = field(default_factory=list)
    item_ids: list = field(default_factory=list)
    scorer: str | None = None


def test_result_rows_carry_provenance():
    rows, items = result_rows(
        [_R("efficacy", "person", 0.5, 2, [1.0, 0.0], ["a", "b"])],
        run_id="r",
        profile="tiny",
        seed=0,
        target="person",
        method="ga",
        config_hash="abc",
    )
    assert rows.loc[0, "value"] == 0.5 and rows.loc[0, "config_hash"] == "abc"
    assert rows.loc[0, "git_commit"] and "torch" in rows.loc[0, "versions"]
    assert list(items["value"]) == [1.0, 0.0]
    assert isinstance(rows, pd.DataFrame)
