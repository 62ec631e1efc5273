"""The paper's numbers: its Tables 1 and 2 exactly as printed, in long form on our scale
(:func:`paper_table1_long`, :func:`paper_table2_long`), Table 2's layout on our runs
(:func:`table2`), our numbers beside the paper's (:func:`side_by_side`), and the event scorers
our runs used (:func:`event_scorers`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import paper_metric_order
from .schema import bgd_base, in_order, method_order
from .stats import item_index, paired_delta, summary_row

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_COLUMNS",
    "paper_table1_long",
    "paper_table2_long",
    "table2",
    "side_by_side",
    "event_scorers",
]

#: Table 1 of the paper as transcribed from the paper (v1 of arXiv 2503.12545, LLaVA-class
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
    columns=[
        "model",
        "P-eff",
        "P-gen",
        "P-ret",
        "P-scope (ROUGE-L)",
        "P-real",
        "E-eff",
        "E-gen",
        "E-ret",
        "E-scope (name %)",
        "E-real (ROUGE-L)",
        "POPE (after person run)",
        "POPE (after event run)",
    ],
).set_index("model")

#: Table 2 of the paper (target both) as given in the paper: person efficacy in %, event
#: efficacy (G-Eval) in [0, 1]. The paper gives no retain numbers ("retain falls somewhat with BGD").
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
            rows.append(
                {
                    "table": name,
                    "method": model,
                    "concept": concept,
                    "metric": metric,
                    "paper": float(raw) / div,
                    "paper_printed": raw,
                    "paper_column": col,
                    "paper_measure": measure,
                }
            )
    return pd.DataFrame(rows)


def paper_table1_long() -> pd.DataFrame:
    """:data:`PAPER_TABLE1` as rows (method, concept, metric, ``paper`` in [0, 1], as printed)."""
    return _paper_long(PAPER_TABLE1, "Table 1")


def paper_table2_long() -> pd.DataFrame:
    """:data:`PAPER_TABLE2` as rows (method, concept, metric, ``paper`` in [0, 1], as printed)."""
    return _paper_long(PAPER_TABLE2, "Table 2")


# =======================================================================================
# Simultaneous unlearning and BGD (chapter 5): Table 2's layout, with the paper's numbers


def table2(
    summary: pd.DataFrame,
    items: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The layout of the paper's Table 2: target ``both``, methods gd, gd+bgd, kl, kl+bgd; for
    person and event, efficacy and retain.

    One row per (method, concept, metric) with ``mean``, ``ci_lo``, ``ci_hi`` (from
    ``summary``) and, for ``X+bgd`` rows, ``delta = mean(X+bgd) − mean(X)`` with its interval
    ``delta_lo``/``delta_hi``, bootstrapped **paired over items** (both methods answered the
    same items; rows joined on (seed, item_id)) — NaN without ``items``. ``paper`` is the
    paper's number in [0, 1] where Table 2 gives one (efficacies only). ``unit`` / ``units``:
    what the delta's interval resamples, as :func:`summarise` takes them (``ci_unit``).
    """
    paper = paper_table2_long().set_index(["method", "concept", "metric"])["paper"]
    index = item_index(items, unit, units)
    rows = []
    for method in ("gd", "gd+bgd", "kl", "kl+bgd"):
        base = bgd_base().get(method)
        for concept in ("person", "event"):
            for metric in ("efficacy", "retain"):
                r = summary_row(summary, "both", method, concept, metric)
                if r is None:
                    continue
                row = {
                    "method": method,
                    "base": base or "",
                    "concept": concept,
                    "metric": metric,
                    "mean": r["mean"],
                    "ci_lo": r["ci_lo"],
                    "ci_hi": r["ci_hi"],
                    "delta": np.nan,
                    "delta_lo": np.nan,
                    "delta_hi": np.nan,
                    "paper": paper.get((method, concept, metric), np.nan),
                    "ci_unit": index.unit_of(concept) if index is not None else "",
                }
                b = summary_row(summary, "both", base, concept, metric) if base else None
                if b is not None:
                    row["delta"] = r["mean"] - b["mean"]
                    e = paired_delta(
                        index, ("both", method, concept, metric), ("both", base, concept, metric), n_boot, seed, alpha
                    )
                    if e is not None:
                        row.update(delta=e.value, delta_lo=e.lo, delta_hi=e.hi)
                rows.append(row)
    return pd.DataFrame(rows)


# =======================================================================================
# Our numbers beside the paper's


def _our_measure(metric_key: str, scorer: str) -> str:
    from ..metrics import METRICS

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
            methods = in_order(set(ours["method"]) | set(p["method"]), method_order())
            if table == "Table 2":
                methods = [m for m in methods if m in set(p["method"])]
            for method in methods:
                for metric in paper_metric_order():
                    o = summary_row(summary, target, method, concept, metric)
                    q = p[(p["method"] == method) & (p["concept"] == concept) & (p["metric"] == metric)]
                    if o is None and q.empty:
                        continue
                    if table == "Table 2" and q.empty:
                        continue
                    scorer = str(o["scorer"]) if o is not None and "scorer" in o else ""
                    om = _our_measure(f"{concept}/{metric}", scorer)
                    pm = q["paper_measure"].iloc[0] if len(q) else ""
                    rows.append(
                        {
                            "table": table,
                            "method": method,
                            "concept": concept,
                            "metric": metric,
                            "ours": o["mean"] if o is not None else np.nan,
                            "ours_lo": o["ci_lo"] if o is not None else np.nan,
                            "ours_hi": o["ci_hi"] if o is not None else np.nan,
                            "paper": q["paper"].iloc[0] if len(q) else np.nan,
                            "paper_printed": q["paper_printed"].iloc[0] if len(q) else np.nan,
                            "paper_column": q["paper_column"].iloc[0] if len(q) else "",
                            "our_measure": om,
                            "paper_measure": pm,
                            "same_measure": bool(pm) and _same_kind(om, pm),
                        }
                    )
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
# The paper's protocol beside the tuned one (chapter 8): which of Table 1's patterns each
# paper method shows under each protocol, and why the two differ

#: Table 1's patterns, one row each: (name, metric, threshold, relative). A pattern is present
#: when the metric lies above its threshold; a *relative* threshold is that share of the
#: fine-tuned model's own value (the paper's finetune for the paper's column, ours for ours).
PATTERNS = (
    ("forgets (efficacy above 0.8)", "efficacy", 0.8, False),
    ("keeps retain (above half of finetune's)", "retain", 0.5, True),
)


def protocol_patterns(tuned: pd.DataFrame, fixed: pd.DataFrame, rates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per paper method, single target and pattern of :data:`PATTERNS`: whether the paper's
    Table 1 shows it, and whether our runs show it under the tuned protocol (``tuned``, a
    :func:`~pebench_core.analysis.stats.summarise` frame of the main runs) and under the
    paper's (``fixed``, the same of the fixed-rate runs), each by the book's one rule on the
    interval of ``metric − threshold`` (present / absent / inconclusive; the fine-tuned model's
    retain, which sets the relative threshold, is taken as a constant), with a sentence that
    explains a disagreement from the comparison: the rate rule where the fixed rate shows the
    paper's pattern and the tuned one does not, the setting where neither does. ``rates``
    (``method`` × ``target`` → the kept rate, :func:`~pebench_core.analysis.tables.chosen_rates`)
    names the tuned rate. Table 1's event columns were scored by G-Eval, ours by our event
    scorer: ``same_measure`` says so."""
    from .rule import CANNOT_TEST, CONTRADICTED, REPRODUCED, decide
    from .stats import Estimate

    paper = paper_table1_long()
    word = {REPRODUCED: "present", CONTRADICTED: "absent"}
    rows = []
    fixed_methods = in_order(set(fixed["method"]) if len(fixed) else set(), method_order())
    for target in ("person", "event"):
        ft_ours = summary_row(tuned, target, "finetune", target, "retain")
        for method in fixed_methods:
            for name, metric, thr, relative in PATTERNS:
                p = paper[(paper["method"] == method) & (paper["concept"] == target) & (paper["metric"] == metric)]
                pf = paper[(paper["method"] == "finetune") & (paper["concept"] == target) & (paper["metric"] == metric)]
                if p.empty:
                    continue
                p_thr = thr * float(pf["paper"].iloc[0]) if relative else thr
                o_thr = thr * float(ft_ours["mean"]) if relative and ft_ours is not None else thr
                cells = {}
                for proto, frame in (("tuned", tuned), ("fixed", fixed)):
                    r = summary_row(frame, target, method, target, metric)
                    if r is None:
                        cells[proto] = (np.nan, np.nan, np.nan, CANNOT_TEST)
                        continue
                    e = Estimate(float(r["mean"]) - o_thr, float(r["ci_lo"]) - o_thr, float(r["ci_hi"]) - o_thr)
                    cells[proto] = (float(r["mean"]), float(r["ci_lo"]), float(r["ci_hi"]), decide(e, 0.0))
                paper_v = float(p["paper"].iloc[0])
                paper_has = "present" if paper_v > p_thr else "absent"
                lr = np.nan
                if rates is not None and method in rates.index and target in rates.columns:
                    lr = float(rates.loc[method, target])
                t_call, f_call = (word.get(cells[k][3], cells[k][3]) for k in ("tuned", "fixed"))
                rows.append(
                    {
                        "method": method,
                        "target": target,
                        "pattern": name,
                        "paper": paper_v,
                        "paper_shows": paper_has,
                        "tuned": cells["tuned"][0],
                        "tuned_lo": cells["tuned"][1],
                        "tuned_hi": cells["tuned"][2],
                        "tuned_shows": t_call,
                        "fixed": cells["fixed"][0],
                        "fixed_lo": cells["fixed"][1],
                        "fixed_hi": cells["fixed"][2],
                        "fixed_shows": f_call,
                        "tuned_lr": lr,
                        "same_measure": target == "person",
                        "why": _protocol_reason(paper_has, t_call, f_call, lr),
                    }
                )
    return pd.DataFrame(rows)


def _protocol_reason(paper: str, tuned: str, fixed: str, lr: float) -> str:
    """Why the tuned protocol agrees or differs with the paper on one pattern, from the two protocols."""
    at = f" (kept rate {lr:.3g})" if np.isfinite(lr) else ""
    if tuned == paper and fixed == paper:
        return "both protocols agree with the paper"
    if tuned == paper:
        return f"tuning{at} agrees with the paper; the fixed rate does not ({fixed})"
    if fixed == paper:
        return f"the paper's protocol reproduces it; tuning{at} chose a rate that does not: the rate rule explains it"
    if "inconclusive" in (tuned, fixed) and paper not in (tuned, fixed):
        return f"not decided under {'both protocols' if tuned == fixed else 'one protocol'} (interval across the threshold)"
    return "neither protocol reproduces it: the setting (model, scale, budget, scorer), not the rate, explains it"
