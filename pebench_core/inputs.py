"""What the unlearning loop computes for each input a loss may read: one table that the loop
(:mod:`pebench_core.unlearn`), the memory plan (:mod:`pebench_core.memory`) and the step
costs (:mod:`pebench_core.analysis.costs`) all read.

Each field of :class:`~pebench_core.losses.LossInputs` comes from one answer set (``forget``:
the true answers on the forget images; ``refusal``: refusals on the same images; ``retain``:
the true answers on the retain images), from θ's pass over that set with gradient every step
(``step``), from the reference model with the adapter off (``reference``: computed once before
training, or every step), or both; the concept labels come from no pass at all. A method's
inputs (:meth:`pebench_core.methods.Method.required_inputs`) therefore decide which sets are
encoded, which sets every step runs through the model, and what is computed up front.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Input", "INPUTS", "SETS", "encoded_sets", "step_sets", "step_size"]

SETS = ("forget", "refusal", "retain")  # the answer sets, in the order a step runs them


@dataclass(frozen=True)
class Input:
    """Where one loss input comes from: its answer set (``None``: a label, no pass), whether θ
    runs over that set every step (with gradient), and whether the reference model does."""

    set: str | None
    step: bool
    reference: bool = False


INPUTS: dict[str, Input] = {
    "forget_logp_sum": Input("forget", step=True),
    "forget_n_tokens": Input("forget", step=True),
    "forget_ref_logp_sum": Input("forget", step=False, reference=True),
    "refusal_logp_sum": Input("refusal", step=True),
    "refusal_n_tokens": Input("refusal", step=True),
    "refusal_ref_logp_sum": Input("refusal", step=False, reference=True),
    "retain_logp_sum": Input("retain", step=True),
    "retain_n_tokens": Input("retain", step=True),
    "retain_kl": Input("retain", step=True, reference=True),
    "forget_adjusted_kl": Input("forget", step=True, reference=True),
    "forget_rmu_mse": Input("forget", step=True),  # against a control vector the reference sizes
    "retain_rmu_mse": Input("retain", step=True, reference=True),
    "refusal_dual_masked_kl": Input("refusal", step=True, reference=True),
    "forget_concepts": Input(None, step=False),
    "retain_concepts": Input(None, step=False),
}


def encoded_sets(needed) -> tuple[str, ...]:
    """The answer sets a method with inputs ``needed`` must encode (θ's or the reference's pass)."""
    used = {INPUTS[f].set for f in needed}
    return tuple(s for s in SETS if s in used)


def step_sets(needed) -> tuple[str, ...]:
    """The answer sets every step runs through θ with gradient, in the order a step runs them."""
    used = {INPUTS[f].set for f in needed if INPUTS[f].step}
    return tuple(s for s in SETS if s in used)


def step_size(needed, batch_size: int) -> tuple[int, int]:
    """``(sequences, answers)`` one step runs through θ: a forget item's true answer and its
    refusal share one sequence (one prompt, two answers), so they count once as a sequence and
    twice as answers. Every reference output is computed before training (``reference='once'``)."""
    sets = step_sets(needed)
    shared = int("forget" in sets and "refusal" in sets)
    return (len(sets) - shared) * batch_size, len(sets) * batch_size
