"""The model stages (init, base, finetune, goal): each keyed by its settings, its parent's key and its code."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import distributed as D
from .. import train
from ..config import RunConfig
from ..data import world_texts
from ..errors import ConfigError
from ..hashing import config_hash
from ..memory import check_stage
from ..models import build_tiny, load_bundle, load_merged, save_adapter, save_bundle, unwrap
from ..results import StageCache
from ..storage import read_marker
from .keys import checkpoint_fingerprint, resolve_run_dir, stage_code
from .world import get_world, world_key

# Models: init -> base (two variants) -> finetune / goal(target)
MODEL_STAGES = ("init", "base", "finetune", "goal")


def base_variant(target: str | None) -> str:
    """Which pre-training a stage stands on: goal(event) and goal(both) never saw the forget events."""
    return "noevents" if target in ("event", "both") else "full"


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
        return config_hash("base", model_key(cfg, "init"), cfg.train, base_variant(target), code)
    if stage == "finetune":
        return config_hash("finetune", world_key(cfg), model_key(cfg, "base"), cfg.train, code)
    if stage == "goal":
        if target is None:
            raise ValueError("the goal stage needs a target")
        return config_hash("goal", world_key(cfg), model_key(cfg, "base", target), cfg.train, target, code)
    raise ValueError(f"unknown model stage {stage!r}; allowed: {', '.join(MODEL_STAGES)}")


def model_dir(cfg: RunConfig, stage: str, target: str | None = None, run_dir=None) -> Path:
    name = stage if stage in ("init", "finetune") else (f"base-{base_variant(target)}" if stage == "base" else f"goal-{target}")
    return resolve_run_dir(cfg, run_dir) / "models" / name / model_key(cfg, stage, target)


_ADAPTER = "adapter"


def vision_cache(cfg: RunConfig, run_dir=None) -> Path:
    """Where the bases' vision pre-training is kept (both bases share one: stored once)."""
    return resolve_run_dir(cfg, run_dir) / "models" / "vision"


def _load_stage(cfg: RunConfig, out: Path):
    """A built stage: a whole checkpoint, or (a local checkpoint's LoRA stage) the checkpoint
    with the stage's adapter merged in, so that unlearning adapts the fine-tuned weights and
    its reference (adapter off) is exactly them."""

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

    if cfg.model.kind == "local":  # config.validate checked the folder
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

            check_stage(cfg, bundle, stage, ds)
            # Both bases share one vision pre-training (the same scenes): stored once on disk.
            info = train.inject(
                bundle,
                ds,
                stage,
                target,
                cfg,
                progress=progress,
                vision_cache=vision_cache(cfg, run_dir),
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
