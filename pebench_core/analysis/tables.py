"""The chapters' tables, from :func:`~pebench_core.analysis.stats.summarise` frames and the items:
the leaderboard, simultaneous against single-target unlearning, cross-concept interference,
scope and its control, and the image-level paired test. (The layout of the paper's Table 2 is
:func:`pebench_core.analysis.paper.table2`, beside the paper's own numbers.)"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .schema import ITEM_COLUMNS, bgd_base, in_order, method_order, metric_order, require_columns, unlearn_methods
from .stats import bootstrap_estimate, bootstrap_wide, format_ci, item_index, named_rng, paired_block, paired_delta, summary_row

__all__ = [
    "wide_ci",
    "leaderboard",
    "simultaneous_vs_single",
    "INTERFERENCE_CELLS",
    "interference_table",
    "interference_matrix",
    "scope_table",
    "IMAGE_DIRECTIONS",
    "paired_image_level",
]


def wide_ci(
    frame: pd.DataFrame,
    index: str | list[str],
    columns: str | list[str],
    value: str = "mean",
    lo: str = "ci_lo",
    hi: str = "ci_hi",
    digits: int = 2,
) -> pd.DataFrame:
    """Pivot a long frame to strings ``mean [lo, hi]`` (for display)."""
    f = frame.copy()
    f["_txt"] = [format_ci(v, a, b, digits) for v, a, b in zip(f[value], f[lo], f[hi])]
    return f.pivot_table(index=index, columns=columns, values="_txt", aggfunc="first", sort=False).fillna("")


def leaderboard(summary: pd.DataFrame, concept: str, metrics: Sequence[str] | None = None, digits: int = 2):
    """Every (target, method) × metric of one concept: ``(means, text)`` — the numeric means
    (to colour a table) and the ``mean [lo, hi]`` strings, same shape."""
    s = summary[summary["concept"] == concept]
    metrics = [m for m in (metrics or metric_order()) if m in set(s["metric"])]
    s = s[s["metric"].isin(metrics)]
    idx = [
        (t, m)
        for t in ("person", "event", "both")
        for m in in_order(s["method"], method_order())
        if ((s["target"] == t) & (s["method"] == m)).any()
    ]
    means = s.pivot_table(index=["target", "method"], columns="metric", values="mean").reindex(
        pd.MultiIndex.from_tuples(idx, names=["target", "method"])
    )[metrics]
    text = wide_ci(s, ["target", "method"], "metric", digits=digits).reindex(means.index)[metrics]
    return means, text


# =======================================================================================
# Simultaneous unlearning and BGD (chapter 5)


def chosen_rates(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The learning rate each method ran at, method × target (the median over seeds, which
    may choose differently), and the distinct selection rules the rows state. Rows without
    ``lr`` (the finetune and goal bounds, or results from before tuning) are left out."""
    if "lr" not in results or "lr_rule" not in results:
        return pd.DataFrame(), []
    runs = results.dropna(subset=["lr"]).drop_duplicates(["seed", "target", "method"])
    if runs.empty:
        return pd.DataFrame(), []
    table = runs.pivot_table(index="method", columns="target", values="lr", aggfunc="median")
    table = table.reindex(in_order(table.index, method_order()))
    return table[[t for t in ("person", "event", "both") if t in table.columns]], sorted(set(runs["lr_rule"]))


def simultaneous_vs_single(
    summary: pd.DataFrame,
    items: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    with_bgd: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Efficacy of each method when it forgets one concept (target ``person`` or ``event``)
    against forgetting both at once (target ``both``), concept by concept.

    One row per (method, concept): ``single`` = efficacy of ``single_method`` on target
    ``concept``; ``both`` = efficacy of ``method`` on target ``both`` for that concept;
    ``delta = both − single`` (negative: simultaneous forgetting is less effective, the
    paper's finding 4), paired over items where the two targets' forget images are the same
    and resampled independently where they differ, as they usually do: each target's
    evaluation draws its own sample of a concept's forget images (its own validation images
    left out, :func:`pebench_core.evaluate.plan`). With ``with_bgd``, rows for ``X+bgd`` compare
    it on ``both`` with ``X`` alone on the single target (``single_method = X``). ``unit`` /
    ``units``: what the delta's interval resamples, as :func:`summarise` takes them (``ci_unit``).
    """
    index = item_index(items, unit, units)
    present = lambda t: set(summary.loc[summary["target"] == t, "method"])  # noqa: E731
    if methods is None:
        methods = [m for m in unlearn_methods() if m in present("both") and (m in present("person") or m in present("event"))]
    pairs = [(m, m) for m in methods]
    if with_bgd:
        pairs += [(m, bgd_base()[m]) for m in bgd_base() if m in present("both")]
    rows = []
    for method, single_m in pairs:
        for concept in ("person", "event"):
            s = summary_row(summary, concept, single_m, concept, "efficacy")
            b = summary_row(summary, "both", method, concept, "efficacy")
            if s is None or b is None:
                continue
            row = {
                "method": method,
                "single_method": single_m,
                "concept": concept,
                "single": s["mean"],
                "single_lo": s["ci_lo"],
                "single_hi": s["ci_hi"],
                "both": b["mean"],
                "both_lo": b["ci_lo"],
                "both_hi": b["ci_hi"],
                "delta": b["mean"] - s["mean"],
                "delta_lo": np.nan,
                "delta_hi": np.nan,
                "ci_unit": index.unit_of(concept) if index is not None else "",
            }
            # single − both, negated: the very estimate finding 4 tests (analysis.verdicts), so the
            # two never word one pair differently
            e = paired_delta(
                index, (concept, single_m, concept, "efficacy"), ("both", method, concept, "efficacy"), n_boot, seed, alpha
            )
            if e is not None:
                row.update(delta=-e.value + 0.0, delta_lo=-e.hi + 0.0, delta_hi=-e.lo + 0.0)
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


def interference_table(
    summary: pd.DataFrame,
    method: str,
    items: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
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
    cells are the scope rows of :func:`scope_table`).

    **Which images a row reads.** A concept's forget images are one sample for every target
    that forgets it (:func:`pebench_core.evaluate.held_out_ids` leaves out every grid's
    validation forget images), so cells (person, person) and (both, person) read the same
    person-forget images and finetune has one value on them. ``images`` names the target
    whose evaluation a row reads ("… of target both") and ``n_images`` how many images (summed
    over seeds): two rows with the same images carry one finetune
    value. ``score`` is the method's value,
    ``finetune``/``goal`` the bounds' values of the same target on the same items, and
    ``delta = score − finetune`` (negative on the intended cells = forgotten; negative on
    the interference cells = collateral damage), with a paired bootstrap interval resampling
    ``unit`` (as :func:`summarise` takes it; ``ci_unit``). ``items`` may be an :class:`ItemIndex`.
    """
    index = item_index(items, unit, units)
    rows = []
    for (target, measured), (concept, metric, inv, what) in INTERFERENCE_CELLS.items():
        r = summary_row(summary, target, method, concept, metric)
        if r is None:
            continue
        f = summary_row(summary, target, "finetune", concept, metric)
        g = summary_row(summary, target, "goal", concept, metric)
        tr = (lambda x: 1.0 - x) if inv else (lambda x: x)
        sign = -1.0 if inv else 1.0
        row = {
            "method": method,
            "target": target,
            "measured": measured,
            "images": f"{what} of target {target}",
            "n_images": int(r["n_items"]) if "n_items" in r.index and pd.notna(r["n_items"]) else np.nan,
            "source": f"{'1 − ' if inv else ''}{concept}/{metric}",
            "role": "intended" if target == "both" or target == measured else "interference",
            "score": tr(r["mean"]),
            "finetune": tr(f["mean"]) if f is not None else np.nan,
            "goal": tr(g["mean"]) if g is not None else np.nan,
            "delta": np.nan,
            "delta_lo": np.nan,
            "delta_hi": np.nan,
            "concept": concept,
            "ci_unit": index.unit_of(concept) if index is not None else "",
        }
        if f is not None:
            row["delta"] = row["score"] - row["finetune"] + 0.0
            e = paired_delta(index, (target, method, concept, metric), (target, "finetune", concept, metric), n_boot, seed, alpha)
            if e is not None:
                lo, hi = sorted((sign * e.lo + 0.0, sign * e.hi + 0.0))
                row.update(delta=sign * e.value + 0.0, delta_lo=lo, delta_hi=hi)
        rows.append(row)
    return pd.DataFrame(rows)


def interference_matrix(
    summary: pd.DataFrame,
    method: str,
    items: pd.DataFrame | None = None,
    value: str = "delta",
    table: pd.DataFrame | None = None,
    **kw,
) -> pd.DataFrame:
    """:func:`interference_table` as a matrix: rows target (person, event, both), columns the
    measured concept (person, event), cells ``value`` (default the delta against finetune).

    ``table`` reuses rows :func:`interference_table` already computed (any methods; this
    method's are taken) instead of bootstrapping again."""
    t = table[table["method"] == method] if table is not None else interference_table(summary, method, items, **kw)
    if t.empty:
        return pd.DataFrame(index=pd.Index([], name="target"), columns=pd.Index([], name="measured"))
    m = t.pivot(index="target", columns="measured", values=value)
    return m.reindex(
        index=[x for x in ("person", "event", "both") if x in m.index], columns=[c for c in ("person", "event") if c in m.columns]
    )


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
        row = {
            "target": t,
            "method": m,
            "concept": c,
            "measures": "event score" if c == "person" else "name precision",
            "scope": sc["mean"].iloc[0],
            "scope_lo": sc["ci_lo"].iloc[0],
            "scope_hi": sc["ci_hi"].iloc[0],
            "scope_retain": sr["mean"].iloc[0] if len(sr) else np.nan,
            "scope_retain_lo": sr["ci_lo"].iloc[0] if len(sr) else np.nan,
            "scope_retain_hi": sr["ci_hi"].iloc[0] if len(sr) else np.nan,
        }
        row["gap"] = row["scope"] - row["scope_retain"]
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(method_order())}).fillna(99)
    return out.sort_values(["_t", "concept", "_m"]).drop(columns=["_t", "_m"]).reset_index(drop=True)


IMAGE_DIRECTIONS = {
    "person": ("forget people → event answers", "event score"),
    "event": ("forget events → name answers", "name precision"),
}


def paired_image_level(
    items: pd.DataFrame,
    method: str,
    seeds: Sequence[int] | None = None,
    target: str | None = None,
    n_boot: int = 2000,
    n_perm: int = 5000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    require_columns(items, ITEM_COLUMNS, "items")
    rows, per = [], []
    for concept, (direction, measure) in IMAGE_DIRECTIONS.items():
        t = target or concept
        parts = {}
        for images, metric in (("forget", "scope"), ("retain", "scope_retain")):
            w = paired_block(items, {"finetune": (t, "finetune", concept, metric), "method": (t, method, concept, metric)}, seeds)
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
        rng = named_rng(seed, "image-level", method, t, concept)
        boots = {k: bootstrap_wide(parts[k][["delta"]], n_boot, rng) for k in ("forget", "retain")}
        est = bootstrap_estimate(boots, lambda m: m["forget"]["delta"] - m["retain"]["delta"], alpha)
        # Permutation test, stratified by seed.
        common = sorted(set(parts["forget"].index.get_level_values("seed")) & set(parts["retain"].index.get_level_values("seed")))
        obs, perm = 0.0, np.zeros(n_perm)
        prng = named_rng(seed, "perm", method, t, concept)
        for s in common:
            f = parts["forget"].xs(s, level="seed")["delta"].to_numpy()
            r = parts["retain"].xs(s, level="seed")["delta"].to_numpy()
            pool = np.concatenate([f, r])
            obs += f.mean() - r.mean()
            chunk = max(1, 2_000_000 // pool.size)
            for a in range(0, n_perm, chunk):
                b = min(n_perm, a + chunk)
                sh = pool[np.argsort(prng.random((b - a, pool.size)), axis=1)]
                perm[a:b] += sh[:, : f.size].mean(axis=1) - sh[:, f.size :].mean(axis=1)
        obs /= max(len(common), 1)
        perm /= max(len(common), 1)
        p_value = float((1 + np.sum(np.abs(perm) >= abs(obs) - 1e-12)) / (1 + n_perm))
        rows.append(
            {
                "method": method,
                "target": t,
                "direction": direction,
                "measure": measure,
                "n_forget": len(parts["forget"]),
                "n_retain": len(parts["retain"]),
                "delta_forget": boots["forget"].point["delta"],
                "delta_retain": boots["retain"].point["delta"],
                "difference": est.value,
                "ci_lo": est.lo,
                "ci_hi": est.hi,
                "p_value": p_value,
                "n_seeds": len(common),
            }
        )
    per_item = (
        pd.concat(per, ignore_index=True)
        if per
        else pd.DataFrame(columns=["seed", "direction", "images", "item_id", "finetune", "method", "delta"])
    )
    return pd.DataFrame(rows), per_item
