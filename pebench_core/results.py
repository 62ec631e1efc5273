"""The results table, provenance, atomic writes and caching by config hash (design: Results and caching).

Every number the book shows comes from two long-format parquet tables in a run folder:

* ``results.parquet`` — one row per (run_id, profile, seed, target, method, concept, metric)
  with ``value``, ``n``, ``scorer`` and provenance (config hash, versions, git commit);
* ``items.parquet`` — the per-item values behind each row, so any aggregate, interval or
  paired comparison can be recomputed.

Stages write through :mod:`pebench_core.storage` (one atomic folder write and one
completion marker for every artifact): the artifact appears under its final name only once
complete, so an interrupted run never leaves a half-written file that a later stage would
read, and simply resumes. Those helpers are re-exported here for older imports.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import ConfigError
from .storage import (
    MARKER,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    ensure_writable_dir,
    is_complete,
    mark_complete,
    read_marker,
    verify,
)

__all__ = [
    "RESULT_COLUMNS",
    "ITEM_COLUMNS",
    "DONE_MARKER",
    "git_commit",
    "versions",
    "StageCache",
    "result_rows",
    "read_results",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "ensure_writable_dir",
]

RESULT_COLUMNS = [
    "run_id",
    "profile",
    "seed",
    "target",
    "method",
    "concept",
    "metric",
    "value",
    "n",
    "scorer",
    "config_hash",
    "git_commit",
    "versions",
    "status",
    "lr",  # an unlearning run's learning rate (NaN for the finetune and goal bounds)
    "lr_rule",  # how it was chosen (pebench_core.tuning.rule_text)
]
ITEM_COLUMNS = ["run_id", "seed", "target", "method", "concept", "metric", "item_id", "value"]
DONE_MARKER = MARKER  # the name older code used


# ------------------------------------------------------------------ provenance
@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` if it has uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return sha[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> str:
    """Versions of the packages that can change a number, as one compact JSON string."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("pebench-core", "torch", "transformers", "peft", "tokenizers", "numpy", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------ stage cache
class StageCache:
    """Artifacts keyed by ``<stage>/<config hash>`` under a run folder.

    A stage folder counts as present only if it holds the completion marker, which is
    written last inside the atomic folder; anything else is treated as absent and rebuilt.
    """

    def __init__(self, root: Path):
        self.root = ensure_writable_dir(Path(root))

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def has(self, stage: str, key: str, log: Callable[[str], None] | None = print) -> bool:
        """Whether the stage is built **and intact** (its files match the digest its marker
        recorded). A damaged one is removed with a one-line notice and counts as absent."""
        folder = self.path(stage, key)
        if not is_complete(folder):
            return False
        problem = verify(folder)
        if problem is None:
            return True
        if log:
            log(f"[{stage}] the cached {folder.name} cannot be reused: {problem}; rebuilding it")
        from . import distributed as D

        if D.is_main():
            shutil.rmtree(folder, ignore_errors=True)
        return False

    def meta(self, stage: str, key: str) -> dict:
        return read_marker(self.path(stage, key))

    def get_or_build(
        self, stage: str, key: str, build: Callable[[Path], dict | None], log: Callable[[str], None] | None = print
    ) -> Path:
        """Return the stage folder, building it with ``build(tmp_dir)`` if it is not cached.

        ``build`` writes its files into the temporary folder and may return a dict of
        metadata (timings, metrics) that is stored with the completion marker.
        """
        final = self.path(stage, key)
        from . import distributed as D

        if D.main_value(self.has(stage, key, log=print if D.is_main() else None)):  # one decision for all
            if log:
                log(f"[{stage}] cached ({key})")
            return final
        t0 = time.perf_counter()
        if not D.is_main():
            # Under a multi-process launch every process runs the build (it holds collective
            # steps: data-parallel training, sharded evaluation); rank 0's folder is kept.
            with tempfile.TemporaryDirectory() as scratch:
                build(Path(scratch))
            D.barrier()
            return final
        with atomic_dir(final, similar=self.root.glob("*/*")) as tmp:  # the stages beside it size a full disk's need
            meta = build(tmp) or {}
            meta = {
                "stage": stage,
                "key": key,
                "seconds": round(time.perf_counter() - t0, 3),
                "git_commit": git_commit(),
                "versions": json.loads(versions()),
                "processes": D.world_size(),
                **meta,
            }
            mark_complete(tmp, meta)
        D.barrier()
        if log:
            log(f"[{stage}] built in {meta['seconds']:.1f}s ({key})")
        return final


# ------------------------------------------------------------------ result tables
def result_rows(
    metric_results: list,
    *,
    run_id: str,
    profile: str,
    seed: int,
    target: str,
    method: str,
    config_hash: str,
    status: str = "ok",
    lr: float | None = None,
    lr_rule: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn a list of ``metrics.MetricResult`` into one long results frame and one items frame.
    ``status`` is ``ok``, or why an unlearning run kept with ``unlearn.keep_stopped`` stopped;
    ``lr`` and ``lr_rule`` are an unlearning run's learning rate and how it was chosen
    (NaN and empty for the finetune and goal bounds)."""
    rows, items = [], []
    for r in metric_results:
        rows.append(
            {
                "run_id": run_id,
                "profile": profile,
                "seed": int(seed),
                "target": target,
                "method": method,
                "concept": r.concept,
                "metric": r.name,
                "value": float(r.value),
                "n": int(r.n),
                "scorer": r.scorer or "name_match",
                "config_hash": config_hash,
                "git_commit": git_commit(),
                "versions": versions(),
                "status": status,
                "lr": float("nan") if lr is None else float(lr),
                "lr_rule": lr_rule,
            }
        )
        for item_id, v in zip(r.item_ids, r.per_item):
            items.append(
                {
                    "run_id": run_id,
                    "seed": int(seed),
                    "target": target,
                    "method": method,
                    "concept": r.concept,
                    "metric": r.name,
                    "item_id": str(item_id),
                    "value": float(v),
                }
            )
    return (pd.DataFrame(rows, columns=RESULT_COLUMNS), pd.DataFrame(items, columns=ITEM_COLUMNS))


def read_results(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load ``results.parquet`` and ``items.parquet`` from a run's ``results/`` folder."""
    res = Path(run_dir) / "results"
    rp, ip = res / "results.parquet", res / "items.parquet"
    for f in (rp, ip):
        if not f.is_file():
            raise ConfigError(f"{f} is missing; run `pebench run --out {run_dir}` (or any chapter that collects results) first")
    return pd.read_parquet(rp), pd.read_parquet(ip)
