"""The probe stages: every probe of ``robust.probes`` on one model (finetune, goal or a method) and target."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig, safe_name
from ..errors import ConfigError
from ..evaluate import CONCEPTS_OF
from ..hashing import config_hash
from ..parallel import run_stages, stage_workers
from ..probes import get as get_probe
from ..probes import run_probes
from ..results import StageCache, atomic_write_parquet, result_rows
from ..storage import read_marker
from .keys import ITEMS_FILE, RESULTS_FILE, gather_tables, methods_for, resolve_run_dir, stage_code
from .models import get_model, model_key
from .unlearning import build_unlearning, get_unlearned, load_unlearned_model, unlearn_key
from .world import get_world, world_key


# Robustness probes (pebench_core.probes): one stage per evaluated model and target
def robust_key(cfg: RunConfig, model: str, target: str) -> str:
    """The probes' key: the probed model's own key, the probes' settings, the evaluation's (the
    same scorer and decoding), the LoRA settings relearning uses, and the code of the probes it runs."""

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

    if not cfg.robust.probes:
        raise ConfigError("robust.probes is empty: there is nothing to probe (list some of relearn, paraphrase, ...)")
    key = robust_key(cfg, model, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "robust")

    def build(tmp: Path) -> dict:
        status, lr, rule = "ok", None, ""
        if model not in ("finetune", "goal"):
            marker = read_marker(get_unlearned(cfg, model, target, run_dir, progress))
            hp = dict(marker.get("hparams") or {})
            status, lr, rule = str(marker.get("status")), hp.get("lr"), str(hp.get("lr_selection", ""))
        bundle = probed_model(cfg, model, target, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        results, seconds = run_probes(bundle, ds, target, cfg, log=print if progress else (lambda *_: None))

        rows, items = result_rows(
            results, run_id=f"{Path(str(cfg.profile)).stem}-s{cfg.seed}", profile=str(cfg.profile), seed=cfg.seed,
            target=target, method=model, config_hash=key, status=status, lr=lr, lr_rule=rule,
        )  # fmt: skip
        atomic_write_parquet(tmp / RESULTS_FILE, rows)
        atomic_write_parquet(tmp / ITEMS_FILE, items)

        # threads: a worker of pebench_core.parallel computes on one, a plain run on the process's
        meta = {"model": model, "target": target, "probes": list(cfg.robust.probes), "seconds_probe": seconds}
        return {**meta, "threads": torch.get_num_threads()}

    return cache.get_or_build(f"{safe_name(model)}-{target}", key, build, log=print if progress else None)


def collect_robustness(cfg: RunConfig, run_dir=None, methods=None, targets=None, progress: bool = False):
    """Every probe of every model (finetune, goal and each method) on every target, gathered into
    ``<run>/results/robustness.parquet`` and ``robustness_items.parquet``: the same long format
    as the results table, kept beside it so that the paper's tables read only the paper's
    metrics. Returns ``(results, items)``."""

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
    return gather_tables(folders, out / "results", "robustness.parquet", "robustness_items.parquet")


def _robust_stage(cfg: RunConfig, model: str, target: str, run_dir: str) -> str:
    """One probe stage, as a worker process builds it (:func:`pebench_core.parallel.run_stages`)."""
    return str(get_robustness(cfg, model, target, run_dir, progress=False))
