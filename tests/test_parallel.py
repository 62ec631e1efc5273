"""Independent stages in worker processes (pebench_core.parallel): how many workers a run
gets, and a pool that builds the same stages, to the bit, as one process of one thread."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from pebench_core import parallel as P
from pebench_core.config import ConfigError, load_config
from pebench_core.pipeline import collect_robustness


def test_workers_follow_the_cores_the_stages_and_the_environment(monkeypatch):
    tiny = load_config("tiny")
    monkeypatch.delenv(P.WORKERS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(P, "cores", lambda: 2)
    assert P.stage_workers(tiny, 41) == 2  # never more processes than cores
    assert P.stage_workers(tiny, 5) == 1  # under three stages a worker: the imports would not pay
    assert P.torch_threads(2) == 1 and P.torch_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # "this job may use one thread"
    assert P.stage_workers(tiny, 41) == 1 and P.torch_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv(P.WORKERS_ENV, "3")
    assert P.stage_workers(tiny, 41) == 3 and P.stage_workers(tiny, 2) == 2
    local = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, kind="local"))
    monkeypatch.delenv(P.WORKERS_ENV)
    assert P.stage_workers(local, 41) == 1  # a real checkpoint per process could fill the memory


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_worker_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(P.WORKERS_ENV, value)
    with pytest.raises(ConfigError, match=rf"{P.WORKERS_ENV}=.*at least 1"):
        P.stage_workers(load_config("tiny"), 41)


def _stage(x: int, y: int) -> int:
    if x < 0:
        raise ConfigError(f"stage {x}: refused")
    return x * 10 + y


def test_run_stages_keeps_the_order_and_raises_a_stage_error():
    lines: list[str] = []
    assert P.run_stages(_stage, [(k, 1) for k in range(5)], 2, log=lines.append) == [1, 11, 21, 31, 41]
    assert lines[0].startswith("[parallel] 5 stages in 2 processes") and lines[-1].startswith("[parallel] 5/5")
    with pytest.raises(ConfigError, match="stage -1: refused"):
        P.run_stages(_stage, [(1, 1), (-1, 1), (2, 1)], 2, log=None)


def test_two_workers_build_the_probe_stages_of_one_process_of_one_thread(tmp_path, monkeypatch):
    cfg = load_config("smoke", seed=0, overrides={"unlearn": {"targets": ["person", "event"], "methods": ["ga"]}})
    threads = torch.get_num_threads()
    monkeypatch.setenv(P.WORKERS_ENV, "1")
    torch.set_num_threads(1)  # what a worker computes on
    try:
        alone, alone_items = collect_robustness(cfg, tmp_path / "alone")
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv(P.WORKERS_ENV, "2")
    pooled, pooled_items = collect_robustness(cfg, tmp_path / "pooled")
    drop = ["git_commit", "versions"]  # provenance, not results
    cols = [c for c in alone.columns if c not in drop]
    pd.testing.assert_frame_equal(alone[cols], pooled[cols])
    pd.testing.assert_frame_equal(alone_items, pooled_items)
