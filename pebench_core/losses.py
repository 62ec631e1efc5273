"""Unlearning objectives (design: Unlearning methods) as pure functions on per-sequence statistics.

Every objective is *minimised*. None of them takes a batch-mean loss from a model:
the caller runs the model, turns logits into **per-sequence** answer statistics with
:func:`answer_logprobs` (and :func:`kl_per_sequence` for the KL method), packs them in a
:class:`LossInputs` and calls the registered function.

Notation (one row per sequence ``i`` of a set):

* ``ℓθ(y_i) = logp_sum[i]`` — sum of the answer-token log-probs under the model being
  unlearned θ (the LoRA adapter enabled);
* ``ℓref(y_i)`` — the same under the reference model (adapter disabled, no gradient);
* ``NLL_i = −logp_sum[i] / n_tokens[i]`` — mean answer-token negative log-likelihood;
* a set's ``NLL`` is the **mean over its sequences** of ``NLL_i`` (so a long answer does not
  outweigh a short one, and the value does not depend on batching or padding).

Registry: :data:`pebench_core.methods.METHODS` maps a method name to its
:class:`~pebench_core.methods.Method`: the function, its title, formula, citation and the
inputs it needs, so the training loop computes only those
(``spec.required_inputs(retain_weight)``). :func:`pebench_core.methods.get` looks a name up and
raises :class:`~pebench_core.errors.ConfigError` on an unknown one.

Calling convention (every registered function)::

    out = spec.fn(inputs, retain_weight=λ, beta=β, state=None)
    out.loss      # scalar tensor to back-propagate
    out.parts     # dict of detached floats for logging
    out.state     # a stateful method's state for the next step, else None

``BGD`` (balanced gradient difference) is the paper's mitigation for simultaneous
person + event unlearning. Its exact formula is not published; :func:`bgd_loss` is our
reconstruction, documented in its docstring and in the chapter on simultaneous unlearning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "LossInputs",
    "LossOutput",
    "answer_logprobs",
    "shifted_answer_mask",
    "kl_per_sequence",
    "packed_token_logprobs",
    "packed_answer_logprobs",
    "packed_kl_per_sequence",
    "sequence_nll",
    "ga_loss",
    "gd_loss",
    "kl_loss",
    "po_loss",
    "dpo_loss",
    "npo_loss",
    "simnpo_loss",
    "undial_loss",
    "task_vector_loss",
    "rmu_loss",
    "siu_loss",
    "dual_masked_kl_per_sequence",
    "mse_per_sequence",
    "adjusted_logits",
    "gd_bgd_loss",
    "kl_bgd_loss",
    "bgd_weights",
    "bgd_loss",
]


# ---------------------------------------------------------------------------------------
# Per-sequence statistics from logits


def answer_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence answer log-likelihood of a causal LM.

    ``logits`` ``[B, T, V]`` and ``labels`` ``[B, T]`` are aligned the Hugging Face way
    (``labels`` is the input ids with non-answer positions set to ``ignore_index``); the
    shift is done here: position ``t`` of ``logits`` predicts ``labels[:, t + 1]``.

    Returns ``(logp_sum [B], n_tokens [B], token_logp [B, T])`` where
    ``token_logp[b, t] = log p(labels[b, t] | tokens < t)`` for answer positions and ``0``
    elsewhere (position 0 and every ``ignore_index`` position), so ``token_logp`` is aligned
    with ``labels``. Padding (left or right) does not change the result as long as padded
    positions carry ``ignore_index``. Computed in float32. ``n_tokens`` is a float tensor.
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"answer_logprobs: logits must be [B, T, V] and labels [B, T]; got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    b, t, _ = logits.shape
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    # the answer positions only, through the one per-token function every path uses
    tok = torch.zeros(b, t - 1, dtype=torch.float32, device=logits.device)
    tok[mask] = packed_token_logprobs(logits[:, :-1, :][mask], shift_labels[mask])
    token_logp = torch.cat([tok.new_zeros(b, 1), tok], dim=1)
    return token_logp.sum(dim=1), mask.sum(dim=1).to(tok.dtype), token_logp


def shifted_answer_mask(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``[B, T]`` bool mask aligned with **logits** positions: ``True`` at ``t`` when
    ``logits[:, t]`` predicts an answer token (``labels[:, t + 1] != ignore_index``).
    The last position is always ``False``. Use it for :func:`kl_per_sequence`."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != ignore_index
    return mask


def kl_per_sequence(logits_theta: torch.Tensor, logits_ref: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence ``KL(ref ‖ θ)`` averaged over answer tokens, shape ``[B]``.

    For each position ``t`` with ``answer_mask[b, t]`` true (the mask is aligned with the
    logits: see :func:`shifted_answer_mask`)::

        KL_t = Σ_v p_ref(v) · (log p_ref(v) − log p_θ(v))

    and the sequence value is the mean of ``KL_t`` over its answer positions. Positions
    outside the mask (padding, prompt, image tokens) do not matter at all, whatever their
    logits. ``logits_ref`` is treated as a constant (detached). Computed in float32.
    A sequence without answer positions is an error.
    """
    if logits_theta.shape != logits_ref.shape or logits_theta.shape[:2] != answer_mask.shape:
        raise ValueError(
            f"kl_per_sequence: logits_theta {tuple(logits_theta.shape)}, logits_ref "
            f"{tuple(logits_ref.shape)} and answer_mask {tuple(answer_mask.shape)} disagree"
        )
    mask = answer_mask.bool()
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("kl_per_sequence: a sequence has no answer positions in answer_mask")
    logp_t = F.log_softmax(logits_theta.float(), dim=-1)
    logp_r = F.log_softmax(logits_ref.detach().float(), dim=-1)
    kl_tok = (logp_r.exp() * (logp_r - logp_t)).sum(dim=-1)
    kl_tok = torch.where(mask, kl_tok, torch.zeros_like(kl_tok))
    return kl_tok.sum(dim=1) / counts.to(kl_tok.dtype)


def packed_token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log p(targets[i] | ·)`` under ``logits[i]`` (``[N, V]`` and ``[N]``), in float32."""
    lf = logits.float()
    return lf.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lf, dim=-1)


def packed_answer_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`answer_logprobs` for logits kept on answer positions only.

    ``logits`` ``[N, V]`` holds one row per answer token, ``targets`` ``[N]`` the token it
    predicts and ``rows`` ``[N]`` the sequence (``0 … n_rows−1``) it belongs to. Returns
    ``(logp_sum [n_rows], n_tokens [n_rows])``, equal to the first two outputs of
    :func:`answer_logprobs` on the padded batch (tested). A sequence with no answer token
    gets ``0`` and ``0``.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or rows.shape != targets.shape:
        raise ValueError(
            f"packed_answer_logprobs: logits must be [N, V] with targets and rows [N]; got "
            f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(rows.shape)}"
        )
    tok = packed_token_logprobs(logits, targets)
    logp = tok.new_zeros(n_rows).index_add(0, rows, tok)
    n = tok.new_zeros(n_rows).index_add(0, rows, torch.ones_like(tok))
    return logp, n


def packed_kl_per_sequence(logits_theta: torch.Tensor, logits_ref: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """:func:`kl_per_sequence` for logits kept on answer positions only (``[N, V]`` each,
    ``rows`` ``[N]`` as in :func:`packed_answer_logprobs`): ``[n_rows]``, the mean over each
    sequence's answer tokens of ``KL(ref ‖ θ)``. A sequence with no answer token is an error."""
    if logits_theta.shape != logits_ref.shape or logits_theta.dim() != 2 or rows.shape != logits_theta.shape[:1]:
        raise ValueError(
            f"packed_kl_per_sequence: logits_theta {tuple(logits_theta.shape)}, logits_ref "
            f"{tuple(logits_ref.shape)} and rows {tuple(rows.shape)} disagree"
        )
    per_tok = kl_per_sequence(
        logits_theta.unsqueeze(1),
        logits_ref.unsqueeze(1),
        torch.ones(logits_theta.shape[0], 1, dtype=torch.bool, device=logits_theta.device),
    )
    tot = per_tok.new_zeros(n_rows).index_add(0, rows, per_tok)
    n = per_tok.new_zeros(n_rows).index_add(0, rows, torch.ones_like(per_tok))
    if bool((n == 0).any()):
        raise ValueError("packed_kl_per_sequence: a sequence has no answer positions")
    return tot / n


def mse_per_sequence(hidden: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``[n_rows]``: per sequence, the mean over its answer positions of the mean squared
    difference between ``hidden`` ``[N, H]`` and ``target`` (``[N, H]``, or ``[H]`` for one
    vector for every position), ``rows`` ``[N]`` as in :func:`packed_answer_logprobs`.
    ``target`` is a constant (detached). Computed in float32. A sequence with no position is
    an error."""
    if hidden.dim() != 2 or rows.shape != hidden.shape[:1] or target.shape not in (hidden.shape, hidden.shape[1:]):
        raise ValueError(
            f"mse_per_sequence: hidden {tuple(hidden.shape)}, target {tuple(target.shape)} and rows {tuple(rows.shape)} disagree"
        )
    per_tok = (hidden.float() - target.detach().float()).pow(2).mean(dim=-1)
    tot = per_tok.new_zeros(n_rows).index_add(0, rows, per_tok)
    n = per_tok.new_zeros(n_rows).index_add(0, rows, torch.ones_like(per_tok))
    if bool((n == 0).any()):
        raise ValueError("mse_per_sequence: a sequence has no answer positions")
    return tot / n


def dual_masked_kl_per_sequence(
    logits_theta: torch.Tensor,
    ref_logprobs: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    n_rows: int,
    concept_tokens: Sequence[Sequence[int]],
) -> torch.Tensor:
    """``[n_rows]``: per sequence, the mean over its kept positions of ``KL(ref ‖ θ)`` with the
    sequence's concept tokens (``concept_tokens[row]``: the token ids of its true forget
    answer) masked twice, as SIU's dual masked KL does:

    * **vocabulary mask**: those tokens are taken out of both next-token distributions (each
      renormalised over the rest), so the KL never holds the model to the reference's
      probability of saying the concept;
    * **token mask**: a position whose own target token is one of them is left out.

    ``logits_theta``, ``ref_logprobs`` ``[N, V]``, ``targets``/``rows`` ``[N]`` as in
    :func:`packed_kl_per_sequence`; ``ref_logprobs`` is a constant. A sequence whose every
    position is masked contributes 0. Computed in float32.
    """
    if logits_theta.shape != ref_logprobs.shape or logits_theta.dim() != 2 or rows.shape != logits_theta.shape[:1]:
        raise ValueError(
            f"dual_masked_kl_per_sequence: logits_theta {tuple(logits_theta.shape)}, ref_logprobs "
            f"{tuple(ref_logprobs.shape)} and rows {tuple(rows.shape)} disagree"
        )
    if len(concept_tokens) != n_rows:
        raise ValueError(f"dual_masked_kl_per_sequence: {len(concept_tokens)} concept token sets for {n_rows} sequences")
    n, v = logits_theta.shape
    vocab_mask = torch.zeros(n, v, dtype=torch.bool, device=logits_theta.device)
    keep = torch.ones(n, dtype=torch.bool, device=logits_theta.device)
    for k, (r, t) in enumerate(zip(rows.tolist(), targets.tolist())):
        ids = [int(i) for i in concept_tokens[r]]
        if ids:
            vocab_mask[k, ids] = True
        keep[k] = int(t) not in set(ids)
    neg = torch.finfo(torch.float32).min
    lt = F.log_softmax(logits_theta.float().masked_fill(vocab_mask, neg), dim=-1)
    lr = F.log_softmax(ref_logprobs.detach().float().masked_fill(vocab_mask, neg), dim=-1)
    kl_tok = torch.where(vocab_mask, torch.zeros_like(lt), lr.exp() * (lr - lt)).sum(dim=-1)
    kl_tok = torch.where(keep, kl_tok, torch.zeros_like(kl_tok))
    tot = kl_tok.new_zeros(n_rows).index_add(0, rows, kl_tok)
    cnt = kl_tok.new_zeros(n_rows).index_add(0, rows, keep.to(kl_tok.dtype))
    return tot / cnt.clamp(min=1.0)


def adjusted_logits(ref_logits: torch.Tensor, targets: torch.Tensor, strength: float) -> torch.Tensor:
    """UNDIAL's target: the reference's logits (or log-probabilities) ``[N, V]`` with each
    row's true token ``targets[i]`` lowered by ``strength``; detached, in float32.

    Only the true token moves, so the target keeps the reference's ranking of every other
    token: the model is taught to spread the true token's mass over what it would otherwise
    have said, not to say anything in particular. ``strength = 0`` is the reference itself.
    """
    if ref_logits.dim() != 2 or targets.shape != ref_logits.shape[:1]:
        raise ValueError(
            f"adjusted_logits: ref_logits must be [N, V] with targets [N]; "
            f"got {tuple(ref_logits.shape)} and {tuple(targets.shape)}"
        )
    if not strength >= 0 or not math.isfinite(strength):
        raise ValueError(f"adjusted_logits: strength must be a finite number >= 0, got {strength}")
    out = ref_logits.detach().float().clone()
    out[torch.arange(out.shape[0], device=out.device), targets] -= strength
    return out


# ---------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass
class LossInputs:
    """Per-sequence statistics a loss may need. Any field a method does not need may be ``None``.

    Forget set ``D_f`` (the true answers, shape ``[B_f]``):
      * ``forget_logp_sum`` — ``ℓθ(y)`` under θ (with gradient);
      * ``forget_n_tokens`` — answer tokens per sequence;
      * ``forget_ref_logp_sum`` — ``ℓref(y)`` under the reference model (detached here).
    Refusal answers on the forget images (shape ``[B_f]``, row ``i`` = same image as forget row ``i``):
      * ``refusal_logp_sum``, ``refusal_n_tokens`` under θ; ``refusal_ref_logp_sum`` under ref.
    Retain set ``D_r`` (shape ``[B_r]``):
      * ``retain_logp_sum``, ``retain_n_tokens`` under θ;
      * ``retain_kl`` — per-sequence ``KL(ref ‖ θ)`` from :func:`kl_per_sequence`.
    UNDIAL's self-distillation target on the forget answers (shape ``[B_f]``):
      * ``forget_adjusted_kl`` — per-sequence ``KL(p_adj ‖ θ)``, ``p_adj`` the reference's
        next-token distribution with the true token's logit lowered (:func:`adjusted_logits`).
    RMU's activations at one decoder layer, per sequence (:func:`mse_per_sequence`):
      * ``forget_rmu_mse`` ``[B_f]`` — to the fixed random control vector;
      * ``retain_rmu_mse`` ``[B_r]`` — to the reference model's own activations.
    The SIU-style dual masked KL on the refusal answers (shape ``[B_f]``):
      * ``refusal_dual_masked_kl`` — per-sequence ``KL(ref ‖ θ)`` with the forget concept's
        tokens masked twice (:func:`dual_masked_kl_per_sequence`).
    Concept labels for BGD (``"person"`` / ``"event"``, one per row):
      * ``forget_concepts`` (length ``B_f``), ``retain_concepts`` (length ``B_r``).
    """

    forget_logp_sum: torch.Tensor | None = None
    forget_n_tokens: torch.Tensor | None = None
    forget_ref_logp_sum: torch.Tensor | None = None
    refusal_logp_sum: torch.Tensor | None = None
    refusal_n_tokens: torch.Tensor | None = None
    refusal_ref_logp_sum: torch.Tensor | None = None
    retain_logp_sum: torch.Tensor | None = None
    retain_n_tokens: torch.Tensor | None = None
    retain_kl: torch.Tensor | None = None
    forget_adjusted_kl: torch.Tensor | None = None
    forget_rmu_mse: torch.Tensor | None = None
    retain_rmu_mse: torch.Tensor | None = None
    refusal_dual_masked_kl: torch.Tensor | None = None
    forget_concepts: Sequence[str] | None = None
    retain_concepts: Sequence[str] | None = None

    def require(self, method: str, *names: str) -> None:
        """Raise ``ValueError`` naming every missing field among ``names``."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"loss '{method}' needs input(s) {', '.join(missing)} but they are None")


@dataclass
class LossOutput:
    """``loss``: scalar tensor to minimise; ``parts``: detached floats for logging;
    ``state``: what a stateful method carries to its next step (``Method.stateful``), else ``None``."""

    loss: torch.Tensor
    parts: dict[str, float]
    state: Any = None


# ---------------------------------------------------------------------------------------
# Helpers

_T = TypeVar("_T")


def _given(value: _T | None, method: str, name: str) -> _T:
    """``value``, which must not be ``None``: narrows an optional :class:`LossInputs` field.

    Called after :meth:`LossInputs.require` has checked the same field, so in practice it
    never raises; if it did, the message would be the one ``require`` gives for ``name``.
    """
    if value is None:
        raise ValueError(f"loss '{method}' needs input(s) {name} but they are None")
    return value


def _vec(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (one value per sequence), got shape {tuple(x.shape)}")
    return x


def sequence_nll(logp_sum: torch.Tensor, n_tokens: torch.Tensor, name: str = "logp_sum") -> torch.Tensor:
    """Per-sequence mean answer-token NLL, ``−logp_sum / n_tokens`` (shape ``[B]``)."""
    _vec(logp_sum, name)
    n = torch.as_tensor(n_tokens, device=logp_sum.device)
    if n.shape != logp_sum.shape:
        raise ValueError(f"{name} has shape {tuple(logp_sum.shape)} but its n_tokens has shape {tuple(n.shape)}")
    if bool((n <= 0).any()):
        raise ValueError(f"{name}: every sequence needs at least one answer token (n_tokens has a value <= 0)")
    return -logp_sum / n.to(logp_sum.dtype)


def _same_len(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} has shape {tuple(a.shape)} but {nb} has shape {tuple(b.shape)}")


def _f(x: torch.Tensor) -> float:
    return float(x.detach().float().cpu())


def _retain_nll(inp: LossInputs, method: str) -> torch.Tensor:
    inp.require(method, "retain_logp_sum", "retain_n_tokens")
    return sequence_nll(
        _given(inp.retain_logp_sum, method, "retain_logp_sum"),
        _given(inp.retain_n_tokens, method, "retain_n_tokens"),
        "retain_logp_sum",
    ).mean()


def _with_retain(
    method: str, forget_term: torch.Tensor, inp: LossInputs, retain_weight: float, parts: dict[str, float]
) -> LossOutput:
    """``forget_term + λ·NLL_r``; with ``λ = 0`` the retain inputs may be ``None``."""
    loss = forget_term
    parts["forget_loss"] = _f(forget_term)
    if retain_weight != 0:
        r = _retain_nll(inp, method)
        loss = loss + retain_weight * r
        parts["retain_loss"] = _f(r)
    parts["loss"] = _f(loss)
    return LossOutput(loss=loss, parts=parts)


def _forget_nll(inp: LossInputs, method: str) -> torch.Tensor:
    inp.require(method, "forget_logp_sum", "forget_n_tokens")
    return sequence_nll(
        _given(inp.forget_logp_sum, method, "forget_logp_sum"),
        _given(inp.forget_n_tokens, method, "forget_n_tokens"),
        "forget_logp_sum",
    )


# ---------------------------------------------------------------------------------------
# The objectives (all minimised)


def ga_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Gradient ascent: ``−NLL_f``. ``retain_weight``/``beta`` are ignored."""
    nll_f = _forget_nll(inp, "ga").mean()
    loss = -nll_f
    return LossOutput(loss=loss, parts={"forget_loss": _f(loss), "forget_nll": _f(nll_f), "loss": _f(loss)})


def gd_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Gradient difference: ``−NLL_f + λ·NLL_r``."""
    nll_f = _forget_nll(inp, "gd").mean()
    return _with_retain("gd", -nll_f, inp, retain_weight, {"forget_nll": _f(nll_f)})


def kl_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """``−NLL_f + λ·mean_i KL_i(ref ‖ θ)`` on the retain answer tokens (``retain_kl``)."""
    nll_f = _forget_nll(inp, "kl").mean()
    loss = -nll_f
    parts = {"forget_loss": _f(-nll_f), "forget_nll": _f(nll_f)}
    if retain_weight != 0:
        inp.require("kl", "retain_kl")
        kl = _vec(_given(inp.retain_kl, "kl", "retain_kl"), "retain_kl").mean()
        loss = loss + retain_weight * kl
        parts["retain_loss"] = _f(kl)
    parts["loss"] = _f(loss)
    return LossOutput(loss=loss, parts=parts)


def po_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Preference optimisation toward a refusal: ``NLL(refusal | D_f) + λ·NLL_r``."""
    inp.require("po", "refusal_logp_sum", "refusal_n_tokens")
    nll_refusal = sequence_nll(
        _given(inp.refusal_logp_sum, "po", "refusal_logp_sum"),
        _given(inp.refusal_n_tokens, "po", "refusal_n_tokens"),
        "refusal_logp_sum",
    ).mean()
    return _with_retain("po", nll_refusal, inp, retain_weight, {"refusal_nll": _f(nll_refusal)})


def dpo_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """DPO with ``y_w`` = refusal, ``y_l`` = true answer, plus ``λ·NLL_r``::

        mean_i −log σ(β[(ℓθ(y_w) − ℓref(y_w)) − (ℓθ(y_l) − ℓref(y_l))])

    Equals ``log 2`` (+ retain term) when θ = ref.
    """
    inp.require("dpo", "forget_logp_sum", "forget_ref_logp_sum", "refusal_logp_sum", "refusal_ref_logp_sum")
    lw = _vec(_given(inp.refusal_logp_sum, "dpo", "refusal_logp_sum"), "refusal_logp_sum")
    lw_ref = _given(inp.refusal_ref_logp_sum, "dpo", "refusal_ref_logp_sum").detach()
    ll = _vec(_given(inp.forget_logp_sum, "dpo", "forget_logp_sum"), "forget_logp_sum")
    ll_ref = _given(inp.forget_ref_logp_sum, "dpo", "forget_ref_logp_sum").detach()
    _same_len(lw, lw_ref, "refusal_logp_sum", "refusal_ref_logp_sum")
    _same_len(ll, ll_ref, "forget_logp_sum", "forget_ref_logp_sum")
    _same_len(lw, ll, "refusal_logp_sum", "forget_logp_sum")
    margin = (lw - lw_ref) - (ll - ll_ref)
    forget_term = -F.logsigmoid(beta * margin).mean()
    return _with_retain("dpo", forget_term, inp, retain_weight, {"margin": _f(margin.mean())})


def npo_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Negative preference optimisation plus ``λ·NLL_r``::

        mean_i (2/β) · log(1 + exp(β · (ℓθ(y) − ℓref(y))))   =  (2/β) · softplus(β · log-ratio)

    Equals ``(2/β) · log 2`` (+ retain term) when θ = ref.
    """
    inp.require("npo", "forget_logp_sum", "forget_ref_logp_sum")
    lp = _vec(_given(inp.forget_logp_sum, "npo", "forget_logp_sum"), "forget_logp_sum")
    lp_ref = _given(inp.forget_ref_logp_sum, "npo", "forget_ref_logp_sum").detach()
    _same_len(lp, lp_ref, "forget_logp_sum", "forget_ref_logp_sum")
    ratio = lp - lp_ref
    forget_term = ((2.0 / beta) * F.softplus(beta * ratio)).mean()
    return _with_retain("npo", forget_term, inp, retain_weight, {"log_ratio": _f(ratio.mean())})


def simnpo_loss(
    inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, gamma: float = 0.0, state: Any = None
) -> LossOutput:
    """SimNPO (Fan et al., 2025): NPO without the reference model, on the length-normalised
    log-likelihood, with a reward margin ``γ``, plus ``λ·NLL_r``::

        mean_i −(2/β) · log σ(−β · ℓθ(y_i)/|y_i| − γ)  =  mean_i (2/β) · softplus(−β·NLL_i + γ)

    (``ℓθ/|y| = −NLL_i``). The gradient weight ``σ(γ − β·NLL_i)`` fades as an answer becomes
    unlikely, as NPO's does, but needs no reference pass and treats short and long answers alike.
    """
    nll = _forget_nll(inp, "simnpo")
    forget_term = ((2.0 / beta) * F.softplus(gamma - beta * nll)).mean()
    return _with_retain("simnpo", forget_term, inp, retain_weight, {"forget_nll": _f(nll.mean())})


def rmu_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """RMU, representation misdirection (Li et al., 2024), on one decoder layer's output::

        mean_i MSE(h_θ(x_i), c·u)  +  λ · mean_j MSE(h_θ(x_j), h_ref(x_j))
        (i over the forget answers, j over the retain answers; per sequence, then over sequences)

    ``u`` is a fixed random unit vector and ``c`` the steering scale; the loop builds them and
    passes the per-sequence MSEs (``forget_rmu_mse``, ``retain_rmu_mse``). The forget term
    drives the layer's activations on forget inputs towards noise the later layers cannot
    read; the retain term holds them where the reference had them everywhere else."""
    inp.require("rmu", "forget_rmu_mse")
    forget = _vec(_given(inp.forget_rmu_mse, "rmu", "forget_rmu_mse"), "forget_rmu_mse").mean()
    loss = forget
    parts = {"forget_loss": _f(forget)}
    if inp.forget_logp_sum is not None and inp.forget_n_tokens is not None:
        parts["forget_nll"] = _f(_forget_nll(inp, "rmu").mean())
    if retain_weight != 0:
        inp.require("rmu", "retain_rmu_mse")
        r = _vec(_given(inp.retain_rmu_mse, "rmu", "retain_rmu_mse"), "retain_rmu_mse").mean()
        loss = loss + retain_weight * r
        parts["retain_loss"] = _f(r)
    parts["loss"] = _f(loss)
    return LossOutput(loss=loss, parts=parts)


def siu_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """SIU-style dual masked KL (our reconstruction of PEBench v1's sixth method, after Li et
    al., 2024, whose formula is incomplete in the sources we have)::

        NLL(y_refusal | D_f)  +  λ · mean_i DMK_i

    The cross-entropy teaches the refusal on the forget images, as PO does; the dual masked
    KL (``refusal_dual_masked_kl``, :func:`dual_masked_kl_per_sequence`) holds the rest of the
    model's next-token distributions on those same sequences to the reference's, except for
    the forget concept's own tokens, which are masked out of both the vocabulary and the
    positions. Like SIU it trains on the forget images alone: no retain set."""
    inp.require("siu", "refusal_logp_sum", "refusal_n_tokens")
    nll = sequence_nll(
        _given(inp.refusal_logp_sum, "siu", "refusal_logp_sum"),
        _given(inp.refusal_n_tokens, "siu", "refusal_n_tokens"),
        "refusal_logp_sum",
    ).mean()
    loss = nll
    parts = {"refusal_nll": _f(nll), "forget_loss": _f(nll)}
    if retain_weight != 0:
        inp.require("siu", "refusal_dual_masked_kl")
        kl = _vec(_given(inp.refusal_dual_masked_kl, "siu", "refusal_dual_masked_kl"), "refusal_dual_masked_kl").mean()
        loss = loss + retain_weight * kl
        parts["retain_loss"] = _f(kl)
    parts["loss"] = _f(loss)
    return LossOutput(loss=loss, parts=parts)


def task_vector_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """The first half of task-vector negation: **descent** on the forget answers, ``NLL_f``,
    which trains the task vector ``τ`` (the LoRA adapter); the loop then negates it
    (``Method.finish = "negate"``). ``retain_weight``/``beta`` are ignored."""
    nll_f = _forget_nll(inp, "task_vector").mean()
    return LossOutput(loss=nll_f, parts={"forget_loss": _f(nll_f), "forget_nll": _f(nll_f), "loss": _f(nll_f)})


def undial_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """UNDIAL (Dong et al., 2025): self-distillation towards the reference with the true
    token's logit lowered::

        mean_i mean_{t ∈ y_i} KL(softmax(z_ref,t − s·e_{y_t}) ‖ p_θ,t)   =  mean(forget_adjusted_kl)

    (``s`` is ``unlearn.undial_strength``, applied by the loop when it builds the target with
    :func:`adjusted_logits` from the reference pass). The target is fixed, so the loss is bounded below by 0 and its
    gradient fades as θ reaches it: unlike gradient ascent, nothing is pushed without end.
    As in its paper, no retain term: distilling the reference on every other token is what
    keeps the rest of the distribution. ``retain_weight``/``beta`` are ignored.
    """
    inp.require("undial", "forget_adjusted_kl")
    kl = _vec(_given(inp.forget_adjusted_kl, "undial", "forget_adjusted_kl"), "forget_adjusted_kl").mean()
    parts = {"forget_loss": _f(kl), "loss": _f(kl)}
    if inp.forget_logp_sum is not None and inp.forget_n_tokens is not None:
        parts["forget_nll"] = _f(_forget_nll(inp, "undial").mean())
    return LossOutput(loss=kl, parts=parts)


# ---------------------------------------------------------------------------------------
# BGD (our reconstruction; design: Unlearning methods)


def _concept_groups(labels: Sequence[str], n: int, name: str) -> dict[str, torch.Tensor]:
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} labels but there are {n} sequences")
    out: dict[str, list[int]] = {}
    for i, c in enumerate(labels):
        out.setdefault(str(c), []).append(i)
    return {c: torch.tensor(idx, dtype=torch.long) for c, idx in sorted(out.items())}


def bgd_weights(grad_norms: Mapping[str, float], max_weight: float) -> dict[str, float]:
    """BGD's per-concept weights from the norms of the concepts' forget gradients.

    With ``g_c`` the norm of concept ``c``'s forget-term gradient and ``ḡ`` their mean::

        w_c = clip(ḡ / g_c, 1/ρ, ρ)        (ρ = max_weight ≥ 1)

    Unclipped, every concept's weighted gradient has norm ``ḡ``: the two concepts push
    equally hard, and together as hard as they did on average before. The clip bounds the
    reweighting: a concept whose gradient has all but vanished (its NLL is near zero, as the
    events' is after fine-tuning) gets at most ``ρ`` times its plain weight, never the
    thousands a ratio of norms would give. ``g_c = 0`` gets ``ρ``; ``ρ = 1`` is no
    reweighting at all (plain GD or KL on balanced batches).
    """
    if not max_weight >= 1 or not math.isfinite(max_weight):
        raise ValueError(f"max_weight must be a finite number >= 1, got {max_weight}")
    if not grad_norms:
        return {}
    bad = {c: g for c, g in grad_norms.items() if not (g >= 0 and math.isfinite(g))}
    if bad:
        raise ValueError(f"gradient norms must be finite and non-negative, got {bad}")
    mean = sum(grad_norms.values()) / len(grad_norms)
    lo, hi = 1.0 / max_weight, max_weight
    return {c: hi if g == 0 else min(hi, max(lo, mean / g)) for c, g in grad_norms.items()}


def bgd_loss(
    inp: LossInputs,
    *,
    retain: Literal["nll", "kl"],
    retain_weight: float = 1.0,
    grad_norm: Callable[[torch.Tensor], float] | None = None,
    bgd_max_weight: float = 4.0,
    method: str = "bgd",
) -> LossOutput:
    """Balanced gradient difference (our reconstruction; the paper gives no formula).

    For each concept ``c`` present in ``forget_concepts``:

    1. ``t_c = −NLL_f(c)``, the mean of ``−NLL_i`` over the forget sequences of concept ``c``;
    2. ``g_c = grad_norm(t_c)``, the norm of its gradient with respect to the trained
       parameters (the training loop passes the function; a test may pass any);
    3. ``w_c`` from :func:`bgd_weights`: the concepts' gradients equalised, each weight
       clipped to ``[1/ρ, ρ]`` (a detached constant: it rescales the gradient, it gets none).

    ``forget = (1/K) Σ_c w_c · t_c`` with ``K`` the number of concepts present.

    Retain term (balanced across question types by count, not reweighted, so that ``λ``
    keeps its meaning and stays in force): ``mean_c NLL_r(c)`` for ``retain="nll"``
    (``gd+bgd``) or ``mean_c mean_{i∈c} KL_i`` for ``retain="kl"`` (``kl+bgd``), grouped by
    ``retain_concepts``. Loss = ``forget + λ · retain``.

    Parts: ``forget_term/<c>``, ``grad_norm/<c>``, ``weight/<c>``, ``retain_loss/<c>`` and,
    with two concepts, ``grad_norm_ratio`` (``g_event / g_person``, the imbalance BGD meets)
    and ``balanced_ratio`` (the same after weighting: 1 when the clip did not bind).
    """
    inp.require(method, "forget_logp_sum", "forget_n_tokens", "forget_concepts")
    if grad_norm is None:
        raise ValueError(
            f"loss '{method}' balances the concepts' gradients: it needs grad_norm, a function from a "
            "scalar term to the norm of its gradient (the training loop passes one)"
        )
    nll = sequence_nll(
        _given(inp.forget_logp_sum, method, "forget_logp_sum"),
        _given(inp.forget_n_tokens, method, "forget_n_tokens"),
        "forget_logp_sum",
    )
    groups = _concept_groups(_given(inp.forget_concepts, method, "forget_concepts"), nll.shape[0], "forget_concepts")
    terms = {c: -nll[idx.to(nll.device)].mean() for c, idx in groups.items()}
    norms = {c: float(grad_norm(t)) for c, t in terms.items()}
    weights = bgd_weights(norms, bgd_max_weight)
    k = len(terms)
    parts: dict[str, float] = {}
    forget = nll.new_zeros(())
    for c, t in terms.items():
        forget = forget + (weights[c] / k) * t
        parts[f"forget_term/{c}"] = _f(t)
        parts[f"grad_norm/{c}"] = norms[c]
        parts[f"weight/{c}"] = weights[c]
    if {"person", "event"} <= set(norms) and norms["person"] > 0:
        parts["grad_norm_ratio"] = norms["event"] / norms["person"]
        parts["balanced_ratio"] = parts["grad_norm_ratio"] * weights["event"] / weights["person"]
    parts["forget_loss"] = _f(forget)
    parts["forget_nll"] = _f(nll.mean())
    loss = forget
    if retain_weight != 0:
        if retain == "nll":
            inp.require(method, "retain_logp_sum", "retain_n_tokens", "retain_concepts")
            per_seq = sequence_nll(
                _given(inp.retain_logp_sum, method, "retain_logp_sum"),
                _given(inp.retain_n_tokens, method, "retain_n_tokens"),
                "retain_logp_sum",
            )
        else:
            inp.require(method, "retain_kl", "retain_concepts")
            per_seq = _vec(_given(inp.retain_kl, method, "retain_kl"), "retain_kl")
        rgroups = _concept_groups(_given(inp.retain_concepts, method, "retain_concepts"), per_seq.shape[0], "retain_concepts")
        rterms = {c: per_seq[idx.to(per_seq.device)].mean() for c, idx in rgroups.items()}
        r = torch.stack(list(rterms.values())).mean()
        for c, t in rterms.items():
            parts[f"retain_loss/{c}"] = _f(t)
        parts["retain_loss"] = _f(r)
        loss = loss + retain_weight * r
    parts["loss"] = _f(loss)
    return LossOutput(loss=loss, parts=parts)


def gd_bgd_loss(
    inp: LossInputs,
    *,
    retain_weight: float = 1.0,
    beta: float = 0.1,
    grad_norm: Callable[[torch.Tensor], float] | None = None,
    bgd_max_weight: float = 4.0,
    state: Any = None,
) -> LossOutput:
    """GD with BGD balancing (see :func:`bgd_loss`): retain term = mean over concepts of ``NLL_r(c)``."""
    return bgd_loss(
        inp, retain="nll", retain_weight=retain_weight, grad_norm=grad_norm, bgd_max_weight=bgd_max_weight, method="gd+bgd"
    )


def kl_bgd_loss(
    inp: LossInputs,
    *,
    retain_weight: float = 1.0,
    beta: float = 0.1,
    grad_norm: Callable[[torch.Tensor], float] | None = None,
    bgd_max_weight: float = 4.0,
    state: Any = None,
) -> LossOutput:
    """KL with BGD balancing (see :func:`bgd_loss`): retain term = mean over concepts of mean ``KL_i``."""
    return bgd_loss(
        inp, retain="kl", retain_weight=retain_weight, grad_norm=grad_norm, bgd_max_weight=bgd_max_weight, method="kl+bgd"
    )


# ---------------------------------------------------------------------------------------
# Registry


class LossFn(Protocol):
    """The signature of every registered objective (see the module docstring)."""

    def __call__(self, inp: LossInputs, /, *, retain_weight: float = ..., beta: float = ..., state: Any = ...) -> LossOutput: ...
