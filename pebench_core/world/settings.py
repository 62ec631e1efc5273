"""The world's settings (``world.*``): what the synthetic PEBench world holds, and how many of
its people and events a forget share selects. :mod:`pebench_core.config` validates them with
the rest of a run's settings."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorldConfig", "forget_count"]


@dataclass(frozen=True)
class WorldConfig:
    """The synthetic PEBench world (design: The world)."""

    n_people: int = 20  # fictitious people (PEBench: 200)
    n_events: int = 40  # event scenes, taken in catalogue order (PEBench: 40)
    n_real_people: int = 6  # "real-world" people the base model knows before PEBench
    image_size: int = 64  # square renders, pixels
    train_renders: int = 1  # training renders per (person, event) pair
    heldout_renders: int = 1  # held-out renders per pair, for generality (never trained on)
    pretrain_renders: int = 1  # pre-training renders per (real person, event) pair
    pretrain_eval_renders: int = 1  # held-out pre-training renders, for the "real" metrics
    pope_questions: int = 2  # yes/no object questions per pre-training render (half yes)
    # Share of people / of events in the forget set. 0.3 of 20 people and 40 events forgets 6
    # people and 12 events: every verdict rests on findings.min_people / min_events at least.
    forget_share: float = 0.3
    # The never-seen group (membership inference): fictitious people and events no model trains
    # on, rendered with a seed stream of their own, so the other images are unchanged.
    n_unseen_people: int = 2
    n_unseen_events: int = 4
    data_dir: str = ""  # a real PEBench folder; empty = the embedded synthetic world


def forget_count(n: int, share: float) -> int:
    """How many of ``n`` items a forget share selects: rounded, and at least one."""
    return max(1, int(round(n * share)))
