"""Reading the robustness probes (chapter "Is it really forgotten?"): which methods' forgetting
survives which probe, with a paired interval each and one wording rule.

The probes' tables (:func:`pebench_core.stages.collect_robustness`) have the long format of
the results. Each probe measure is compared with a reference **on the same items**, so every
comparison is a paired bootstrap (:func:`~pebench_core.analysis.stats.paired_delta`):

==========================  ==============================  ========================================
measure                     reference                       the *recovery* d (positive: knowledge back)
==========================  ==============================  ========================================
``paraphrase_efficacy``     the model's ``clean_efficacy``  clean − paraphrase
``perturb_<kind>``          the model's ``clean_efficacy``  clean − perturbed
``int8_efficacy`` / bf16    the model's ``clean_efficacy``  clean − quantised
``relearn@<last>``          the goal model's, same steps    goal − method (relearnt faster than from scratch)
``mia_loss`` / ``mia_mink`` the goal model's AUC            method − goal (forget items still look like members)
``probe_<site>``            the goal model's accuracy       method − goal (the identities still readable there)
==========================  ==============================  ========================================

**The wording rule** is the book's one verdict rule (:mod:`pebench_core.analysis.rule`), read
per (target, concept) pair with ``margin`` (default 0.1) on the recovery d:

* ``holds`` — the interval of d lies below ``margin``: whatever came back is smaller than the margin;
* ``breaks`` — the interval lies above 0 and d is at least ``margin``: the knowledge comes back;
* ``inconclusive`` — neither (the interval straddles the margin);
* ``cannot test`` — with its reason in ``why``:

  * ``forgot too little`` — the method did not forget the concept to begin with on this pair: its
    clean efficacy is less than ``forgot`` (default 0.25) above the fine-tuned model's, so there
    is nothing to survive;
  * ``uninformative`` — the probe cannot show knowledge on this pair at all: applied to the
    fine-tuned model it already hides the knowledge (a paraphrase the model never learnt to
    answer: its probed efficacy is at least ``margin`` above its clean one), or the two bounds
    score alike on it (a goal-referenced measure within ``margin`` of the fine-tuned model's: a
    linear probe that reads people's looks as well in a model that never learnt their names).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .rule import BREAKS, CANNOT_TEST, FORGOT, HOLDS, INCONCLUSIVE, SURVIVAL, decide
from .schema import ITEM_COLUMNS, in_order, method_order, require_columns
from .stats import Estimate, ItemIndex, paired_delta

__all__ = [
    "HOLDS",
    "BREAKS",
    "FORGOT_TOO_LITTLE",
    "UNINFORMATIVE",
    "probe_measures",
    "verdict",
    "survival",
    "survival_matrix",
    "relearn_curves",
]

FORGOT_TOO_LITTLE, UNINFORMATIVE = "forgot too little", "uninformative"  # why a pair cannot be tested


def probe_measures(metrics: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """``(probe, measure, reference metric, reference model)`` for every probe measure among
    ``metrics`` (reference model ``self``: the same model's clean measure)."""
    ms = list(dict.fromkeys(metrics))
    out = []
    if "paraphrase_efficacy" in ms:
        out.append(("paraphrase", "paraphrase_efficacy", "clean_efficacy", "self"))
    out += [("perturb", m, "clean_efficacy", "self") for m in ms if m.startswith("perturb_")]
    out += [("quant", m, "clean_efficacy", "self") for m in ("int8_efficacy", "bf16_efficacy") if m in ms]
    steps = sorted(int(m.split("@", 1)[1]) for m in ms if m.startswith("relearn@"))
    if steps and steps[-1] > 0:
        out.append(("relearn", f"relearn@{steps[-1]}", f"relearn@{steps[-1]}", "goal"))
    out += [("mia", m, m, "goal") for m in ("mia_loss", "mia_mink") if m in ms]
    out += [("probe", m, m, "goal") for m in ("probe_tower", "probe_projector", "probe_lm") if m in ms]
    return out


def verdict(est: Estimate | None, margin: float = 0.1, why: str = "") -> str:
    """The wording rule of the module docstring, on a recovery ``d`` (positive: knowledge back);
    ``why`` is the reason the pair cannot be tested ("" when it can)."""
    return decide(est, margin, claim=SURVIVAL, room=why)


def survival(
    items: pd.DataFrame,
    methods: Sequence[str] | None = None,
    margin: float = 0.1,
    forgot: float = FORGOT,
    n_boot: int = 1000,
    seed: int = 0,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (target, method, concept, probe measure): the measure, its reference, the
    recovery ``d`` with its paired interval (``d``, ``d_lo``, ``d_hi``, resampling ``unit`` as
    :func:`~pebench_core.analysis.stats.summarise` takes it; ``ci_unit``), ``forgot_by`` (clean
    efficacy above the fine-tuned model's), the ``verdict`` and, for ``cannot test``, ``why``."""
    require_columns(items, ITEM_COLUMNS, "robustness items")
    means = items.groupby(["target", "method", "concept", "metric"])["value"].mean()
    pool = [m for m in in_order(items["method"], method_order()) if m not in ("finetune", "goal")]
    methods = [m for m in (methods or pool) if m in set(items["method"])]
    index = ItemIndex(items, unit, units)  # ~700 paired intervals read selections of one large frame
    rows = []
    for (target, concept), g in items.groupby(["target", "concept"], sort=False):
        present, measures = set(g["method"]), probe_measures(g["metric"])
        for method in methods:
            if method not in present:
                continue
            clean = means.get((target, method, concept, "clean_efficacy"), np.nan)
            base = means.get((target, "finetune", concept, "clean_efficacy"), np.nan)
            forgot_by = float(clean - base)
            for probe, measure, ref_metric, ref_model in measures:
                a = (target, method, concept, measure)
                if ref_model == "self":  # recovery = reference − probe
                    est = paired_delta(index, (target, method, concept, ref_metric), a, n_boot, seed)
                    reference = f"{method} {ref_metric}"
                elif probe == "relearn":  # goal − method: relearnt faster than a model that never knew
                    est = paired_delta(index, (target, "goal", concept, ref_metric), a, n_boot, seed)
                    reference = f"goal {ref_metric}"
                else:  # method − goal: still looks like a member / still readable
                    est = paired_delta(index, a, (target, "goal", concept, ref_metric), n_boot, seed)
                    reference = f"goal {ref_metric}"
                ft = means.get((target, "finetune", concept, measure), np.nan)
                if ref_model == "self":  # the probe on the model that knows: does it still show the knowledge?
                    gap = ft - means.get((target, "finetune", concept, ref_metric), np.nan)
                    informative = not gap >= margin  # unknown (no finetune row): taken as informative
                else:  # do the bounds (knows / never knew) differ on it?
                    gap = abs(ft - means.get((target, "goal", concept, ref_metric), np.nan))
                    informative = not gap < margin
                why = FORGOT_TOO_LITTLE if not forgot_by >= forgot else ("" if informative else UNINFORMATIVE)
                call = verdict(est, margin, why)
                rows.append(
                    {
                        "target": target,
                        "method": method,
                        "concept": concept,
                        "probe": probe,
                        "measure": measure,
                        "value": means.get(a, np.nan),
                        "reference": reference,
                        "reference_value": means.get(
                            (target, method if ref_model == "self" else "goal", concept, ref_metric), np.nan
                        ),
                        "d": np.nan if est is None else est.value,
                        "d_lo": np.nan if est is None else est.lo,
                        "d_hi": np.nan if est is None else est.hi,
                        "forgot_by": forgot_by,
                        "finetune_value": ft,
                        "verdict": call,
                        "why": why,
                        "ci_unit": index.unit_of(concept),
                    }
                )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_t"] = out["target"].map({"person": 0, "event": 1, "both": 2})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(method_order())})
    return out.sort_values(["_t", "_m", "concept"], kind="stable").drop(columns=["_t", "_m"]).reset_index(drop=True)


def survival_matrix(surv: pd.DataFrame, per: str = "probe") -> pd.DataFrame:
    """Method × probe verdicts over every target and concept: per cell, how many of the
    (target, concept) pairs the forgetting ``holds`` / ``breaks`` / is ``inconclusive`` ("3/1/0";
    "–" where every pair cannot be tested because the method forgot too little, "n/i" where the
    probe was uninformative on the rest),
    the probe's measures combined by the worst (a probe
    breaks if any of its measures breaks)."""
    if surv.empty:
        return pd.DataFrame()
    worst = worst_per_pair(surv, per).assign(verdict=lambda d: d["verdict"].where(d["verdict"] != CANNOT_TEST, d["why"]))

    def cell(v: pd.Series) -> str:
        if v.isin([FORGOT_TOO_LITTLE, UNINFORMATIVE]).all():
            return "n/i" if (v == UNINFORMATIVE).any() else "–"
        return f"{(v == HOLDS).sum()}/{(v == BREAKS).sum()}/{(v == INCONCLUSIVE).sum()}"

    m = worst.pivot_table(index="method", columns=per, values="verdict", aggfunc=cell, sort=False)
    return m.reindex(in_order(m.index, method_order()))


RANK = {BREAKS: 3, INCONCLUSIVE: 2, HOLDS: 1, CANNOT_TEST: 0}


def worst_per_pair(surv: pd.DataFrame, per: str = "probe") -> pd.DataFrame:
    """The worst verdict of each (method, target, concept, ``per``) over its measures (a probe
    breaks if any of its measures breaks; it cannot be tested only if none of its measures
    can), with ``why``, ``d``, ``d_lo``, ``d_hi`` and ``measure`` of that worst measure."""
    r = surv.assign(_r=surv["verdict"].map(RANK))
    worst = (
        r.sort_values(["_r", "d"], ascending=False, kind="stable")
        .groupby(["method", "target", "concept", per], sort=False)
        .head(1)
    )
    return worst.drop(columns="_r").reset_index(drop=True)


def relearn_curves(summary: pd.DataFrame) -> pd.DataFrame:
    """The relearning curves of a :func:`~pebench_core.analysis.stats.summarise` frame of the
    probes: one row per (target, concept, method, steps) with ``mean``, ``ci_lo``, ``ci_hi``."""
    s = summary[summary["metric"].str.startswith("relearn@")].copy()
    s["steps"] = s["metric"].str.split("@").str[1].astype(int)
    s["_t"] = s["target"].map({"person": 0, "event": 1, "both": 2})
    s["_m"] = s["method"].map({m: i for i, m in enumerate(method_order())})
    s = s.sort_values(
        ["_t", "concept", "_m", "steps"], key=lambda c: c.map({"person": 0, "event": 1}) if c.name == "concept" else c
    )
    return s[["target", "concept", "method", "steps", "mean", "ci_lo", "ci_hi"]].reset_index(drop=True)
