"""Paraphrased questions: does forgetting hold for a question worded as no model was trained
or unlearned on? Efficacy on the forget images and retain on the retain images, each image
asked one of the world's paraphrases (seeded per image)."""

from __future__ import annotations

import random

from ..data import Item
from ..world import PARAPHRASES
from .context import Ask, Context, Planned
from .registry import Probe


def metrics(r) -> tuple[str, ...]:
    return ("paraphrase_efficacy", "paraphrase_retain")


def paraphrase_of(item: Item, concept: str, seed: int) -> str:
    """The paraphrase ``item`` is asked (the same for the same seed)."""
    return random.Random(f"{seed}:paraphrase:{concept}:{item.id}").choice(PARAPHRASES[concept])


def paraphrase_asks(ctx: Context, concept: str) -> list[Planned]:
    ds, seed = ctx.ds, ctx.cfg.seed
    out = []
    for name, eff, items in (
        ("paraphrase_efficacy", True, ctx.sets.forget[concept]),
        ("paraphrase_retain", False, ctx.sets.retain[concept]),
    ):
        worded = [(i, paraphrase_of(i, concept, seed)) for i in items]
        out.append(Planned(concept, name, eff, items, [Ask((i.id, p), lambda i=i: ds.image(i), p) for i, p in worded]))
    return out


PROBE = Probe(
    "paraphrase",
    "Paraphrased questions",
    "Does forgetting hold for a question worded differently?",
    metrics,
    asks=paraphrase_asks,
)
