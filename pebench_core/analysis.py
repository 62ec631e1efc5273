"""Analysis across runs and seeds: intervals, the paper's tables, and its findings (DESIGN §8, §11).

Pure functions on the two long tables every run writes (``results`` and ``items``, see
:mod:`pebench_core.results`); nothing here touches a model. Conventions:

* **Every metric is higher-is-better** (DESIGN §7), so a *delta* ``a − b`` is an improvement
  of ``a`` over ``b``.
* **Seeds.** A run folder holds one seed. A point estimate is the **mean over seeds** of the
  per-seed value, and the per-seed value is the mean over that seed's items (exactly the
  ``value`` of the results row).
* **Item interval** (``ci_lo``, ``ci_hi``): a seeded percentile bootstrap that resamples the
  items *within each seed* (with replacement, same count), averages each seed's resample
  and then averages the seeds; ``alpha = 0.05`` gives a 95 % interval. It measures how much
  a number depends on *which images* were evaluated, for the trained models at hand.
* **Seed interval** (``seed_lo``, ``seed_hi``, only with ≥ 2 seeds): a Student-t interval
  ``mean ± t_{0.975, k−1} · sd / √k`` over the ``k`` per-seed values. It measures how much a
  number depends on the training seed (world, model, forget set).
* **Paired comparisons.** Every model of a run is evaluated on the same items of a split
  (same seed, same sample), so a difference between two models is bootstrapped **paired**:
  the items are resampled once and both models' values come along (rows joined on
  ``(seed, item_id)``). Quantities that combine different splits (e.g. person efficacy on
  target ``person`` against event efficacy on target ``event``) resample each split
  independently, replicate by replicate.

The findings of the paper (DESIGN §11) are tested in :func:`finding_tests` and summarised in
:func:`findings`; each test is stated in their docstrings.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import ConfigError
from .metrics import METRIC_ORDER as _METRIC_ORDER
from .results import read_results

__all__ = [
    "KEYS", "UNLEARN_METHODS", "BGD_BASE", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_COLUMNS",
    "FINDINGS", "TESTS", "INTERFERENCE_CELLS", "Estimate", "Runs", "parse_seeds", "gather_runs", "ci_column", "likelihood_race",
    "load_runs", "summarise", "sequences_per_step", "step_costs",
    "format_ci", "wide_ci", "leaderboard", "table2", "simultaneous_vs_single", "interference_table",
    "interference_matrix", "scope_table", "paired_image_level", "paper_table1_long",
    "paper_table2_long", "side_by_side", "event_scorers", "finding_tests", "findings",
    "findings_markdown",
]

KEYS = ["target", "method", "concept", "metric"]
UNLEARN_METHODS = ("ga", "gd", "kl", "po", "dpo", "npo")
BGD_BASE = {"gd+bgd": "gd", "kl+bgd": "kl"}
METRIC_ORDER = list(_METRIC_ORDER)
METHOD_ORDER = ["finetune", "ga", "gd", "kl", "po", "dpo", "npo", "gd+bgd", "kl+bgd", "goal"]
REPRODUCED, NOT_REPRODUCED, MIXED, INCONCLUSIVE = "reproduced", "not reproduced", "mixed", "inconclusive"

_RESULT_NEEDS = {"seed", "target", "method", "concept", "metric", "value"}
_ITEM_NEEDS = {"seed", "target", "method", "concept", "metric", "item_id", "value"}


def _need(df: pd.DataFrame, cols: set[str], what: str) -> None:
    missing = sorted(cols - set(df.columns))
    if missing:
        raise ConfigError(f"the {what} table lacks column(s) {missing}; it must come from a run's results/ folder")


def _order(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


# =======================================================================================
# Loading runs


def parse_seeds(seeds: str | int | Sequence[int] | None, default: int = 0) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; empty or ``None`` → ``[default]``. Bad input: ``ConfigError``."""
    if seeds is None or (isinstance(seeds, str) and not seeds.strip()):
        return [int(default)]
    if isinstance(seeds, (int, np.integer)):
        return [int(seeds)]
    parts = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    try:
        out = [int(str(s).strip()) for s in parts if str(s).strip()]
    except ValueError:
        raise ConfigError(f"seeds must be comma-separated integers such as '0,1,2', got {seeds!r}") from None
    if len(set(out)) != len(out) or not out:
        raise ConfigError(f"seeds must be distinct integers, got {seeds!r}")
    return out


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
    return _concat_runs([(d, *read_results(d)) for d in run_dirs])


def _concat_runs(frames: Sequence[tuple[str | Path, pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-folder ``(run_dir, results, items)``, check the columns, and refuse a
    seed that appears in more than one folder."""
    results = pd.concat([r.assign(run_dir=str(d)) for d, r, _ in frames], ignore_index=True)
    items = pd.concat([i for _, _, i in frames], ignore_index=True)
    _need(results, _RESULT_NEEDS, "results")
    _need(items, _ITEM_NEEDS, "items")
    dup = results.duplicated(["seed", *KEYS], keep=False)
    if dup.any():
        seeds = sorted(set(results.loc[dup, "seed"].tolist()))
        dirs = sorted(set(results.loc[dup, "run_dir"].tolist()))
        raise ConfigError(f"seed(s) {seeds} appear in more than one run folder ({', '.join(dirs)}); "
                          "pass one folder per seed")
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


def gather_runs(profile: str, seed: int = 0, seeds: str | Sequence[int] | None = "",
                run_dir: str | Path | None = "", overrides: Mapping | list[str] | None = None,
                progress: bool = False) -> Runs:
    """Build (if missing) and collect every run a chapter needs: for each seed, every target
    and method of the profile via :func:`pebench_core.pipeline.collect_results`, then
    :func:`load_runs` over the seeds' folders (see :func:`pebench_core.pipeline.seed_run_dir`
    for the layout)."""
    from .config import load_config
    from .pipeline import collect_results, seed_run_dir

    seed_list = parse_seeds(seeds, seed)
    multi = not (seeds is None or (isinstance(seeds, str) and not seeds.strip()))
    cfgs, dirs, frames = {}, {}, []
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
    results, items = _concat_runs(frames)
    return Runs(seed_list, cfgs, dirs, results, items)


def sequences_per_step(method: str, batch_size: int, retain_weight: float = 1.0) -> tuple[int, int]:
    """``(sequences, answers)``: the sequences one step of ``method`` runs through the model
    (all with gradient) and the answers it scores on them, read from what its loss needs
    (:meth:`~pebench_core.losses.LossSpec.required_inputs`).

    A forget item's true answer and its refusal share one sequence (one prompt, two answers:
    :func:`~pebench_core.unlearn.pack_batch`), and every reference output is computed once
    before training, so no step runs the reference model.
    """
    from .losses import get_loss

    need = set(get_loss(method).required_inputs(retain_weight))
    forget = int("forget_logp_sum" in need) + int("refusal_logp_sum" in need)
    retain = int(bool(need & {"retain_logp_sum", "retain_kl"}))
    return (min(forget, 1) + retain) * batch_size, (forget + retain) * batch_size


def step_costs(runs: Runs) -> pd.DataFrame:
    """Seconds per unlearning step of every method and target that ran, from the trajectories.

    One row per seed × method × target: the median time between consecutive steps (the
    median skips the steps that also ran the trajectory's efficacy check), the sequences per
    step (:func:`sequences_per_step`) and the ratio to GA's step on the same seed and target.
    """
    from .pipeline import methods_for, unlearned_dir

    rows = []
    for s in runs.seeds:
        cfg = runs.cfgs[s]
        for target in cfg.unlearn.targets:
            for method in methods_for(cfg, target):
                f = unlearned_dir(cfg, method, target, runs.dirs[s]) / "trajectory.parquet"
                if not f.is_file():
                    continue
                sec = pd.read_parquet(f, columns=["seconds"])["seconds"].diff().dropna()
                if sec.empty:
                    continue
                n_seq, n_ans = sequences_per_step(method, cfg.unlearn.batch_size, cfg.unlearn.retain_weight)
                rows.append({"seed": s, "target": target, "method": method, "s_per_step": float(sec.median()),
                             "sequences": n_seq, "answers": n_ans})
    out = pd.DataFrame(rows, columns=["seed", "target", "method", "s_per_step", "sequences", "answers"])
    ga = out[out["method"] == "ga"].set_index(["seed", "target"])["s_per_step"]
    out["x_ga"] = [row.s_per_step / ga.get((row.seed, row.target), np.nan) for row in out.itertuples()]
    return out


def likelihood_race(lk: pd.DataFrame) -> pd.DataFrame:
    """Summarise :func:`pebench_core.pipeline.answer_likelihoods` per ``model`` (and
    ``target`` where present): the mean per-token NLL of the true answer and of the
    refusal; ``refusal_first``, the share of forget items on which the refusal's first token
    is likelier than the true answer's (where greedy decoding turns); and
    ``refusal_likelier``, the share on which the whole refusal is likelier than the whole
    true answer."""
    keys = [k for k in ("target", "model") if k in lk.columns]
    d = lk.assign(nll_true=-lk["logp_true"] / lk["n_true"], nll_refusal=-lk["logp_refusal"] / lk["n_refusal"],
                  refusal_first=(lk["logp_first_refusal"] > lk["logp_first_true"]).astype(float),
                  refusal_likelier=(lk["logp_refusal"] > lk["logp_true"]).astype(float))
    return d.groupby(keys, sort=False)[["nll_true", "nll_refusal", "refusal_first", "refusal_likelier"]].mean()


# =======================================================================================
# Bootstrap machinery


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator that depends on ``seed`` and on a name, not on the order of calls."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def _t_quantile(df: int, alpha: float) -> float:
    try:
        from scipy import stats

        return float(stats.t.ppf(1 - alpha / 2, df))
    except ImportError:
        if abs(alpha - 0.05) > 1e-12:
            raise ConfigError("seed intervals for alpha other than 0.05 need scipy") from None
        for k in sorted(_T975):
            if df <= k:
                return _T975[k]
        return 1.96


@dataclass
class _Boot:
    """Bootstrap of the column means of one paired block (rows = items, columns = models)."""

    point: dict[str, float]
    reps: dict[str, np.ndarray]
    per_seed: dict[int, dict[str, float]]


def _boot_matrices(mats: Mapping[int, np.ndarray], columns: list[str], n_boot: int,
                   rng: np.random.Generator) -> _Boot:
    """``mats[seed]`` is an (items × columns) array; items are resampled within each seed,
    each seed's resample is averaged, then the seeds are averaged."""
    k = len(columns)
    reps = np.zeros((n_boot, k))
    point = np.zeros(k)
    per_seed = {}
    for s in sorted(mats):
        x = np.asarray(mats[s], dtype=np.float64)
        n = x.shape[0]
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # counts of each item per replicate
        reps += (w @ x) / n
        m = x.mean(axis=0)
        point += m
        per_seed[int(s)] = dict(zip(columns, m.tolist()))
    reps /= len(mats)
    point /= len(mats)
    return _Boot(dict(zip(columns, point.tolist())), {c: reps[:, j] for j, c in enumerate(columns)}, per_seed)


def _boot_wide(wide: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> _Boot | None:
    if wide is None or wide.empty:
        return None
    seeds = wide.index.get_level_values("seed")
    mats = {int(s): wide[seeds == s].to_numpy(dtype=np.float64) for s in pd.unique(seeds)}
    return _boot_matrices(mats, [str(c) for c in wide.columns], n_boot, rng)


def _block(items: pd.DataFrame, spec: Mapping[str, tuple[str, str, str, str]],
           seeds: Sequence[int] | None = None) -> pd.DataFrame | None:
    """A paired block: one column per label of ``spec`` (label → (target, method, concept,
    metric)), rows = the (seed, item_id) that **every** column has (inner join). ``None``
    if a column has no items."""
    cols = []
    for label, (t, m, c, k) in spec.items():
        sel = items[(items["target"] == t) & (items["method"] == m) & (items["concept"] == c) & (items["metric"] == k)]
        if seeds is not None:
            sel = sel[sel["seed"].isin(list(seeds))]
        if sel.empty:
            return None
        s = sel.groupby(["seed", "item_id"], sort=True)["value"].mean().rename(label)
        cols.append(s)
    wide = pd.concat(cols, axis=1, join="inner").dropna()
    return None if wide.empty else wide


@dataclass
class Estimate:
    """A bootstrapped quantity: point ``value``, interval ``[lo, hi]``, the value per seed."""

    value: float
    lo: float
    hi: float
    per_seed: dict[int, float] = field(default_factory=dict)
    nan_share: float = 0.0

    def text(self, digits: int = 2) -> str:
        return format_ci(self.value, self.lo, self.hi, digits)


def _estimate(boots: Mapping[str, _Boot | None], stat: Callable, alpha: float = 0.05) -> Estimate | None:
    """Evaluate ``stat`` (a function of ``{block: {column: mean}}``, written with numpy so it
    works on scalars and on arrays of replicates alike) at the point and on every replicate.
    Replicates where it is not finite are dropped (``nan_share`` says how many)."""
    if any(b is None for b in boots.values()):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(stat({k: b.point for k, b in boots.items()}))
        reps = np.asarray(stat({k: b.reps for k, b in boots.items()}), dtype=np.float64)
        common = set.intersection(*(set(b.per_seed) for b in boots.values()))
        per_seed = {s: float(stat({k: b.per_seed[s] for k, b in boots.items()})) for s in sorted(common)}
    finite = np.isfinite(reps)
    if not math.isfinite(value) or not finite.any():
        return Estimate(float("nan"), float("nan"), float("nan"), per_seed, 1.0)
    lo, hi = np.percentile(reps[finite], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(value, float(lo), float(hi), per_seed, float(1 - finite.mean()))


def _paired_delta(items: pd.DataFrame | None, a: tuple, b: tuple, n_boot: int, seed: int,
                  alpha: float = 0.05) -> Estimate | None:
    """``a − b`` for two (target, method, concept, metric) selections: paired over the items
    they share when they are the same items, else the two resampled independently."""
    if items is None:
        return None
    rng = _rng(seed, "delta", *a, *b)
    na = _block(items, {"a": a})
    nb = _block(items, {"b": b})
    if na is None or nb is None:
        return None
    w = pd.concat([na, nb], axis=1, join="inner").dropna()
    if len(w) == len(na) == len(nb):  # the same items: paired
        return _estimate({"p": _boot_wide(w, n_boot, rng)}, lambda m: m["p"]["a"] - m["p"]["b"], alpha)
    return _estimate({"a": _boot_wide(na, n_boot, rng), "b": _boot_wide(nb, n_boot, rng)},
                     lambda m: m["a"]["a"] - m["b"]["b"], alpha)


def format_ci(value: float, lo: float, hi: float, digits: int = 2) -> str:
    """``0.55 [0.40, 0.70]``; an interval that is not available is left out."""
    if value is None or not np.isfinite(value):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def ci_column(df: pd.DataFrame, value: str, lo: str | None = None, hi: str | None = None,
              digits: int = 2) -> list[str]:
    """:func:`format_ci` of every row of ``df``: ``value`` with ``lo``/``hi`` (default
    ``<value>_lo`` / ``<value>_hi``), ready for a table column."""
    cols = [value, lo or f"{value}_lo", hi or f"{value}_hi"]
    return [format_ci(*v, digits=digits) for v in df[cols].to_numpy(dtype=float)]


# =======================================================================================
# Summaries


def summarise(results: pd.DataFrame, items: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> pd.DataFrame:
    """One row per (target, method, concept, metric) over every seed.

    Columns: ``mean`` (mean over seeds of the per-seed value), ``ci_lo``/``ci_hi`` (the
    item bootstrap of the module docstring: items resampled within each seed, seeds averaged,
    percentile interval at level ``1 − alpha``), ``seed_lo``/``seed_hi`` and ``sd_seeds``
    (Student-t interval over seeds, NaN with one seed), ``n_seeds``, ``n_items`` (items
    summed over seeds) and ``scorer``. The bootstrap of each row has its own generator,
    derived from ``seed`` and the row's key, so a row does not change when others are added.
    """
    _need(results, _RESULT_NEEDS, "results")
    _need(items, _ITEM_NEEDS, "items")
    per_seed = results.groupby([*KEYS, "seed"], sort=False)["value"].mean()
    scorer = (results.groupby(KEYS)["scorer"].agg(lambda s: ",".join(sorted(set(map(str, s)))))
              if "scorer" in results else None)
    groups = {k: g for k, g in items.groupby(KEYS, sort=False)}
    rows = []
    for key, vals in per_seed.groupby(level=list(range(len(KEYS))), sort=False):
        v = vals.to_numpy(dtype=np.float64)
        k = len(v)
        mean = float(v.mean())
        row = dict(zip(KEYS, key), mean=mean, ci_lo=np.nan, ci_hi=np.nan, seed_lo=np.nan, seed_hi=np.nan,
                   sd_seeds=np.nan, n_seeds=k, n_items=0)
        if k >= 2:
            sd = float(v.std(ddof=1))
            half = _t_quantile(k - 1, alpha) * sd / math.sqrt(k)
            row.update(seed_lo=mean - half, seed_hi=mean + half, sd_seeds=sd)
        g = groups.get(key)
        if g is not None and len(g):
            mats = {int(s): gg["value"].to_numpy(dtype=np.float64)[:, None] for s, gg in g.groupby("seed")}
            b = _boot_matrices(mats, ["v"], n_boot, _rng(seed, "summary", *key))
            lo, hi = np.percentile(b.reps["v"], [100 * alpha / 2, 100 * (1 - alpha / 2)])
            row.update(ci_lo=float(lo), ci_hi=float(hi), n_items=int(len(g)))
        if scorer is not None:
            row["scorer"] = scorer.get(key, "")
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_m"] = out["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}).fillna(99)
    out["_k"] = out["metric"].map({m: i for i, m in enumerate(METRIC_ORDER)}).fillna(99)
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2}).fillna(9)
    out = out.sort_values(["_t", "_m", "concept", "_k"]).drop(columns=["_m", "_k", "_t"])
    return out.reset_index(drop=True)


def _get(summary: pd.DataFrame, target: str, method: str, concept: str, metric: str) -> pd.Series | None:
    s = summary[(summary["target"] == target) & (summary["method"] == method)
                & (summary["concept"] == concept) & (summary["metric"] == metric)]
    return None if s.empty else s.iloc[0]


def wide_ci(frame: pd.DataFrame, index: str | list[str], columns: str | list[str], value: str = "mean",
            lo: str = "ci_lo", hi: str = "ci_hi", digits: int = 2) -> pd.DataFrame:
    """Pivot a long frame to strings ``mean [lo, hi]`` (for display)."""
    f = frame.copy()
    f["_txt"] = [format_ci(v, a, b, digits) for v, a, b in zip(f[value], f[lo], f[hi])]
    return f.pivot_table(index=index, columns=columns, values="_txt", aggfunc="first", sort=False).fillna("")


def leaderboard(summary: pd.DataFrame, concept: str, metrics: Sequence[str] | None = None,
                digits: int = 2):
    """Every (target, method) × metric of one concept: ``(means, text)`` — the numeric means
    (to colour a table) and the ``mean [lo, hi]`` strings, same shape."""
    s = summary[summary["concept"] == concept]
    metrics = [m for m in (metrics or METRIC_ORDER) if m in set(s["metric"])]
    s = s[s["metric"].isin(metrics)]
    idx = [(t, m) for t in ("person", "event", "both") for m in _order(s["method"], METHOD_ORDER)
           if ((s["target"] == t) & (s["method"] == m)).any()]
    means = s.pivot_table(index=["target", "method"], columns="metric", values="mean").reindex(
        pd.MultiIndex.from_tuples(idx, names=["target", "method"]))[metrics]
    text = wide_ci(s, ["target", "method"], "metric", digits=digits).reindex(means.index)[metrics]
    return means, text


# =======================================================================================
# Simultaneous unlearning and BGD (chapter 5)


def table2(summary: pd.DataFrame, items: pd.DataFrame | None = None, n_boot: int = 1000,
           seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """The layout of the paper's Table 2: target ``both``, methods gd, gd+bgd, kl, kl+bgd; for
    person and event, efficacy and retain.

    One row per (method, concept, metric) with ``mean``, ``ci_lo``, ``ci_hi`` (from
    ``summary``) and, for ``X+bgd`` rows, ``delta = mean(X+bgd) − mean(X)`` with its interval
    ``delta_lo``/``delta_hi``, bootstrapped **paired over items** (both methods answered the
    same items; rows joined on (seed, item_id)) — NaN without ``items``. ``paper`` is the
    paper's number in [0, 1] where Table 2 gives one (efficacies only).
    """
    paper = paper_table2_long().set_index(["method", "concept", "metric"])["paper"]
    rows = []
    for method in ("gd", "gd+bgd", "kl", "kl+bgd"):
        base = BGD_BASE.get(method)
        for concept in ("person", "event"):
            for metric in ("efficacy", "retain"):
                r = _get(summary, "both", method, concept, metric)
                if r is None:
                    continue
                row = {"method": method, "base": base or "", "concept": concept, "metric": metric,
                       "mean": r["mean"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"], "delta": np.nan,
                       "delta_lo": np.nan, "delta_hi": np.nan,
                       "paper": paper.get((method, concept, metric), np.nan)}
                b = _get(summary, "both", base, concept, metric) if base else None
                if b is not None:
                    row["delta"] = r["mean"] - b["mean"]
                    e = _paired_delta(items, ("both", method, concept, metric), ("both", base, concept, metric),
                                      n_boot, seed, alpha)
                    if e is not None:
                        row.update(delta=e.value, delta_lo=e.lo, delta_hi=e.hi)
                rows.append(row)
    return pd.DataFrame(rows)


def simultaneous_vs_single(summary: pd.DataFrame, items: pd.DataFrame | None = None,
                           methods: Sequence[str] | None = None, with_bgd: bool = True,
                           n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Efficacy of each method when it forgets one concept (target ``person`` or ``event``)
    against forgetting both at once (target ``both``), concept by concept.

    One row per (method, concept): ``single`` = efficacy of ``single_method`` on target
    ``concept``; ``both`` = efficacy of ``method`` on target ``both`` for that concept;
    ``delta = both − single`` (negative: simultaneous forgetting is less effective, the
    paper's finding 4), paired over items (the forget images of a concept are the same
    for target ``both`` and the single target). With ``with_bgd``, rows for ``X+bgd`` compare
    it on ``both`` with ``X`` alone on the single target (``single_method = X``).
    """
    present = lambda t: set(summary.loc[summary["target"] == t, "method"])  # noqa: E731
    if methods is None:
        methods = [m for m in UNLEARN_METHODS if m in present("both") and (m in present("person") or m in present("event"))]
    pairs = [(m, m) for m in methods]
    if with_bgd:
        pairs += [(m, BGD_BASE[m]) for m in BGD_BASE if m in present("both")]
    rows = []
    for method, single_m in pairs:
        for concept in ("person", "event"):
            s = _get(summary, concept, single_m, concept, "efficacy")
            b = _get(summary, "both", method, concept, "efficacy")
            if s is None or b is None:
                continue
            row = {"method": method, "single_method": single_m, "concept": concept,
                   "single": s["mean"], "single_lo": s["ci_lo"], "single_hi": s["ci_hi"],
                   "both": b["mean"], "both_lo": b["ci_lo"], "both_hi": b["ci_hi"],
                   "delta": b["mean"] - s["mean"], "delta_lo": np.nan, "delta_hi": np.nan}
            e = _paired_delta(items, ("both", method, concept, "efficacy"), (concept, single_m, concept, "efficacy"),
                              n_boot, seed, alpha)
            if e is not None:
                row.update(delta=e.value, delta_lo=e.lo, delta_hi=e.hi)
            rows.append(row)
    return pd.DataFrame(rows)


# =======================================================================================
# Cross-concept interference (chapter 6)

#: The cells of the interference matrix: (target, measured concept) → (concept, metric of the
#: results table, inverted?, what the cell measures). "Inverted" cells read ``1 − efficacy``,
#: i.e. how much of the concept is still *known* on its own forget images.
INTERFERENCE_CELLS = {
    ("person", "person"): ("person", "efficacy", True, "name precision on the person-forget images"),
    ("person", "event"): ("person", "scope", False, "event score on the person-forget images"),
    ("event", "person"): ("event", "scope", False, "name precision on the event-forget images"),
    ("event", "event"): ("event", "efficacy", True, "event score on the event-forget images"),
    ("both", "person"): ("person", "efficacy", True, "name precision on the person-forget images"),
    ("both", "event"): ("event", "efficacy", True, "event score on the event-forget images"),
}


def interference_table(summary: pd.DataFrame, method: str, items: pd.DataFrame | None = None,
                       n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """The cells of the target × measured-concept matrix of ``method``, long format.

    Cell (T, C) is the **score of concept C on the forget images of target T** — how much
    of C the model still knows there (higher = knows more):

    ============  =========================================  ========================================
    target T      measured C = person (name precision)        measured C = event (event score)
    ============  =========================================  ========================================
    person        1 − person/efficacy (intended)              person/scope (interference)
    event         event/scope (interference)                  1 − event/efficacy (intended)
    both          1 − person/efficacy of target both           1 − event/efficacy of target both
    ============  =========================================  ========================================

    (for target ``both`` each concept is read on its own forget images; its cross-concept
    cells are the scope rows of :func:`scope_table`). ``score`` is the method's value,
    ``finetune``/``goal`` the bounds' values of the same target on the same items, and
    ``delta = score − finetune`` (negative on the intended cells = forgotten; negative on
    the interference cells = collateral damage), with a paired item bootstrap interval.
    """
    rows = []
    for (target, measured), (concept, metric, inv, what) in INTERFERENCE_CELLS.items():
        r = _get(summary, target, method, concept, metric)
        if r is None:
            continue
        f = _get(summary, target, "finetune", concept, metric)
        g = _get(summary, target, "goal", concept, metric)
        tr = (lambda x: 1.0 - x) if inv else (lambda x: x)
        sign = -1.0 if inv else 1.0
        row = {"method": method, "target": target, "measured": measured, "images": what,
               "source": f"{'1 − ' if inv else ''}{concept}/{metric}",
               "role": "intended" if target == "both" or target == measured else "interference",
               "score": tr(r["mean"]), "finetune": tr(f["mean"]) if f is not None else np.nan,
               "goal": tr(g["mean"]) if g is not None else np.nan,
               "delta": np.nan, "delta_lo": np.nan, "delta_hi": np.nan}
        if f is not None:
            row["delta"] = row["score"] - row["finetune"] + 0.0
            e = _paired_delta(items, (target, method, concept, metric), (target, "finetune", concept, metric),
                              n_boot, seed, alpha)
            if e is not None:
                lo, hi = sorted((sign * e.lo + 0.0, sign * e.hi + 0.0))
                row.update(delta=sign * e.value + 0.0, delta_lo=lo, delta_hi=hi)
        rows.append(row)
    return pd.DataFrame(rows)


def interference_matrix(summary: pd.DataFrame, method: str, items: pd.DataFrame | None = None,
                        value: str = "delta", table: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    """:func:`interference_table` as a matrix: rows target (person, event, both), columns the
    measured concept (person, event), cells ``value`` (default the delta against finetune).

    ``table`` reuses rows :func:`interference_table` already computed (any methods; this
    method's are taken) instead of bootstrapping again."""
    t = table[table["method"] == method] if table is not None else interference_table(summary, method, items, **kw)
    if t.empty:
        return pd.DataFrame(index=pd.Index([], name="target"), columns=pd.Index([], name="measured"))
    m = t.pivot(index="target", columns="measured", values=value)
    return m.reindex(index=[x for x in ("person", "event", "both") if x in m.index],
                     columns=[c for c in ("person", "event") if c in m.columns])


def scope_table(summary: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Scope and its control for every target and method: one row per (target, method,
    concept) with ``scope`` (the other concept on this concept's forget images),
    ``scope_retain`` (the other concept on the retain images), their CIs, and
    ``gap = scope − scope_retain`` (negative: the other concept suffers specifically on the
    forget images)."""
    s = summary[summary["metric"].isin(["scope", "scope_retain"])]
    if methods is not None:
        s = s[s["method"].isin(list(methods))]
    rows = []
    for (t, m, c), g in s.groupby(["target", "method", "concept"], sort=False):
        sc, sr = g[g["metric"] == "scope"], g[g["metric"] == "scope_retain"]
        if sc.empty:
            continue
        row = {"target": t, "method": m, "concept": c,
               "measures": "event score" if c == "person" else "name precision",
               "scope": sc["mean"].iloc[0], "scope_lo": sc["ci_lo"].iloc[0], "scope_hi": sc["ci_hi"].iloc[0],
               "scope_retain": sr["mean"].iloc[0] if len(sr) else np.nan,
               "scope_retain_lo": sr["ci_lo"].iloc[0] if len(sr) else np.nan,
               "scope_retain_hi": sr["ci_hi"].iloc[0] if len(sr) else np.nan}
        row["gap"] = row["scope"] - row["scope_retain"]
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}).fillna(99)
    return out.sort_values(["_t", "concept", "_m"]).drop(columns=["_t", "_m"]).reset_index(drop=True)


IMAGE_DIRECTIONS = {
    "person": ("forget people → event answers", "event score"),
    "event": ("forget events → name answers", "name precision"),
}


def paired_image_level(items: pd.DataFrame, method: str, seeds: Sequence[int] | None = None,
                       target: str | None = None, n_boot: int = 2000, n_perm: int = 5000,
                       seed: int = 0, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Does forgetting a concept hurt the *other* concept more on the images that show it?

    Direction ``person`` (forget people → event answers): on each image, the change of the
    **event score** caused by unlearning, ``d_i = score_method(i) − score_finetune(i)``
    (paired by (seed, item_id)), on the person-forget images (metric ``person/scope``) and
    on the retain images (``person/scope_retain``, images of people who are not forgotten).
    Direction ``event`` (forget events → names): the same with **name precision**
    (``event/scope`` vs ``event/scope_retain``). Targets: ``person`` and ``event`` (or both
    directions from the ``both`` run with ``target="both"``).

    Reported per direction: ``delta_forget`` and ``delta_retain`` (mean of ``d_i`` over each
    image set; per seed, then averaged over seeds), ``difference = delta_forget −
    delta_retain`` (negative: the other concept suffers more where the forgotten concept is
    shown), its bootstrap interval (the two image sets resampled independently, within
    seeds) and a two-sided **permutation p-value**: the forget/retain labels are shuffled
    within each seed ``n_perm`` times, ``p = (1 + #{|D_perm| ≥ |D_obs|}) / (1 + n_perm)``.

    Returns ``(summary, per_item)``; ``per_item`` has seed, direction, images (forget /
    retain), item_id, finetune, method and delta.
    """
    _need(items, _ITEM_NEEDS, "items")
    rows, per = [], []
    for concept, (direction, measure) in IMAGE_DIRECTIONS.items():
        t = target or concept
        parts = {}
        for images, metric in (("forget", "scope"), ("retain", "scope_retain")):
            w = _block(items, {"finetune": (t, "finetune", concept, metric), "method": (t, method, concept, metric)},
                       seeds)
            if w is None:
                break
            w = w.assign(delta=w["method"] - w["finetune"])
            parts[images] = w
            p = w.reset_index()
            p.insert(1, "direction", direction)
            p.insert(2, "images", images)
            per.append(p)
        if len(parts) < 2:
            continue
        rng = _rng(seed, "image-level", method, t, concept)
        boots = {k: _boot_wide(parts[k][["delta"]], n_boot, rng) for k in ("forget", "retain")}
        est = _estimate(boots, lambda m: m["forget"]["delta"] - m["retain"]["delta"], alpha)
        # Permutation test, stratified by seed.
        common = sorted(set(parts["forget"].index.get_level_values("seed")) & set(parts["retain"].index.get_level_values("seed")))
        obs, perm = 0.0, np.zeros(n_perm)
        prng = _rng(seed, "perm", method, t, concept)
        for s in common:
            f = parts["forget"].xs(s, level="seed")["delta"].to_numpy()
            r = parts["retain"].xs(s, level="seed")["delta"].to_numpy()
            pool = np.concatenate([f, r])
            obs += f.mean() - r.mean()
            chunk = max(1, 2_000_000 // pool.size)
            for a in range(0, n_perm, chunk):
                b = min(n_perm, a + chunk)
                sh = pool[np.argsort(prng.random((b - a, pool.size)), axis=1)]
                perm[a:b] += sh[:, :f.size].mean(axis=1) - sh[:, f.size:].mean(axis=1)
        obs /= max(len(common), 1)
        perm /= max(len(common), 1)
        p_value = float((1 + np.sum(np.abs(perm) >= abs(obs) - 1e-12)) / (1 + n_perm))
        rows.append({"method": method, "target": t, "direction": direction, "measure": measure,
                     "n_forget": len(parts["forget"]), "n_retain": len(parts["retain"]),
                     "delta_forget": boots["forget"].point["delta"], "delta_retain": boots["retain"].point["delta"],
                     "difference": est.value, "ci_lo": est.lo, "ci_hi": est.hi, "p_value": p_value,
                     "n_seeds": len(common)})
    per_item = pd.concat(per, ignore_index=True) if per else pd.DataFrame(
        columns=["seed", "direction", "images", "item_id", "finetune", "method", "delta"])
    return pd.DataFrame(rows), per_item


# =======================================================================================
# The paper's numbers (DESIGN §11, transcribed as printed there)

#: Table 1 of the paper as transcribed in DESIGN §11 (v1 of arXiv 2503.12545, LLaVA-class
#: model), numbers exactly as printed: person columns in %, event efficacy / generality /
#: retain as G-Eval scores in [0, 1], P-scope and E-real as ROUGE-L in [0, 1], E-scope as
#: name precision in %, POPE accuracy in % after the person run and after the event run.
PAPER_TABLE1 = pd.DataFrame(
    [
        ["finetune", 0.0, 2.2, 97.5, 0.98, 100, 0.18, 0.20, 0.99, 100, 0.56, 85.9, 85.9],
        ["po", 100, 100, 4.1, 0.89, 86.6, 0.21, 0.22, 0.98, 98.9, 0.44, 78.5, 77.2],
        ["ga", 100, 100, 3.9, 0.91, 71.6, 0.51, 0.49, 0.62, 78.5, 0.24, 78.0, 78.8],
        ["gd", 98.9, 98.9, 21.5, 0.86, 76.9, 0.58, 0.56, 0.88, 81.5, 0.30, 77.1, 79.1],
        ["kl", 100, 99.7, 5.0, 0.81, 73.9, 0.55, 0.51, 0.84, 80.8, 0.25, 78.7, 78.8],
        ["dpo", 100, 100, 8.6, 0.92, 82.6, 0.43, 0.41, 0.80, 83.1, 0.35, 78.4, 79.3],
        ["goal", 100, 100, 96.4, 0.99, 100, 0.97, 0.98, 0.99, 100, 0.55, 87.5, 87.5],
    ],
    columns=["model", "P-eff", "P-gen", "P-ret", "P-scope (ROUGE-L)", "P-real", "E-eff", "E-gen", "E-ret",
             "E-scope (name %)", "E-real (ROUGE-L)", "POPE (after person run)", "POPE (after event run)"],
).set_index("model")

#: Table 2 of the paper (target both) as given in DESIGN §11: person efficacy in %, event
#: efficacy (G-Eval) in [0, 1]. DESIGN gives no retain numbers ("retain falls somewhat with BGD").
PAPER_TABLE2 = pd.DataFrame(
    [["gd", 55.0, 0.36], ["gd+bgd", 63.5, 0.47], ["kl", 36.4, 0.34], ["kl+bgd", 48.1, 0.42]],
    columns=["model", "P-eff", "E-eff"],
).set_index("model")

#: For each column of the paper's tables: (concept, metric, divide by, the paper's measure).
#: Every column is already higher-is-better (P-eff 100 = every name gone; E-eff 0.18 for
#: finetune and 0.97 for goal), so the only conversion is % → [0, 1].
PAPER_COLUMNS = {
    "P-eff": ("person", "efficacy", 100.0, "name match (%)"),
    "P-gen": ("person", "generality", 100.0, "name match (%)"),
    "P-ret": ("person", "retain", 100.0, "name precision (%)"),
    "P-scope (ROUGE-L)": ("person", "scope", 1.0, "event score: ROUGE-L"),
    "P-real": ("person", "real", 100.0, "name precision (%)"),
    "E-eff": ("event", "efficacy", 1.0, "event score: G-Eval (LLM judge)"),
    "E-gen": ("event", "generality", 1.0, "event score: G-Eval (LLM judge)"),
    "E-ret": ("event", "retain", 1.0, "event score: G-Eval (LLM judge)"),
    "E-scope (name %)": ("event", "scope", 100.0, "name precision (%)"),
    "E-real (ROUGE-L)": ("event", "real", 1.0, "event score: ROUGE-L"),
    "POPE (after person run)": ("person", "world_fact", 100.0, "POPE accuracy (%)"),
    "POPE (after event run)": ("event", "world_fact", 100.0, "POPE accuracy (%)"),
}


def _paper_long(table: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = []
    for model, r in table.iterrows():
        for col, raw in r.items():
            concept, metric, div, measure = PAPER_COLUMNS[col]
            rows.append({"table": name, "method": model, "concept": concept, "metric": metric,
                         "paper": float(raw) / div, "paper_printed": raw, "paper_column": col,
                         "paper_measure": measure})
    return pd.DataFrame(rows)


def paper_table1_long() -> pd.DataFrame:
    """:data:`PAPER_TABLE1` as rows (method, concept, metric, ``paper`` in [0, 1], as printed)."""
    return _paper_long(PAPER_TABLE1, "Table 1")


def paper_table2_long() -> pd.DataFrame:
    """:data:`PAPER_TABLE2` as rows (method, concept, metric, ``paper`` in [0, 1], as printed)."""
    return _paper_long(PAPER_TABLE2, "Table 2")


def _our_measure(metric_key: str, scorer: str) -> str:
    from .metrics import METRICS

    info = METRICS.get(metric_key)
    if info is None:
        return ""
    if info.measure == "event score":
        return f"event score: {scorer or '?'}"
    return {"name match": "name match", "POPE": "POPE accuracy"}.get(info.measure, info.measure)


def _same_kind(ours: str, paper: str) -> bool:
    if ours.startswith("event score"):
        return ours.split(":")[-1].strip().replace("_", "-").lower() in paper.lower()
    return ours.split()[0] in paper or ("name" in ours and "name" in paper)


def side_by_side(summary: pd.DataFrame) -> pd.DataFrame:
    """Our numbers next to the paper's, in the same orientation and scale ([0, 1], higher is
    better): Table 1 rows from our single-target runs (person columns from target ``person``,
    event columns from target ``event``), Table 2 rows from target ``both``.

    Columns: table, method, concept, metric, ours, ours_lo, ours_hi, paper, paper_printed,
    paper_column, our_measure, paper_measure, ``same_measure`` (True when both numbers come
    from the same kind of measure — name matching, POPE, or the same event scorer; False when
    e.g. our keyword score stands against the paper's G-Eval or ROUGE-L), and
    ``difference = ours − paper``. Methods only we run (NPO) have no paper value.
    """
    paper = pd.concat([paper_table1_long(), paper_table2_long()], ignore_index=True)
    rows = []
    for table, targets in (("Table 1", ("person", "event")), ("Table 2", ("both",))):
        p = paper[paper["table"] == table]
        for concept in ("person", "event"):
            target = concept if table == "Table 1" else "both"
            ours = summary[(summary["target"] == target) & (summary["concept"] == concept)]
            methods = _order(set(ours["method"]) | set(p["method"]), METHOD_ORDER)
            if table == "Table 2":
                methods = [m for m in methods if m in set(p["method"])]
            for method in methods:
                for metric in METRIC_ORDER:
                    if metric == "scope_retain":
                        continue
                    o = _get(summary, target, method, concept, metric)
                    q = p[(p["method"] == method) & (p["concept"] == concept) & (p["metric"] == metric)]
                    if o is None and q.empty:
                        continue
                    if table == "Table 2" and q.empty:
                        continue
                    scorer = str(o["scorer"]) if o is not None and "scorer" in o else ""
                    om = _our_measure(f"{concept}/{metric}", scorer)
                    pm = q["paper_measure"].iloc[0] if len(q) else ""
                    rows.append({
                        "table": table, "method": method, "concept": concept, "metric": metric,
                        "ours": o["mean"] if o is not None else np.nan,
                        "ours_lo": o["ci_lo"] if o is not None else np.nan,
                        "ours_hi": o["ci_hi"] if o is not None else np.nan,
                        "paper": q["paper"].iloc[0] if len(q) else np.nan,
                        "paper_printed": q["paper_printed"].iloc[0] if len(q) else np.nan,
                        "paper_column": q["paper_column"].iloc[0] if len(q) else "",
                        "our_measure": om, "paper_measure": pm,
                        "same_measure": bool(pm) and _same_kind(om, pm),
                    })
    out = pd.DataFrame(rows)
    if not out.empty:
        out["difference"] = out["ours"] - out["paper"]
    return out


def event_scorers(results: pd.DataFrame) -> list[str]:
    """The event scorer(s) that produced the event-score metrics of ``results``."""
    if "scorer" not in results:
        return []
    return sorted(set(results["scorer"].dropna().astype(str)) - {"name_match", "None", ""})


# =======================================================================================
# The paper's findings (DESIGN §11)

FINDINGS = {
    1: "Forgetting people reaches high efficacy and generality, at a large cost in retain.",
    2: "Events are harder to forget than people (lower efficacy relative to goal).",
    3: "Cross-concept interference: forgetting one concept lowers the other concept's score on the "
       "same images (scope below finetune), least for PO.",
    4: "Forgetting both at once lowers efficacy compared with each alone.",
    5: "BGD recovers part of that loss.",
}

TESTS = {
    1: "per method on target person: efficacy and generality CIs above `high`, and the retain drop "
       "(finetune − method) CI above `large_cost`",
    2: "per method: relative efficacy (eff_m − eff_ft)/(eff_goal − eff_ft) of people minus that of "
       "events, CI above 0",
    3: "per method (PO aside) and direction: scope_ft − scope_m, CI above 0 (interference); PO: its scope "
       "change (mean of two directions) minus the best other method's, CI above 0",
    4: "per method and concept: efficacy on the single target minus efficacy on target both, CI above 0",
    5: "for gd and kl, per concept: efficacy of X+bgd minus X on target both, CI above 0",
}


def _call(est: Estimate | None, margin: float, max_nan: float = 0.05) -> str:
    """The verdict of a one-sided claim "quantity > 0" from its interval.

    * ``reproduced``: the interval lies above 0 and, with several seeds, every seed's own
      estimate is above 0 too;
    * ``not reproduced``: the interval lies below ``margin`` (the effect is absent, smaller
      than ``margin``, or reversed) and every seed's estimate is below ``margin``;
    * ``inconclusive`` otherwise (also when the quantity is undefined, or undefined in more
      than ``max_nan`` of the bootstrap replicates).
    """
    if est is None or not np.isfinite(est.value) or est.nan_share > max_nan:
        return INCONCLUSIVE
    seeds = list(est.per_seed.values())
    if est.lo > 0 and all(v > 0 for v in seeds):
        return REPRODUCED
    if est.hi < margin and all(v < margin for v in seeds):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _combine(verdicts: Sequence[str]) -> str:
    """Several sub-tests → one verdict: ``mixed`` if some are reproduced and some not;
    otherwise the called verdict if it holds for **more than half** of the sub-tests;
    else ``inconclusive`` (also with no sub-test at all)."""
    v = list(verdicts)
    r, n = v.count(REPRODUCED), v.count(NOT_REPRODUCED)
    if not v:
        return INCONCLUSIVE
    if r and n:
        return MIXED
    if r > len(v) / 2:
        return REPRODUCED
    if n > len(v) / 2:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _methods_in(items: pd.DataFrame, targets: Sequence[str], pool: Sequence[str]) -> list[str]:
    out = []
    for m in pool:
        if all(((items["target"] == t) & (items["method"] == m)).any() for t in targets):
            out.append(m)
    return out


def finding_tests(items: pd.DataFrame, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                  margin: float = 0.05, high: float = 0.8, large_cost: float = 0.2,
                  min_gap: float = 0.05, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Every sub-test of the five findings: one row per (finding, part, subject, quantity)
    with the estimate, its interval, the per-seed estimates and the verdict of :func:`_call`.

    All quantities are oriented so that the paper's claim reads "quantity > 0" and are
    bootstrapped as in the module docstring (paired within a split, independent across
    splits). With ``m`` a method, ``ft`` finetune:

    1. target ``person``, per method: ``eff_m − high``, ``gen_m − high`` (margin 0) and
       ``(ret_ft − ret_m) − large_cost`` (margin 0). A method reproduces the finding if all
       three do; it contradicts it if any is ``not reproduced``.
    2. per method: ``rel_P − rel_E`` with ``rel_C = (eff_m − eff_ft) / (eff_goal − eff_ft)``,
       efficacy of concept C on its single target (person images and event images resampled
       independently). Undefined (inconclusive) when goal and finetune differ by less than
       ``min_gap`` on either concept.
    3. part *interference*, per method other than PO and concept C: ``scope_ft − scope_m`` on
       target C (paired; PO's own rows are reported as part ``interference (po)`` and judged
       by the next part, since the paper expects PO to interfere least). Part *least for PO*:
       ``Δ_po − max_{m≠po} Δ_m`` with ``Δ_m`` the mean over the two directions of
       ``scope_m − scope_ft`` (margin 0), one joint bootstrap.
    4. per method and concept C: ``eff_m(target C) − eff_m(target both)`` (paired: the forget
       images of C are the same for both targets).
    5. for X in gd, kl and concept C: ``eff_{X+bgd} − eff_X`` on target both (paired).
       Reported beside it (not tested): the share of the loss of finding 4 recovered,
       ``(eff_{X+bgd,both} − eff_{X,both}) / (eff_{X,C} − eff_{X,both})``, and the retain change.
    """
    _need(items, _ITEM_NEEDS, "items")
    pool = list(methods) if methods is not None else list(UNLEARN_METHODS)
    rows: list[dict] = []

    def add(finding, part, subject, quantity, est, m, note="", ok=True):
        rows.append({"finding": finding, "part": part, "subject": subject, "quantity": quantity,
                     "estimate": est.value if est else np.nan, "lo": est.lo if est else np.nan,
                     "hi": est.hi if est else np.nan,
                     "per_seed": ", ".join(f"s{s}: {v:.2f}" for s, v in (est.per_seed.items() if est else [])),
                     "margin": m, "verdict": _call(est, m) if ok else INCONCLUSIVE, "note": note})

    def boots(spec_blocks: Mapping[str, Mapping[str, tuple]], key: str):
        rng = _rng(seed, "findings", key)
        return {name: _boot_wide(_block(items, spec), n_boot, rng) for name, spec in spec_blocks.items()}

    def point(t, m, c, k):
        w = _block(items, {"v": (t, m, c, k)})
        return float(w.groupby(level="seed")["v"].mean().mean()) if w is not None else float("nan")

    # Preconditions: a concept can only be forgotten if finetune knows it and goal does not.
    gap = {c: point(c, "goal", c, "efficacy") - point(c, "finetune", c, "efficacy") for c in ("person", "event")}
    no_gap = {c: f"goal − finetune efficacy is {gap[c]:+.2f} (< {min_gap}) on target {c}: finetune never learned "
                 f"what there is to forget" for c in gap if not gap[c] >= min_gap}

    # ---- 1. person unlearning: high efficacy and generality, large retain cost
    ms = _methods_in(items, ["person"], pool)
    if ms:
        ret_ft = point("person", "finetune", "person", "retain")
        note1 = no_gap.get("person", "")
        if not ret_ft >= large_cost:
            note1 = (note1 + "; " if note1 else "") + f"finetune retain {ret_ft:.2f} < {large_cost}: no room for a large drop"
        ok1 = not note1
        models = ["finetune", *ms]
        b = boots({k: {m: ("person", m, "person", k) for m in models} for k in ("efficacy", "generality", "retain")},
                  "f1")
        for m in ms:
            add(1, "efficacy", m, f"efficacy − {high}", _estimate({"e": b["efficacy"]}, lambda x, m=m: x["e"][m] - high, alpha),
                0.0, note1, ok1)
            if b["generality"] is not None:
                add(1, "generality", m, f"generality − {high}",
                    _estimate({"g": b["generality"]}, lambda x, m=m: x["g"][m] - high, alpha), 0.0, note1, ok1)
            add(1, "retain cost", m, f"retain drop − {large_cost}",
                _estimate({"r": b["retain"]}, lambda x, m=m: x["r"]["finetune"] - x["r"][m] - large_cost, alpha), 0.0,
                note1, ok1)

    # ---- 2. events harder than people, relative to goal
    ms = _methods_in(items, ["person", "event"], pool)
    if ms:
        models = ["finetune", "goal", *ms]
        b = boots({"P": {m: ("person", m, "person", "efficacy") for m in models},
                   "E": {m: ("event", m, "event", "efficacy") for m in models}}, "f2")

        def rel(x, m):
            gap = x["goal"] - x["finetune"]
            return np.where(gap > 1e-9, (x[m] - x["finetune"]) / np.where(gap > 1e-9, gap, 1.0), np.nan)

        note2 = "; ".join(no_gap.values())
        for m in ms:
            est = None if note2 else _estimate(b, lambda x, m=m: rel(x["P"], m) - rel(x["E"], m), alpha)
            add(2, "relative efficacy", m, "rel. efficacy people − events", est, margin,
                note2 + ("; relative efficacy undefined" if note2 else ""), not note2)

    # ---- 3. interference (scope below finetune), least for PO
    ms = (_methods_in(items, ["person", "event"], pool) or _methods_in(items, ["person"], pool)
          or _methods_in(items, ["event"], pool))
    if ms:
        models = ["finetune", *ms]
        spec = {c: {m: (c, m, c, "scope") for m in models} for c in ("person", "event")}
        b = {k: v for k, v in boots(spec, "f3").items() if v is not None}
        for c, bb in b.items():
            sc_ft = bb.point["finetune"]
            note3 = "" if sc_ft >= margin else f"finetune scope {sc_ft:.2f} < {margin}: no room for a drop"
            for m in ms:
                # PO's own drop is reported but judged by the "least for PO" part, not here.
                part = "interference" if (m != "po" or ms == ["po"]) else "interference (po)"
                add(3, part, f"{m} ({c} target)", f"scope drop ({'event score' if c == 'person' else 'names'})",
                    _estimate({"s": bb}, lambda x, m=m: x["s"]["finetune"] - x["s"][m], alpha), margin, note3, not note3)
                if part != "interference":
                    rows[-1].update(verdict="reported", note=(note3 + "; " if note3 else "") + "judged by 'least for PO'")
        if "po" in ms and len(ms) >= 2 and b:
            def po_gap(x):
                d = {m: sum(x[c][m] - x[c]["finetune"] for c in x) / len(x) for m in ms}
                others = np.max(np.stack([np.asarray(d[m], dtype=float) for m in ms if m != "po"]), axis=0)
                return d["po"] - others
            add(3, "least for PO", "po vs best other", "PO scope change − best other's",
                _estimate(b, po_gap, alpha), 0.0)

    # ---- 4. simultaneous lowers efficacy
    ms = _methods_in(items, ["both"], pool)
    for c in ("person", "event"):
        mc = [m for m in ms if ((items["target"] == c) & (items["method"] == m)).any()]
        if not mc:
            continue
        spec = {f"{t}:{m}": (t, m, c, "efficacy") for m in mc for t in (c, "both")}
        b = boots({"x": spec}, f"f4-{c}")
        for m in mc:
            add(4, "efficacy loss", f"{m} ({c})", "efficacy single − both",
                _estimate(b, lambda x, m=m, c=c: x["x"][f"{c}:{m}"] - x["x"][f"both:{m}"], alpha), margin,
                no_gap.get(c, ""), c not in no_gap)

    # ---- 5. BGD recovers part of the loss
    for bgd, base in BGD_BASE.items():
        if not (((items["target"] == "both") & (items["method"] == bgd)).any()
                and ((items["target"] == "both") & (items["method"] == base)).any()):
            continue
        for c in ("person", "event"):
            b = boots({"x": {"bgd": ("both", bgd, c, "efficacy"), "base": ("both", base, c, "efficacy")}}, f"f5-{bgd}-{c}")
            est = _estimate(b, lambda x: x["x"]["bgd"] - x["x"]["base"], alpha)
            notes = []
            single = _block(items, {"s": (c, base, c, "efficacy")})
            if est is not None and single is not None:
                loss = float(single.groupby(level="seed")["s"].mean().mean()) - b["x"].point["base"]
                if loss >= min_gap:
                    notes.append(f"share of the simultaneous loss recovered {est.value / loss:.0%}")
                else:
                    notes.append(f"no simultaneous loss to recover ({loss:+.2f})")
            r = _paired_delta(items, ("both", bgd, c, "retain"), ("both", base, c, "retain"), n_boot, seed, alpha)
            if r is not None:
                notes.append(f"retain change {r.text()}")
            if c in no_gap:
                notes.insert(0, no_gap[c])
            add(5, "efficacy gain", f"{bgd} vs {base} ({c})", f"efficacy {bgd} − {base}", est, margin, "; ".join(notes),
                c not in no_gap)
    return pd.DataFrame(rows, columns=["finding", "part", "subject", "quantity", "estimate", "lo", "hi",
                                       "per_seed", "margin", "verdict", "note"])


def _names(t: pd.DataFrame, verdict: str) -> str:
    return ", ".join(t.loc[t["verdict"] == verdict, "subject"].astype(str)) or "none"


def _count_line(t: pd.DataFrame, what: str) -> str:
    n = len(t)
    r, x = (t["verdict"] == REPRODUCED).sum(), (t["verdict"] == NOT_REPRODUCED).sum()
    i = n - r - x
    parts = [f"{r} of {n} {what} support it ({_names(t, REPRODUCED)})"]
    if x:
        parts.append(f"{x} contradict it ({_names(t, NOT_REPRODUCED)})")
    if i:
        parts.append(f"{i} are inconclusive ({_names(t, INCONCLUSIVE)})")
    return "; ".join(parts)


def findings(summary: pd.DataFrame, items: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
             tests: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    """The paper's five findings (DESIGN §11) on our runs: one row each with ``claim``,
    ``test``, ``verdict`` (reproduced / not reproduced / mixed / inconclusive), ``evidence``
    (the estimates with their 95 % intervals) and a one-line ``explanation`` written from
    the numbers.

    The sub-tests are those of :func:`finding_tests` (pass ``tests`` to reuse them; other
    keywords go to it). Verdicts: findings 1, 2, 4 and 5 combine their sub-tests (per method,
    or per method and concept) with :func:`_combine` — ``mixed`` when some sub-tests
    reproduce and some contradict the claim, else the verdict of more than half of them,
    else inconclusive. Finding 3 takes the verdict of its interference part (combined over
    methods and directions), turned into ``mixed`` when that part is reproduced but PO is
    clearly *not* the least affected method. A sub-test is "called" only when its interval
    (and, with several seeds, every seed) lies on one side, so a finding is never called on
    overlapping intervals.
    """
    t = tests if tests is not None else finding_tests(items, n_boot=n_boot, seed=seed, **kw)
    n_seeds = int(summary["n_seeds"].max()) if "n_seeds" in summary and len(summary) else 1
    rows = []
    for f, claim in FINDINGS.items():
        ft = t[t["finding"] == f]
        ev_lines = [f"{r.subject}: {r.quantity} = {format_ci(r.estimate, r.lo, r.hi)}" + (f" ({r.note})" if r.note else "")
                    for r in ft.itertuples()]
        if ft.empty:
            verdict, expl = INCONCLUSIVE, "not measured: the runs lack the targets or methods this finding needs"
        elif f == 1:
            per_m = ft.groupby("subject", sort=False)["verdict"].agg(
                lambda v: NOT_REPRODUCED if NOT_REPRODUCED in set(v)
                else (REPRODUCED if set(v) == {REPRODUCED} else INCONCLUSIVE))
            verdict = _combine(per_m.tolist())
            pm = per_m.rename("verdict").reset_index()
            expl = (f"Person unlearning with efficacy and generality above {kw.get('high', 0.8)} and a retain drop above "
                    f"{kw.get('large_cost', 0.2)}: {_count_line(pm, 'methods')}.")
        elif f == 3:
            inter = ft[ft["part"] == "interference"]
            po = ft[ft["part"] == "least for PO"]
            verdict = _combine(inter["verdict"].tolist())
            po_v = po["verdict"].iloc[0] if len(po) else "not measured"
            if verdict == REPRODUCED and po_v == NOT_REPRODUCED:
                verdict = MIXED
            mean_drop = inter["estimate"].mean() if len(inter) else np.nan
            expl = (f"Scope below finetune: {_count_line(inter, 'method × direction tests')} "
                    f"(mean scope drop {mean_drop:+.2f}); PO least affected: {po_v}.")
        else:
            verdict = _combine(ft["verdict"].tolist())
            what = {2: "methods", 4: "method × concept tests", 5: "BGD × concept tests"}[f]
            lead = {2: "Events harder to forget than people relative to goal",
                    4: "Lower efficacy when both concepts are forgotten at once",
                    5: "BGD raises efficacy on target both over its base method"}[f]
            mean_eff = ft["estimate"].mean()
            expl = f"{lead}: {_count_line(ft, what)}" + (f" (mean effect {mean_eff:+.2f})." if np.isfinite(mean_eff) else ".")
        blocked = sorted({n for n in ft.loc[ft["verdict"] == INCONCLUSIVE, "note"].astype(str)
                          if "never learned" in n or "no room" in n})
        if blocked:
            reasons = dict.fromkeys(x for n in blocked for x in n.split("; ") if "never" in x or "room" in x)
            expl += " Not testable here: " + "; ".join(reasons) + "."
        rows.append({"finding": f, "claim": claim, "test": TESTS[f], "verdict": verdict,
                     "evidence": "; ".join(ev_lines), "explanation": expl, "n_tests": len(ft),
                     "n_seeds": n_seeds})
    return pd.DataFrame(rows)


def findings_markdown(frame: pd.DataFrame, profile: str = "", scorers: Sequence[str] = ()) -> str:
    """A discussion paragraph per finding, written from the findings frame (no fixed conclusion)."""
    n_seeds = int(frame["n_seeds"].max()) if len(frame) else 0
    counts = frame["verdict"].value_counts()
    head = (f"On {n_seeds} seed{'s' if n_seeds != 1 else ''}"
            + (f" of the `{profile}` profile" if profile else "")
            + (f", with the `{', '.join(scorers)}` event scorer" if scorers else "") + ", "
            + ", ".join(f"{int(counts.get(v, 0))} finding{'s' if counts.get(v, 0) != 1 else ''} {v}"
                        for v in (REPRODUCED, MIXED, NOT_REPRODUCED, INCONCLUSIVE)) + ".")
    lines = [head, ""]
    for r in frame.itertuples():
        lines.append(f"* **Finding {r.finding} — {r.verdict}.** {r.claim} {r.explanation}")
    if int(counts.get(INCONCLUSIVE, 0)):
        lines += ["", "An *inconclusive* finding is one whose intervals include no effect and a meaningful "
                  "one at once; more seeds (`seeds`) or more items per metric (`eval.max_items`) narrow them."]
    if int(counts.get(NOT_REPRODUCED, 0)) or int(counts.get(MIXED, 0)):
        lines += ["", "A finding that is not reproduced is a result about this setting (model size, training "
                  "budget, synthetic world, event scorer), not an error to tune away; the evidence column says "
                  "which sub-tests disagree."]
    return "\n".join(lines)
