"""Independent stages in parallel processes, one torch thread each (design: Budgets).

A stage of the tiny model is small matrices and Python overhead: a second torch thread buys
little (measured on 2 cores: a probe stage takes 13.1 s on one thread, 9.5 s on two), while
two processes of one thread each do two stages at once (two probe stages: 27 s in parallel
against 46 s one after the other on two threads). So where a run has many independent
stages of the tiny model on the CPU, :func:`run_stages` builds them in worker processes of
one thread each, never more processes than the cores this process may use; everywhere else
(a GPU, a real checkpoint, a multi-process launch, a handful of stages) they run here, as
before.

Stages are cached under their key and written atomically, so workers need no coordination:
each builds its own stages, and the caller reads the folders they return.
``PEBENCH_WORKERS`` overrides the number of processes (1 turns the pool off).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import RunConfig
from .errors import ConfigError
from .ranges import THREADS_ENV, WORKERS_ENV, env_count

__all__ = ["cores", "torch_threads", "apply_threads", "stage_workers", "run_stages", "run_graph", "WORKERS_ENV"]

# Each worker pays its imports (torch, transformers: about 6 s on 2 cores) once; a probe stage
# of the tiny model takes 3-10 s. Below three stages per worker the pool does not pay for itself.
MIN_STAGES_PER_WORKER = 3


def cores() -> int:
    """The cores this process may run on: its CPU affinity, not the machine's count, and no
    more than a container's CPU quota (cgroup ``cpu.max``), which a container on a large
    host often sets while its affinity still lists every core of the host."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        n = max(1, os.cpu_count() or 1)
    quota = _cgroup_quota()
    return min(n, quota) if quota else n


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """Whole cores of the cgroup's CPU quota (rounded up), or None when there is none."""
    import math

    def read(name: str) -> str:
        return Path(root, name).read_text().strip()

    try:  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
        quota, period = read("cpu.max").split()[:2]
    except (OSError, ValueError):
        try:  # cgroup v1: two files, -1 for none
            quota, period = read("cpu/cpu.cfs_quota_us"), read("cpu/cpu.cfs_period_us")
        except OSError:
            return None
    try:
        return None if quota in ("max", "-1") else max(1, math.ceil(int(quota) / int(period)))
    except ValueError:
        return None


def torch_threads(processes: int = 1) -> int:
    """Threads for each of ``processes`` torch processes sharing this process's cores:
    ``OMP_NUM_THREADS`` when set (the user's word on how many threads a job may use), else
    the cores divided among the processes, at least one."""
    given = env_count(THREADS_ENV)
    if given is not None:
        return given
    return max(1, cores() // max(1, processes))


def apply_threads() -> int:
    """Set torch's thread count by :func:`torch_threads` (``OMP_NUM_THREADS`` when set, else
    the cores this process may use) and return it. torch's own default counts the machine's
    cores, which in a container with a CPU quota is more threads than cores: they thrash."""
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def stage_workers(cfg: RunConfig, n_stages: int) -> int:
    """How many worker processes build ``n_stages`` independent stages of ``cfg``: 1 (here,
    no pool) unless the model is the tiny one on the CPU, outside a multi-process launch,
    with at least :data:`MIN_STAGES_PER_WORKER` stages per worker; ``PEBENCH_WORKERS``
    decides when set. The total never exceeds the cores (or ``OMP_NUM_THREADS``)."""
    from . import distributed as D
    from .models import resolve_device_dtype

    asked = env_count(WORKERS_ENV)
    device = resolve_device_dtype(cfg.model.device, "auto")[0].type
    if device != "cpu" or D.world_size() > 1:
        if asked and asked > 1:
            where = f"the model is on {device}" if device != "cpu" else "this is a multi-process launch"
            raise ConfigError(f"{WORKERS_ENV}={asked} builds stages in parallel CPU processes, and {where}; unset it")
        return 1
    if asked is not None:
        return max(1, min(asked, n_stages))
    if cfg.model.kind != "tiny":  # a real checkpoint per process could fill the memory
        return 1
    budget = min(cores(), env_count(THREADS_ENV) or cores())
    return max(1, min(budget, n_stages // MIN_STAGES_PER_WORKER))


def _die_with_parent(parent: int) -> None:
    """On Linux, ask for SIGKILL when the process that started this worker dies: a
    ``kill -9`` of ``pebench run`` must not leave workers training (and then writing) stages
    nobody waits for, racing the run that resumes. A worker asks once it has imported what
    its stages need (seconds after it started); if ``parent`` died in those seconds, no
    signal will come, so the worker ends here. Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not glibc Linux
        return
    if os.getppid() != parent:  # adopted already: the run was killed before the request
        os._exit(1)


def _init_worker(parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(1)
    os.environ["TQDM_DISABLE"] = "1"  # the caller reports progress, one line per stage


def run_stages(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int,
    name: Callable[[tuple], str] = str,
    log: Callable[[str], None] | None = print,
) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes of one torch thread each when
    ``workers`` > 1 (``fn`` must be importable: a module-level function). Results come back in
    the order of ``jobs``; ``log`` gets one line per finished stage, with how many are done.
    The first error is raised here as the stage raised it, once the others are cancelled."""
    return run_graph(fn, jobs, [()] * len(jobs), workers, name, log)


def run_graph(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    after: Sequence[Sequence[int]],
    workers: int,
    name: Callable[[tuple], str] = str,
    log: Callable[[str], None] | None = print,
    heartbeat: float = 30.0,
) -> list[Any]:
    """:func:`run_stages` for stages that depend on one another: job ``k`` starts once every
    job of ``after[k]`` (indices into ``jobs``, each earlier than ``k``) has finished. Of the
    jobs that may start, the first in ``jobs`` starts first, and no more are handed out than
    there are workers, so the order of ``jobs`` is the schedule's priority (put the stages
    that unlock many others, and the longest, first). One process runs them in the order of
    ``jobs``, which the dependencies then must allow. When no stage finishes for ``heartbeat``
    seconds, ``log`` gets a line naming the stages under way (a model trains for minutes)."""
    if len(after) != len(jobs):
        raise ValueError(f"run_graph: {len(jobs)} jobs but {len(after)} dependency lists")
    for k, deps in enumerate(after):
        if any(not 0 <= d < k for d in deps):
            raise ValueError(f"run_graph: job {k} ({name(jobs[k])}) may only wait for earlier jobs, got {list(deps)}")
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, wait

    t0 = time.perf_counter()
    out: list[Any] = [None] * len(jobs)
    waiting = [set(deps) for deps in after]
    pending = list(range(len(jobs)))  # not started yet, in priority order
    running: dict[Any, int] = {}
    started: dict[int, float] = {}

    def hand_out() -> None:
        for k in [k for k in pending if not waiting[k]][: workers - len(running)]:
            pending.remove(k)
            running[ex.submit(fn, *jobs[k])] = k
            started[k] = time.perf_counter()

    # spawn, not fork: the parent has torch's thread pools (and maybe a Jupyter kernel) loaded.
    # A spawned worker imports torch and numpy before its initializer runs, and they size their
    # thread pools by OMP_NUM_THREADS then. The pool starts a process at a submit, and a later
    # submit (a stage whose inputs are now built) may start one too: the variable stays at 1
    # for as long as the pool lives, not only for the first submit.
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))
        try:
            hand_out()
            if log:
                log(f"[parallel] {len(jobs)} stages in {workers} processes of one thread each")
            done = 0
            while running:
                finished, _ = wait(list(running), timeout=heartbeat, return_when=FIRST_COMPLETED)
                now = time.perf_counter()
                if not finished and log:
                    under_way = ", ".join(f"{name(jobs[k])} ({now - started[k]:.0f}s)" for k in sorted(running.values()))
                    log(f"[parallel] {done}/{len(jobs)} done, building {under_way} ({now - t0:.0f}s)")
                for fut in sorted(finished, key=lambda f: running[f]):
                    k = running.pop(fut)
                    out[k] = fut.result()
                    done += 1
                    for w in waiting:
                        w.discard(k)
                    if log:
                        log(f"[parallel] {done}/{len(jobs)} {name(jobs[k])} done ({now - t0:.0f}s)")
                hand_out()
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)  # the stages under way finish or clean up after themselves
            raise
        ex.shutdown(wait=True)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
    return out
