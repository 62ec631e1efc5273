"""The evaluation stage: one model (finetune or goal) on one target, its metrics, answers and likelihoods."""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..evaluate import evaluate
from ..hashing import config_hash
from ..likelihoods import answer_likelihoods as likelihoods
from ..results import StageCache, atomic_write_parquet, result_rows
from .keys import resolve_run_dir, stage_code
from .models import get_model, model_key
from .world import get_world


# Evaluation of reference models (finetune, goal) and unlearning runs
def eval_key(cfg: RunConfig, model: str, target: str) -> str:
    parent = model_key(cfg, model, target if model == "goal" else None)
    return config_hash("eval", parent, cfg.eval, target, stage_code(get_eval))


def write_evaluation(
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


def write_likelihoods(folder: Path, bundle, ds, model: str, target: str, seed: int) -> None:
    """The model's likelihoods of the true answer and of the refusal on ``target``'s forget items
    (:func:`pebench_core.likelihoods.answer_likelihoods`, a ``model`` column added), which
    chapter 4 reads: computed by the stage that has the model loaded, once per model (the
    finetune model's by its evaluation, not again by every unlearning run)."""

    atomic_write_parquet(folder / "likelihoods.parquet", likelihoods(bundle, ds, target, seed).assign(model=model))


def get_eval(cfg: RunConfig, model: str, target: str, run_dir=None, progress: bool = True) -> Path:
    """Evaluate ``finetune`` or ``goal`` (of ``target``) on ``target``'s metrics; returns the folder
    holding results.parquet, items.parquet, answers.parquet and likelihoods.parquet
    (:func:`write_likelihoods`)."""

    if model not in ("finetune", "goal"):
        raise ValueError(f"get_eval evaluates 'finetune' or 'goal', got {model!r}")
    key = eval_key(cfg, model, target)
    cache = StageCache(resolve_run_dir(cfg, run_dir) / "eval")

    def build(tmp: Path) -> dict:
        bundle = get_model(cfg, model, target if model == "goal" else None, run_dir, progress)
        ds = get_world(cfg, run_dir, progress=False)
        ev = evaluate(bundle, ds, target, cfg.eval, cfg.seed)
        write_evaluation(tmp, cfg, ev, model, target, key)
        write_likelihoods(tmp, bundle, ds, model, target, cfg.seed)
        return {
            "seconds_generation": round(ev.seconds, 2),
            "questions": ev.n_questions,
            "items_per_second": round(ev.n_questions / max(ev.seconds, 1e-9), 1),
        }

    return cache.get_or_build(f"{model}-{target}", key, build, log=print if progress else None)
