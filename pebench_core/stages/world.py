"""The world stage: the synthetic PEBench world (or a real PEBench folder), keyed by its settings and seed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .. import distributed as D
from ..config import RunConfig, check_forget_floor
from ..data import Dataset, load_dataset, load_pebench_folder
from ..hashing import config_hash
from ..storage import is_complete, verify
from ..world import GENERATOR_VERSION, generate_world, write_world
from .keys import folder_fingerprint, resolve_run_dir, stage_code


def real_pretrain_people(cfg: RunConfig) -> int:
    """How many people of a real PEBench folder form the pre-training world: the tiny model,
    built from scratch, needs one (``world.n_real_people`` of them); a checkpoint brings its own."""
    return cfg.world.n_real_people if cfg.model.kind == "tiny" else 0


def world_key(cfg: RunConfig) -> str:

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
