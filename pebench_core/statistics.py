"""Per-sequence statistics from a model's outputs: what every unlearning objective reads.

A loss never sees a batch-mean loss from a model. The training loop (:mod:`pebench_core.unlearn`)
runs the model and turns its logits, or one layer's activations, into **one number per
sequence** with these functions, so that a set's value is the mean over its sequences and does
not depend on the batch size or the padding (tested). Two layouts are served:

* padded batches, ``[B, T, V]`` logits with Hugging Face labels (:func:`answer_logprobs`,
  :func:`kl_per_sequence`);
* packed answer positions, ``[N, V]`` logits with the sequence ``rows`` each belongs to, what
  :func:`pebench_core.forward.answer_pass` returns (the ``packed_*`` functions,
  :func:`mse_per_sequence`, :func:`dual_masked_kl_per_sequence`).

Every function computes in float32 and treats reference outputs as constants.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "answer_logprobs",
    "shifted_answer_mask",
    "kl_per_sequence",
    "packed_token_logprobs",
    "packed_answer_logprobs",
    "packed_kl_per_sequence",
    "mse_per_sequence",
    "dual_masked_kl_per_sequence",
    "adjusted_logits",
]


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
