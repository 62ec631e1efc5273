"""Independent stages in worker processes (pebench_core.parallel): how many workers a run
gets, a schedule that starts a stage only after the stages it reads, and a pool that builds
the same stages, to the bit, as one process of one thread."""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import pytest
import torch

from pebench_core import parallel as P
from pebench_core.config import ConfigError, load_config
from pebench_core.pipeline import build_in_parallel, report_stage_times, stage_times
from pebench_core.stages import collect_fixed_rate, collect_results, collect_robustness
from pebench_core.stages.unlearning import build_unlearning


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


def test_a_container_quota_caps_the_cores(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores of quota: two threads may run
    assert P._cgroup_quota(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert P._cgroup_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert P._cgroup_quota(str(tmp_path)) == 1
    assert P._cgroup_quota(str(tmp_path / "absent")) is None
    monkeypatch.setattr(P, "_cgroup_quota", lambda: 1)
    assert P.cores() == 1  # an affinity of every host core, a quota of one: one
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    try:
        assert P.apply_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


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


def _after(folder: str, k: int, reads: tuple[int, ...], seconds: float) -> int:
    """A stage that needs the files of the stages it reads, then writes its own."""
    import time
    from pathlib import Path

    missing = [r for r in reads if not Path(folder, f"job{r}").is_file()]
    if missing:
        raise ConfigError(f"job {k} started before job {missing[0]} was done")
    time.sleep(seconds)
    Path(folder, f"job{k}").write_text("done")
    return k


def test_run_graph_starts_a_stage_after_the_stages_it_reads(tmp_path):
    # 0 is long and 1, 2 wait for it; 3 waits for nothing: it runs beside 0, not after 1 and 2
    after = [(), (0,), (0, 1), ()]
    jobs = [(str(tmp_path), k, tuple(a), 1.0 if k == 0 else 0.1) for k, a in enumerate(after)]
    lines: list[str] = []
    assert P.run_graph(_after, jobs, after, 2, name=lambda job: f"job{job[1]}", log=lines.append) == [0, 1, 2, 3]
    done = [ln.split()[2] for ln in lines[1:]]
    assert done.index("job3") < done.index("job0") < done.index("job1") < done.index("job2")
    with pytest.raises(ValueError, match="job 1 .* may only wait for earlier jobs"):
        P.run_graph(_after, jobs[:2], [(), (1,)], 2)
    with pytest.raises(ValueError, match="2 jobs but 1 dependency lists"):
        P.run_graph(_after, jobs[:2], [()], 2)


def _threads_seen(seconds: float) -> tuple[str | None, int]:
    """What a worker's stage sees of its threads, after ``seconds`` of work."""
    import time

    import torch

    time.sleep(seconds)
    return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()


def test_a_worker_started_late_has_one_thread_and_a_long_wait_says_what_runs(monkeypatch):
    # job 0 alone may start (one process); 1-3 wait for it, so the second process starts at a
    # later submit, after the first had been handed out: it too must see OMP_NUM_THREADS=1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lines: list[str] = []
    after = [(), (0,), (0,), (0,)]
    jobs = [(0.0,), (2.0,), (2.0,), (2.0,)]
    seen = P.run_graph(_threads_seen, jobs, after, 2, name=lambda job: f"sleep{job[0]:g}", log=lines.append, heartbeat=0.5)
    assert seen == [("1", 1)] * 4
    assert any(" done, building sleep2 (" in ln for ln in lines), lines  # nothing finished for 0.5 s
    assert os.environ["OMP_NUM_THREADS"] == "2"  # the run's own setting back once the pool is gone


def test_two_workers_build_every_stage_of_one_process_of_one_thread(tmp_path, monkeypatch):
    cfg = load_config("smoke", seed=0, overrides={"unlearn": {"targets": ["person", "event"], "methods": ["ga"]}})
    threads = torch.get_num_threads()
    monkeypatch.setenv(P.WORKERS_ENV, "1")
    torch.set_num_threads(1)  # what a worker computes on
    try:
        alone, alone_items = collect_robustness(cfg, tmp_path / "alone")
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv(P.WORKERS_ENV, "2")
    assert build_in_parallel(cfg, tmp_path / "pooled")  # the models too, each once its base is there
    assert not build_in_parallel(cfg, tmp_path / "pooled")  # nothing missing: no pool
    assert not build_unlearning(cfg, tmp_path / "pooled")
    pooled, pooled_items = collect_robustness(cfg, tmp_path / "pooled")
    drop = ["git_commit", "versions"]  # provenance, not results
    cols = [c for c in alone.columns if c not in drop]
    pd.testing.assert_frame_equal(alone[cols], pooled[cols])
    pd.testing.assert_frame_equal(alone_items, pooled_items)
    (a, a_items), (b, b_items) = collect_results(cfg, tmp_path / "alone"), collect_results(cfg, tmp_path / "pooled")
    pd.testing.assert_frame_equal(a[cols], b[cols])
    pd.testing.assert_frame_equal(a_items, b_items)

    # the run's time table (pebench run prints it at the end): every stage this run built, by kind
    table = stage_times(cfg, tmp_path / "pooled")
    counts = table.groupby("kind")["stage"].apply(sorted).to_dict()
    assert counts["unlearn"] == ["ga-event", "ga-person"] and len(counts["eval"]) == 4
    assert counts["fixed"] == ["ga-event", "ga-person"]  # the paper's protocol, a stage of the plan
    (fa, _), (fb, _) = collect_fixed_rate(cfg, tmp_path / "alone"), collect_fixed_rate(cfg, tmp_path / "pooled")
    pd.testing.assert_frame_equal(fa[cols], fb[cols])
    assert counts["models"] == ["base-full", "base-noevents", "finetune", "goal-event", "goal-person"]
    assert len(counts["robust"]) == 6 and set(table.loc[table["kind"].isin(["robust", "models"]), "threads"]) == {1}
    assert (table["seconds"] > 0).all()
    lines: list[str] = []
    path = report_stage_times(cfg, tmp_path / "pooled", log=lines.append)
    assert pd.read_csv(path).equals(table) and any(ln.split()[1:3] == ["unlearn", "2"] for ln in lines)


def _sleep_and_say(folder: str, k: int) -> int:
    import os
    import time
    from pathlib import Path

    Path(folder, f"worker{k}").write_text(str(os.getpid()))
    time.sleep(120)
    return k


POOL_THEN_WAIT = """
import sys
from pebench_core.parallel import run_stages
from tests.test_parallel import _sleep_and_say
if __name__ == "__main__":
    run_stages(_sleep_and_say, [(sys.argv[1], 0), (sys.argv[1], 1)], 2, log=None)
"""


def test_workers_die_with_a_killed_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "pool.py").write_text(POOL_THEN_WAIT)
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "pool.py"), str(tmp_path)], env=env, cwd=root)
    end = time.monotonic() + 120
    while len(list(tmp_path.glob("worker*"))) < 2 and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("worker*")]
    assert len(pids) == 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)  # kill -9: the run cannot tell its workers anything
    proc.wait(timeout=30)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie waits for its reaper only

    end = time.monotonic() + 20
    while any(alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), "a worker outlived the killed run"


def test_a_worker_whose_run_died_before_it_started_ends_itself(tmp_path):
    """A worker asks for its SIGKILL seconds after it starts (once torch is imported); a run
    killed in those seconds sends none, so the worker must see it was adopted and end."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = "import sys\nfrom pebench_core import parallel\nparallel._init_worker(int(sys.argv[1]))\nprint('still running')\n"
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = [sys.executable, "-c", code]
    gone = subprocess.run([*run, str(2**22 + 1)], env=env, capture_output=True, text=True, timeout=120)  # not its parent
    assert gone.returncode == 1 and "still running" not in gone.stdout
    kept = subprocess.run([*run, str(os.getpid())], env=env, capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0 and "still running" in kept.stdout, kept.stderr
