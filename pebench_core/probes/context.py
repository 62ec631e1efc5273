"""What every probe of one (model, target) reads: the item sets, the model, and the helpers
that ask it questions and score the answers.

:func:`probe_sets` draws the items (the same for every model, seeded); :class:`Context` is what
a probe's ``asks`` and ``run`` receive; :class:`Planned` is one metric's generation asks, all of
which :func:`answer_plan` answers in one batched call, each distinct (image, question) once.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from PIL import Image

from .. import metrics as M
from ..data import QA, Dataset, Item, event_qa, person_qa, split_sets
from ..errors import ConfigError
from ..evaluate import CONCEPTS_OF, event_reference, held_out_ids, sample
from ..models import ModelBundle, generate

if TYPE_CHECKING:
    from ..config import RunConfig

__all__ = ["ProbeSets", "probe_sets", "Context", "Ask", "Planned", "label", "qa", "score", "plain", "answer_plan"]


@dataclass
class ProbeSets:
    """Per concept: ``forget`` (a seeded sample of its forget images, the validation images
    left out), ``retain``, the relearning split of its forget images (``relearn_train``,
    ``relearn_eval``), ``unseen`` (never-seen items of its kind) and, for the linear probe,
    ``probe_train`` (training renders) and ``probe_test`` (held-out renders) of its forget
    people or events."""

    target: str
    forget: dict[str, list[Item]]
    retain: dict[str, list[Item]]
    relearn_train: dict[str, list[Item]]
    relearn_eval: dict[str, list[Item]]
    members: dict[str, list[Item]]
    unseen: dict[str, list[Item]]
    probe_train: dict[str, list[Item]]
    probe_test: dict[str, list[Item]]


def label(item: Item, concept: str) -> str:
    """The item's person or event id: what a probe of ``concept`` tells apart."""
    return item.person if concept == "person" else item.event


def probe_sets(ds: Dataset, target: str, cfg: RunConfig) -> ProbeSets:
    """The items of :class:`ProbeSets` for ``target`` (seeded by ``cfg.seed``; a target's split
    that is empty is a :class:`ConfigError` naming it)."""
    s = split_sets(ds, target)
    fp, fe = set(s.forget_people), set(s.forget_events)
    held = held_out_ids(ds, target, cfg.eval, cfg.seed)
    k, seed, r = cfg.robust.items, cfg.seed, cfg.robust
    out = ProbeSets(target, {}, {}, {}, {}, {}, {}, {}, {})
    retain_pool = [i for i in s.retain if i.id not in held]
    if not retain_pool:
        raise ConfigError(f"target {target!r} has no retain images to probe; lower world.forget_share")
    unseen_people = {p.id for p in ds.unseen_people}
    unseen_events = {e.id for e in ds.unseen_events}
    for concept in CONCEPTS_OF[target]:
        hit = (lambda i: i.person in fp) if concept == "person" else (lambda i: i.event in fe)
        pool = [i for i in s.forget if hit(i) and i.id not in held]
        if len(pool) < 2:
            raise ConfigError(
                f"target {target!r} has {len(pool)} forget image(s) of its {concept} concept outside the validation "
                f"subset; the probes need at least 2 (raise world.forget_share or lower eval.val_items)"
            )
        out.forget[concept] = forget = sample(pool, k, seed, f"robust:{concept}:forget")
        out.retain[concept] = sample(retain_pool, k, seed, f"robust:{concept}:retain")
        # Relearning trains on a share of the pool drawn first from outside the forget sample
        # and is measured on the rest of that sample, so its step 0 is the clean answers
        # (asked once) and its curve reads on the same images as every other efficacy.
        in_sample = {i.id for i in forget}
        shuffled = random.Random(f"{seed}:robust:{target}:{concept}:relearn").sample(pool, len(pool))
        shuffled.sort(key=lambda i: i.id in in_sample)  # stable: outside the sample first
        n_train = min(len(pool) - 1, max(1, round(r.relearn_share * len(pool))))
        train_ids = {i.id for i in shuffled[:n_train]}
        out.relearn_train[concept] = sorted(shuffled[:n_train], key=lambda i: i.id)
        out.relearn_eval[concept] = [i for i in forget if i.id not in train_ids]  # never empty: train < pool
        out.members[concept] = sample(pool, cfg.eval.max_items, seed, f"robust:{concept}:members")
        if concept == "person":
            unseen = [i for i in ds.items_where(role="unseen") if i.person in unseen_people]
        else:
            unseen = [i for i in ds.items_where(role="unseen") if i.event in unseen_events]
        out.unseen[concept] = sample(unseen, cfg.eval.max_items, seed, f"robust:{concept}:unseen")
        out.probe_train[concept] = sample(pool, cfg.eval.max_items, seed, f"robust:{concept}:probe-train")
        out.probe_test[concept] = sample(
            [i for i in s.forget_heldout if hit(i)], cfg.eval.max_items, seed, f"robust:{concept}:probe-test"
        )
    return out


@dataclass
class Context:
    """What a probe reads for one (model, target)."""

    bundle: ModelBundle  # the model probed, a plain one (any adapter merged in)
    ds: Dataset
    cfg: RunConfig
    sets: ProbeSets
    scorer: M.ScorerLike
    log: Callable[[str], None]


@dataclass(frozen=True)
class Ask:
    """One (image, question) to answer: ``key`` names it, so an ask that two metrics share is
    generated once; ``image`` makes the image only when it is asked."""

    key: tuple
    image: Callable[[], Image.Image]
    question: str


@dataclass(frozen=True)
class Planned:
    """One metric to score from generated answers: ``efficacy`` (else retain) of ``concept``,
    named ``name``, on ``items``, from the answers to ``asks`` (one per item)."""

    concept: str
    name: str
    efficacy: bool
    items: list[Item]
    asks: list[Ask]


def qa(items: Sequence[Item], ds: Dataset, concept: str, question: str | None = None) -> list[QA]:
    """The training QA pairs of ``items`` for ``concept`` (``question`` worded otherwise, if given)."""
    qas = person_qa(items, ds) if concept == "person" else event_qa(items, ds)
    return qas if question is None else [dataclasses.replace(q, question=question) for q in qas]


def score(
    ctx: Context, concept: str, name: str, answers: Sequence[str], items: Sequence[Item], efficacy: bool = True
) -> M.MetricResult:
    """An efficacy (or retain) of ``concept`` from answers on ``items``, named ``name``."""
    ids = [i.id for i in items]
    if concept == "person":
        fn = M.person_efficacy if efficacy else M.person_retain
        r = fn(list(answers), [ctx.ds.person(i.person).name for i in items], ids)
    else:
        fn_e = M.event_efficacy if efficacy else M.event_retain
        r = fn_e(list(answers), [event_reference(ctx.ds, i) for i in items], ctx.scorer, ids)
    return dataclasses.replace(r, name=name)


def ask(bundle: ModelBundle, cfg: RunConfig, asks: list[tuple[Image.Image, str]]) -> list[str]:
    """Greedy answers to (image, question) pairs, batched in one call."""
    if not asks:
        return []
    e = cfg.eval
    images, questions = [a[0] for a in asks], [a[1] for a in asks]
    return generate(bundle, images, questions, max_new_tokens=e.max_new_tokens, batch_size=cfg.robust.batch_size)


def plain(ds: Dataset, items: Sequence[Item], question: str) -> list[Ask]:
    """The asks of ``question`` on ``items``' own images."""
    return [Ask((i.id, question), lambda i=i: ds.image(i), question) for i in items]


def answer_plan(ctx: Context, bundle: ModelBundle, plan: Sequence[Planned]) -> list[M.MetricResult]:
    """Answer every entry of ``plan`` in one batched call, each distinct ask once, and score
    each entry as its metric."""
    unique: dict[tuple, Ask] = {}
    for p in plan:
        for a in p.asks:
            unique.setdefault(a.key, a)
    answers = dict(zip(unique, ask(bundle, ctx.cfg, [(a.image(), a.question) for a in unique.values()]), strict=True))
    return [score(ctx, p.concept, p.name, [answers[a.key] for a in p.asks], p.items, p.efficacy) for p in plan]
