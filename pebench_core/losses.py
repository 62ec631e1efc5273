"""What every unlearning objective shares (design: Unlearning methods): its inputs, its output,
and the few pieces the objectives are built from. The objectives themselves live with their
methods, one module each, in :mod:`pebench_core.methods`.

Every objective is *minimised* and is a pure function of per-sequence statistics: the training
loop runs the model, turns its outputs into one number per sequence with
:mod:`pebench_core.statistics`, packs them in a :class:`LossInputs` and calls the method's loss.

Notation (one row per sequence ``i`` of a set):

* ``ℓθ(y_i) = logp_sum[i]`` — sum of the answer-token log-probs under the model being
  unlearned θ (the LoRA adapter enabled);
* ``ℓref(y_i)`` — the same under the reference model (adapter disabled, no gradient);
* ``NLL_i = −logp_sum[i] / n_tokens[i]`` — mean answer-token negative log-likelihood;
* a set's ``NLL`` is the **mean over its sequences** of ``NLL_i`` (so a long answer does not
  outweigh a short one, and the value does not depend on batching or padding).

Calling convention (every method's loss; :class:`LossFn`)::

    out = loss(inputs, retain_weight=λ, beta=β, state=None, **its_own_settings)
    out.loss      # scalar tensor to back-propagate
    out.parts     # dict of detached floats for logging
    out.state     # a stateful method's state for the next step, else None
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, TypeVar

import torch

__all__ = [
    "LossInputs",
    "LossOutput",
    "LossFn",
    "sequence_nll",
    "forget_nll",
    "retain_nll",
    "with_retain",
    "given",
    "per_sequence",
    "same_shape",
    "as_float",
]


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


def given(value: _T | None, method: str, name: str) -> _T:
    """``value``, which must not be ``None``: narrows an optional :class:`LossInputs` field.

    Called after :meth:`LossInputs.require` has checked the same field, so in practice it
    never raises; if it did, the message would be the one ``require`` gives for ``name``.
    """
    if value is None:
        raise ValueError(f"loss '{method}' needs input(s) {name} but they are None")
    return value


def per_sequence(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (one value per sequence), got shape {tuple(x.shape)}")
    return x


def sequence_nll(logp_sum: torch.Tensor, n_tokens: torch.Tensor, name: str = "logp_sum") -> torch.Tensor:
    """Per-sequence mean answer-token NLL, ``−logp_sum / n_tokens`` (shape ``[B]``)."""
    per_sequence(logp_sum, name)
    n = torch.as_tensor(n_tokens, device=logp_sum.device)
    if n.shape != logp_sum.shape:
        raise ValueError(f"{name} has shape {tuple(logp_sum.shape)} but its n_tokens has shape {tuple(n.shape)}")
    if bool((n <= 0).any()):
        raise ValueError(f"{name}: every sequence needs at least one answer token (n_tokens has a value <= 0)")
    return -logp_sum / n.to(logp_sum.dtype)


def same_shape(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} has shape {tuple(a.shape)} but {nb} has shape {tuple(b.shape)}")


def as_float(x: torch.Tensor) -> float:
    return float(x.detach().float().cpu())


def retain_nll(inp: LossInputs, method: str) -> torch.Tensor:
    inp.require(method, "retain_logp_sum", "retain_n_tokens")
    return sequence_nll(
        given(inp.retain_logp_sum, method, "retain_logp_sum"),
        given(inp.retain_n_tokens, method, "retain_n_tokens"),
        "retain_logp_sum",
    ).mean()


def with_retain(
    method: str, forget_term: torch.Tensor, inp: LossInputs, retain_weight: float, parts: dict[str, float]
) -> LossOutput:
    """``forget_term + λ·NLL_r``; with ``λ = 0`` the retain inputs may be ``None``."""
    loss = forget_term
    parts["forget_loss"] = as_float(forget_term)
    if retain_weight != 0:
        r = retain_nll(inp, method)
        loss = loss + retain_weight * r
        parts["retain_loss"] = as_float(r)
    parts["loss"] = as_float(loss)
    return LossOutput(loss=loss, parts=parts)


def forget_nll(inp: LossInputs, method: str) -> torch.Tensor:
    inp.require(method, "forget_logp_sum", "forget_n_tokens")
    return sequence_nll(
        given(inp.forget_logp_sum, method, "forget_logp_sum"),
        given(inp.forget_n_tokens, method, "forget_n_tokens"),
        "forget_logp_sum",
    )


# ---------------------------------------------------------------------------------------
# The signature of a loss


class LossFn(Protocol):
    """The signature of every registered objective (see the module docstring)."""

    def __call__(self, inp: LossInputs, /, *, retain_weight: float = ..., beta: float = ..., state: Any = ...) -> LossOutput: ...
