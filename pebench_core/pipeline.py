"""The stage graph of a run (design: Results and caching; Stage keys): what stages a configuration
has (:func:`run_plan`), building them in order or several at once (:func:`build_in_parallel`),
and :func:`run_all`, what ``pebench run`` does. The stages themselves (each a key and a builder
cached under it) are :mod:`pebench_core.stages`; a chapter reads them through
:class:`pebench_core.run.Run`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .config import RunConfig, safe_name
from .evaluate import CONCEPTS_OF
from .parallel import run_graph, stage_workers
from .results import StageCache, atomic_write_bytes
from .stages.evaluation import eval_key, get_eval
from .stages.keys import methods_for, resolve_run_dir
from .stages.models import base_variant, get_model, model_dir, vision_cache
from .stages.robustness import collect_robustness, get_robustness, robust_key
from .stages.unlearning import (
    collect_fixed_rate,
    collect_results,
    fixed_rate_jobs,
    fixed_rate_key,
    get_fixed_rate,
    get_unlearned,
    tuning_key,
    unlearn_key,
)
from .stages.world import get_world
from .storage import is_complete, read_marker
from .train import base_vision


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a run: its ``kind`` (models, eval, unlearn, fixed, robust), its ``name`` in the
    run folder (``base-full``, ``goal-event``, ``ga-person`` ...), its ``folder``, what builds it
    (``what``: the model stage, evaluated model, method or probed model; ``target``) and the
    names of the stages it reads (``after``, as ``kind/name``)."""

    kind: str
    name: str
    folder: Path
    what: str
    target: str | None
    after: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


def run_plan(cfg: RunConfig, run_dir=None) -> list[PlannedStage]:
    """Every stage ``pebench run`` builds for ``cfg`` (the world and the initial model aside),
    each with the stages it reads, in the order a pool starts them when several may start:
    the models first (everything waits for them, and they are the longest), then the
    unlearning runs with their grids, the evaluations of finetune and goal, and the probes;
    within a kind, the two-concept target first (its stages take about twice as long).
    The one list of a run's stages: :func:`stage_times` reads it, :func:`build_in_parallel`
    builds it."""

    out = resolve_run_dir(cfg, run_dir)
    targets = sorted(cfg.unlearn.targets, key=lambda t: -len(CONCEPTS_OF[t]))
    plan: list[PlannedStage] = []
    # (variant of the base -> the target whose base it is): base-full for finetune and goal(person)
    bases = {base_variant(None): None, **{base_variant(t): t for t in cfg.unlearn.targets if base_variant(t) != "full"}}
    for variant, target in sorted(bases.items()):
        plan.append(PlannedStage("models", f"base-{variant}", model_dir(cfg, "base", target, out), "base", target))
    finetune = model_dir(cfg, "finetune", None, out)
    plan.append(PlannedStage("models", "finetune", finetune, "finetune", None, ("models/base-full",)))
    for t in targets:
        base = f"models/base-{base_variant(t)}"
        plan.append(PlannedStage("models", f"goal-{t}", model_dir(cfg, "goal", t, out), "goal", t, (base,)))
    for t in targets:
        for m in methods_for(cfg, t):
            name = f"{safe_name(m)}-{t}"
            folder = out / "unlearn" / name / unlearn_key(cfg, m, t)
            plan.append(PlannedStage("unlearn", name, folder, m, t, ("models/finetune",)))
    for t in targets:
        for m in ("finetune", "goal"):
            parent = "models/finetune" if m == "finetune" else f"models/goal-{t}"
            plan.append(PlannedStage("eval", f"{m}-{t}", out / "eval" / f"{m}-{t}" / eval_key(cfg, m, t), m, t, (parent,)))
    for m, t in fixed_rate_jobs(cfg):  # after the grid, whose run at unlearn.lr it evaluates
        name = f"{safe_name(m)}-{t}"
        folder = out / "fixed" / name / fixed_rate_key(cfg, m, t)
        plan.append(PlannedStage("fixed", name, folder, m, t, (f"unlearn/{name}",)))
    if cfg.robust.probes:
        for t in targets:
            for m in ("finetune", *methods_for(cfg, t), "goal"):
                name = f"{safe_name(m)}-{t}"
                parent = {"finetune": "models/finetune", "goal": f"models/goal-{t}"}.get(m, f"unlearn/{name}")
                plan.append(PlannedStage("robust", name, out / "robust" / name / robust_key(cfg, m, t), m, t, (parent,)))
    return plan


# What builds a planned stage of each kind, in a worker process (quietly: the pool reports it).
_BUILDERS = {
    "models": lambda cfg, what, target, run_dir: get_model(cfg, what, target, run_dir, progress=False),
    "eval": lambda cfg, what, target, run_dir: get_eval(cfg, what, target, run_dir, progress=False),
    "unlearn": lambda cfg, what, target, run_dir: get_unlearned(cfg, what, target, run_dir, progress=False),
    "robust": lambda cfg, what, target, run_dir: get_robustness(cfg, what, target, run_dir, progress=False),
    "fixed": lambda cfg, what, target, run_dir: get_fixed_rate(cfg, what, target, run_dir, progress=False),
}


def _planned_stage(cfg: RunConfig, kind: str, what: str, target: str | None, run_dir: str) -> None:
    """One planned stage, as a worker process of :func:`build_in_parallel` builds it."""
    _BUILDERS[kind](cfg, what, target, run_dir)


def build_in_parallel(cfg: RunConfig, run_dir=None, progress: bool = False) -> bool:
    """Build every missing stage of the run (:func:`run_plan`) in worker processes of one
    thread each when that pays (:func:`pebench_core.parallel.stage_workers`), each stage
    started as soon as the stages it reads are built: the six models too, so that no core
    waits while another trains one. A tiny model's training does gain from a second thread
    (the fine-tuned model: 61 s on two, about 1.5 times that on one), which is why the models
    alone did not pay in a pool (490 s against 566 s in one process, two workers, 2026-11);
    with the unlearning runs and probes filling every gap the run is shorter (the numbers are in
    the README). The world, the initial model and the vision pre-training the two bases share
    are built here first, so two workers never build the same thing. Returns whether a pool
    built anything; otherwise every stage is built where it is first asked for, as before."""

    out = resolve_run_dir(cfg, run_dir)
    plan = run_plan(cfg, out)
    missing = [s for s in plan if not StageCache(s.folder.parent.parent).has(s.folder.parent.name, s.folder.name)]
    workers = stage_workers(cfg, len(missing))
    if workers <= 1:
        return False
    ds = get_world(cfg, out, progress=False)
    if any(s.what == "base" for s in missing):
        init = get_model(cfg, "init", None, out, progress)
        if cfg.train.vision_exclude_forget_events and cfg.model.kind == "tiny":  # one encoder for both bases
            t0 = time.perf_counter()
            if base_vision(init, ds, cfg.train, cfg.seed, None, progress, vision_cache(cfg, out)) and progress:
                print(f"[models] vision pre-training shared by the bases ready ({time.perf_counter() - t0:.1f}s)")
    index = {s.id: k for k, s in enumerate(missing)}
    after = [[index[a] for a in s.after if a in index] for s in missing]
    names = {(s.kind, s.what, s.target): s.name for s in missing}
    run_graph(
        _planned_stage, [(cfg, s.kind, s.what, s.target, str(out)) for s in missing], after, workers,
        name=lambda job: f"{job[1]} {names[job[1:4]]}", log=print if progress else None,
    )  # fmt: skip
    return True


STAGE_TIMES = "stage_times.csv"


def stage_times(cfg: RunConfig, run_dir=None) -> "Any":
    """How long each stage of this configuration took to build, read from the markers of its
    cached stages (a stage not built yet is left out): one row per stage with its ``kind``
    (models, eval, tune, unlearn, fixed, robust), ``stage``, ``seconds`` and the torch ``threads`` it
    computed on where recorded. The table to look at first when a run is slow."""

    out = resolve_run_dir(cfg, run_dir)
    want: list[tuple[str, str, Path]] = []
    for s in run_plan(cfg, out):
        if s.kind == "unlearn":  # its grid, a stage of its own when it was built apart
            want.append(("tune", s.name, out / "tune" / s.name / tuning_key(cfg, s.what, str(s.target))))
        want.append((s.kind, s.name, s.folder))
    rows = []
    for kind, stage, folder in want:
        if is_complete(folder):
            meta = read_marker(folder)
            rows.append({"kind": kind, "stage": stage, "seconds": meta.get("seconds"), "threads": meta.get("threads")})
    return pd.DataFrame(rows, columns=["kind", "stage", "seconds", "threads"])


def report_stage_times(cfg: RunConfig, run_dir=None, log=print) -> Path:
    """Write :func:`stage_times` to ``<run>/stage_times.csv`` and print it by kind: how many
    stages, their seconds in all and the slowest. Returns the file."""

    out = resolve_run_dir(cfg, run_dir)
    table = stage_times(cfg, out)
    path = atomic_write_bytes(out / STAGE_TIMES, table.to_csv(index=False).encode())
    if log and len(table):
        log(
            f"[times] how long each stage took when it was built (an unlearning stage's time includes its grid "
            f"when they were built together) -> {path}"
        )
        for kind, g in table.groupby("kind", sort=False):
            sec = g["seconds"].fillna(0.0)
            slow = g.loc[sec.idxmax()]
            log(f"[times]   {kind:<8} {len(g):>3} stages {sec.sum():>8.1f}s   slowest {slow['stage']} {sec.max():.1f}s")
    return path


def run_all(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    """Every stage in dependency order; returns the run folder."""
    out = resolve_run_dir(cfg, run_dir)
    t0 = time.perf_counter()
    ds = get_world(cfg, out)
    print(f"[run] world: {len(ds.items)} images ({time.perf_counter() - t0:.1f}s)")
    # every stage in worker processes when that pays; else each one here, in dependency order
    pooled = build_in_parallel(cfg, out, progress=True)
    if pooled:
        print(f"[run] every stage built ({time.perf_counter() - t0:.1f}s so far)")
    for stage, target in (("finetune", None), *(("goal", t) for t in cfg.unlearn.targets)):
        t1 = time.perf_counter()
        get_model(cfg, stage, target, out, progress=not pooled)
        if not pooled:
            print(f"[run] {stage}{'' if target is None else f'({target})'} ready ({time.perf_counter() - t1:.1f}s)")
    for target in cfg.unlearn.targets:
        for model in ("finetune", "goal"):
            get_eval(cfg, model, target, out, progress=not pooled)
    for target in cfg.unlearn.targets:
        for method in methods_for(cfg, target):
            t1 = time.perf_counter()
            get_unlearned(cfg, method, target, out, progress=not pooled)
            if not pooled:
                print(f"[run] {method}/{target} ready ({time.perf_counter() - t1:.1f}s)")
    res, _ = collect_results(cfg, out)
    print(f"[run] {len(res)} result rows in {out / 'results'} ({time.perf_counter() - t0:.1f}s so far)")
    fixed, _ = collect_fixed_rate(cfg, out)  # the paper's protocol beside the tuned one
    print(f"[run] the paper's protocol (one rate, untuned): {len(fixed)} result rows")
    if cfg.robust.probes:
        t1 = time.perf_counter()
        probes, _ = collect_robustness(cfg, out, progress=not pooled)  # builds each missing probe stage, then gathers
        print(f"[run] robustness probes: {len(probes)} rows ({time.perf_counter() - t1:.1f}s)")
    print(f"[run] done in {time.perf_counter() - t0:.1f}s -> {out}")
    report_stage_times(cfg, out)
    return out
