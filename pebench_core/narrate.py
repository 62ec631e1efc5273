"""The chapters' generated discussion: Markdown written from the tables above it.

A chapter that states its result in words ("forgetting both concepts at once lowered efficacy
for 3 of 12 pairs …") writes those words from its numbers, so that the text follows the data
when the chapter is re-run on other seeds, settings or a real model. Each function here takes
the frames a chapter already shows and returns one Markdown string; none reads a file or
loads a model, so each can be tested on a hand-made frame.

* chapter 4 (one method): :func:`likelihood_race_markdown`, :func:`method_result_markdown`;
* chapter 5 (simultaneous targets): :func:`bgd_retain_markdown`, :func:`simultaneous_markdown`;
* chapter 6 (interference): :func:`interference_markdown`;
* chapter 7 (robustness): :func:`robustness_markdown`;
* chapter 8 (leaderboard): :func:`run_overview_markdown`, :func:`step_cost_markdown` (its
  discussion is :func:`pebench_core.analysis.findings_markdown`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .analysis.schema import unlearn_methods
from .analysis.stats import format_ci, interval_words

__all__ = [
    "likelihood_race_markdown",
    "method_result_markdown",
    "paper_comparison_markdown",
    "bgd_retain_markdown",
    "simultaneous_markdown",
    "interference_markdown",
    "run_overview_markdown",
    "step_cost_markdown",
    "robustness_markdown",
]


# ------------------------------------------------------------------ chapter 4
def likelihood_race_markdown(race: pd.DataFrame, method: str, trajectories: Mapping[str, pd.DataFrame]) -> str:
    """One bullet per target: where the loss ended (and DPO/NPO's margin, when logged), and
    how the true answer's and the refusal's per-token NLL and the refusal's first-token wins
    moved from finetune to ``method``.

    ``race`` is :func:`pebench_core.analysis.likelihood_race` indexed by ``(target, model)``;
    ``trajectories`` maps each target, in the order to report, to its unlearning trajectory
    (its last row is read).
    """
    lines = []
    for t, traj in trajectories.items():
        f, m = race.loc[(t, "finetune")], race.loc[(t, method)]
        last = traj.iloc[-1]
        margin = (
            f", a margin of {last['margin']:.1f} nats over the reference" if "margin" in last and pd.notna(last["margin"]) else ""
        )
        lines.append(
            f"* **{t}**: the loss ended at {last['loss']:.3g}{margin}. The true answer went from "
            f"{f.nll_true:.2f} to {m.nll_true:.2f} nats per token and the refusal from {f.nll_refusal:.2f} "
            f"to {m.nll_refusal:.2f}; the refusal's first token now wins on {m.refusal_first:.0%} of the forget "
            f"questions (finetune {f.refusal_first:.0%})."
        )
    return "\n".join(lines)


def _value(res: pd.DataFrame, target: str, model: str, concept: str, metric: str) -> float:
    s = res[(res.target == target) & (res.method == model) & (res.concept == concept) & (res.metric == metric)]["value"]
    return float(s.iloc[0]) if len(s) else float("nan")


def method_result_markdown(res: pd.DataFrame, method: str, targets: Sequence[str]) -> str:
    """One bullet per target: ``method``'s efficacy (against finetune and goal), retain and
    scope (against finetune) on the target's own concept.

    ``res`` holds result rows (``target``, ``method``, ``concept``, ``metric``, ``value``) of
    finetune, ``method`` and goal, as :meth:`pebench_core.run.Run.comparison` returns them;
    a missing number reads ``nan``.
    """
    lines = []
    for t in targets:
        c = "person" if t == "person" else "event"
        v = {
            (model, metric): _value(res, t, model, c, metric)
            for model in ("finetune", method, "goal")
            for metric in ("efficacy", "retain", "scope")
        }
        lines.append(
            f"* **{t}**: efficacy {v[method, 'efficacy']:.2f} (finetune {v['finetune', 'efficacy']:.2f}, goal "
            f"{v['goal', 'efficacy']:.2f}); retain {v[method, 'retain']:.2f} (finetune {v['finetune', 'retain']:.2f}); "
            f"scope {v[method, 'scope']:.2f} (finetune {v['finetune', 'scope']:.2f})."
        )
    return "\n".join(lines)


def this_run_markdown(
    res: pd.DataFrame,
    method: str,
    targets: Sequence[str],
    grids: Mapping[str, pd.DataFrame] | None = None,
    fixed: pd.DataFrame | None = None,
) -> str:
    """What *this* run shows of ``method``, from its numbers, to read beside what the method is
    known for: per target, the rate the grid kept and where it sits in the grid, efficacy
    against the bounds, and retain against the fine-tuned model's (a drop to below half of it is
    a *collapse*); and, where the paper's protocol ran (``fixed``: result rows of the fixed-rate
    runs, :meth:`pebench_core.run.Run.fixed_rate`), the same two numbers at that one rate.
    ``res`` is :meth:`pebench_core.run.Run.comparison`'s rows, ``grids`` the
    :meth:`~pebench_core.run.Run.tuning` frame of each target (``lr``, ``kept``)."""
    lines = ["**In this run:**"]
    for t in targets:
        c = "person" if t == "person" else "event"
        eff, ret = _value(res, t, method, c, "efficacy"), _value(res, t, method, c, "retain")
        ft_e, goal_e, ft_r = (
            _value(res, t, "finetune", c, "efficacy"),
            _value(res, t, "goal", c, "efficacy"),
            _value(res, t, "finetune", c, "retain"),
        )
        rate = ""
        g = (grids or {}).get(t)
        if g is not None and len(g) and g["kept"].any():
            lrs = sorted(g["lr"])
            kept = float(g.loc[g["kept"], "lr"].iloc[0])
            where = "lowest" if kept == lrs[0] else ("highest" if kept == lrs[-1] else "middle")
            rate = f" at the rate the grid kept, {kept:.3g} (the {where} of {', '.join(f'{x:.3g}' for x in lrs)})"
        span = goal_e - ft_e
        share = f", {(eff - ft_e) / span:.0%} of the way from finetune to goal" if abs(span) > 1e-9 else ""
        collapse = "a collapse" if ret < ft_r / 2 else "no collapse"
        line = (
            f"* target **{t}**{rate}: efficacy {eff:.2f} (finetune {ft_e:.2f}, goal {goal_e:.2f}{share}); retain "
            f"{ret:.2f} against finetune's {ft_r:.2f}: {collapse}."
        )
        if fixed is not None and len(fixed):
            f = fixed[(fixed["method"] == method) & (fixed["target"] == t)]
            if len(f):
                fe, fr = _value(f, t, method, c, "efficacy"), _value(f, t, method, c, "retain")
                lr = float(f["lr"].dropna().iloc[0]) if "lr" in f and f["lr"].notna().any() else float("nan")
                line += (
                    f" Under the paper's protocol (one rate, {lr:.3g}, untuned): efficacy {fe:.2f}, retain {fr:.2f}, "
                    f"{'a collapse' if fr < ft_r / 2 else 'no collapse'}."
                )
        lines.append(line)
    return "\n".join(lines)


def protocol_markdown(patterns: pd.DataFrame) -> str:
    """Chapter 8's reading of :func:`pebench_core.analysis.protocol_patterns`: per paper method,
    the patterns of Table 1 it reproduces under the tuned protocol and under the paper's, and
    for each disagreement with the paper the reason the comparison gives."""
    if patterns.empty:
        return "The paper's protocol did not run here (`findings.paper_methods` is empty or none of them ran)."
    lines = []
    for method, g in patterns.groupby("method", sort=False):
        both = g[(g["tuned_shows"] == g["paper_shows"])]
        differ = g[g["tuned_shows"] != g["paper_shows"]]
        head = f"* **{method}**: tuned protocol matches {len(both)} of {len(g)} of the paper's patterns"
        head += f", the paper's protocol {int((g['fixed_shows'] == g['paper_shows']).sum())}."
        for r in differ.itertuples():
            head += (
                f" *{r.pattern}* on {r.target}: paper {r.paper_shows} ({r.paper:.2f}), tuned {r.tuned_shows} "
                f"({format_ci(r.tuned, r.tuned_lo, r.tuned_hi)}), fixed {r.fixed_shows} "
                f"({format_ci(r.fixed, r.fixed_lo, r.fixed_hi)}): {r.why}."
            )
        lines.append(head)
    n = len(patterns)
    t_ok, f_ok = (
        int((patterns["tuned_shows"] == patterns["paper_shows"]).sum()),
        int((patterns["fixed_shows"] == patterns["paper_shows"]).sum()),
    )
    lines.append(
        f"\nOver the {n} (method, target, pattern) cells: the tuned protocol agrees with Table 1 on {t_ok}, the "
        f"paper's protocol on {f_ok}. A pattern is *present* when its interval (resampling people or events) lies "
        "above the threshold, *absent* when below, *inconclusive* otherwise; the event rows compare our event scorer "
        "with the paper's G-Eval, so only their direction is comparable."
    )
    return "\n".join(lines)


def paper_comparison_markdown(res: pd.DataFrame, method: str, targets: Sequence[str]) -> str:
    """How ``method`` on this run compares with the paper's Table 1 for the same method, per
    target, on the target's own concept: efficacy and retain, the method's and the bounds'.

    The person columns of the paper are name matches, as ours are, so they compare directly;
    its event columns are G-Eval (an LLM judge) scores, so only the place of the method
    between its bounds compares. A method the paper did not run says so.
    """
    from .analysis.paper import paper_table1_long

    paper = paper_table1_long()
    mine = paper[paper["method"] == method]
    if mine.empty:
        return (
            f"**Against the paper.** {method.upper()} is not in the paper's Table 1, which reports GA, GD, KL, PO and "
            "DPO: there is no published number to compare with. The leaderboard chapter sets it beside those five "
            "on this run."
        )

    def printed(model: str, concept: str, metric: str) -> float:
        row = paper[(paper["method"] == model) & (paper["concept"] == concept) & (paper["metric"] == metric)]
        return float(row["paper"].iloc[0]) if len(row) else float("nan")

    lines = [f"**Against the paper** (Table 1, {method.upper()}; the paper's numbers on our 0–1 scale):"]
    for t in targets:
        if t not in ("person", "event"):
            continue
        c = t
        ours = {(m, k): _value(res, t, m, c, k) for m in ("finetune", method, "goal") for k in ("efficacy", "retain")}
        theirs = {(m, k): printed(m, c, k) for m in ("finetune", method, "goal") for k in ("efficacy", "retain")}
        how = "name match, as ours" if c == "person" else "G-Eval scores, ours another scorer: compare places, not values"
        lines.append(
            f"* **{t}** ({how}): efficacy {ours[method, 'efficacy']:.2f} here, {theirs[method, 'efficacy']:.2f} in "
            f"the paper (bounds here {ours['finetune', 'efficacy']:.2f} → {ours['goal', 'efficacy']:.2f}, paper "
            f"{theirs['finetune', 'efficacy']:.2f} → {theirs['goal', 'efficacy']:.2f}); retain "
            f"{ours[method, 'retain']:.2f} here, {theirs[method, 'retain']:.2f} in the paper (finetune "
            f"{ours['finetune', 'retain']:.2f} here, {theirs['finetune', 'retain']:.2f} there)."
        )
    if "both" in targets:
        lines.append("* **both**: the paper's Table 1 has no joint target; chapter 5 compares it with Table 2.")
    return "\n".join(lines)


# ------------------------------------------------------------------ chapter 5
def _bgd_rows(t2: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The BGD rows (those with a base method) of :func:`pebench_core.analysis.table2` for ``metric``."""
    return t2[(t2["metric"] == metric) & (t2["base"] != "")]


def bgd_retain_markdown(t2: pd.DataFrame) -> str:
    """One bullet per BGD run and concept: its retain change against the base method, with the
    paired interval and what the interval says. ``t2`` is :func:`pebench_core.analysis.table2`."""
    lines = []
    for r in _bgd_rows(t2, "retain").itertuples():
        if np.isfinite(r.delta_lo) and r.delta_hi < 0:
            verdict = "lower retain (interval below 0)"
        elif np.isfinite(r.delta_lo) and r.delta_lo > 0:
            verdict = "higher retain (interval above 0)"
        elif r.delta_lo == r.delta_hi == 0:
            verdict = "no change at all on these images"
        else:
            verdict = "no change distinguishable from zero"
        change = format_ci(r.delta, r.delta_lo, r.delta_hi)
        lines.append(f"* **{r.method}** vs {r.base}, {r.concept} retain: {change} — {verdict}.")
    return "\n".join(lines) or "No BGD runs in this configuration."


def simultaneous_markdown(svs: pd.DataFrame, t2: pd.DataFrame, n_seeds: int, tests: pd.DataFrame | None = None) -> str:
    """Chapter 5's reading, in the book's one verdict rule (:mod:`pebench_core.analysis.rule`).

    With ``tests`` (:func:`pebench_core.analysis.finding_tests`), the method × concept pairs are
    read as the paper's finding 4 and the BGD rows as its finding 5, with the leaderboard
    chapter's sub-tests, intervals and words (:func:`~pebench_core.analysis.verdicts.count_line`):
    a pair whose single-target efficacy sits at a floor, or whose target-both efficacy sits at a
    ceiling, *cannot test* the claim. Without ``tests``, only the direction of each change is
    stated. ``svs`` is :func:`pebench_core.analysis.simultaneous_vs_single`, ``t2``
    :func:`pebench_core.analysis.table2`.
    """
    from .analysis.verdicts import FINDINGS, count_line

    f4 = None if tests is None else tests[tests["finding"] == 4]
    f5 = None if tests is None else tests[tests["finding"] == 5]
    text = []
    if f4 is not None and not f4.empty:
        margin = float(f4["margin"].iloc[0])
        text.append(
            f"Read as the paper's finding 4 (*{FINDINGS[4]}*), with the quantity efficacy single − both: "
            f"supported when its interval lies above 0, contradicted when it lies below {margin:.2f}, inconclusive "
            f"when it straddles that margin, and not testable where a side sits at a ceiling or floor (the "
            f"reason follows each in the leaderboard chapter): "
            f"{count_line(f4, 'method × concept pairs')}."
        )
    else:
        base = svs[svs["method"].isin(unlearn_methods())]
        down, up = base[base["delta_hi"] < 0], base[base["delta_lo"] > 0]

        def names(d: pd.DataFrame) -> str:
            return ", ".join(f"{m} ({c}, {x:+.2f})" for m, c, x in zip(d["method"], d["concept"], d["delta"])) or "none"

        text.append(
            f"Forgetting both concepts at once **lowered** efficacy, with an interval below zero, for {len(down)} of "
            f"{len(base)} method × concept pairs: {names(down)}. It **raised** it, with an interval above zero, for "
            f"{len(up)}: {names(up)}."
        )
    if f5 is not None and not f5.empty:
        text.append(f"\nRead as finding 5 (*{FINDINGS[5]}*): {count_line(f5, 'BGD × concept pairs')}.")
        for r in f5.itertuples():
            text.append(f"* {r.subject}: {r.quantity} = {format_ci(r.estimate, r.lo, r.hi)} — **{r.verdict}**"
                        + (f" ({r.note})." if r.note else "."))  # fmt: skip
    else:
        for r in _bgd_rows(t2, "efficacy").itertuples():
            word = "gained" if r.delta_lo > 0 else ("lost" if r.delta_hi < 0 else "changed, with an interval across zero, by")
            text.append(
                f"* {r.method} against {r.base}, {r.concept} efficacy: {word} {format_ci(r.delta, r.delta_lo, r.delta_hi)}."
            )
    text.append(
        f"\n({n_seeds} seed(s); intervals are 95 % bootstraps over {interval_words(svs)}; they are the leaderboard "
        "chapter's intervals for the same quantities.)"
    )
    return "\n".join(text)


# ------------------------------------------------------------------ chapter 6
def interference_markdown(cells: pd.DataFrame, image_tests: pd.DataFrame, n_seeds: int, tests: pd.DataFrame | None = None) -> str:
    """Chapter 6's reading: per interference cell (a target × the *other* concept), how many
    methods lowered or raised the score against finetune beyond the paired interval and which
    was least affected; then how many image-level tests found the other concept hurt more on
    the forget images than on the retain images (interval below 0 and p < 0.05).

    ``cells`` is :func:`pebench_core.analysis.interference_table` of every method (``role``,
    ``target``, ``measured``, ``images``, ``finetune``, ``method``, ``delta`` with
    ``delta_lo``/``delta_hi``), ``image_tests`` the stacked summaries of
    :func:`pebench_core.analysis.paired_image_level` (``method``, ``direction``, ``ci_hi``, ``p_value``).
    With ``tests`` (:func:`pebench_core.analysis.finding_tests`), the cells are then read as the
    paper's finding 3 by the book's one rule, with the leaderboard chapter's sub-tests and words:
    a method that forgot too little of its target cannot test whether forgetting interferes.
    """
    inter = cells[cells["role"] == "interference"]
    lines = []
    for _, g in inter.groupby(["target", "measured"], sort=False):
        below = g[g["delta_hi"] < 0]
        above = g[g["delta_lo"] > 0]
        top = g[g["delta"] == g["delta"].max()]
        if top.empty:  # no method has a finite change here
            least = "none (no change could be computed)"
        else:
            least = ("all methods tie" if len(top) == len(g) else ", ".join(top["method"])) + f" ({top['delta'].iloc[0]:+.2f})"
        lines.append(
            f"* **{g['images'].iloc[0]}** (finetune {g['finetune'].iloc[0]:.2f}): lower than finetune, with a "
            f"paired interval below 0, for {len(below)} of {len(g)} methods ({', '.join(below['method']) or 'none'}); "
            f"higher for {len(above)}; least affected: {least}."
        )
    sig = image_tests[(image_tests["ci_hi"] < 0) & (image_tests["p_value"] < 0.05)]
    which = ": " + ", ".join(f"{r.method} ({r.direction})" for r in sig.itertuples()) if len(sig) else ""
    lines.append(
        f"* **Image level**: the other concept suffered significantly more on the forget images than on "
        f"the retain images (interval below 0 and p < 0.05) in {len(sig)} of {len(image_tests)} method × "
        f"direction tests{which}."
    )
    f3 = None if tests is None else tests[(tests["finding"] == 3) & (tests["part"] == "interference")]
    if f3 is not None and not f3.empty:
        from .analysis.verdicts import FINDINGS, count_line

        lines.append(
            f"* **Read as the paper's finding 3** (*{FINDINGS[3]}*), scope drop per method and target, supported "
            f"when its interval lies above 0, contradicted when below {float(f3['margin'].iloc[0]):.2f}: "
            f"{count_line(f3, 'method × target tests')}."
        )
    words = interval_words(cells)
    also = "" if words == "images" else ", the image-level tests images"
    lines.append(
        f"\n({n_seeds} seed(s); the cells' paired intervals resample {words}{also}. The leaderboard chapter turns this "
        "into a verdict on the paper's finding 3.)"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------ chapter 8
def run_overview_markdown(
    summary: pd.DataFrame,
    seeds: Sequence[int],
    profile: str,
    scorers: Sequence[str],
    forget: Mapping[int, tuple[int, int]] | None = None,
) -> str:
    """What stands behind the leaderboard: the seeds and profile, the forget people and events
    of each seed (``forget``: seed → (people, events), :meth:`pebench_core.run.Run.forget_counts`),
    the event scorer, how many images each number rests on (``summary['n_items']``, summed over
    seeds) and what the intervals cover. ``summary`` is :func:`pebench_core.analysis.summarise`."""
    people = sum(p for p, _ in (forget or {}).values())
    events = sum(e for _, e in (forget or {}).values())
    return (
        f"* **seeds**: {len(seeds)} ({', '.join(map(str, seeds))}); profile `{profile}`\n"
        + (
            f"* **forget set**: {people} people and {events} events"
            + (" over the seeds" if len(forget or {}) > 1 else "")
            + " (each person and event result rests on these)\n"
            if forget
            else ""
        )
        + f"* **event scorer**: {', '.join(scorers) or 'none'}; names are matched exactly (full name, normalised)\n"
        f"* **images per number** (summed over seeds): {int(summary['n_items'].min())} to {int(summary['n_items'].max())}\n"
        f"* **intervals**: 95 % bootstrap over {interval_words(summary)} (resampled within each seed)"
        + (
            "; with several seeds, a t-interval over seeds is shown too"
            if len(seeds) > 1
            else "; with one seed they say nothing about seed-to-seed variation"
        )
    )


def step_cost_markdown(costs: pd.DataFrame) -> str:
    """Whether the sequences a step runs explain its cost: the range of seconds per sequence
    over methods, and the factor between its ends (at most 1.5: the sequences explain it).
    ``costs`` has one row per method with ``s_per_step`` and ``sequences`` (chapter 8's table
    of :func:`pebench_core.analysis.step_costs`, medians over targets and seeds)."""
    per_seq = (costs["s_per_step"] / costs["sequences"]).round(4)
    spread = per_seq.max() / per_seq.min()
    return (
        f"Seconds per sequence range from {per_seq.min():.4f} to {per_seq.max():.4f}, a factor of {spread:.2f}: "
        + (
            "the sequences a step runs explain most of its cost, not the method's arithmetic."
            if spread <= 1.5
            else "more than the sequences alone explain; the loss's own arithmetic matters here."
        )
        + " (Wall-clock times on the machine that built the runs, medians over targets and seeds.)"
    )


# ------------------------------------------------------------------ chapter 7 (robustness)
def robustness_markdown(surv: pd.DataFrame, n_seeds: int, margin: float = 0.1) -> str:
    """Per probe, where forgetting holds, breaks or is inconclusive, each method with its
    (target · concept) pairs and the largest recovery ``d`` with its interval (the worst of the
    probe's measures), then the pairs it cannot test, named as pairs: a method can forget
    too little on one pair and be tested on another. ``surv`` is
    :func:`pebench_core.analysis.survival`; its verdicts are the book's one rule
    (:mod:`pebench_core.analysis.rule`)."""
    from .analysis.robustness import BREAKS, FORGOT_TOO_LITTLE, HOLDS, INCONCLUSIVE, UNINFORMATIVE, worst_per_pair
    from .probes import PROBES

    if surv.empty:
        return "No probe results to read."

    def pairs(d: pd.DataFrame) -> str:
        per = d.groupby("method", sort=False).apply(lambda g: ", ".join(f"{t}·{c}" for t, c in zip(g["target"], g["concept"])))
        return "; ".join(f"{m} ({p})" for m, p in per.items())

    lines = []
    for probe in dict.fromkeys(surv["probe"]):
        worst = worst_per_pair(surv[surv["probe"] == probe])
        parts = []
        for call in (BREAKS, INCONCLUSIVE, HOLDS):
            w = worst[worst["verdict"] == call]
            if w.empty:
                continue
            per_method = []
            for method, mg in w.groupby("method", sort=False):
                top = mg.loc[mg["d"].idxmax()] if mg["d"].notna().any() else mg.iloc[0]
                where = ", ".join(f"{t}·{c}" for t, c in zip(mg["target"], mg["concept"]))
                per_method.append(
                    f"{method} ({where}; largest d = {format_ci(top['d'], top['d_lo'], top['d_hi'])} on {top['measure']})"
                )
            parts.append(f"**{call}** for " + "; ".join(per_method))
        little = worst[worst["why"] == FORGOT_TOO_LITTLE]
        blind = worst[worst["why"] == UNINFORMATIVE]
        tail = f" Cannot test (forgot too little): {pairs(little)}." if not little.empty else ""
        if not blind.empty:
            g = surv[(surv["probe"] == probe) & (surv["why"] == UNINFORMATIVE)]
            tail += (
                f" Cannot test (uninformative): {pairs(blind)}: the fine-tuned model already scores "
                f"{g['finetune_value'].min():.2f}–{g['finetune_value'].max():.2f} there, so the probe cannot tell a model "
                "that knows from one that does not."
            )
        title = PROBES[probe].title if probe in PROBES else probe
        lines.append(f"* **{title}** — " + (". ".join(parts) + "." if parts else "no pair can be tested.") + tail)
    lines.append(
        f"\n(d is the recovery against the probe's reference, positive when knowledge comes back; holds: its 95 % "
        f"paired interval over {interval_words(surv)} lies below {margin}; breaks: above 0 with d ≥ {margin}; "
        f"inconclusive: neither; {n_seeds} seed(s).)"
    )
    return "\n".join(lines)
