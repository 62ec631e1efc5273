"""Choosing each method's learning rate by one stated rule (design: Unlearning methods).

A method run at someone else's learning rate tells a reader little: at one rate DPO's margin
saturates before it forgets anything, at another GA has wrecked the model. So every method
gets the same grid, ``unlearn.lr × unlearn.lr_factors``, each rate runs for the same budget
(``unlearn.grid_steps``, 0 for the whole one), and the rate kept is the one that maximises
one criterion on a **validation subset** that the final metrics never see
(:func:`pebench_core.evaluate.validation_sets`): the mean over the target's concepts of

    (efficacy + retain) / 2

on ``eval.val_items`` forget images and as many retain images. A rate that forgets by breaking
the model scores no better than one that does nothing; ties go to the lower rate (the smaller
change to the model); a rate whose run stopped early (its loss not finite) is never kept.
This module holds the rule as pure functions; :func:`pebench_core.stages.get_tuning` runs it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from .config import EvalConfig, UnlearnConfig

__all__ = ["rates", "is_tuned", "choose", "rule_text", "UNTUNED"]

UNTUNED = "not tuned: unlearn.lr as given"


def rates(u: UnlearnConfig) -> list[float]:
    """The grid, lowest rate first."""
    return sorted(u.lr * f for f in u.lr_factors)


def is_tuned(u: UnlearnConfig) -> bool:
    """Whether the profile tunes the learning rate (more than one factor)."""
    return len(u.lr_factors) > 1


def choose(points: Sequence[Mapping]) -> int:
    """The index of the kept grid point: the highest ``criterion`` among those whose
    ``status`` is ``"ok"``, ties (within 1e-9) to the lowest ``lr``. ``ValueError`` when no
    point finished."""
    ok = [k for k, p in enumerate(points) if p.get("status") == "ok" and math.isfinite(float(p["criterion"]))]
    if not ok:
        raise ValueError("no learning rate of the grid finished its run; lower unlearn.lr or its factors")
    best = max(float(points[k]["criterion"]) for k in ok)
    return min((k for k in ok if float(points[k]["criterion"]) >= best - 1e-9), key=lambda k: float(points[k]["lr"]))


def rule_text(u: UnlearnConfig, e: EvalConfig) -> str:
    """The selection rule in one line, with this profile's numbers (every result row carries it)."""
    if not is_tuned(u):
        return UNTUNED
    grid = ", ".join(f"{r:.3g}" for r in rates(u))
    steps = u.grid_steps or u.steps
    return (
        f"lr in {{{grid}}} ({steps} steps each) maximising (efficacy + retain)/2 on {e.val_items} forget "
        f"and {e.val_items} retain validation images per concept; ties to the lower rate"
    )
