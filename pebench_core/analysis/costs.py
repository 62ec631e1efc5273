"""What a method costs: the sequences one unlearning step runs through the model, the measured
seconds per step (read from the trajectories the unlearning wrote), and the likelihood race
between the true answer and the refusal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import methods
from ..inputs import step_size
from .runs import Runs

__all__ = ["sequences_per_step", "step_costs", "step_cost_table", "likelihood_race"]


def sequences_per_step(method: str, batch_size: int, retain_weight: float = 1.0) -> tuple[int, int]:
    """``(sequences, answers)``: the sequences one step of ``method`` runs through the model
    (all with gradient) and the answers it scores on them, read from what its loss needs
    (:meth:`~pebench_core.methods.Method.required_inputs`) through the loop's table of inputs
    (:func:`pebench_core.inputs.step_size`).

    A forget item's true answer and its refusal share one sequence (one prompt, two answers:
    :func:`~pebench_core.unlearn.pack_batch`), and every reference output is computed once
    before training, so no step runs the reference model.
    """
    return step_size(methods.get(method).required_inputs(retain_weight), batch_size)


def step_costs(runs: Runs, trajectories: pd.DataFrame) -> pd.DataFrame:
    """Seconds per unlearning step of every method and target that ran, from the trajectories
    (``seed``, ``target``, ``method`` and the ``seconds`` column of each run's trajectory, as
    :meth:`pebench_core.run.Run.trajectories_for_seeds` gathers them).

    One row per seed × method × target: the median time between consecutive steps (the
    median skips the steps that also ran the trajectory's efficacy check), the sequences per
    step (:func:`sequences_per_step`) and the ratio to GA's step on the same seed and target.
    """
    rows = []
    for (s, target, method), run in trajectories.groupby(["seed", "target", "method"], sort=False):
        cfg = runs.cfgs[s]
        sec = run["seconds"].diff().dropna()
        if sec.empty:
            continue
        n_seq, n_ans = sequences_per_step(method, cfg.unlearn.batch_size, cfg.unlearn.retain_weight)
        rows.append(
            {
                "seed": s,
                "target": target,
                "method": method,
                "s_per_step": float(sec.median()),
                "sequences": n_seq,
                "answers": n_ans,
            }
        )
    out = pd.DataFrame(rows, columns=["seed", "target", "method", "s_per_step", "sequences", "answers"])
    ga = out[out["method"] == "ga"].set_index(["seed", "target"])["s_per_step"]
    out["x_ga"] = [row.s_per_step / ga.get((row.seed, row.target), np.nan) for row in out.itertuples()]
    return out


def step_cost_table(costs: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """One row per method of :func:`step_costs`: the median seconds per step over targets and
    seeds, and ``x_ga``, that median against GA's (``NaN`` without GA), so that the ratio a
    table shows is the ratio of the times it shows (a median of per-run ratios is not).
    ``order`` lists the methods first, in that order (the rest follow as they come)."""
    c = costs.groupby("method", sort=False).agg(
        s_per_step=("s_per_step", "median"), sequences=("sequences", "first"), answers=("answers", "first")
    )
    ga = c["s_per_step"].get("ga", np.nan)
    c["x_ga"] = c["s_per_step"] / ga
    if order is not None:
        c = c.reindex([m for m in order if m in c.index] + [m for m in c.index if m not in order])
    return c[["s_per_step", "x_ga", "sequences", "answers"]]


def likelihood_race(lk: pd.DataFrame) -> pd.DataFrame:
    """Summarise :func:`pebench_core.run.answer_likelihoods` per ``model`` (and
    ``target`` where present): the mean per-token NLL of the true answer and of the
    refusal; ``refusal_first``, the share of forget items on which the refusal's first token
    is likelier than the true answer's (where greedy decoding turns); and
    ``refusal_likelier``, the share on which the whole refusal is likelier than the whole
    true answer."""
    keys = [k for k in ("target", "model") if k in lk.columns]
    d = lk.assign(
        nll_true=-lk["logp_true"] / lk["n_true"],
        nll_refusal=-lk["logp_refusal"] / lk["n_refusal"],
        refusal_first=(lk["logp_first_refusal"] > lk["logp_first_true"]).astype(float),
        refusal_likelier=(lk["logp_refusal"] > lk["logp_true"]).astype(float),
    )
    return d.groupby(keys, sort=False)[["nll_true", "nll_refusal", "refusal_first", "refusal_likelier"]].mean()
