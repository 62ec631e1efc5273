"""The unlearning stages: the learning-rate grid, the tuned run of each method and target, the paper's
fixed-rate protocol, and the results tables gathered from them."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd

from ..config import RunConfig, safe_name
from ..errors import ConfigError
from ..evaluate import CONCEPTS_OF, evaluate, validation_score
from ..hashing import config_hash
from ..memory import check_stage
from ..methods import Method, get, settings_record
from ..models import load_adapter, remove_lora, save_adapter
from ..parallel import run_stages, stage_workers
from ..results import StageCache, atomic_write_json, atomic_write_parquet, read_marker
from ..tuning import UNTUNED, choose, is_tuned, rates, rule_text
from ..unlearn import check_trajectory, run_unlearning
from .evaluation import get_eval, write_evaluation, write_likelihoods
from .keys import gather_tables, methods_for, resolve_run_dir, stage_code
from .models import get_model, model_key
from .world import get_world


def tuning_key(cfg: RunConfig, method: str, target: str) -> str:
    return config_hash("tune", model_key(cfg, "finetune"), cfg.eval, target, *method_inputs(cfg, method, get_tuning))


def method_inputs(cfg: RunConfig, method: str, stage, **unlearn) -> tuple:
    """What a run of ``method`` depends on besides the model it starts from: the ``unlearn``
    settings with the method list, the target list and the other methods' own settings taken
    out (and ``unlearn`` replaced), its own settings as they resolve (defaults included), what
    the loop computes for it, and the code of its loss and its finish with the ``stage``'s."""

    u = dataclasses.replace(cfg.unlearn, methods=(), targets=(), settings={}, **unlearn)
    m = get(method)  # its loss's code and what the loop computes for it; not its title or prose
    code = stage_code(stage, *(f for f in (m.fn, m.finish) if f is not None), Method.required_inputs, Method.loss_kwargs)
    return u, method, settings_record(method, cfg.unlearn), m.passes(), code


def get_tuning(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> Path | None:
    """Run the learning-rate grid of ``method`` on ``target`` (:mod:`pebench_core.tuning`), or
    return ``None`` when the profile does not tune (one factor).

    The folder holds ``grid.parquet`` (one row per rate: its validation efficacy, retain and
    criterion, its status and seconds, and which was kept) and the marker's ``lr`` and
    ``rule``. When a grid run has the whole budget (``unlearn.grid_steps`` 0), each rate's
    adapter and trajectory are kept under ``lr<k>/``: the kept one *is* the final run, not
    trained again. Only the kept run's trajectory has its efficacy checks: the others' would
    be generated for nothing (a third of a three-rate grid's time on the tiny model), so each
    run keeps its adapter at the check steps and the checks are asked once the rate is chosen
    (:func:`pebench_core.unlearn.check_trajectory`; the same numbers as checking during the run)."""

    u0 = cfg.unlearn
    if not is_tuned(u0):
        return None
    key = tuning_key(cfg, method, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "tune")
    whole = u0.grid_steps in (0, u0.steps)

    def build(tmp: Path) -> dict:

        bundle = get_model(cfg, "finetune", None, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        check_stage(cfg, bundle, "unlearn")
        encoded: dict = {}  # the sets are encoded (and their images' features computed) once for the grid
        points, runs = [], {}
        for k, lr in enumerate(rates(u0)):
            u = dataclasses.replace(
                u0, lr=lr, steps=u0.steps if whole else u0.grid_steps, eval_every=u0.eval_every if whole else 10**9
            )
            run = run_unlearning(
                bundle, ds, target, method, u, cfg.eval, seed=cfg.seed, progress=progress, encoded=encoded,
                log=print if progress else (lambda *_: None), checks="later" if whole else "now",
            )  # fmt: skip
            try:
                ok = run.status == "ok"
                score = validation_score(bundle.with_model(run.model), ds, target, cfg.eval, cfg.seed) if ok else {}
                if whole and ok:
                    save_adapter(run.model, tmp / f"lr{k}" / "adapter")
                    runs[k] = (run, u)
            finally:
                remove_lora(run.model)
            points.append({"point": k, "lr": lr, "steps": u.steps, "status": "ok" if ok else run.status,
                           "seconds": round(run.seconds + run.setup_seconds, 2), "criterion": math.nan, **score})  # fmt: skip
        if any(p["status"] == "ok" for p in points):
            kept = choose(points)
        elif u0.keep_stopped:  # nothing finished: keep the lowest rate's run, marked with how it stopped
            kept = 0
        else:
            raise ConfigError(
                f"unlearning {method}/{target} {points[0]['status']}; so did every rate of the grid "
                f"({', '.join(f'{p:.3g}' for p in rates(u0))}); no result was stored (lower unlearn.lr, or set "
                "unlearn.keep_stopped=true to keep what the lowest rate reached, its rows marked with this status)"
            )
        for k, (run, u) in runs.items():  # the kept run's checks, asked now that it is known
            traj = run.trajectory
            if k == kept:
                model = load_adapter(bundle, tmp / f"lr{k}" / "adapter")
                try:
                    traj = check_trajectory(bundle, ds, target, method, u, cfg.eval, cfg.seed, model,
                                            run.snapshots, traj)  # fmt: skip
                finally:
                    remove_lora(model)
            atomic_write_parquet(tmp / f"lr{k}" / "trajectory.parquet", traj)
            meta = {"status": run.status, "steps_done": run.steps_done, "seconds_unlearn": round(run.seconds, 2),
                    "seconds_reference": round(run.setup_seconds, 2), "hparams": run.hparams}  # fmt: skip
            atomic_write_json(tmp / f"lr{k}" / "run.json", meta)
        grid = pd.DataFrame(points).assign(kept=lambda d: d["point"] == kept)
        atomic_write_parquet(tmp / "grid.parquet", grid)
        return {"lr": points[kept]["lr"], "point": kept, "rule": rule_text(u0, cfg.eval), "whole_budget": whole}

    return cache.get_or_build(f"{safe_name(method)}-{target}", key, build, log=print if progress else None)


def tuned_lr(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> tuple[float, str, Path | None]:
    """``(learning rate, selection rule, tuning folder)`` of ``method`` on ``target``: the grid's
    kept rate (the grid runs first if it is not cached), or ``unlearn.lr`` untuned."""

    folder = get_tuning(cfg, method, target, run_dir, progress)
    if folder is None:
        return cfg.unlearn.lr, UNTUNED, None
    meta = read_marker(folder)
    return float(meta["lr"]), str(meta["rule"]), folder


def unlearn_key(cfg: RunConfig, method: str, target: str) -> str:
    """The key of the final run: its method, target and settings, the learning-rate grid
    included (the run's rate is the grid's choice, so the grid is one of its inputs)."""
    return config_hash("unlearn", model_key(cfg, "finetune"), cfg.eval, target, *method_inputs(cfg, method, get_unlearned))


def get_unlearned(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """Unlearn ``target`` from the finetune model with ``method`` and evaluate the result.

    The folder holds the LoRA adapter (``adapter/``), ``trajectory.parquet``, the evaluation
    tables, ``likelihoods.parquet`` (:func:`write_likelihoods`), and the run's status and
    hyper-parameters in the completion marker.
    """

    key = unlearn_key(cfg, method, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "unlearn")

    def build(tmp: Path) -> dict:

        lr, rule, tune = tuned_lr(cfg, method, target, run_dir, progress)  # the grid first, when the profile tunes
        bundle = get_model(cfg, "finetune", None, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        kept = tune / f"lr{read_marker(tune)['point']}" if tune is not None else None
        if kept is not None and (kept / "run.json").is_file():  # the grid ran the whole budget: its kept run is this one
            model = load_adapter(bundle, kept / "adapter")
            shutil.copytree(kept / "adapter", tmp / "adapter")
            shutil.copyfile(kept / "trajectory.parquet", tmp / "trajectory.parquet")
            info = json.loads((kept / "run.json").read_text())
            info["seconds_reference"] = info.get("seconds_reference", 0.0)
        else:
            check_stage(cfg, bundle, "unlearn")
            u = dataclasses.replace(cfg.unlearn, lr=lr)
            run = run_unlearning(
                bundle, ds, target, method, u, cfg.eval, seed=cfg.seed, progress=progress,
                log=print if progress else (lambda *_: None),
            )  # fmt: skip
            if run.status != "ok" and not cfg.unlearn.keep_stopped:  # a failed stage: nothing stored, no row
                raise ConfigError(
                    f"unlearning {method}/{target} {run.status}; no result was stored "
                    "(set unlearn.keep_stopped=true to keep what it reached, its rows marked with this status)"
                )
            model = run.model
            save_adapter(model, tmp / "adapter")
            atomic_write_parquet(tmp / "trajectory.parquet", run.trajectory)
            info = {"status": run.status, "steps_done": run.steps_done, "seconds_unlearn": round(run.seconds, 2),
                    "seconds_reference": round(run.setup_seconds, 2), "hparams": run.hparams}  # fmt: skip
        info["hparams"] = {**info["hparams"], "lr": lr, "lr_selection": rule}
        unlearned = bundle.with_model(model)
        ev = evaluate(unlearned, ds, target, cfg.eval, cfg.seed)
        write_evaluation(tmp, cfg, ev, method, target, key, status=info["status"], lr=lr, lr_rule=rule)
        write_likelihoods(tmp, unlearned, ds, method, target, cfg.seed)
        return {**info, "seconds_generation": round(ev.seconds, 2)}

    return cache.get_or_build(f"{safe_name(method)}-{target}", key, build, log=print if progress else None)


FIXED_RATE_RULE = "fixed: unlearn.lr for the whole budget, untuned (the paper's protocol)"


def fixed_rate_jobs(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(method, target)`` of the paper's protocol (``findings.paper_methods`` ×
    ``findings.paper_targets``, those this run also unlearns), in run order."""
    return [
        (m, t)
        for t in cfg.unlearn.targets
        if t in cfg.findings.paper_targets
        for m in methods_for(cfg, t)
        if m in cfg.findings.paper_methods
    ]


def fixed_rate_key(cfg: RunConfig, method: str, target: str) -> str:
    """The key of a fixed-rate run: the unlearning key's inputs with the grid taken out (one
    rate, ``unlearn.lr``), so it never changes with the grid's other rates."""
    inputs = method_inputs(cfg, method, get_fixed_rate, lr_factors=(1.0,))
    return config_hash("fixed", model_key(cfg, "finetune"), cfg.eval, target, *inputs)


def get_fixed_rate(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """``method`` on ``target`` under the paper's protocol: the one rate ``unlearn.lr`` for the
    whole budget, every method alike, no tuning, evaluated on the final metrics (the ablation
    beside the tuned protocol, design: The paper's numbers). Where the learning-rate grid ran
    that very rate for the whole budget, its adapter is that run (same seed, same batches) and
    is evaluated, not trained again; otherwise the run is trained here. A run whose loss
    stopped being finite is kept with its status: a collapse is part of what the protocol
    shows. The folder holds the evaluation tables; the marker the run's status and rate."""

    key = fixed_rate_key(cfg, method, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "fixed")
    u0 = cfg.unlearn

    def build(tmp: Path) -> dict:
        tune = get_tuning(cfg, method, target, run_dir, progress)
        bundle = get_model(cfg, "finetune", None, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        grid = rates(u0)
        k = min(range(len(grid)), key=lambda i: abs(grid[i] - u0.lr))
        kept = tune / f"lr{k}" if tune is not None and abs(grid[k] - u0.lr) <= 1e-12 * u0.lr else None
        if kept is not None and (kept / "run.json").is_file() and read_marker(tune).get("whole_budget", True):
            info = json.loads((kept / "run.json").read_text())
            model = load_adapter(bundle, kept / "adapter")
            reused = True
        else:
            run = run_unlearning(
                bundle, ds, target, method, u0, cfg.eval, seed=cfg.seed,
                progress=progress, log=print if progress else (lambda *_: None),
            )  # fmt: skip
            info = {"status": run.status, "steps_done": run.steps_done, "seconds_unlearn": round(run.seconds, 2)}
            model, reused = run.model, False
        try:
            ev = evaluate(bundle.with_model(model), ds, target, cfg.eval, cfg.seed)
        finally:
            remove_lora(model)
        write_evaluation(tmp, cfg, ev, method, target, key, status=info["status"], lr=u0.lr, lr_rule=FIXED_RATE_RULE)
        return {"status": info["status"], "steps_done": info.get("steps_done"), "lr": u0.lr, "from_grid": reused,
                "seconds_generation": round(ev.seconds, 2)}  # fmt: skip

    return cache.get_or_build(f"{safe_name(method)}-{target}", key, build, log=print if progress else None)


def collect_fixed_rate(cfg: RunConfig, run_dir=None):
    """The paper's protocol runs (:func:`fixed_rate_jobs`) gathered into ``<run>/results/``:
    ``(results, items)`` in the results' long format, ``lr_rule`` naming the protocol."""
    out = resolve_run_dir(cfg, run_dir)
    folders = [get_fixed_rate(cfg, m, t, out, progress=False) for m, t in fixed_rate_jobs(cfg)]
    if not folders:
        return pd.DataFrame(), pd.DataFrame()
    return gather_tables(folders, out / "results", "fixed_rate.parquet", "fixed_rate_items.parquet")


def unlearned_dir(cfg: RunConfig, method: str, target: str, run_dir=None) -> Path:
    """The folder :func:`get_unlearned` uses for ``method`` on ``target`` (it may not exist yet)."""

    return StageCache(resolve_run_dir(cfg, run_dir) / "unlearn").path(
        f"{safe_name(method)}-{target}", unlearn_key(cfg, method, target)
    )


def load_unlearned_model(cfg: RunConfig, method: str, target: str, run_dir=None):
    """The finetune model with the saved adapter of (method, target) on, ready to generate."""

    folder = get_unlearned(cfg, method, target, run_dir, progress=False)
    bundle = get_model(cfg, "finetune", None, run_dir, progress=False)
    return bundle.with_model(load_adapter(bundle, folder / "adapter"))


def build_unlearning(cfg: RunConfig, run_dir=None, methods=None, targets=None, progress: bool = False) -> bool:
    """Build every missing unlearning stage of ``methods`` × ``targets`` (default: the
    profile's), in worker processes of one thread each when that pays
    (:func:`pebench_core.parallel.stage_workers`); otherwise nothing happens here and each
    stage is built where it is first asked for. The stages are independent once the
    fine-tuned model exists (each runs its own learning-rate grid): on 2 cores two processes
    of one thread build two tiny stages in about the time one process of two threads builds
    one (measured: ga and gd on person, 34 s together against 38 s one after the other).
    Returns whether a pool built them."""

    out = resolve_run_dir(cfg, run_dir)
    cache = StageCache(out / "unlearn")
    jobs = [(m, t) for t in targets or cfg.unlearn.targets for m in methods_for(cfg, t, methods)]
    missing = [(m, t) for m, t in jobs if not cache.has(f"{safe_name(m)}-{t}", unlearn_key(cfg, m, t))]
    workers = stage_workers(cfg, len(missing))
    if workers <= 1:
        return False
    get_world(cfg, out, progress=False)
    get_model(cfg, "finetune", None, out, progress)  # what every stage starts from, built once
    missing.sort(key=lambda job: -len(CONCEPTS_OF[job[1]]))  # the two-concept stages are the longest: first
    run_stages(
        _unlearn_stage, [(cfg, m, t, str(out)) for m, t in missing], workers,
        name=lambda job: f"unlearn {job[1]}/{job[2]}", log=print if progress else None,
    )  # fmt: skip
    return True


def _unlearn_stage(cfg: RunConfig, method: str, target: str, run_dir: str) -> str:
    """One unlearning stage (its grid included), as a worker process builds it."""
    return str(get_unlearned(cfg, method, target, run_dir, progress=False))


def collect_results(cfg: RunConfig, run_dir=None, methods=None, targets=None):
    """Gather every evaluation of this configuration into ``<run>/results/`` and return
    ``(results, items)``: the long-format tables every figure and table is made from."""
    out = resolve_run_dir(cfg, run_dir)
    folders = []
    for target in targets or cfg.unlearn.targets:
        folders += [get_eval(cfg, "finetune", target, out, progress=False), get_eval(cfg, "goal", target, out, progress=False)]
        folders += [get_unlearned(cfg, m, target, out, progress=False) for m in methods_for(cfg, target, methods)]
    return gather_tables(folders, out / "results", "results.parquet", "items.parquet")
