"""The bootstrap behind every interval of the analysis, :class:`Estimate`, :func:`summarise` and
the formatting of intervals.

Conventions, followed by every table and finding of :mod:`pebench_core.analysis`:

* **Every metric is higher-is-better** (design: Metrics), so a *delta* ``a − b`` is an improvement
  of ``a`` over ``b``.
* **Seeds.** A run folder holds one seed. A point estimate is the **mean over seeds** of the
  per-seed value, and the per-seed value is the mean over that seed's items (exactly the
  ``value`` of the results row).
* **Item interval** (``ci_lo``, ``ci_hi``): a seeded percentile bootstrap that resamples the
  items *within each seed* (with replacement, same count), averages each seed's resample
  and then averages the seeds; ``alpha = 0.05`` gives a 95 % interval. It measures how much
  a number depends on *which images* were evaluated, for the trained models at hand.
  Images of one person (or one event) are not independent draws: forgetting acts on people
  and events. ``summarise(..., unit="person" | "event" | "concept")`` resamples whole people
  or events instead (a cluster bootstrap), which asks how the number would move with *other
  people or events*; with few of them the interval widens, and with one it has no width.
  Every summary row names its unit (``ci_unit``) and how many units it rests on (``n_units``).
* **Seed interval** (``seed_lo``, ``seed_hi``, only with ≥ 2 seeds): a Student-t interval
  ``mean ± t_{0.975, k−1} · sd / √k`` over the ``k`` per-seed values. It measures how much a
  number depends on the training seed (world, model, forget set).
* **Paired comparisons.** Every model of a run is evaluated on the same items of a split
  (same seed, same sample), so a difference between two models is bootstrapped **paired**:
  the items are resampled once and both models' values come along (rows joined on
  ``(seed, item_id)``). Quantities that combine different splits (e.g. person efficacy on
  target ``person`` against event efficacy on target ``event``) resample each split
  independently, replicate by replicate.

Every generator comes from :func:`named_rng`, seeded by a seed and a name, so a number does not
change when other numbers are computed before it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import ConfigError
from .schema import ITEM_COLUMNS, KEYS, method_order, METRIC_ORDER, RESULT_COLUMNS, require_columns

__all__ = [
    "Estimate",
    "named_rng",
    "paired_block",
    "bootstrap_wide",
    "bootstrap_estimate",
    "paired_delta",
    "format_ci",
    "ci_column",
    "summarise",
    "summary_row",
    "item_units",
    "UNITS",
]


def named_rng(seed: int, *key) -> np.random.Generator:
    """A generator that depends on ``seed`` and on a name, not on the order of calls."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
    60: 2.000,
}


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


def _boot_matrices(
    mats: Mapping[int, np.ndarray],
    columns: list[str],
    n_boot: int,
    rng: np.random.Generator,
    groups: Mapping[int, np.ndarray] | None = None,
) -> _Boot:
    """``mats[seed]`` is an (items × columns) array; items are resampled within each seed,
    each seed's resample is averaged, then the seeds are averaged.

    With ``groups[seed]`` (one cluster label per row) whole clusters are resampled instead:
    as many clusters as there are, with replacement, and a replicate's mean is the items of
    the drawn clusters pooled (sum of their values over sum of their sizes). One cluster
    gives a zero-width interval: the data cannot say how another cluster would fare."""
    k = len(columns)
    reps = np.zeros((n_boot, k))
    point = np.zeros(k)
    per_seed = {}
    for s in sorted(mats):
        x = np.asarray(mats[s], dtype=np.float64)
        n = x.shape[0]
        if groups is None:
            w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # counts of each item per replicate
            reps += (w @ x) / n
        else:
            codes, uniq = pd.factorize(np.asarray(groups[s]), sort=True)
            g = len(uniq)
            sums = np.zeros((g, k))
            np.add.at(sums, codes, x)
            sizes = np.bincount(codes, minlength=g).astype(np.float64)
            w = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot)  # counts of each cluster per replicate
            reps += (w @ sums) / (w @ sizes)[:, None]
        m = x.mean(axis=0)
        point += m
        per_seed[int(s)] = dict(zip(columns, m.tolist()))
    reps /= len(mats)
    point /= len(mats)
    return _Boot(dict(zip(columns, point.tolist())), {c: reps[:, j] for j, c in enumerate(columns)}, per_seed)


def bootstrap_wide(wide: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> _Boot | None:
    """Bootstrap the column means of a paired block (:func:`paired_block`: rows (seed, item_id),
    one column per model), items resampled within each seed; ``None`` for no block or an empty one.
    Read ``.point[column]`` (the estimate) and ``.reps[column]`` (the replicates)."""
    if wide is None or wide.empty:
        return None
    seeds = wide.index.get_level_values("seed")
    mats = {int(s): wide[seeds == s].to_numpy(dtype=np.float64) for s in pd.unique(seeds)}
    return _boot_matrices(mats, [str(c) for c in wide.columns], n_boot, rng)


def paired_block(
    items: pd.DataFrame, spec: Mapping[str, tuple[str, str, str, str]], seeds: Sequence[int] | None = None
) -> pd.DataFrame | None:
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


def bootstrap_estimate(boots: Mapping[str, _Boot | None], stat: Callable, alpha: float = 0.05) -> Estimate | None:
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


def paired_delta(items: pd.DataFrame | None, a: tuple, b: tuple, n_boot: int, seed: int, alpha: float = 0.05) -> Estimate | None:
    """``a − b`` for two (target, method, concept, metric) selections: paired over the items
    they share when they are the same items, else the two resampled independently."""
    if items is None:
        return None
    rng = named_rng(seed, "delta", *a, *b)
    na = paired_block(items, {"a": a})
    nb = paired_block(items, {"b": b})
    if na is None or nb is None:
        return None
    w = pd.concat([na, nb], axis=1, join="inner").dropna()
    if len(w) == len(na) == len(nb):  # the same items: paired
        return bootstrap_estimate({"p": bootstrap_wide(w, n_boot, rng)}, lambda m: m["p"]["a"] - m["p"]["b"], alpha)
    return bootstrap_estimate(
        {"a": bootstrap_wide(na, n_boot, rng), "b": bootstrap_wide(nb, n_boot, rng)}, lambda m: m["a"]["a"] - m["b"]["b"], alpha
    )


def format_ci(value: float, lo: float, hi: float, digits: int = 2) -> str:
    """``0.55 [0.40, 0.70]``; an interval that is not available is left out."""
    if value is None or not np.isfinite(value):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def ci_column(df: pd.DataFrame, value: str, lo: str | None = None, hi: str | None = None, digits: int = 2) -> list[str]:
    """:func:`format_ci` of every row of ``df``: ``value`` with ``lo``/``hi`` (default
    ``<value>_lo`` / ``<value>_hi``), ready for a table column."""
    cols = [value, lo or f"{value}_lo", hi or f"{value}_hi"]
    return [format_ci(*v, digits=digits) for v in df[cols].to_numpy(dtype=float)]


UNITS = ("item", "person", "event", "concept")


def item_units(ds) -> pd.DataFrame:
    """Who and what every evaluated item shows: ``item_id``, ``person``, ``event``, from a
    dataset's images (:class:`pebench_core.data.Dataset`). An item of the items table whose
    id carries a suffix after ``:`` (a POPE question: ``<image>:<object>``) is its image's."""
    return pd.DataFrame([{"item_id": it.id, "person": it.person, "event": it.event} for it in ds.items])


def _cluster_labels(g: pd.DataFrame, unit: str, concept: str, units: pd.DataFrame | None) -> pd.Series | None:
    """The cluster label of every row of ``g`` (``None``: resample items)."""
    col = concept if unit == "concept" else unit
    if col not in ("person", "event"):
        return None
    if units is None:
        raise ConfigError(f"summarise: unit={unit!r} needs units= (item_units(ds): item_id, person, event)")
    require_columns(units, {"item_id", "person", "event"}, "units")
    lookup = units.drop_duplicates("item_id").set_index("item_id")[col]
    labels = g["item_id"].astype(str).str.split(":", n=1).str[0].map(lookup)
    if labels.isna().any():
        missing = g.loc[labels.isna(), "item_id"].head(3).tolist()
        raise ConfigError(
            f"summarise: {int(labels.isna().sum())} item(s) not in units (e.g. {missing}); units must come from the run's world"
        )
    return labels


def summarise(
    results: pd.DataFrame,
    items: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (target, method, concept, metric) over every seed.

    ``unit`` is what the interval resamples within each seed: ``"item"`` (images, as if
    independent), ``"person"`` or ``"event"`` (whole people or events, a cluster bootstrap;
    needs ``units``, :func:`item_units` of the run's world), or ``"concept"`` (person metrics by
    person, event metrics by event). The unit is stated in the ``ci_unit`` column.

    Columns: ``mean`` (mean over seeds of the per-seed value), ``ci_lo``/``ci_hi`` (the
    item bootstrap of the module docstring: items resampled within each seed, seeds averaged,
    percentile interval at level ``1 − alpha``), ``seed_lo``/``seed_hi`` and ``sd_seeds``
    (Student-t interval over seeds, NaN with one seed), ``n_seeds``, ``n_items`` (items
    summed over seeds) and ``scorer``. The bootstrap of each row has its own generator,
    derived from ``seed`` and the row's key, so a row does not change when others are added.
    """
    require_columns(results, RESULT_COLUMNS, "results")
    require_columns(items, ITEM_COLUMNS, "items")
    if unit not in UNITS:
        raise ConfigError(f"summarise: unit={unit!r}; allowed: {list(UNITS)}")
    per_seed = results.groupby([*KEYS, "seed"], sort=False)["value"].mean()
    scorer = results.groupby(KEYS)["scorer"].agg(lambda s: ",".join(sorted(set(map(str, s))))) if "scorer" in results else None
    groups = {k: g for k, g in items.groupby(KEYS, sort=False)}
    rows = []
    for key, vals in per_seed.groupby(level=list(range(len(KEYS))), sort=False):
        v = vals.to_numpy(dtype=np.float64)
        k = len(v)
        mean = float(v.mean())
        row = dict(
            zip(KEYS, key),
            mean=mean,
            ci_lo=np.nan,
            ci_hi=np.nan,
            seed_lo=np.nan,
            seed_hi=np.nan,
            sd_seeds=np.nan,
            n_seeds=k,
            n_items=0,
            ci_unit="",
            n_units=0,
        )
        if k >= 2:
            sd = float(v.std(ddof=1))
            half = _t_quantile(k - 1, alpha) * sd / math.sqrt(k)
            row.update(seed_lo=mean - half, seed_hi=mean + half, sd_seeds=sd)
        g = groups.get(key)
        if g is not None and len(g):
            labels = _cluster_labels(g, unit, str(key[KEYS.index("concept")]), units)
            mats = {int(s): gg["value"].to_numpy(dtype=np.float64)[:, None] for s, gg in g.groupby("seed")}
            clusters = None if labels is None else {int(s): labels[gg.index].to_numpy() for s, gg in g.groupby("seed")}
            b = _boot_matrices(mats, ["v"], n_boot, named_rng(seed, "summary", *key), clusters)
            lo, hi = np.percentile(b.reps["v"], [100 * alpha / 2, 100 * (1 - alpha / 2)])
            row.update(ci_lo=float(lo), ci_hi=float(hi), n_items=int(len(g)))
            row["ci_unit"] = "item" if labels is None else (unit if unit != "concept" else str(key[KEYS.index("concept")]))
            row["n_units"] = int(len(g)) if labels is None else int(labels.groupby(g["seed"]).nunique().sum())
        if scorer is not None:
            row["scorer"] = scorer.get(key, "")
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_m"] = out["method"].map({m: i for i, m in enumerate(method_order())}).fillna(99)
    out["_k"] = out["metric"].map({m: i for i, m in enumerate(METRIC_ORDER)}).fillna(99)
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2}).fillna(9)
    out = out.sort_values(["_t", "_m", "concept", "_k"]).drop(columns=["_m", "_k", "_t"])
    return out.reset_index(drop=True)


def summary_row(summary: pd.DataFrame, target: str, method: str, concept: str, metric: str) -> pd.Series | None:
    """The row of a :func:`summarise` frame for one (target, method, concept, metric); ``None`` if absent."""
    s = summary[
        (summary["target"] == target)
        & (summary["method"] == method)
        & (summary["concept"] == concept)
        & (summary["metric"] == metric)
    ]
    return None if s.empty else s.iloc[0]
