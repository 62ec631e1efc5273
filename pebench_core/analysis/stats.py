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
  independently, replicate by replicate. A concept's forget images are one sample for every
  target that forgets it (:func:`pebench_core.evaluate.held_out_ids`), so person efficacy on
  target ``person`` and on target ``both`` is compared image by image (paired).

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

from ..errors import ConfigError
from .schema import ITEM_COLUMNS, KEYS, RESULT_COLUMNS, method_order, metric_order, require_columns

__all__ = [
    "Estimate",
    "named_rng",
    "ItemIndex",
    "item_index",
    "unit_note",
    "interval_words",
    "width_comparison",
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


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """``(n_boot, n)`` counts: how often each of ``n`` units is drawn in each replicate of ``n``
    draws with replacement. The distribution of ``rng.multinomial(n, [1/n] * n, n_boot)``, made
    from uniform draws: numpy's multinomial draws one binomial per unit and replicate, which
    made the bootstraps of a chapter take seconds."""
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


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
            w = _resample_counts(rng, n, n_boot)  # counts of each item per replicate
            reps += (w @ x) / n
        else:
            codes, uniq = pd.factorize(np.asarray(groups[s]), sort=True)
            g = len(uniq)
            sums = np.zeros((g, k))
            np.add.at(sums, codes, x)
            sizes = np.bincount(codes, minlength=g).astype(np.float64)
            w = _resample_counts(rng, g, n_boot)  # counts of each cluster per replicate
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


class ItemIndex:
    """An items table indexed once by (target, method, concept, metric) and by (seed, item_id).

    Pass it for ``items`` to :func:`paired_block` and :func:`paired_delta` when a table reads
    hundreds of selections of one large frame: a plain frame is scanned afresh by every call,
    the index looks a selection up and joins two of them on integer codes. With ``unit`` and
    ``units`` (as :func:`summarise` takes them) :func:`paired_delta` resamples whole people or
    events instead of images."""

    def __init__(self, items: pd.DataFrame, unit: str = "item", units: pd.DataFrame | None = None):
        require_columns(items, ITEM_COLUMNS, "items")
        if unit not in UNITS:
            raise ConfigError(f"unit={unit!r}; allowed: {list(UNITS)}")
        self.items, self.unit, self._units = items, unit, units
        self._rows = items.groupby(KEYS, sort=False).indices
        pairs = items.groupby(["seed", "item_id"], sort=True)  # codes in (seed, item_id) order: the order blocks have
        self._code = pairs.ngroup().to_numpy()
        keys = pairs.size().index
        self._seed_of = keys.get_level_values("seed").to_numpy()
        self._item_of = keys.get_level_values("item_id").to_numpy()
        self._value = items["value"].to_numpy(dtype=np.float64)
        self._means: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._labels: dict[str, np.ndarray] = {}
        if unit != "item":
            frame = pd.DataFrame({"seed": self._seed_of, "item_id": self._item_of})
            for col in ("person", "event"):
                self._labels[col] = _cluster_labels(frame, col, col, units).to_numpy()

    def select(self, key: tuple[str, str, str, str]) -> pd.DataFrame:
        """The rows of one (target, method, concept, metric); empty when there are none."""
        rows = self._rows.get(tuple(key))
        return self.items.iloc[:0] if rows is None else self.items.iloc[rows]

    def means(self, key: tuple[str, str, str, str]) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)`` of one selection: its (seed, item_id) codes in order and the value
        of each (the mean of the non-missing ones where an item repeats, as pandas takes it)."""
        key = tuple(key)
        if key not in self._means:
            rows = self._rows.get(key)
            if rows is None:
                self._means[key] = (np.zeros(0, dtype=np.int64), np.zeros(0))
            else:
                codes, inv = np.unique(self._code[rows], return_inverse=True)
                v = self._value[rows]
                ok = ~np.isnan(v)
                with np.errstate(invalid="ignore"):
                    m = np.bincount(inv, np.where(ok, v, 0.0), len(codes)) / np.bincount(inv, ok, len(codes))
                self._means[key] = (codes, m)
        return self._means[key]

    def item_means(self, key: tuple[str, str, str, str]) -> pd.Series:
        """:func:`item_means` of one selection."""
        codes, m = self.means(key)
        index = pd.MultiIndex.from_arrays([self._seed_of[codes], self._item_of[codes]], names=["seed", "item_id"])
        return pd.Series(m, index=index, name="value")

    def unit_of(self, concept: str) -> str:
        """What an interval on ``concept``'s images resamples: ``item``, ``person`` or ``event``."""
        return concept if self.unit == "concept" else self.unit

    def bootstrap_block(self, wide: pd.DataFrame | None, concept: str, n_boot: int, rng) -> _Boot | None:
        """:func:`bootstrap_wide` of a :func:`paired_block`, by the index's unit for ``concept``."""
        if wide is None or wide.empty:
            return None
        if self.unit == "item":
            return bootstrap_wide(wide, n_boot, rng)
        seeds = wide.index.get_level_values("seed").to_numpy()
        frame = pd.DataFrame({"seed": seeds, "item_id": wide.index.get_level_values("item_id")})
        labels = _cluster_labels(frame, self.unit_of(concept), concept, self._units).to_numpy()
        x = wide.to_numpy(dtype=np.float64)
        mats = {int(s): x[seeds == s] for s in pd.unique(seeds)}
        return _boot_matrices(
            mats, [str(c) for c in wide.columns], n_boot, rng, {int(s): labels[seeds == s] for s in pd.unique(seeds)}
        )

    def bootstrap(self, codes: np.ndarray, x: np.ndarray, columns: list[str], concept: str, n_boot: int, rng) -> _Boot:
        """:func:`_boot_matrices` of the rows ``x`` (one per code), by the index's unit."""
        seeds = self._seed_of[codes]
        col = concept if self.unit == "concept" else self.unit
        labels = self._labels.get(col)
        mats = {int(s): x[seeds == s] for s in pd.unique(seeds)}
        groups = None if labels is None else {int(s): labels[codes[seeds == s]] for s in pd.unique(seeds)}
        return _boot_matrices(mats, columns, n_boot, rng, groups)


def item_index(items: pd.DataFrame | ItemIndex | None, unit: str = "item", units: pd.DataFrame | None = None) -> ItemIndex | None:
    """``items`` as an :class:`ItemIndex` resampling by ``unit`` (an index passed in is kept as it is)."""
    if items is None or isinstance(items, ItemIndex):
        return items
    return ItemIndex(items, unit, units)


def item_means(sel: pd.DataFrame, seeds: Sequence[int] | None = None) -> pd.Series:
    """The value of every (seed, item_id) of one selection (the mean where an item repeats)."""
    if seeds is not None:
        sel = sel[sel["seed"].isin(list(seeds))]
    return sel.groupby(["seed", "item_id"], sort=True)["value"].mean()


def _selection(items: pd.DataFrame, key: tuple[str, str, str, str]) -> pd.DataFrame:
    t, m, c, k = key
    return items[(items["target"] == t) & (items["method"] == m) & (items["concept"] == c) & (items["metric"] == k)]


def paired_block(
    items: pd.DataFrame | ItemIndex, spec: Mapping[str, tuple[str, str, str, str]], seeds: Sequence[int] | None = None
) -> pd.DataFrame | None:
    """A paired block: one column per label of ``spec`` (label → (target, method, concept,
    metric)), rows = the (seed, item_id) that **every** column has (inner join). ``None``
    if a column has no items. ``items``: the items table or its :class:`ItemIndex`."""
    cols = []
    for label, key in spec.items():
        if isinstance(items, ItemIndex) and seeds is None:
            s = items.item_means(key)
        else:
            s = item_means(items.select(key) if isinstance(items, ItemIndex) else _selection(items, key), seeds)
        if s.empty:
            return None
        cols.append(s.rename(label))
    wide = (cols[0].to_frame() if len(cols) == 1 else pd.concat(cols, axis=1, join="inner")).dropna()
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

    def negated(self) -> "Estimate":
        """``−quantity``: the same bootstrap read the other way (the interval's ends swap)."""
        return Estimate(
            -self.value + 0.0, -self.hi + 0.0, -self.lo + 0.0, {s: -v + 0.0 for s, v in self.per_seed.items()}, self.nan_share
        )


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


def paired_delta(
    items: pd.DataFrame | ItemIndex | None, a: tuple, b: tuple, n_boot: int, seed: int, alpha: float = 0.05
) -> Estimate | None:
    """``a − b`` for two (target, method, concept, metric) selections: paired over the items
    they share when they are the same items, else the two resampled independently. Images are
    resampled, or whole people / events when ``items`` is an :class:`ItemIndex` with a unit."""
    if items is None:
        return None
    index = items if isinstance(items, ItemIndex) else ItemIndex(items)
    rng = named_rng(seed, "delta", *a, *b)
    (ca, va), (cb, vb) = index.means(a), index.means(b)
    ka, kb = ~np.isnan(va), ~np.isnan(vb)
    ca, va, cb, vb = ca[ka], va[ka], cb[kb], vb[kb]
    if not len(ca) or not len(cb):
        return None
    common, ia, ib = np.intersect1d(ca, cb, assume_unique=True, return_indices=True)
    if len(common) == len(ca) == len(cb):  # the same items: paired
        boot = index.bootstrap(common, np.column_stack([va[ia], vb[ib]]), ["a", "b"], str(a[2]), n_boot, rng)
        return bootstrap_estimate({"p": boot}, lambda m: m["p"]["a"] - m["p"]["b"], alpha)
    boots = {
        "a": index.bootstrap(ca, va[:, None], ["a"], str(a[2]), n_boot, rng),
        "b": index.bootstrap(cb, vb[:, None], ["b"], str(b[2]), n_boot, rng),
    }
    return bootstrap_estimate(boots, lambda m: m["a"]["a"] - m["b"]["b"], alpha)


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


def item_units(ds, seed: int | None = None) -> pd.DataFrame:
    """Who and what every evaluated item shows: ``item_id``, ``person``, ``event``, from a
    dataset's images (:class:`pebench_core.data.Dataset`). An item of the items table whose
    id carries a suffix after ``:`` (a POPE question: ``<image>:<object>``) is its image's.
    With ``seed``, a ``seed`` column too: each seed's world is its own (an image id names
    another person in another seed's world), so the units of several seeds are concatenated
    with their seed and looked up by (seed, item_id)."""
    units = pd.DataFrame([{"item_id": it.id, "person": it.person, "event": it.event} for it in ds.items])
    return units if seed is None else units.assign(seed=int(seed))


def _cluster_labels(g: pd.DataFrame, unit: str, concept: str, units: pd.DataFrame | None) -> pd.Series | None:
    """The cluster label of every row of ``g`` (``None``: resample items): by ``item_id``, or by
    (``seed``, ``item_id``) when ``units`` has a seed column."""
    col = concept if unit == "concept" else unit
    if col not in ("person", "event"):
        return None
    if units is None:
        raise ConfigError(f"unit={unit!r} needs units= (item_units(ds): item_id, person, event)")
    require_columns(units, {"item_id", "person", "event"}, "units")
    image = g["item_id"].astype(str).str.split(":", n=1).str[0]
    if "seed" in units.columns:
        lookup = units.drop_duplicates(["seed", "item_id"]).set_index(["seed", "item_id"])[col]
        keys = pd.MultiIndex.from_arrays([g["seed"].to_numpy(), image.to_numpy()])
        labels = pd.Series(lookup.reindex(keys).to_numpy(), index=g.index)
    else:
        labels = image.map(units.drop_duplicates("item_id").set_index("item_id")[col])
    if labels.isna().any():
        missing = g.loc[labels.isna(), "item_id"].head(3).tolist()
        raise ConfigError(
            f"{int(labels.isna().sum())} item(s) not in units (e.g. {missing}); units must come from the run's world"
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
    groups = items.groupby(KEYS, sort=False).indices  # row positions: a sub-frame per key costs more than its bootstrap
    seed_of, value_of = items["seed"].to_numpy(), items["value"].to_numpy(dtype=np.float64)
    labels_of: dict[str, np.ndarray] = {}  # cluster labels of every row, per column, made when first asked

    def labels(concept: str) -> np.ndarray | None:
        col = concept if unit == "concept" else unit
        if col not in ("person", "event"):
            return None
        if col not in labels_of:
            labels_of[col] = _cluster_labels(items, col, col, units).to_numpy()
        return labels_of[col]

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
        at = groups.get(key)
        if at is not None and len(at):
            concept = str(key[KEYS.index("concept")])
            lab = labels(concept)
            sv, vv = seed_of[at], value_of[at]
            by_seed = {int(s): sv == s for s in np.unique(sv)}  # rows in table order within a seed, as groupby gives
            mats = {s: vv[m][:, None] for s, m in by_seed.items()}
            clusters = None if lab is None else {s: lab[at][m] for s, m in by_seed.items()}
            b = _boot_matrices(mats, ["v"], n_boot, named_rng(seed, "summary", *key), clusters)
            lo, hi = np.percentile(b.reps["v"], [100 * alpha / 2, 100 * (1 - alpha / 2)])
            row.update(ci_lo=float(lo), ci_hi=float(hi), n_items=int(len(at)))
            row["ci_unit"] = "item" if lab is None else (unit if unit != "concept" else concept)
            row["n_units"] = int(len(at)) if clusters is None else sum(len(pd.unique(c)) for c in clusters.values())
        if scorer is not None:
            row["scorer"] = scorer.get(key, "")
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_m"] = out["method"].map({m: i for i, m in enumerate(method_order())}).fillna(99)
    out["_k"] = out["metric"].map({m: i for i, m in enumerate(metric_order())}).fillna(99)
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2}).fillna(9)
    out = out.sort_values(["_t", "_m", "concept", "_k"]).drop(columns=["_m", "_k", "_t"])
    return out.reset_index(drop=True)


_UNIT_WORDS = {"item": "images", "person": "whole people", "event": "whole events"}


def interval_words(frame: pd.DataFrame) -> str:
    """What the intervals of a frame with a ``ci_unit`` column resample, in a few words:
    ``"images"``, or ``"whole people (person metrics) and whole events (event metrics)"``."""
    if "ci_unit" not in frame or frame.empty:
        return "images"
    pairs = frame[["concept", "ci_unit"]].astype(str).drop_duplicates()
    pairs = pairs[pairs["ci_unit"] != ""]
    if pairs.empty or set(pairs["ci_unit"]) == {"item"}:
        return "images"
    words = []
    for unit in ("item", "person", "event"):
        concepts = sorted(set(pairs.loc[pairs["ci_unit"] == unit, "concept"]))
        if concepts:
            words.append(f"{_UNIT_WORDS[unit]} ({' and '.join(concepts)} metrics)")
    return " and ".join(words)


def width_comparison(
    first: pd.DataFrame,
    second: pd.DataFrame,
    names: tuple[str, str] = ("resampling images", "resampling people or events"),
    digits: int = 2,
) -> str:
    """One sentence, from the numbers, on which rows' interval is wider under ``second`` than
    under ``first`` (two :func:`summarise` frames of the same rows, e.g. ``unit="item"`` and
    ``unit="concept"``), which narrower and which the same. Widths are those of the intervals as
    a table shows them (bounds rounded to ``digits``), so the sentence agrees with the table a
    reader sees. Rows are matched on their keys and named "method concept metric (target T)"."""
    keys = [k for k in KEYS if k in first.columns and k in second.columns]
    m = first[[*keys, "ci_lo", "ci_hi"]].merge(second[[*keys, "ci_lo", "ci_hi"]], on=keys, suffixes=("_a", "_b"))
    if m.empty:
        return "No rows to compare."

    def shown(x: float) -> float:  # a bound as format_ci prints it
        return float(f"{x:.{digits}f}") if np.isfinite(x) else np.nan

    def width(side: str) -> np.ndarray:
        lo, hi = m[f"ci_lo_{side}"].to_numpy(dtype=float), m[f"ci_hi_{side}"].to_numpy(dtype=float)
        return np.array([round(shown(b) - shown(a), digits) for a, b in zip(lo, hi)])

    wa, wb = width("a"), width("b")
    label = [
        " ".join(str(r[k]) for k in keys if k != "target") + (f" (target {r['target']})" if "target" in keys else "")
        for _, r in m.iterrows()
    ]
    valid = np.isfinite(wa) & np.isfinite(wb)
    groups = {
        "wider": valid & (wb > wa),
        "narrower": valid & (wb < wa),
        "same": valid & (wb == wa),
        "none": ~valid,
    }

    def part(mask: np.ndarray) -> str:
        n = int(mask.sum())
        return "none" if n == 0 else f"{n} ({'; '.join(x for x, keep in zip(label, mask) if keep)})"

    text = (
        f"Of the {len(m)} rows, {names[1]} gives a wider interval than {names[0]} in {part(groups['wider'])}, "
        f"a narrower one in {part(groups['narrower'])}"
    )
    if groups["same"].any():
        text += f", and one as wide, at the {digits} decimals shown, in {part(groups['same'])}"
    if groups["none"].any():
        text += f"; {part(groups['none'])} {'has' if groups['none'].sum() == 1 else 'have'} no interval to compare"
    return text + "."


def unit_note(summary: pd.DataFrame) -> str:
    """In words, what the intervals of a :func:`summarise` frame resample and how many of each
    stand behind an interval (``ci_unit``, ``n_units``): the line a chapter prints under its tables."""
    s = summary[summary["ci_unit"].astype(str) != ""] if "ci_unit" in summary else summary.iloc[:0]
    if s.empty:
        return "No interval: no per-item values were given."
    parts = []
    for unit, g in s.groupby("ci_unit", sort=True):
        lo, hi = int(g["n_units"].min()), int(g["n_units"].max())
        metrics = sorted(set(g["concept"]))
        parts.append(
            f"{_UNIT_WORDS.get(unit, unit)} ({lo if lo == hi else f'{lo}–{hi}'} per interval, {' and '.join(metrics)} metrics)"
        )
    return "95 % intervals resample " + "; ".join(parts) + ", within each seed, then average the seeds."


def summary_row(summary: pd.DataFrame, target: str, method: str, concept: str, metric: str) -> pd.Series | None:
    """The row of a :func:`summarise` frame for one (target, method, concept, metric); ``None`` if absent."""
    s = summary[
        (summary["target"] == target)
        & (summary["method"] == method)
        & (summary["concept"] == concept)
        & (summary["metric"] == metric)
    ]
    return None if s.empty else s.iloc[0]
