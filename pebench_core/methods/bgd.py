"""Balanced gradient difference (BGD), the paper's mitigation for forgetting people and events at
once, in two variants: GD's and KL's forget term, balanced across the two concepts.

The paper publishes no formula; this is our reconstruction (design: Unlearning methods), one
file with both entries. They share their settings, ``unlearn.bgd.*``; chapter 5 studies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

import torch

from ..losses import LossInputs, LossOutput, as_float, given, per_sequence, sequence_nll
from ..ranges import Range
from .registry import Method, setting


@dataclass(frozen=True)
class Settings:
    """BGD's own hyper-parameter (``unlearn.bgd.*``), shared by its two variants."""

    max_weight: float = setting(
        4.0,
        Range(lo=1, why="a weight bound ρ keeps each weight within [1/ρ, ρ]; 1 is no reweighting"),
        "the bound ρ: each concept's weight stays within [1/ρ, ρ]",
    )


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
    max_weight: float = 4.0,
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
        given(inp.forget_logp_sum, method, "forget_logp_sum"),
        given(inp.forget_n_tokens, method, "forget_n_tokens"),
        "forget_logp_sum",
    )
    groups = _concept_groups(given(inp.forget_concepts, method, "forget_concepts"), nll.shape[0], "forget_concepts")
    terms = {c: -nll[idx.to(nll.device)].mean() for c, idx in groups.items()}
    norms = {c: float(grad_norm(t)) for c, t in terms.items()}
    weights = bgd_weights(norms, max_weight)
    k = len(terms)
    parts: dict[str, float] = {}
    forget = nll.new_zeros(())
    for c, t in terms.items():
        forget = forget + (weights[c] / k) * t
        parts[f"forget_term/{c}"] = as_float(t)
        parts[f"grad_norm/{c}"] = norms[c]
        parts[f"weight/{c}"] = weights[c]
    if {"person", "event"} <= set(norms) and norms["person"] > 0:
        parts["grad_norm_ratio"] = norms["event"] / norms["person"]
        parts["balanced_ratio"] = parts["grad_norm_ratio"] * weights["event"] / weights["person"]
    parts["forget_loss"] = as_float(forget)
    parts["forget_nll"] = as_float(nll.mean())
    loss = forget
    if retain_weight != 0:
        if retain == "nll":
            inp.require(method, "retain_logp_sum", "retain_n_tokens", "retain_concepts")
            per_seq = sequence_nll(
                given(inp.retain_logp_sum, method, "retain_logp_sum"),
                given(inp.retain_n_tokens, method, "retain_n_tokens"),
                "retain_logp_sum",
            )
        else:
            inp.require(method, "retain_kl", "retain_concepts")
            per_seq = per_sequence(given(inp.retain_kl, method, "retain_kl"), "retain_kl")
        rgroups = _concept_groups(given(inp.retain_concepts, method, "retain_concepts"), per_seq.shape[0], "retain_concepts")
        rterms = {c: per_seq[idx.to(per_seq.device)].mean() for c, idx in rgroups.items()}
        r = torch.stack(list(rterms.values())).mean()
        for c, t in rterms.items():
            parts[f"retain_loss/{c}"] = as_float(t)
        parts["retain_loss"] = as_float(r)
        loss = loss + retain_weight * r
    parts["loss"] = as_float(loss)
    return LossOutput(loss=loss, parts=parts)


def gd_bgd_loss(
    inp: LossInputs,
    *,
    retain_weight: float = 1.0,
    beta: float = 0.1,
    grad_norm: Callable[[torch.Tensor], float] | None = None,
    max_weight: float = 4.0,
    state: Any = None,
) -> LossOutput:
    """GD with BGD balancing (see :func:`bgd_loss`): retain term = mean over concepts of ``NLL_r(c)``."""
    return bgd_loss(inp, retain="nll", retain_weight=retain_weight, grad_norm=grad_norm, max_weight=max_weight, method="gd+bgd")


def kl_bgd_loss(
    inp: LossInputs,
    *,
    retain_weight: float = 1.0,
    beta: float = 0.1,
    grad_norm: Callable[[torch.Tensor], float] | None = None,
    max_weight: float = 4.0,
    state: Any = None,
) -> LossOutput:
    """KL with BGD balancing (see :func:`bgd_loss`): retain term = mean over concepts of mean ``KL_i``."""
    return bgd_loss(inp, retain="kl", retain_weight=retain_weight, grad_norm=grad_norm, max_weight=max_weight, method="kl+bgd")


BGD_FORGET = r"\frac{1}{K}\sum_{c} w_c\,\big(-\mathrm{NLL}_f(c)\big)"
BGD_WEIGHTS = (
    r"\quad w_c = \mathrm{clip}\!\Big(\frac{\bar g}{g_c},\ \tfrac{1}{\rho},\ \rho\Big),\ "
    r"g_c = \big\lVert\nabla_\theta \mathrm{NLL}_f(c)\big\rVert,\ \bar g = \tfrac{1}{K}\textstyle\sum_c g_c"
)
BGD_ABOUT = (
    "**BGD** is the paper's mitigation for forgetting people and events at once; its formula is not "
    "published, and this is our reconstruction: every step draws the two concepts in equal numbers, "
    "measures the norm of each concept's forget gradient, and weights the two forget terms so that "
    r"their gradients are equal, each weight clipped to $[1/\rho, \rho]$ so that a concept whose "
    "gradient has all but vanished is never amplified by orders of magnitude. The retain term is the "
    "base method's, in full. Chapter 5 studies it."
)
COMMON: dict[str, Any] = dict(
    citation="xu2025pebench",
    about=BGD_ABOUT,
    targets=("both",),
    settings=Settings,
    settings_name="bgd",
    chapter=False,
    needs_concepts=True,
    needs_grad_norm=True,
)

GD_BGD = Method(
    "gd+bgd",
    loss=gd_bgd_loss,
    title="GD with balanced concepts (GD+BGD)",
    summary="GD with balanced concepts (our BGD reconstruction): the concepts' forget gradients equalised, weights bounded",
    formula=r"\mathcal{L} = " + BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c \mathrm{NLL}_r(c)," + BGD_WEIGHTS,
    balances="gd",
    needs_retain=True,
    **COMMON,
)

KL_BGD = Method(
    "kl+bgd",
    loss=kl_bgd_loss,
    title="KL with balanced concepts (KL+BGD)",
    summary="KL with balanced concepts (our BGD reconstruction): the concepts' forget gradients equalised, weights bounded",
    formula=r"\mathcal{L} = " + BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c"
    r" \mathbb{E}_{D_r(c)}\!\left[\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)\right]," + BGD_WEIGHTS,
    balances="kl",
    needs_kl=True,
    **COMMON,
)

METHODS = (GD_BGD, KL_BGD)
