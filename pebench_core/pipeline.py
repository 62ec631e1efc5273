"""Stages in order, each cached under its config hash (DESIGN §8, §10).

A run folder holds one sub-folder per stage, keyed by the hash of exactly the inputs
that stage depends on::

    runs/tiny-s0/world/<hash>/            the synthetic world (or nothing: a real PEBench folder)
    runs/tiny-s0/models/<stage>/<hash>/   base, finetune and goal checkpoints
    runs/tiny-s0/unlearn/<method>/<hash>/ LoRA adapters and trajectories
    runs/tiny-s0/results/                 results.parquet and items.parquet

Chapters call the ``get_*`` functions: the first call builds a stage, later calls (and
later chapters) load it. Changing any input changes the hash, so a stale artifact is
never reused; every write is atomic, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import RunConfig, config_hash
from .data import Dataset, load_dataset, load_pebench_folder

ROOT = Path(__file__).resolve().parent.parent


def default_run_dir(cfg: RunConfig) -> Path:
    """``runs/<profile>-s<seed>`` at the top of the checkout."""
    name = Path(str(cfg.profile)).stem
    return ROOT / "runs" / f"{name}-s{cfg.seed}"


def resolve_run_dir(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    return Path(run_dir).expanduser().absolute() if run_dir else default_run_dir(cfg)


def world_key(cfg: RunConfig) -> str:
    from .world import GENERATOR_VERSION

    return config_hash(cfg.world, cfg.seed, GENERATOR_VERSION)


def get_world(cfg: RunConfig, run_dir: str | Path | None = None, progress: bool = True) -> Dataset:
    """The dataset of this run: the real PEBench folder if ``world.data_dir`` is set, else the
    synthetic world, written once under ``<run>/world/<hash>`` and loaded from there."""
    if cfg.world.data_dir:
        return load_pebench_folder(cfg.world.data_dir, seed=cfg.seed, forget_share=cfg.world.forget_share)
    from .world import generate_world, write_world

    out = resolve_run_dir(cfg, run_dir) / "world" / world_key(cfg)
    if not (out / "world.json").is_file():
        t0 = time.perf_counter()
        write_world(generate_world(cfg.world, cfg.seed), out, progress=progress)
        print(f"[world] written in {time.perf_counter() - t0:.1f}s -> {out}")
    return load_dataset(out)


def run_all(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    """Every stage in dependency order; returns the run folder."""
    out = resolve_run_dir(cfg, run_dir)
    t0 = time.perf_counter()
    ds = get_world(cfg, out)
    print(f"[run] world: {len(ds.items)} images ({time.perf_counter() - t0:.1f}s)")
    return out
