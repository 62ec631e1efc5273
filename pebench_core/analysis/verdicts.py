"""The paper's five findings tested on our runs: every sub-test with its bootstrapped estimate
and verdict (:func:`finding_tests`), one verdict and explanation per finding (:func:`findings`),
and a discussion paragraph per finding (:func:`findings_markdown`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .rule import CANNOT_TEST, CONTRADICTED, FORGOT, INCONCLUSIVE, REPRODUCED, at_bound, decide
from .schema import ITEM_COLUMNS, bgd_base, require_columns, unlearn_methods
from .stats import bootstrap_estimate, format_ci, item_index, named_rng, paired_block, paired_delta

__all__ = [
    "REPRODUCED",
    "CONTRADICTED",
    "MIXED",
    "INCONCLUSIVE",
    "CANNOT_TEST",
    "FINDINGS",
    "TESTS",
    "combine_verdicts",
    "count_line",
    "finding_tests",
    "findings",
    "findings_markdown",
]

MIXED = "mixed"

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
    2: "per method: relative efficacy (eff_m − eff_ft)/(eff_goal − eff_ft) of people minus that of events, CI above 0",
    3: "per method (PO aside) and direction: scope_ft − scope_m, CI above 0 (interference); PO: its scope "
    "change (mean of two directions) minus the best other method's, CI above 0",
    4: "per method and concept: efficacy on the single target minus efficacy on target both, CI above 0",
    5: "for gd and kl, per concept: efficacy of X+bgd minus X on target both, CI above 0",
}


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """Several sub-tests → one verdict (sub-tests that *cannot test* the claim count for
    nothing): ``mixed`` if some are reproduced and some contradicted; otherwise the called
    verdict if it holds for **more than half** of the testable sub-tests; ``cannot test`` when
    none is testable (or there is none); else ``inconclusive``."""
    v = [x for x in verdicts if x != CANNOT_TEST]
    r, n = v.count(REPRODUCED), v.count(CONTRADICTED)
    if not v:
        return CANNOT_TEST
    if r and n:
        return MIXED
    if r > len(v) / 2:
        return REPRODUCED
    if n > len(v) / 2:
        return CONTRADICTED
    return INCONCLUSIVE


def _methods_in(items: pd.DataFrame, targets: Sequence[str], pool: Sequence[str]) -> list[str]:
    out = []
    for m in pool:
        if all(((items["target"] == t) & (items["method"] == m)).any() for t in targets):
            out.append(m)
    return out


def finding_tests(
    items: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    margin: float = 0.05,
    high: float = 0.8,
    large_cost: float = 0.2,
    min_gap: float = 0.05,
    methods: Sequence[str] | None = None,
    unit: str = "item",
    units: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every sub-test of the five findings: one row per (finding, part, subject, quantity)
    with the estimate, its interval, the per-seed estimates and the verdict of :func:`_call`.

    All quantities are oriented so that the paper's claim reads "quantity > 0" and are
    bootstrapped as :mod:`pebench_core.analysis.stats` describes (paired within a split,
    independent across splits). With ``m`` a method, ``ft`` finetune:

    1. target ``person``, per method: ``eff_m − high``, ``gen_m − high`` (margin 0) and
       ``(ret_ft − ret_m) − large_cost`` (margin 0). A method reproduces the finding if all
       three do; it contradicts it if any is ``contradicted``.
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

    ``unit`` / ``units`` choose what every interval resamples, as :func:`summarise` takes them
    (``items`` may also be an :class:`~pebench_core.analysis.stats.ItemIndex` that says it).
    """
    index = item_index(items, unit, units)  # every interval resamples ``unit``, as summarise's
    items = index.items
    require_columns(items, ITEM_COLUMNS, "items")
    pool = list(methods) if methods is not None else list(unlearn_methods())
    rows: list[dict] = []

    def add(finding, part, subject, quantity, est, m, note="", room=""):
        """One sub-test; ``room`` says why it cannot be tested here (and goes into the note)."""
        if room and room not in note:
            note = f"{room}; {note}" if note else room
        rows.append(
            {
                "finding": finding,
                "part": part,
                "subject": subject,
                "quantity": quantity,
                "estimate": est.value if est else np.nan,
                "lo": est.lo if est else np.nan,
                "hi": est.hi if est else np.nan,
                "per_seed": ", ".join(f"s{s}: {v:.2f}" for s, v in (est.per_seed.items() if est else [])),
                "margin": m,
                "verdict": decide(est, m, room=room),
                "note": note,
            }
        )

    def boots(spec_blocks: Mapping[str, Mapping[str, tuple]], key: str):
        rng = named_rng(seed, "findings", key)
        return {
            name: index.bootstrap_block(paired_block(index, spec), str(next(iter(spec.values()))[2]), n_boot, rng)
            for name, spec in spec_blocks.items()
        }

    def point(t, m, c, k):
        w = paired_block(index, {"v": (t, m, c, k)})
        return float(w.groupby(level="seed")["v"].mean().mean()) if w is not None else float("nan")

    def forgot_by(m, c):
        """How far ``m``'s efficacy on its single target ``c`` rose above finetune's."""
        return point(c, m, c, "efficacy") - point(c, "finetune", c, "efficacy")

    # Preconditions: a concept can only be forgotten if finetune knows it and goal does not.
    gap = {c: point(c, "goal", c, "efficacy") - point(c, "finetune", c, "efficacy") for c in ("person", "event")}
    no_gap = {
        c: f"goal − finetune efficacy is {gap[c]:+.2f} (< {min_gap}) on target {c}: finetune never learned "
        f"what there is to forget"
        for c in gap
        if not gap[c] >= min_gap
    }

    # ---- 1. person unlearning: high efficacy and generality, large retain cost
    ms = _methods_in(items, ["person"], pool)
    if ms:
        ret_ft = point("person", "finetune", "person", "retain")
        note1 = no_gap.get("person", "")
        if not ret_ft >= large_cost:
            note1 = (note1 + "; " if note1 else "") + f"finetune retain {ret_ft:.2f} < {large_cost}: no room for a large drop"
        models = ["finetune", *ms]
        b = boots({k: {m: ("person", m, "person", k) for m in models} for k in ("efficacy", "generality", "retain")}, "f1")
        for m in ms:
            add(
                1,
                "efficacy",
                m,
                f"efficacy − {high}",
                bootstrap_estimate({"e": b["efficacy"]}, lambda x, m=m: x["e"][m] - high, alpha),
                0.0,
                room=note1,
            )
            if b["generality"] is not None:
                add(
                    1,
                    "generality",
                    m,
                    f"generality − {high}",
                    bootstrap_estimate({"g": b["generality"]}, lambda x, m=m: x["g"][m] - high, alpha),
                    0.0,
                    room=note1,
                )
            add(
                1,
                "retain cost",
                m,
                f"retain drop − {large_cost}",
                bootstrap_estimate({"r": b["retain"]}, lambda x, m=m: x["r"]["finetune"] - x["r"][m] - large_cost, alpha),
                0.0,
                room=note1,
            )

    # ---- 2. events harder than people, relative to goal
    ms = _methods_in(items, ["person", "event"], pool)
    if ms:
        models = ["finetune", "goal", *ms]
        b = boots(
            {
                "P": {m: ("person", m, "person", "efficacy") for m in models},
                "E": {m: ("event", m, "event", "efficacy") for m in models},
            },
            "f2",
        )

        def rel(x, m):
            gap = x["goal"] - x["finetune"]
            return np.where(gap > 1e-9, (x[m] - x["finetune"]) / np.where(gap > 1e-9, gap, 1.0), np.nan)

        note2 = "; ".join(no_gap.values())
        for m in ms:
            est = None if note2 else bootstrap_estimate(b, lambda x, m=m: rel(x["P"], m) - rel(x["E"], m), alpha)
            room2 = note2 + ("; relative efficacy undefined" if note2 else "")
            if not room2 and not max(forgot_by(m, "person"), forgot_by(m, "event")) >= FORGOT:
                room2 = f"{m} forgot too little of either concept (efficacy at most {FORGOT} above finetune's)"
            add(2, "relative efficacy", m, "rel. efficacy people − events", est, margin, room=room2)

    # ---- 3. interference (scope below finetune), least for PO
    ms = (
        _methods_in(items, ["person", "event"], pool)
        or _methods_in(items, ["person"], pool)
        or _methods_in(items, ["event"], pool)
    )
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
                room3 = note3
                if not room3 and not forgot_by(m, c) >= FORGOT:
                    room3 = f"{m} forgot too little of the {c} (efficacy {forgot_by(m, c):+.2f} over finetune)"
                # chapter 6's interference cell (analysis.interference_table), read the other way
                e = paired_delta(index, (c, m, c, "scope"), (c, "finetune", c, "scope"), n_boot, seed, alpha)
                add(
                    3,
                    part,
                    f"{m} ({c} target)",
                    f"scope drop ({'event score' if c == 'person' else 'names'})",
                    None if e is None else e.negated(),
                    margin,
                    room=room3,
                )
                if part != "interference":
                    rows[-1].update(verdict="reported", note=(note3 + "; " if note3 else "") + "judged by 'least for PO'")
        if "po" in ms and len(ms) >= 2 and b:

            def po_gap(x):
                d = {m: sum(x[c][m] - x[c]["finetune"] for c in x) / len(x) for m in ms}
                others = np.max(np.stack([np.asarray(d[m], dtype=float) for m in ms if m != "po"]), axis=0)
                return d["po"] - others

            add(
                3, "least for PO", "po vs best other", "PO scope change − best other's", bootstrap_estimate(b, po_gap, alpha), 0.0
            )

    # ---- 4. simultaneous lowers efficacy
    ms = _methods_in(items, ["both"], pool)
    for c in ("person", "event"):
        mc = [m for m in ms if ((items["target"] == c) & (items["method"] == m)).any()]
        if not mc:
            continue
        for m in mc:
            single, both = point(c, m, c, "efficacy"), point("both", m, c, "efficacy")
            room4 = no_gap.get(c, "")
            if not room4 and not forgot_by(m, c) >= FORGOT:  # efficacy's floor is the model that knows
                room4 = f"{m} forgot too little of the {c} alone (efficacy {forgot_by(m, c):+.2f} over finetune): nothing to lose"
            elif not room4 and at_bound(both, floor=False):
                room4 = f"{m} forgets every {c} on target both too (efficacy {both:.2f}): no room below"
            # the estimate of analysis.simultaneous_vs_single (its delta is this one negated): one
            # interval per pair, so chapter 5's table and its finding-4 reading never disagree
            add(
                4,
                "efficacy loss",
                f"{m} ({c})",
                "efficacy single − both",
                paired_delta(index, (c, m, c, "efficacy"), ("both", m, c, "efficacy"), n_boot, seed, alpha),
                margin,
                room=room4,
            )

    # ---- 5. BGD recovers part of the loss
    for bgd, base in bgd_base().items():
        if not (
            ((items["target"] == "both") & (items["method"] == bgd)).any()
            and ((items["target"] == "both") & (items["method"] == base)).any()
        ):
            continue
        for c in ("person", "event"):
            # the interval of analysis.table2's BGD rows (chapter 5): one function, one interval
            est = paired_delta(index, ("both", bgd, c, "efficacy"), ("both", base, c, "efficacy"), n_boot, seed, alpha)
            base_both, single = point("both", base, c, "efficacy"), point(c, base, c, "efficacy")
            loss = single - base_both
            notes, room5 = [], no_gap.get(c, "")
            if not room5 and at_bound(base_both, floor=False):
                room5 = f"{base} already forgets every {c} on target both ({base_both:.2f}): nothing to recover"
            elif not room5 and not forgot_by(base, c) >= FORGOT:
                room5 = f"{base} forgot too little of the {c} alone ({forgot_by(base, c):+.2f} over finetune): no loss to recover"
            elif not room5 and not loss >= min_gap:
                room5 = f"no simultaneous loss to recover ({base} {c} efficacy single − both {loss:+.2f})"
            elif est is not None and not room5:
                share = est.value / loss
                notes.append(
                    f"share of the simultaneous loss ({loss:.2f}) recovered {share:.0%}"
                    if share <= 1
                    else f"more than the simultaneous loss ({loss:.2f}): {base} forgot less on the single target"
                )
            r = paired_delta(index, ("both", bgd, c, "retain"), ("both", base, c, "retain"), n_boot, seed, alpha)
            if r is not None:
                notes.append(f"retain change {r.text()}")
            add(5, "efficacy gain", f"{bgd} vs {base} ({c})", f"efficacy {bgd} − {base}", est, margin,
                "; ".join(notes), room=room5)  # fmt: skip
    return pd.DataFrame(
        rows, columns=["finding", "part", "subject", "quantity", "estimate", "lo", "hi", "per_seed", "margin", "verdict", "note"]
    )


def _names(t: pd.DataFrame, verdict: str) -> str:
    return ", ".join(t.loc[t["verdict"] == verdict, "subject"].astype(str)) or "none"


def count_line(t: pd.DataFrame, what: str) -> str:
    """The wording rule for a claim's sub-tests (``subject`` and ``verdict`` columns of
    :func:`finding_tests`): how many *support* it (reproduced), *contradict* it (not
    reproduced: the effect is absent, below its margin, or reversed) and are *inconclusive*,
    each with its subjects. Every chapter that states a finding's sub-tests uses it, so the
    same results get the same words wherever they appear."""
    n = len(t)
    r, x = (t["verdict"] == REPRODUCED).sum(), (t["verdict"] == CONTRADICTED).sum()
    c = (t["verdict"] == CANNOT_TEST).sum()
    i = n - r - x - c
    one = lambda k, single, plural: single if k == 1 else plural  # noqa: E731
    parts = [f"{r} of {n} {what} {one(r, 'supports', 'support')} it ({_names(t, REPRODUCED)})"]
    if x:
        parts.append(f"{x} {one(x, 'contradicts', 'contradict')} it ({_names(t, CONTRADICTED)})")
    if i:
        parts.append(f"{i} {one(i, 'is', 'are')} inconclusive ({_names(t, INCONCLUSIVE)})")
    if c:
        parts.append(f"{c} cannot test it ({_names(t, CANNOT_TEST)})")
    return "; ".join(parts)


def findings(
    summary: pd.DataFrame, items: pd.DataFrame, n_boot: int = 1000, seed: int = 0, tests: pd.DataFrame | None = None, **kw
) -> pd.DataFrame:
    """The paper's five findings (design: The paper's numbers) on our runs: one row each with ``claim``,
    ``test``, ``verdict`` (reproduced / contradicted / mixed / inconclusive / cannot test), ``evidence``
    (the estimates with their 95 % intervals) and a one-line ``explanation`` written from
    the numbers.

    The sub-tests are those of :func:`finding_tests` (pass ``tests`` to reuse them; other
    keywords go to it). Verdicts: findings 1, 2, 4 and 5 combine their sub-tests (per method,
    or per method and concept) with :func:`combine_verdicts` — ``mixed`` when some sub-tests
    reproduce and some contradict the claim, else the verdict of more than half of the
    testable ones, else inconclusive (``cannot test`` when none is testable). Finding 3 takes
    the verdict of its interference part (combined over methods and directions), turned
    into ``mixed`` when that part is reproduced but PO is clearly *not* the least affected
    method. A sub-test is "called" only when its interval
    (and, with several seeds, every seed) lies on one side, so a finding is never called on
    overlapping intervals.
    """
    t = tests if tests is not None else finding_tests(items, n_boot=n_boot, seed=seed, **kw)
    n_seeds = int(summary["n_seeds"].max()) if "n_seeds" in summary and len(summary) else 1
    rows = []
    for f, claim in FINDINGS.items():
        ft = t[t["finding"] == f]
        ev_lines = [
            f"{r.subject}: {r.quantity} = {format_ci(r.estimate, r.lo, r.hi)}" + (f" ({r.note})" if r.note else "")
            for r in ft.itertuples()
        ]
        if ft.empty:
            verdict, expl = CANNOT_TEST, "not measured: the runs lack the targets or methods this finding needs"
        elif f == 1:
            per_m = ft.groupby("subject", sort=False)["verdict"].agg(
                lambda v: (
                    CONTRADICTED
                    if CONTRADICTED in set(v)
                    else REPRODUCED
                    if set(v) == {REPRODUCED}
                    else CANNOT_TEST
                    if set(v) == {CANNOT_TEST}
                    else INCONCLUSIVE
                )
            )
            verdict = combine_verdicts(per_m.tolist())
            pm = per_m.rename("verdict").reset_index()
            expl = (
                f"Person unlearning with efficacy and generality above {kw.get('high', 0.8)} and a retain drop above "
                f"{kw.get('large_cost', 0.2)}: {count_line(pm, 'methods')}."
            )
        elif f == 3:
            inter = ft[ft["part"] == "interference"]
            po = ft[ft["part"] == "least for PO"]
            verdict = combine_verdicts(inter["verdict"].tolist())
            po_v = po["verdict"].iloc[0] if len(po) else "not measured"
            if verdict == REPRODUCED and po_v == CONTRADICTED:
                verdict = MIXED
            mean_drop = inter["estimate"].mean() if len(inter) else np.nan
            expl = (
                f"Scope below finetune: {count_line(inter, 'method × direction tests')} "
                f"(mean scope drop {mean_drop:+.2f}); PO least affected: {po_v}."
            )
        else:
            verdict = combine_verdicts(ft["verdict"].tolist())
            what = {2: "methods", 4: "method × concept tests", 5: "BGD × concept tests"}[f]
            lead = {
                2: "Events harder to forget than people relative to goal",
                4: "Lower efficacy when both concepts are forgotten at once",
                5: "BGD raises efficacy on target both over its base method",
            }[f]
            mean_eff = ft["estimate"].mean()
            expl = f"{lead}: {count_line(ft, what)}" + (f" (mean effect {mean_eff:+.2f})." if np.isfinite(mean_eff) else ".")
        blocked = ft[ft["verdict"] == CANNOT_TEST]
        if len(blocked):  # the reason of each untestable sub-test, with the pairs it holds for
            expl += " Cannot test: " + "; ".join(f"{r.subject} ({r.note.split('; ')[0]})" for r in blocked.itertuples()) + "."
        rows.append(
            {
                "finding": f,
                "claim": claim,
                "test": TESTS[f],
                "verdict": verdict,
                "evidence": "; ".join(ev_lines),
                "explanation": expl,
                "n_tests": len(ft),
                "n_seeds": n_seeds,
            }
        )
    return pd.DataFrame(rows)


def findings_markdown(
    frame: pd.DataFrame, profile: str = "", scorers: Sequence[str] = (), tests: pd.DataFrame | None = None
) -> str:
    """A discussion paragraph per finding, written from the findings frame (no fixed conclusion);
    with ``tests`` (:func:`finding_tests`), first how many of the sub-tests decide something."""
    n_seeds = int(frame["n_seeds"].max()) if len(frame) else 0
    counts = frame["verdict"].value_counts()
    head = (
        f"On {n_seeds} seed{'s' if n_seeds != 1 else ''}"
        + (f" of the `{profile}` profile" if profile else "")
        + (f", with the `{', '.join(scorers)}` event scorer" if scorers else "")
        + ", "
        + ", ".join(
            f"{int(counts.get(v, 0))} finding{'s' if counts.get(v, 0) != 1 else ''} {v}"
            for v in (REPRODUCED, MIXED, CONTRADICTED, INCONCLUSIVE, CANNOT_TEST)
        )
        + "."
    )
    lines = [head, ""]
    if tests is not None and len(tests):
        v = tests.loc[tests["verdict"] != "reported", "verdict"]
        n = {k: int((v == k).sum()) for k in (REPRODUCED, CONTRADICTED, INCONCLUSIVE, CANNOT_TEST)}
        lines += [
            f"Of the {len(v)} sub-tests, {n[REPRODUCED] + n[CONTRADICTED]} decide something ({n[REPRODUCED]} reproduced, "
            f"{n[CONTRADICTED]} contradicted), {n[INCONCLUSIVE]} are inconclusive and {n[CANNOT_TEST]} cannot test "
            "their claim (a side at a ceiling or floor, or a method that forgot too little: the notes say which).",
            "",
        ]
    for r in frame.itertuples():
        lines.append(f"* **Finding {r.finding} — {r.verdict}.** {r.claim} {r.explanation}")
    if int(counts.get(INCONCLUSIVE, 0)):
        lines += [
            "",
            "An *inconclusive* finding is one whose intervals include no effect and a meaningful "
            "one at once; more seeds (`seeds`) or more items per metric (`eval.max_items`) narrow them.",
        ]
    if int(counts.get(CONTRADICTED, 0)) or int(counts.get(MIXED, 0)):
        lines += [
            "",
            "A finding that is contradicted is a result about this setting (model size, training "
            "budget, synthetic world, event scorer), not an error to tune away; the evidence column says "
            "which sub-tests disagree.",
        ]
    return "\n".join(lines)
