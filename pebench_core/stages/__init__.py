"""The stages of a run, each a key and a builder cached under it (design: Results and caching;
Stage keys).

A run folder holds one sub-folder per stage, keyed by the hash of exactly the inputs that
stage depends on::

    runs/tiny-s0/world/<hash>/            the synthetic world (or nothing: a real PEBench folder)
    runs/tiny-s0/models/<stage>/<hash>/   base, finetune and goal checkpoints
    runs/tiny-s0/unlearn/<method>/<hash>/ LoRA adapters and trajectories
    runs/tiny-s0/results/                 results.parquet and items.parquet

One module per kind of stage, each holding its key and its ``get_*`` builder: the first call
builds a stage, later calls (and later chapters) load it. A key covers the stage's settings,
its parent stage's key and the code the stage runs (:func:`~pebench_core.stages.keys.stage_code`:
the functions reachable from it, not whole files, so a fixed comment keeps the cache and an
edited loss re-runs only its own method). Changing any input changes the hash, so a stale
artifact is never reused; every write is atomic, so an interrupted run resumes where it
stopped. Modules import downwards only: keys ← world ← models ← evaluation ← unlearning ←
robustness. The graph that orders them is :mod:`pebench_core.pipeline`.
"""

from .evaluation import eval_key, get_eval
from .keys import default_run_dir, methods_for, resolve_run_dir, seed_run_dir, stage_code
from .models import MODEL_STAGES, get_model, model_dir, model_key, stage_info
from .robustness import collect_robustness, get_robustness, probed_model, robust_key
from .unlearning import (
    FIXED_RATE_RULE,
    collect_fixed_rate,
    collect_results,
    fixed_rate_jobs,
    fixed_rate_key,
    get_fixed_rate,
    get_tuning,
    get_unlearned,
    load_unlearned_model,
    tuned_lr,
    tuning_key,
    unlearn_key,
    unlearned_dir,
)
from .world import get_world, world_key

__all__ = [
    "default_run_dir", "resolve_run_dir", "seed_run_dir", "stage_code", "methods_for",
    "get_world", "world_key",
    "MODEL_STAGES", "get_model", "model_key", "model_dir", "stage_info",
    "get_eval", "eval_key",
    "get_tuning", "tuning_key", "tuned_lr", "get_unlearned", "unlearn_key", "unlearned_dir", "load_unlearned_model",
    "FIXED_RATE_RULE", "fixed_rate_jobs", "fixed_rate_key", "get_fixed_rate", "collect_fixed_rate", "collect_results",
    "get_robustness", "robust_key", "probed_model", "collect_robustness",
]  # fmt: skip
