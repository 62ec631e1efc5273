"""What the unlearning loop computes for each input a loss may read: one table, :data:`INPUTS`,
that the loop (:mod:`pebench_core.unlearn`), the memory plan (:mod:`pebench_core.memory`) and
the step costs (:mod:`pebench_core.analysis.costs`) all read.

Each field of :class:`~pebench_core.losses.LossInputs` is one :class:`Input`: the answer set it
comes from (``forget``: the true answers on the forget images; ``refusal``: refusals on the same
images; ``retain``: the true answers on the retain images; ``None``: a label, no pass), whether
θ runs over that set every step with gradient, which of the method's own settings computing it
reads, and the code that computes it:

* ``compute(step)``, every step, from θ's pass over this process's share of the batch
  (:class:`Step`), gathered over the processes so that the loss is the whole batch's;
* ``keep(reference, items)``, the reference outputs it needs, one per item, computed with the
  adapter off before training (or on every step's batch, to measure against);
* ``once(reference)``, a constant of the run computed before training.

A method's inputs (:meth:`pebench_core.methods.Method.required_inputs`) therefore decide which
sets are encoded, which sets every step runs through the model and what is computed up front;
a new kind of input is one field of ``LossInputs`` and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch

from . import distributed as D
from .statistics import (
    adjusted_logits,
    dual_masked_kl_per_sequence,
    mse_per_sequence,
    packed_answer_logprobs,
    packed_kl_per_sequence,
)

__all__ = ["Input", "INPUTS", "SETS", "Step", "Reference", "encoded_sets", "step_sets", "step_size"]

SETS = ("forget", "refusal", "retain")  # the answer sets, in the order a step runs them
ITEMS_OF = {"forget": "forget", "refusal": "forget", "retain": "retain"}  # a refusal is asked of a forget item


@dataclass
class Step:
    """What one step hands an input's ``compute``: θ's answer pass over this process's share of
    each set it trains on (``outs``: logits, targets, rows, sequences and, with a layer asked
    for, its output), that share (``mine``) and the whole batch (``batch``) per set, what each
    input's ``keep`` and ``once`` computed (``kept``, ``constants``), the method's own settings
    and every item's concept label per set."""

    outs: dict[str, tuple]
    mine: dict[str, list[int]]
    batch: dict[str, list[int]]
    kept: dict[str, dict[int, torch.Tensor]]
    constants: dict[str, Any]
    settings: Any
    concepts: dict[str, list[str]]
    _logprobs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def logprobs(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp_sum, n_tokens)`` of set ``name`` over the whole batch (computed once a step)."""
        if name not in self._logprobs:
            lp, nt = packed_answer_logprobs(*self.outs[name][:4])
            self._logprobs[name] = D.gather_cat(lp), D.gather_cat(nt)
        return self._logprobs[name]

    def reference(self, name: str, input_name: str) -> torch.Tensor:
        """The rows ``keep`` stored for ``input_name``, for this process's share of set ``name``."""
        store = self.kept[input_name]
        return torch.cat([store[i] for i in self.mine[name]]).to(self.outs[name][0].device)


@dataclass
class Reference:
    """The reference model for ``keep`` and ``once``: ``pass_(set, items, hidden)`` is its answer
    pass over some items of a set (no gradient, the adapter off; ``hidden``: with the output of
    the method's layer), ``schedule`` the items of every set the whole run trains on,
    ``labels`` the encoded answers per set, ``special`` the tokenizer's special ids."""

    pass_: Callable[[str, list[int], bool], tuple]
    schedule: dict[str, list[int]]
    labels: dict[str, Any]
    special: set[int]
    settings: Any
    seed: int
    chunk: int = 32

    def passes(self, name: str, items: Iterable[int], hidden: bool = False) -> Iterator[tuple[list[int], tuple]]:
        """``(chunk, output)`` over ``items`` of set ``name``, ``chunk`` items at a time."""
        items = list(items)
        for s in range(0, len(items), self.chunk):
            c = items[s : s + self.chunk]
            yield c, self.pass_(name, c, hidden)


def _logp_sums(name: str) -> Callable[[Reference, list[int]], dict[int, torch.Tensor]]:
    def keep(ref: Reference, items: list[int]) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for c, (lg, tg, rws, n, *_) in ref.passes(name, items):
            out.update(zip(c, packed_answer_logprobs(lg, tg, rws, n)[0]))
        return out

    return keep


def _log_softmax_rows(name: str) -> Callable[[Reference, list[int]], dict[int, torch.Tensor]]:
    def keep(ref: Reference, items: list[int]) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for c, (lg, _, rws, *_) in ref.passes(name, items):
            lp, rows = torch.log_softmax(lg, dim=-1).cpu(), rws.cpu()
            out.update({i: lp[rows == k] for k, i in enumerate(c)})
        return out

    return keep


def _hidden_rows(ref: Reference, items: list[int]) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    for c, (_, _, rws, _, h) in ref.passes("retain", items, True):
        out.update({i: h[rws == k].cpu() for k, i in enumerate(c)})
    return out


def _control(ref: Reference) -> torch.Tensor:
    """RMU's control vector ``c·u``: ``u`` a seeded random unit vector, ``c`` the setting
    ``steer`` times the mean norm of the layer's activations on the forget answers of the whole
    run, in the reference (so it is scale-free across models, and a constant of the run)."""
    norms, width, device = [], 0, None
    for _, out in ref.passes("forget", ref.schedule["forget"], True):
        h = out[4].float()
        norms.append(h.norm(dim=-1).cpu())
        width, device = h.shape[-1], h.device
    u = torch.rand(width, generator=torch.Generator().manual_seed(ref.seed))
    return (ref.settings.steer * float(torch.cat(norms).mean()) * u / u.norm()).to(device)


def _concept_tokens(ref: Reference) -> list[list[int]]:
    """SIU's concept tokens per forget item: those of its true answer, the special tokens aside."""
    return [sorted({int(t) for t in lab.tolist() if t != -100} - ref.special) for lab in ref.labels["forget"]]


def _ref_logp(name: str, field_name: str) -> Callable[[Step], torch.Tensor]:
    return lambda step: torch.stack([step.kept[field_name][i] for i in step.batch[name]])


def _retain_kl(step: Step) -> torch.Tensor:
    lg, _, seq, n = step.outs["retain"][:4]
    return D.gather_cat(packed_kl_per_sequence(lg, step.reference("retain", "retain_kl"), seq, n))


def _forget_adjusted_kl(step: Step) -> torch.Tensor:
    lg, tg, seq, n = step.outs["forget"][:4]
    target = adjusted_logits(step.reference("forget", "forget_adjusted_kl"), tg, step.settings.strength)
    return D.gather_cat(packed_kl_per_sequence(lg, target, seq, n))


def _forget_rmu_mse(step: Step) -> torch.Tensor:
    _, _, seq, n, h = step.outs["forget"]
    return D.gather_cat(mse_per_sequence(h, step.constants["forget_rmu_mse"], seq, n))


def _retain_rmu_mse(step: Step) -> torch.Tensor:
    _, _, seq, n, h = step.outs["retain"]
    return D.gather_cat(mse_per_sequence(h, step.reference("retain", "retain_rmu_mse"), seq, n))


def _refusal_dual_masked_kl(step: Step) -> torch.Tensor:
    lg, tg, seq, n = step.outs["refusal"][:4]
    tokens = step.constants["refusal_dual_masked_kl"]
    kl = dual_masked_kl_per_sequence(
        lg, step.reference("refusal", "refusal_dual_masked_kl"), tg, seq, n, [tokens[i] for i in step.mine["refusal"]]
    )
    return D.gather_cat(kl)


@dataclass(frozen=True)
class Input:
    """Where one loss input comes from and how it is computed (see the module docstring)."""

    set: str | None
    step: bool
    compute: Callable[[Step], Any]
    settings: tuple[str, ...] = ()
    keep: Callable[[Reference, list[int]], dict[int, torch.Tensor]] | None = None
    once: Callable[[Reference], Any] | None = None
    hidden: bool = False  # θ's pass must return the output of the method's layer


INPUTS: dict[str, Input] = {
    "forget_logp_sum": Input("forget", step=True, compute=lambda s: s.logprobs("forget")[0]),
    "forget_n_tokens": Input("forget", step=True, compute=lambda s: s.logprobs("forget")[1]),
    "forget_ref_logp_sum": Input(
        "forget", step=False, compute=_ref_logp("forget", "forget_ref_logp_sum"), keep=_logp_sums("forget")
    ),
    "refusal_logp_sum": Input("refusal", step=True, compute=lambda s: s.logprobs("refusal")[0]),
    "refusal_n_tokens": Input("refusal", step=True, compute=lambda s: s.logprobs("refusal")[1]),
    "refusal_ref_logp_sum": Input(
        "refusal", step=False, compute=_ref_logp("refusal", "refusal_ref_logp_sum"), keep=_logp_sums("refusal")
    ),
    "retain_logp_sum": Input("retain", step=True, compute=lambda s: s.logprobs("retain")[0]),
    "retain_n_tokens": Input("retain", step=True, compute=lambda s: s.logprobs("retain")[1]),
    "retain_kl": Input("retain", step=True, compute=_retain_kl, keep=_log_softmax_rows("retain")),
    # the reference's next-token distribution with the true token's logit lowered by `strength`
    "forget_adjusted_kl": Input(
        "forget",
        step=True,
        compute=_forget_adjusted_kl,
        settings=("strength",),
        keep=_log_softmax_rows("forget"),
    ),  # fmt: skip
    # one decoder layer (at `depth`, a share of the depth), against a control vector of length
    # `steer` mean activation norms of the reference; on retain, against the reference's own
    "forget_rmu_mse": Input(
        "forget", step=True, compute=_forget_rmu_mse, settings=("depth", "steer"), once=_control, hidden=True
    ),
    "retain_rmu_mse": Input("retain", step=True, compute=_retain_rmu_mse, settings=("depth",), keep=_hidden_rows, hidden=True),
    "refusal_dual_masked_kl": Input(
        "refusal",
        step=True,
        compute=_refusal_dual_masked_kl,
        keep=_log_softmax_rows("refusal"),
        once=_concept_tokens,
    ),  # fmt: skip
    "forget_concepts": Input(None, step=False, compute=lambda s: [s.concepts["forget"][i] for i in s.batch["forget"]]),
    "retain_concepts": Input(None, step=False, compute=lambda s: [s.concepts["retain"][i] for i in s.batch["retain"]]),
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
