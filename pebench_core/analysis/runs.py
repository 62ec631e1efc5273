"""Loading runs: the ``results`` and ``items`` tables of one run folder per seed, concatenated
and checked (:func:`load_runs`), into :class:`Runs`.

Building the runs a chapter needs (training what is missing) is the run handle's job:
:meth:`pebench_core.run.Run.for_seeds`, which reads its seeds' tables with
:func:`concat_runs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..ranges import parse_seed_list
from ..results import read_results
from .schema import ITEM_COLUMNS, KEYS, RESULT_COLUMNS, require_columns

__all__ = ["Runs", "parse_seeds", "load_runs", "concat_runs"]


def parse_seeds(seeds: str | int | Sequence[int] | None, default: int = 0) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; empty or ``None`` → ``[default]``. Bad input (no seed in a
    non-empty string such as ``","``, a non-integer, a seed twice): ``ConfigError``."""
    if seeds is None or (isinstance(seeds, str) and not seeds.strip()):
        return [int(default)]
    if isinstance(seeds, (int, np.integer)):
        return [int(seeds)]
    return parse_seed_list(seeds)


def load_runs(run_dirs: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate ``<run>/results/results.parquet`` and ``<run>/results/items.parquet`` of
    several run folders (typically one per seed) into one ``(results, items)`` pair.

    A missing file is a :class:`~pebench_core.config.ConfigError` naming it; two folders that
    hold the same (seed, target, method, concept, metric) are an error too (the same seed
    collected twice would be counted twice).
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ConfigError("load_runs needs at least one run folder")
    return concat_runs([(d, *read_results(d)) for d in run_dirs])


def concat_runs(frames: Sequence[tuple[str | Path, pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-folder ``(run_dir, results, items)``, check the columns, and refuse a
    seed that appears in more than one folder."""
    results = pd.concat([r.assign(run_dir=str(d)) for d, r, _ in frames], ignore_index=True)
    items = pd.concat([i for _, _, i in frames], ignore_index=True)
    require_columns(results, RESULT_COLUMNS, "results")
    require_columns(items, ITEM_COLUMNS, "items")
    dup = results.duplicated(["seed", *KEYS], keep=False)
    if dup.any():
        seeds = sorted(set(results.loc[dup, "seed"].tolist()))
        dirs = sorted(set(results.loc[dup, "run_dir"].tolist()))
        raise ConfigError(f"seed(s) {seeds} appear in more than one run folder ({', '.join(dirs)}); pass one folder per seed")
    return results, items


@dataclass
class Runs:
    """The runs a chapter reads: one configuration and run folder per seed, and their tables."""

    seeds: list[int]
    cfgs: dict[int, object]
    dirs: dict[int, Path]
    results: pd.DataFrame
    items: pd.DataFrame

    @property
    def cfg(self):
        """The configuration of the first seed (every seed shares the rest of it)."""
        return self.cfgs[self.seeds[0]]
