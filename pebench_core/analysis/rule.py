"""The book's one verdict rule: every table and every generated sentence that calls a claim
holds or fails reads it from :func:`decide`.

A claim is one-sided, "quantity > 0" (the paper's findings) or "the recovery d stays below the
margin" (a forgetting that survives a probe), and is judged on its bootstrap interval:

1. **cannot test** — the reference side sits at a ceiling or a floor, so the quantity has no
   room to move the way the claim says (a method that forgot everything on one target cannot
   forget less on another; a model that forgot nothing has nothing to relearn), or the
   quantity is undefined. The caller says why (``room``); :func:`at_bound` is the test for a
   bound. No such sub-test counts for or against a claim.
2. **inconclusive** — the interval straddles the margin: it admits no effect and an effect
   worth the name at once (also when the quantity is undefined in more than ``max_nan`` of
   the bootstrap replicates).
3. otherwise the claim's two words: **reproduced / contradicted** for a finding, **breaks /
   holds** for a probe. With several seeds or splits, every seed's own estimate must lie on
   the same side as the interval, or the call is inconclusive: splits that disagree decide
   nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = [
    "REPRODUCED",
    "CONTRADICTED",
    "HOLDS",
    "BREAKS",
    "INCONCLUSIVE",
    "CANNOT_TEST",
    "BOUND_TOL",
    "FORGOT",
    "Claim",
    "FINDING",
    "SURVIVAL",
    "at_bound",
    "decide",
    "decided",
]

REPRODUCED, CONTRADICTED = "reproduced", "contradicted"
BREAKS, HOLDS = "breaks", "holds"
INCONCLUSIVE, CANNOT_TEST = "inconclusive", "cannot test"

#: A method *forgot* a concept when its efficacy rose at least this much above the fine-tuned
#: model's (the floor of efficacy is the model that knows). Below it, a claim about what its
#: forgetting does has nothing to test: interference (finding 3), efficacy lost when both
#: concepts are forgotten at once (finding 4) or recovered by BGD (finding 5), a probe bringing
#: the knowledge back (chapter 7).
FORGOT = 0.25

#: A score within this of 0 or 1 sits at its floor or ceiling: one or two items of a metric's
#: 80 from the bound, too close for a change in the claimed direction to be told from noise.
BOUND_TOL = 0.02


@dataclass(frozen=True)
class Claim:
    """How a claim's interval is read: ``positive`` when the interval lies above 0 and the
    estimate is at least ``min_effect``; ``negative`` when it lies below the margin."""

    positive: str
    negative: str
    min_effect_is_margin: bool = False  # a probe "breaks" only when d also reaches the margin


FINDING = Claim(REPRODUCED, CONTRADICTED)
SURVIVAL = Claim(BREAKS, HOLDS, min_effect_is_margin=True)


def at_bound(value: float, *, floor: bool, tol: float = BOUND_TOL, lo: float = 0.0, hi: float = 1.0) -> bool:
    """Whether ``value`` sits at its scale's floor (``floor=True``) or ceiling, within ``tol``.
    An undefined value sits nowhere (``False``)."""
    if not np.isfinite(value):
        return False
    return bool(value <= lo + tol) if floor else bool(value >= hi - tol)


def decide(
    est,
    margin: float,
    *,
    claim: Claim = FINDING,
    room: str = "",
    max_nan: float = 0.05,
) -> str:
    """The verdict of the module docstring for an estimate ``est`` (an object with ``value``,
    ``lo``, ``hi``, ``per_seed`` (seed → estimate) and ``nan_share``, or ``None``).

    ``room`` is the reason the claim cannot be tested here ("" when it can)."""
    if room:
        return CANNOT_TEST
    if est is None or not np.isfinite(est.value):
        return CANNOT_TEST
    if getattr(est, "nan_share", 0.0) > max_nan or not (np.isfinite(est.lo) and np.isfinite(est.hi)):
        return INCONCLUSIVE
    seeds = list(getattr(est, "per_seed", {}).values())
    min_effect = margin if claim.min_effect_is_margin else 0.0
    if est.lo > 0 and est.value >= min_effect and all(v > 0 for v in seeds):
        return claim.positive
    if est.hi < margin and all(v < margin for v in seeds):
        return claim.negative
    return INCONCLUSIVE


def decided(verdicts: Mapping | list) -> float:
    """The share of verdicts that decide something (neither inconclusive nor cannot test)."""
    v = list(verdicts.values()) if isinstance(verdicts, Mapping) else list(verdicts)
    return sum(x not in (INCONCLUSIVE, CANNOT_TEST) for x in v) / len(v) if v else 0.0
