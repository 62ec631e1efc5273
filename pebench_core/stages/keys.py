"""What every stage shares: where a run lives, the folder layout, the hash of the code a stage runs, and
the fingerprints of the folders a key reads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import config as C
from .. import distributed as D
from ..code_keys import code_key
from ..config import RunConfig
from ..hashing import config_hash
from ..methods import METHODS, Method, runs_on
from ..probes import PROBES
from ..results import atomic_write_parquet

ROOT = Path(__file__).resolve().parents[2]  # the checkout: pebench_core/stages/keys.py


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


def methods_for(cfg: RunConfig, target: str, methods=None) -> list[str]:
    """The methods (``methods``, default the profile's) run on ``target``: those whose registry
    entry lists it (BGD balances two concepts, so it runs on ``both`` only)."""

    return [m for m in (methods or cfg.unlearn.methods) if runs_on(m, target)]


# What a chapter holds: a run handle and the outcomes it reads
RESULTS_FILE, ITEMS_FILE, ANSWERS_FILE = "results.parquet", "items.parquet", "answers.parquet"


TRAJECTORY_FILE = "trajectory.parquet"


def gather_tables(folders: Sequence[Path], dest: Path, results_name: str, items_name: str):
    """The results and items tables of ``folders`` stacked, written under ``dest`` (rank 0)."""

    res = pd.concat([pd.read_parquet(f / RESULTS_FILE) for f in folders], ignore_index=True)
    items = pd.concat([pd.read_parquet(f / ITEMS_FILE) for f in folders], ignore_index=True)
    if D.is_main():
        atomic_write_parquet(dest / results_name, res)
        atomic_write_parquet(dest / items_name, items)
    D.barrier()
    return res, items
