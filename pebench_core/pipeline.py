"""Stages in order, each cached under its config hash (design: Results and caching; Stage keys).

A run folder holds one sub-folder per stage, keyed by the hash of exactly the inputs
that stage depends on::

    runs/tiny-s0/world/<hash>/            the synthetic world (or nothing: a real PEBench folder)
    runs/tiny-s0/models/<stage>/<hash>/   base, finetune and goal checkpoints
    runs/tiny-s0/unlearn/<method>/<hash>/ LoRA adapters and trajectories
    runs/tiny-s0/results/                 results.parquet and items.parquet

Chapters call the ``get_*`` functions: the first call builds a stage, later calls (and
later chapters) load it. A key covers the stage's settings, its parent stage's key and the
code the stage runs (:func:`stage_code`: the functions reachable from it, not whole files,
so a fixed comment keeps the cache and an edited loss re-runs only its own method).
Changing any input changes the hash, so a stale artifact is never reused; every write is
atomic, so an interrupted run resumes where it stopped.

Chapters hold a :class:`Run` (one configuration and its run folder) rather than calling the
``get_*`` functions themselves: ``run.evaluation("finetune", "person").results``,
``run.unlearned("ga", "event").trajectory``. The handle reads through the same functions
(so the keys and the cache are the same), and the folder layout (file names, the completion
marker) stays in this module and :mod:`pebench_core.storage`. :meth:`Run.for_seeds` builds
and collects every run of a profile over several seeds for the analysis chapters.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import distributed as D
from .config import RunConfig, check_forget_floor
from .hashing import config_hash
from .data import Dataset, load_dataset, load_pebench_folder

ROOT = Path(__file__).resolve().parent.parent


def default_run_dir(cfg: RunConfig) -> Path:
    """``runs/<profile>-s<seed>`` at the top of the checkout."""
    name = Path(str(cfg.profile)).stem
    return ROOT / "runs" / f"{name}-s{cfg.seed}"


def resolve_run_dir(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    return Path(run_dir).expanduser().absolute() if run_dir else default_run_dir(cfg)


def seed_run_dir(cfg: RunConfig, run_dir: str | Path | None, multi: bool) -> Path:
    """Where the run of ``cfg.seed`` lives (what ``pebench run`` writes and the chapters read).

    * one seed (``multi`` False): ``run_dir`` itself, or ``runs/<profile>-s<seed>``;
    * several seeds (``--seeds``): ``<run_dir>/s<seed>``, or ``runs/<profile>-s<seed>``
      when no ``run_dir`` is given.
    """
    if not run_dir:
        return default_run_dir(cfg)
    base = Path(run_dir).expanduser().absolute()
    return base / f"s{cfg.seed}" if multi else base


def stage_code(*entries) -> str:
    """The hash of the code a stage runs (:func:`pebench_core.code_keys.code_key`). The method
    and probe registries are left out, so that an unlearning run depends on its own loss only and
    a probe stage on its own probes: their keys add the entries they use; no other stage calls a
    loss or a probe. The configuration
    classes and the method class are data, not code: every key hashes the values of the
    sections its stage reads (and an unlearning key its method's flags and the method code
    the loop calls), so a new ``unlearn.*`` field or method flag does not re-key the models."""
    from . import config as C
    from .code_keys import code_key
    from .methods import METHODS, Method
    from .probes import PROBES

    data = (
        C.RunConfig,
        C.WorldConfig,
        C.ModelConfig,
        C.TrainConfig,
        C.UnlearnConfig,
        C.EvalConfig,
        C.RobustConfig,
        C.FindingsConfig,
        Method,
    )
    return code_key(*entries, opaque=(METHODS, PROBES, *data))


def real_pretrain_people(cfg: RunConfig) -> int:
    """How many people of a real PEBench folder form the pre-training world: the tiny model,
    built from scratch, needs one (``world.n_real_people`` of them); a checkpoint brings its own."""
    return cfg.world.n_real_people if cfg.model.kind == "tiny" else 0


def folder_fingerprint(path: str | Path) -> str:
    """What identifies a real PEBench folder's content: every CSV's bytes and the path, size and
    modification time of every other file (as for a checkpoint, hashing every photograph on
    every run would cost more than it guards)."""
    root = Path(path).expanduser().absolute()
    files = sorted(f for f in root.rglob("*") if f.is_file())
    return config_hash(
        str(root),
        [(f.relative_to(root).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        [hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.suffix.lower() == ".csv"],
    )


def world_key(cfg: RunConfig) -> str:
    from .world import GENERATOR_VERSION

    if cfg.world.data_dir:  # edits to the folder make every stage that reads it stale
        content = folder_fingerprint(cfg.world.data_dir)
        return config_hash(cfg.world, cfg.seed, content, real_pretrain_people(cfg), stage_code(get_world))
    return config_hash(cfg.world, cfg.seed, GENERATOR_VERSION, stage_code(get_world))


def get_world(cfg: RunConfig, run_dir: str | Path | None = None, progress: bool = True) -> Dataset:
    """The dataset of this run: the real PEBench folder if ``world.data_dir`` is set, else the
    synthetic world, written once under ``<run>/world/<hash>`` and loaded from there."""
    if cfg.world.data_dir:
        ds = load_pebench_folder(
            cfg.world.data_dir, seed=cfg.seed, forget_share=cfg.world.forget_share, pretrain_people=real_pretrain_people(cfg)
        )
        check_forget_floor(len(ds.people), len(ds.events), cfg.world.forget_share, cfg.findings, cfg.world.data_dir)
        return ds
    import shutil

    from .storage import is_complete, verify
    from .world import generate_world, write_world

    out = resolve_run_dir(cfg, run_dir) / "world" / world_key(cfg)
    intact = is_complete(out) and (problem := verify(out)) is None
    if D.is_main() and is_complete(out) and not intact:  # damaged after it was written: never reused
        print(f"[world] the cached world {out.name} cannot be reused: {problem}; rebuilding it")
        shutil.rmtree(out, ignore_errors=True)
    if not D.main_value(intact):  # one decision for every process
        if D.is_main():  # under a multi-process launch one process writes, the others wait
            t0 = time.perf_counter()
            write_world(generate_world(cfg.world, cfg.seed), out, progress=progress)
            print(f"[world] written in {time.perf_counter() - t0:.1f}s -> {out}")
        D.barrier()
    return load_dataset(out)


# ---------------------------------------------------------------------------------------
# Models: init -> base (two variants) -> finetune / goal(target)
MODEL_STAGES = ("init", "base", "finetune", "goal")


def _base_variant(target: str | None) -> str:
    """Which pre-training a stage stands on: goal(event) and goal(both) never saw the forget events."""
    return "noevents" if target in ("event", "both") else "full"


def checkpoint_fingerprint(path: str | Path) -> str:
    """What identifies a local checkpoint's content: its config and the name, size and
    modification time of every weight file (hashing 14 GB of weights per run would cost
    more than the stages it guards)."""
    path = Path(path).expanduser()
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.json"))
    return config_hash(
        str(path.absolute()),
        [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        (path / "config.json").read_text() if (path / "config.json").is_file() else "",
    )


def model_key(cfg: RunConfig, stage: str, target: str | None = None) -> str:
    """The hash of everything a model stage depends on, its parent stage's key included."""
    code = stage_code(get_model)
    if stage == "init":
        if cfg.model.kind == "local":
            return config_hash("init-local", checkpoint_fingerprint(cfg.model.path), cfg.model)
        return config_hash("init", world_key(cfg), cfg.model, cfg.seed, code)
    if stage == "base":
        if cfg.model.kind == "local":  # the checkpoint is its own base, whatever the target
            return config_hash("base-local", model_key(cfg, "init"))
        return config_hash("base", model_key(cfg, "init"), cfg.train, _base_variant(target), code)
    if stage == "finetune":
        return config_hash("finetune", world_key(cfg), model_key(cfg, "base"), cfg.train, code)
    if stage == "goal":
        if target is None:
            raise ValueError("the goal stage needs a target")
        return config_hash("goal", world_key(cfg), model_key(cfg, "base", target), cfg.train, target, code)
    raise ValueError(f"unknown model stage {stage!r}; allowed: {', '.join(MODEL_STAGES)}")


def model_dir(cfg: RunConfig, stage: str, target: str | None = None, run_dir=None) -> Path:
    name = stage if stage in ("init", "finetune") else (f"base-{_base_variant(target)}" if stage == "base" else f"goal-{target}")
    return resolve_run_dir(cfg, run_dir) / "models" / name / model_key(cfg, stage, target)


_ADAPTER = "adapter"


def _vision_cache(cfg: RunConfig, run_dir=None) -> Path:
    """Where the bases' vision pre-training is kept (both bases share one: stored once)."""
    return resolve_run_dir(cfg, run_dir) / "models" / "vision"


def _load_stage(cfg: RunConfig, out: Path):
    """A built stage: a whole checkpoint, or (a local checkpoint's LoRA stage) the checkpoint
    with the stage's adapter merged in, so that unlearning adapts the fine-tuned weights and
    its reference (adapter off) is exactly them."""
    from .models import load_bundle, load_merged

    if (out / _ADAPTER).is_dir():
        return load_merged(cfg.model.path, out / _ADAPTER, cfg.model.device, cfg.model.dtype)
    return load_bundle(out, cfg.model.device, cfg.model.dtype)


def get_model(cfg: RunConfig, stage: str, target: str | None = None, run_dir=None, progress: bool = True):
    """Load (building first if needed) the model of ``stage``: ``init``, ``base``, ``finetune`` or
    ``goal`` (with a target). Returns a :class:`~pebench_core.models.ModelBundle`.

    For a local checkpoint (``model.kind = local``) ``init`` and ``base`` are the checkpoint
    itself; ``finetune`` and ``goal`` store a LoRA adapter (``train.adapter = lora``) or the
    whole fine-tuned model (``full``).
    """
    from . import train
    from .data import world_texts
    from .errors import ConfigError
    from .models import build_tiny, load_bundle, save_adapter, save_bundle, unwrap
    from .results import StageCache

    if cfg.model.kind == "local":
        if not cfg.model.path:
            raise ConfigError("model.path must name a local checkpoint folder when model.kind is 'local'")
        if stage in ("init", "base"):
            return load_bundle(cfg.model.path, cfg.model.device, cfg.model.dtype)
    out = model_dir(cfg, stage, target, run_dir)
    label = stage if target is None else f"{stage}({target})"

    def build(tmp: Path) -> dict:
        ds = get_world(cfg, run_dir, progress=progress)
        if stage == "init":
            bundle = build_tiny(cfg.model, world_texts(ds), cfg.world.image_size, cfg.seed)
            info = {}
        else:
            parent = ("init", None) if stage == "base" else ("base", target)
            bundle = get_model(cfg, parent[0], parent[1], run_dir, progress)
            from .memory import check_stage

            check_stage(cfg, bundle, stage, ds)
            # Both bases share one vision pre-training (the same scenes): stored once on disk.
            info = train.inject(
                bundle,
                ds,
                stage,
                target,
                cfg,
                progress=progress,
                vision_cache=_vision_cache(cfg, run_dir),
            )
        full = D.full_state_dict(bundle.model)  # FSDP shards gathered (collective); None otherwise
        if D.is_main():  # every process trained the same weights; one writes them
            weights = full.items() if full else bundle.model.named_parameters()
            bad = [n for n, w in weights if w.is_floating_point() and not bool(w.isfinite().all())]
            if bad:  # never store (and later unlearn from) a model that training broke
                raise ConfigError(
                    f"{label} training left {len(bad)} weight tensors non-finite (NaN or inf; first: {bad[0]}); "
                    f"nothing was stored: lower train.lr (now {cfg.train.lr}) or raise train.warmup_share"
                )
            if unwrap(bundle.model) is not bundle.model:
                save_adapter(bundle.model, tmp / _ADAPTER)
            else:
                save_bundle(bundle, tmp, state_dict=full)
        import torch

        # threads: a worker of pebench_core.parallel trains on one, a plain run on the process's
        return {"stage": stage, "target": target, **(info or {}), "threads": torch.get_num_threads()}

    def log(line: str) -> None:  # the cache's notices as they are; a build as the models' own line
        if " built in " in line:
            print(f"[models] {label} built in {stage_info(cfg, stage, target, run_dir)['seconds']:.1f}s -> {out}")
        elif " cached (" not in line:
            print(line)

    # one check (and one digest verification) of the cached folder, inside get_or_build
    StageCache(out.parent.parent).get_or_build(out.parent.name, out.name, build, log=log if progress else None)
    return _load_stage(cfg, out)


def stage_info(cfg: RunConfig, stage: str, target: str | None = None, run_dir=None) -> dict:
    """The metadata a model stage stored (times, training history). A local checkpoint's
    ``init`` and ``base`` are the checkpoint itself: nothing was trained, and the info says so."""
    from .storage import read_marker

    if cfg.model.kind == "local" and stage in ("init", "base"):
        return {
            "stage": stage,
            "target": target,
            "checkpoint": str(cfg.model.path),
            "seconds": 0.0,
            "examples": 0,
            "epochs": 0,
            "history": [],
            "note": "the local checkpoint itself",
        }
    return read_marker(model_dir(cfg, stage, target, run_dir))


# ---------------------------------------------------------------------------------------
# Evaluation of reference models (finetune, goal) and unlearning runs
def eval_key(cfg: RunConfig, model: str, target: str) -> str:
    parent = model_key(cfg, model, target if model == "goal" else None)
    return config_hash("eval", parent, cfg.eval, target, stage_code(get_eval))


def tuning_key(cfg: RunConfig, method: str, target: str) -> str:
    import dataclasses

    from .methods import Method, get

    u = dataclasses.replace(cfg.unlearn, methods=(), targets=())  # one grid depends on its own method only
    m = get(method)
    code = stage_code(get_tuning, m.fn, Method.required_inputs, Method.settings)
    return config_hash("tune", model_key(cfg, "finetune"), u, cfg.eval, method, target, m.passes(), code)


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
    import dataclasses
    import math

    import pandas as pd

    from .config import safe_name
    from .errors import ConfigError
    from .evaluate import validation_score
    from .models import load_adapter, remove_lora, save_adapter
    from .results import StageCache, atomic_write_json, atomic_write_parquet
    from .tuning import choose, is_tuned, rates, rule_text
    from .unlearn import check_trajectory, run_unlearning

    u0 = cfg.unlearn
    if not is_tuned(u0):
        return None
    key = tuning_key(cfg, method, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "tune")
    whole = u0.grid_steps in (0, u0.steps)

    def build(tmp: Path) -> dict:
        from .memory import check_stage

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
    from .results import read_marker
    from .tuning import UNTUNED

    folder = get_tuning(cfg, method, target, run_dir, progress)
    if folder is None:
        return cfg.unlearn.lr, UNTUNED, None
    meta = read_marker(folder)
    return float(meta["lr"]), str(meta["rule"]), folder


def unlearn_key(cfg: RunConfig, method: str, target: str) -> str:
    """The key of the final run: its method, target and settings, the learning-rate grid
    included (the run's rate is the grid's choice, so the grid is one of its inputs)."""
    import dataclasses

    from .methods import Method, get

    u = dataclasses.replace(cfg.unlearn, methods=(), targets=())  # one run depends on its own method only
    m = get(method)  # its loss's code and what the loop computes for it; not its title or prose
    code = stage_code(get_unlearned, m.fn, Method.required_inputs, Method.settings)
    return config_hash("unlearn", model_key(cfg, "finetune"), u, cfg.eval, method, target, m.passes(), code)


def _write_eval(
    folder: Path,
    cfg: RunConfig,
    ev,
    method: str,
    target: str,
    key: str,
    status: str = "ok",
    lr: float | None = None,
    lr_rule: str = "",
) -> None:
    from .results import atomic_write_parquet, result_rows

    rows, items = result_rows(
        ev.results,
        run_id=f"{Path(str(cfg.profile)).stem}-s{cfg.seed}",
        profile=str(cfg.profile),
        seed=cfg.seed,
        target=target,
        method=method,
        config_hash=key,
        status=status,
        lr=lr,
        lr_rule=lr_rule,
    )
    atomic_write_parquet(folder / "results.parquet", rows)
    atomic_write_parquet(folder / "items.parquet", items)
    atomic_write_parquet(folder / "answers.parquet", ev.answers)


def _write_likelihoods(folder: Path, bundle, ds, model: str, target: str, seed: int) -> None:
    """The model's likelihoods of the true answer and of the refusal on ``target``'s forget items
    (:func:`pebench_core.likelihoods.answer_likelihoods`, a ``model`` column added), which
    chapter 4 reads: computed by the stage that has the model loaded, once per model (the
    finetune model's by its evaluation, not again by every unlearning run)."""
    from .likelihoods import answer_likelihoods as likelihoods
    from .results import atomic_write_parquet

    atomic_write_parquet(folder / "likelihoods.parquet", likelihoods(bundle, ds, target, seed).assign(model=model))


def get_eval(cfg: RunConfig, model: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """Evaluate ``finetune`` or ``goal`` (of ``target``) on ``target``'s metrics; returns the folder
    holding results.parquet, items.parquet, answers.parquet and likelihoods.parquet
    (:func:`_write_likelihoods`)."""
    from .evaluate import evaluate
    from .results import StageCache

    if model not in ("finetune", "goal"):
        raise ValueError(f"get_eval evaluates 'finetune' or 'goal', got {model!r}")
    key = eval_key(cfg, model, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "eval")

    def build(tmp: Path) -> dict:
        bundle = get_model(cfg, model, target if model == "goal" else None, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        ev = evaluate(bundle, ds, target, cfg.eval, cfg.seed)
        _write_eval(tmp, cfg, ev, model, target, key)
        _write_likelihoods(tmp, bundle, ds, model, target, cfg.seed)
        return {
            "seconds_generation": round(ev.seconds, 2),
            "questions": ev.n_questions,
            "items_per_second": round(ev.n_questions / max(ev.seconds, 1e-9), 1),
        }

    return cache.get_or_build(f"{model}-{target}", key, build, log=print if progress else None)


def get_unlearned(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """Unlearn ``target`` from the finetune model with ``method`` and evaluate the result.

    The folder holds the LoRA adapter (``adapter/``), ``trajectory.parquet``, the evaluation
    tables, ``likelihoods.parquet`` (:func:`_write_likelihoods`), and the run's status and
    hyper-parameters in the completion marker.
    """
    from .config import safe_name
    from .errors import ConfigError
    from .evaluate import evaluate
    from .models import save_adapter
    from .results import StageCache, atomic_write_parquet
    from .unlearn import run_unlearning

    key = unlearn_key(cfg, method, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "unlearn")

    def build(tmp: Path) -> dict:
        import dataclasses
        import shutil

        from .memory import check_stage
        from .models import load_adapter
        from .storage import read_marker

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
        _write_eval(tmp, cfg, ev, method, target, key, status=info["status"], lr=lr, lr_rule=rule)
        _write_likelihoods(tmp, unlearned, ds, method, target, cfg.seed)
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
    import dataclasses

    from .methods import Method, get

    u = dataclasses.replace(cfg.unlearn, methods=(), targets=(), lr_factors=(1.0,))
    m = get(method)
    code = stage_code(get_fixed_rate, m.fn, Method.required_inputs, Method.settings)
    return config_hash("fixed", model_key(cfg, "finetune"), u, cfg.eval, method, target, m.passes(), code)


def get_fixed_rate(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """``method`` on ``target`` under the paper's protocol: the one rate ``unlearn.lr`` for the
    whole budget, every method alike, no tuning, evaluated on the final metrics (the ablation
    beside the tuned protocol, design: The paper's numbers). Where the learning-rate grid ran
    that very rate for the whole budget, its adapter is that run (same seed, same batches) and
    is evaluated, not trained again; otherwise the run is trained here. A run whose loss
    stopped being finite is kept with its status: a collapse is part of what the protocol
    shows. The folder holds the evaluation tables; the marker the run's status and rate."""
    from .config import safe_name
    from .evaluate import evaluate
    from .models import load_adapter, remove_lora
    from .results import StageCache
    from .storage import read_marker
    from .tuning import rates
    from .unlearn import run_unlearning

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
        _write_eval(tmp, cfg, ev, method, target, key, status=info["status"], lr=u0.lr, lr_rule=FIXED_RATE_RULE)
        return {"status": info["status"], "steps_done": info.get("steps_done"), "lr": u0.lr, "from_grid": reused,
                "seconds_generation": round(ev.seconds, 2)}  # fmt: skip

    return cache.get_or_build(f"{safe_name(method)}-{target}", key, build, log=print if progress else None)


def collect_fixed_rate(cfg: RunConfig, run_dir=None):
    """The paper's protocol runs (:func:`fixed_rate_jobs`) gathered into ``<run>/results/``:
    ``(results, items)`` in the results' long format, ``lr_rule`` naming the protocol."""
    out = resolve_run_dir(cfg, run_dir)
    folders = [get_fixed_rate(cfg, m, t, out, progress=False) for m, t in fixed_rate_jobs(cfg)]
    if not folders:
        import pandas as pd

        return pd.DataFrame(), pd.DataFrame()
    return _gather(folders, out / "results", "fixed_rate.parquet", "fixed_rate_items.parquet")


def unlearned_dir(cfg: RunConfig, method: str, target: str, run_dir=None) -> Path:
    """The folder :func:`get_unlearned` uses for ``method`` on ``target`` (it may not exist yet)."""
    from .config import safe_name
    from .results import StageCache

    return StageCache(resolve_run_dir(cfg, run_dir) / "unlearn").path(
        f"{safe_name(method)}-{target}", unlearn_key(cfg, method, target)
    )


def load_unlearned_model(cfg: RunConfig, method: str, target: str, run_dir=None):
    """The finetune model with the saved adapter of (method, target) on, ready to generate."""
    from .models import load_adapter

    folder = get_unlearned(cfg, method, target, run_dir, progress=False)
    bundle = get_model(cfg, "finetune", None, run_dir, progress=False)
    return bundle.with_model(load_adapter(bundle, folder / "adapter"))


def collect_results(cfg: RunConfig, run_dir=None, methods=None, targets=None):
    """Gather every evaluation of this configuration into ``<run>/results/`` and return
    ``(results, items)``: the long-format tables every figure and table is made from."""
    out = resolve_run_dir(cfg, run_dir)
    folders = []
    for target in targets or cfg.unlearn.targets:
        folders += [get_eval(cfg, "finetune", target, out, progress=False), get_eval(cfg, "goal", target, out, progress=False)]
        folders += [get_unlearned(cfg, m, target, out, progress=False) for m in methods_for(cfg, target, methods)]
    return _gather(folders, out / "results", "results.parquet", "items.parquet")


def _gather(folders: Sequence[Path], dest: Path, results_name: str, items_name: str):
    """The results and items tables of ``folders`` stacked, written under ``dest`` (rank 0)."""
    import pandas as pd

    from .results import atomic_write_parquet

    res = pd.concat([_tables(f).results for f in folders], ignore_index=True)
    items = pd.concat([_tables(f).items for f in folders], ignore_index=True)
    if D.is_main():
        atomic_write_parquet(dest / results_name, res)
        atomic_write_parquet(dest / items_name, items)
    D.barrier()
    return res, items


# ---------------------------------------------------------------------------------------
# Robustness probes (pebench_core.probes): one stage per evaluated model and target
def robust_key(cfg: RunConfig, model: str, target: str) -> str:
    """The probes' key: the probed model's own key, the probes' settings, the evaluation's (the
    same scorer and decoding), the LoRA settings relearning uses, and the code of the probes it runs."""
    from .probes import get as get_probe

    if model == "finetune":
        parent = model_key(cfg, "finetune")
    elif model == "goal":
        parent = model_key(cfg, "goal", target)
    else:
        parent = unlearn_key(cfg, model, target)
    u = cfg.unlearn
    lora = (u.lora_r, u.lora_alpha, u.lora_projector, u.batch_size)
    return config_hash(
        "robust",
        world_key(cfg),
        parent,
        cfg.robust,
        cfg.eval,
        lora,
        model,
        target,
        stage_code(get_robustness, *(get_probe(n) for n in cfg.robust.probes)),
    )


def probed_model(cfg: RunConfig, model: str, target: str, run_dir=None, progress: bool = False):
    """The plain model the probes read: finetune, goal(target), or the finetune model with the
    unlearning adapter of (``model``, target) merged into its weights."""
    if model == "finetune":
        return get_model(cfg, "finetune", None, run_dir, progress)
    if model == "goal":
        return get_model(cfg, "goal", target, run_dir, progress)
    unlearned = load_unlearned_model(cfg, model, target, run_dir)
    return unlearned.with_model(unlearned.model.merge_and_unload())


def get_robustness(cfg: RunConfig, model: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """Run every probe of ``cfg.robust.probes`` on ``model`` (``finetune``, ``goal`` or a method)
    for ``target``; returns the folder holding results.parquet and items.parquet (the long
    format, one metric per probe measure) and, in the marker, the seconds of each probe."""
    from .config import safe_name
    from .errors import ConfigError
    from .results import StageCache
    from .probes import run_probes

    if not cfg.robust.probes:
        raise ConfigError("robust.probes is empty: there is nothing to probe (list some of relearn, paraphrase, ...)")
    key = robust_key(cfg, model, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "robust")

    def build(tmp: Path) -> dict:
        status, lr, rule = "ok", None, ""
        if model not in ("finetune", "goal"):
            meta = UnlearningOutcome(get_unlearned(cfg, model, target, run_dir, progress), model, target)
            status, lr, rule = meta.status, meta.hparams.get("lr"), str(meta.hparams.get("lr_selection", ""))
        bundle = probed_model(cfg, model, target, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        results, seconds = run_probes(bundle, ds, target, cfg, log=print if progress else (lambda *_: None))
        from .results import atomic_write_parquet, result_rows

        rows, items = result_rows(
            results, run_id=f"{Path(str(cfg.profile)).stem}-s{cfg.seed}", profile=str(cfg.profile), seed=cfg.seed,
            target=target, method=model, config_hash=key, status=status, lr=lr, lr_rule=rule,
        )  # fmt: skip
        atomic_write_parquet(tmp / RESULTS_FILE, rows)
        atomic_write_parquet(tmp / ITEMS_FILE, items)
        import torch

        # threads: a worker of pebench_core.parallel computes on one, a plain run on the process's
        meta = {"model": model, "target": target, "probes": list(cfg.robust.probes), "seconds_probe": seconds}
        return {**meta, "threads": torch.get_num_threads()}

    return cache.get_or_build(f"{safe_name(model)}-{target}", key, build, log=print if progress else None)


def collect_robustness(cfg: RunConfig, run_dir=None, methods=None, targets=None, progress: bool = False):
    """Every probe of every model (finetune, goal and each method) on every target, gathered into
    ``<run>/results/robustness.parquet`` and ``robustness_items.parquet``: the same long format
    as the results table, kept beside it so that the paper's tables read only the paper's
    metrics. Returns ``(results, items)``."""
    from .config import safe_name
    from .evaluate import CONCEPTS_OF
    from .parallel import run_stages, stage_workers
    from .results import StageCache

    out = resolve_run_dir(cfg, run_dir)
    jobs = [(m, t) for t in targets or cfg.unlearn.targets for m in ("finetune", *methods_for(cfg, t, methods), "goal")]
    cache = StageCache(out / "robust")
    missing = [(m, t) for m, t in jobs if not cache.has(f"{safe_name(m)}-{t}", robust_key(cfg, m, t))]
    workers = stage_workers(cfg, len(missing))
    if workers > 1:
        # what the probes read is built first, so two workers never build the same model
        for model, target in missing:
            if model in ("finetune", "goal"):
                get_model(cfg, model, target if model == "goal" else None, out, progress)
        unlearned = [(m, t) for m, t in missing if m not in ("finetune", "goal")]
        if unlearned:  # (with no methods or targets given, build_unlearning would build the profile's all)
            methods_needed = list(dict.fromkeys(m for m, _ in unlearned))
            build_unlearning(cfg, out, methods_needed, list(dict.fromkeys(t for _, t in unlearned)), progress)
        # the two-concept stages (target both) take about twice as long: started first, they do not
        # leave one worker finishing alone at the end (longest first)
        missing.sort(key=lambda job: -len(CONCEPTS_OF[job[1]]))
        run_stages(
            _robust_stage, [(cfg, m, t, str(out)) for m, t in missing], workers,
            name=lambda job: f"robust {job[1]}-{job[2]}", log=print if progress else None,
        )  # fmt: skip
    say = progress and workers <= 1  # the pool reported each stage it built: no "cached" line for them
    folders = [get_robustness(cfg, model, target, out, progress=say) for model, target in jobs]
    return _gather(folders, out / "results", "robustness.parquet", "robustness_items.parquet")


def build_unlearning(cfg: RunConfig, run_dir=None, methods=None, targets=None, progress: bool = False) -> bool:
    """Build every missing unlearning stage of ``methods`` × ``targets`` (default: the
    profile's), in worker processes of one thread each when that pays
    (:func:`pebench_core.parallel.stage_workers`); otherwise nothing happens here and each
    stage is built where it is first asked for. The stages are independent once the
    fine-tuned model exists (each runs its own learning-rate grid): on 2 cores two processes
    of one thread build two tiny stages in about the time one process of two threads builds
    one (measured: ga and gd on person, 34 s together against 38 s one after the other).
    Returns whether a pool built them."""
    from .config import safe_name
    from .evaluate import CONCEPTS_OF
    from .parallel import run_stages, stage_workers
    from .results import StageCache

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


def _robust_stage(cfg: RunConfig, model: str, target: str, run_dir: str) -> str:
    """One probe stage, as a worker process builds it (:func:`pebench_core.parallel.run_stages`)."""
    return str(get_robustness(cfg, model, target, run_dir, progress=False))


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
    from .config import safe_name
    from .evaluate import CONCEPTS_OF

    out = resolve_run_dir(cfg, run_dir)
    targets = sorted(cfg.unlearn.targets, key=lambda t: -len(CONCEPTS_OF[t]))
    plan: list[PlannedStage] = []
    # (variant of the base -> the target whose base it is): base-full for finetune and goal(person)
    bases = {_base_variant(None): None, **{_base_variant(t): t for t in cfg.unlearn.targets if _base_variant(t) != "full"}}
    for variant, target in sorted(bases.items()):
        plan.append(PlannedStage("models", f"base-{variant}", model_dir(cfg, "base", target, out), "base", target))
    finetune = model_dir(cfg, "finetune", None, out)
    plan.append(PlannedStage("models", "finetune", finetune, "finetune", None, ("models/base-full",)))
    for t in targets:
        base = f"models/base-{_base_variant(t)}"
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
    from .parallel import run_graph, stage_workers
    from .results import StageCache

    out = resolve_run_dir(cfg, run_dir)
    plan = run_plan(cfg, out)
    missing = [s for s in plan if not StageCache(s.folder.parent.parent).has(s.folder.parent.name, s.folder.name)]
    workers = stage_workers(cfg, len(missing))
    if workers <= 1:
        return False
    ds = get_world(cfg, out, progress=False)
    if any(s.what == "base" for s in missing):
        from .train import base_vision

        init = get_model(cfg, "init", None, out, progress)
        if cfg.train.vision_exclude_forget_events and cfg.model.kind == "tiny":  # one encoder for both bases
            t0 = time.perf_counter()
            if base_vision(init, ds, cfg.train, cfg.seed, None, progress, _vision_cache(cfg, out)) and progress:
                print(f"[models] vision pre-training shared by the bases ready ({time.perf_counter() - t0:.1f}s)")
    index = {s.id: k for k, s in enumerate(missing)}
    after = [[index[a] for a in s.after if a in index] for s in missing]
    names = {(s.kind, s.what, s.target): s.name for s in missing}
    run_graph(
        _planned_stage, [(cfg, s.kind, s.what, s.target, str(out)) for s in missing], after, workers,
        name=lambda job: f"{job[1]} {names[job[1:4]]}", log=print if progress else None,
    )  # fmt: skip
    return True


def methods_for(cfg: RunConfig, target: str, methods=None) -> list[str]:
    """The methods (``methods``, default the profile's) run on ``target``: those whose registry
    entry lists it (BGD balances two concepts, so it runs on ``both`` only)."""
    from .methods import runs_on

    return [m for m in (methods or cfg.unlearn.methods) if runs_on(m, target)]


STAGE_TIMES = "stage_times.csv"


def stage_times(cfg: RunConfig, run_dir=None) -> "Any":
    """How long each stage of this configuration took to build, read from the markers of its
    cached stages (a stage not built yet is left out): one row per stage with its ``kind``
    (models, eval, tune, unlearn, fixed, robust), ``stage``, ``seconds`` and the torch ``threads`` it
    computed on where recorded. The table to look at first when a run is slow."""
    import pandas as pd

    from .storage import is_complete, read_marker

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
    from .results import atomic_write_bytes

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


def comparison(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True):
    """Result rows of finetune (lower bound), ``method`` and goal (upper bound) on ``target``."""
    import pandas as pd

    folders = [
        get_eval(cfg, "finetune", target, run_dir, progress),
        get_unlearned(cfg, method, target, run_dir, progress),
        get_eval(cfg, "goal", target, run_dir, progress),
    ]
    return pd.concat([_tables(f).results for f in folders], ignore_index=True)


def answer_likelihoods(cfg: RunConfig, method: str, target: str, run_dir=None):
    """The finetune model's and ``method``'s unlearned model's likelihoods of the true answer
    and of the refusal on ``target``'s forget items, stacked (a ``model`` column tells them
    apart), as their stages stored them (:func:`_write_likelihoods`)."""
    import pandas as pd

    folders = [get_eval(cfg, "finetune", target, run_dir, False), get_unlearned(cfg, method, target, run_dir, False)]
    return pd.concat([pd.read_parquet(f / "likelihoods.parquet") for f in folders], ignore_index=True)


def answers_side_by_side(cfg: RunConfig, method: str, target: str, run_dir=None):
    """Every evaluated question with the finetune, ``method`` and goal answers side by side."""
    frames = {
        "finetune": get_eval(cfg, "finetune", target, run_dir, False),
        method: get_unlearned(cfg, method, target, run_dir, False),
        "goal": get_eval(cfg, "goal", target, run_dir, False),
    }
    out = None
    for name, folder in frames.items():
        a = _tables(folder).answers.rename(columns={"answer": name})
        out = a if out is None else out.merge(a, on=["item_id", "question"], how="outer")
    return out


# ---------------------------------------------------------------------------------------
# What a chapter holds: a run handle and the outcomes it reads
RESULTS_FILE, ITEMS_FILE, ANSWERS_FILE = "results.parquet", "items.parquet", "answers.parquet"
TRAJECTORY_FILE = "trajectory.parquet"


@dataclass(frozen=True)
class Outcome:
    """An evaluated model of a run: the folder :func:`get_eval` (or :func:`get_unlearned`)
    returned, and its tables, read from disk on each access (they are small, and a caller
    may change the frame it gets without touching anyone else's).

    ``model`` is ``finetune``, ``goal`` or the unlearning method; ``target`` the target it
    was evaluated on.
    """

    folder: Path
    model: str
    target: str

    def _read(self, name: str):
        import pandas as pd

        return pd.read_parquet(self.folder / name)

    @property
    def results(self):
        """The long results rows (one per concept × metric, with provenance)."""
        return self._read(RESULTS_FILE)

    @property
    def items(self):
        """The per-item values behind :attr:`results`."""
        return self._read(ITEMS_FILE)

    @property
    def answers(self):
        """Every evaluated question with the generated answer (``item_id``, ``question``, ``answer``)."""
        return self._read(ANSWERS_FILE)

    @property
    def meta(self) -> dict:
        """The metadata the stage stored with its completion marker (times, counts, status)."""
        from .storage import read_marker

        return read_marker(self.folder)


@dataclass(frozen=True)
class UnlearningOutcome(Outcome):
    """An unlearning run: its evaluation tables, its trajectory and the run's metadata."""

    @property
    def trajectory(self):
        """The loss terms at every step and, every few steps, the efficacy on a forget subset."""
        return self._read(TRAJECTORY_FILE)

    @property
    def hparams(self) -> dict:
        """The hyper-parameters the run used."""
        return dict(self.meta.get("hparams") or {})

    @property
    def status(self) -> str:
        """``ok``, or why the run stopped early."""
        return str(self.meta.get("status"))


def _tables(folder: Path) -> Outcome:
    """The tables of an evaluation folder, for the helpers that only have its path."""
    return Outcome(Path(folder), "", "")


class Run:
    """One configuration and its run folder: what a chapter reads its models and tables through.

    ``run_dir`` is resolved once (``""`` and ``None`` mean the default, ``runs/<profile>-s<seed>``).
    Every accessor goes through the ``get_*`` functions of this module, so a stage that is
    missing is built on first access and a built one is loaded; ``progress`` (default: the
    handle's) decides whether a build prints its log and progress bars.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path | None = None, progress: bool = False):
        self.cfg = cfg
        self.dir = resolve_run_dir(cfg, run_dir)
        self.progress = progress
        self._world: Dataset | None = None

    def __repr__(self) -> str:
        return f"Run(profile={str(self.cfg.profile)!r}, seed={self.cfg.seed}, dir={str(self.dir)!r})"

    def _progress(self, progress: bool | None) -> bool:
        return self.progress if progress is None else progress

    # -- the world and the models
    @property
    def world(self) -> Dataset:
        """The run's dataset (:func:`get_world`), written on first use and kept by the handle."""
        if self._world is None:
            self._world = get_world(self.cfg, self.dir, progress=self.progress)
        return self._world

    def model(self, stage: str, target: str | None = None, progress: bool | None = None):
        """The :class:`~pebench_core.models.ModelBundle` of ``stage`` (:func:`get_model`)."""
        return get_model(self.cfg, stage, target, self.dir, progress=self._progress(progress))

    def stage_info(self, stage: str, target: str | None = None) -> dict:
        """What a built model stage stored (:func:`stage_info`): times, training history."""
        return stage_info(self.cfg, stage, target, self.dir)

    def unlearned_model(self, method: str, target: str):
        """The finetune model with ``method``'s adapter for ``target`` on (:func:`load_unlearned_model`)."""
        return load_unlearned_model(self.cfg, method, target, self.dir)

    # -- evaluations and unlearning runs
    def evaluation(self, model: str, target: str, progress: bool | None = None) -> Outcome:
        """``finetune`` or ``goal`` evaluated on ``target`` (:func:`get_eval`)."""
        return Outcome(get_eval(self.cfg, model, target, self.dir, progress=self._progress(progress)), model, target)

    def unlearned(self, method: str, target: str, progress: bool | None = None) -> UnlearningOutcome:
        """``method`` run on ``target`` and evaluated (:func:`get_unlearned`)."""
        folder = get_unlearned(self.cfg, method, target, self.dir, progress=self._progress(progress))
        return UnlearningOutcome(folder, method, target)

    def tuning(self, method: str, target: str, progress: bool | None = None):
        """The learning-rate grid of ``method`` on ``target`` (:func:`get_tuning`): one row per
        rate with its validation efficacy, retain and criterion, and ``kept``; ``None`` when
        the profile does not tune."""
        import pandas as pd

        folder = get_tuning(self.cfg, method, target, self.dir, progress=self._progress(progress))
        return None if folder is None else pd.read_parquet(folder / "grid.parquet")

    def methods_for(self, target: str, methods=None) -> list[str]:
        """The methods run on ``target`` (:func:`methods_for`)."""
        return methods_for(self.cfg, target, methods)

    def comparison(self, method: str, target: str):
        """Result rows of finetune, ``method`` and goal on ``target`` (:func:`comparison`)."""
        return comparison(self.cfg, method, target, self.dir, progress=False)

    def answers_side_by_side(self, method: str, target: str):
        """Every evaluated question with the three models' answers (:func:`answers_side_by_side`)."""
        return answers_side_by_side(self.cfg, method, target, self.dir)

    def answer_likelihoods(self, method: str, target: str):
        """The true answer's and the refusal's likelihoods before and after ``method`` (:func:`answer_likelihoods`)."""
        return answer_likelihoods(self.cfg, method, target, self.dir)

    def collect(self, methods=None, targets=None):
        """Every evaluation gathered into ``<run>/results/``: ``(results, items)`` (:func:`collect_results`)."""
        return collect_results(self.cfg, self.dir, methods, targets)

    def robustness(self, model: str, target: str, progress: bool | None = None) -> Outcome:
        """The probes of ``model`` (finetune, goal or a method) on ``target`` (:func:`get_robustness`)."""
        return Outcome(get_robustness(self.cfg, model, target, self.dir, progress=self._progress(progress)), model, target)

    def collect_robustness(self, methods=None, targets=None):
        """Every model's probes gathered into ``<run>/results/``: ``(results, items)`` (:func:`collect_robustness`)."""
        return collect_robustness(self.cfg, self.dir, methods, targets, progress=self.progress)

    @classmethod
    def units_for_seeds(cls, runs):
        """Who and what every image of every seed's world shows (``seed``, ``item_id``,
        ``person``, ``event``): the ``units`` a cluster bootstrap over these runs reads
        (:func:`pebench_core.analysis.item_units`)."""
        import pandas as pd

        from .analysis import item_units

        return pd.concat([item_units(cls.of_seed(runs, s).world, seed=s) for s in runs.seeds], ignore_index=True)

    @classmethod
    def robustness_for_seeds(cls, runs):
        """The probes of every seed of what :meth:`for_seeds` returned, concatenated and checked
        as the results are: ``(results, items)``."""
        from .analysis.runs import concat_runs

        frames = [(runs.dirs[s], *cls(runs.cfgs[s], runs.dirs[s]).collect_robustness()) for s in runs.seeds]
        return concat_runs(frames)

    def fixed_rate(self):
        """The paper's protocol runs (one rate, untuned) gathered: ``(results, items)`` (:func:`collect_fixed_rate`)."""
        return collect_fixed_rate(self.cfg, self.dir)

    @classmethod
    def fixed_rate_for_seeds(cls, runs):
        """The paper's protocol runs of every seed of what :meth:`for_seeds` returned,
        concatenated and checked as the results are: ``(results, items)``."""
        from .analysis.runs import concat_runs

        frames = [(runs.dirs[s], *cls(runs.cfgs[s], runs.dirs[s]).fixed_rate()) for s in runs.seeds]
        frames = [f for f in frames if len(f[1])]
        if not frames:  # the profile runs no method of the paper's protocol
            import pandas as pd

            return pd.DataFrame(), pd.DataFrame()
        return concat_runs(frames)

    @classmethod
    def forget_counts(cls, runs) -> dict[int, tuple[int, int]]:
        """Seed → (forget people, forget events) of what :meth:`for_seeds` returned: the units
        every person and event result of that seed rests on."""
        out = {}
        for s in runs.seeds:
            splits = cls.of_seed(runs, s).world.splits
            out[s] = (len(splits["person"]["forget_people"]), len(splits["event"]["forget_events"]))
        return out

    # -- several seeds
    @classmethod
    def for_seeds(
        cls,
        profile: str,
        seed: int = 0,
        seeds: str | Sequence[int] | None = "",
        run_dir: str | Path | None = "",
        overrides: Mapping | list[str] | None = None,
        progress: bool = False,
    ):
        """Build (if missing) and collect every run a chapter needs: for each seed, every target
        and method of the profile via :func:`collect_results`, then the seeds' tables
        concatenated and checked as :func:`pebench_core.analysis.load_runs` does. Returns a
        :class:`pebench_core.analysis.Runs`; see :func:`seed_run_dir` for where each seed lives.

        ``seeds`` empty: the one seed ``seed``, in ``run_dir`` itself. Given (``"0,1,2"``): one
        folder ``<run_dir>/s<seed>`` per seed, except that a single seed whose ``s<seed>``
        folder is absent is read from ``run_dir`` itself (what ``pebench run --out DIR``
        without ``--seeds`` wrote).
        """
        from .analysis.runs import Runs, concat_runs, parse_seeds
        from .config import load_config

        seed_list = parse_seeds(seeds, seed)
        multi = not (seeds is None or (isinstance(seeds, str) and not seeds.strip()))
        cfgs: dict[int, Any] = {}
        dirs: dict[int, Path] = {}
        frames = []
        for s in seed_list:
            cfg = load_config(profile, seed=s, overrides=overrides)
            d = seed_run_dir(cfg, run_dir, multi)
            if multi and run_dir and len(seed_list) == 1 and not d.exists():
                # `pebench run --out DIR` (no --seeds) wrote the one seed straight into DIR
                d = Path(run_dir).expanduser().absolute()
            frames.append((d, *collect_results(cfg, d)))  # the tables it just wrote, not re-read
            cfgs[s], dirs[s] = cfg, d
            if progress:
                print(f"[analysis] seed {s}: {d}")
        results, items = concat_runs(frames)
        return Runs(seed_list, cfgs, dirs, results, items)

    @classmethod
    def of_seed(cls, runs, seed: int | None = None, progress: bool = False) -> "Run":
        """The handle of one seed (default: the first) of what :meth:`for_seeds` returned."""
        s = runs.seeds[0] if seed is None else seed
        return cls(runs.cfgs[s], runs.dirs[s], progress=progress)
