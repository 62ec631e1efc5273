"""The evaluation harness: answers from a model, and the six metrics for a target (design: Metrics).

For a target's forget split, each concept has one *view*:

====================  =========================================  =========================================
metric                person view (forget people)                event view (forget events)
====================  =========================================  =========================================
efficacy              1 − name match, forget images              1 − event score, forget images
generality            1 − name match, held-out forget renders    1 − event score, held-out forget renders
retain                name match, retain images                  event score, retain images
scope                 event score, the same forget images        name match, the same forget images
real                  name match, pre-training people            event score, pre-training scenes
world fact            POPE accuracy                              POPE accuracy
====================  =========================================  =========================================

Target ``person`` measures the person view, ``event`` the event view, ``both`` both views.
Each view also reports ``scope_retain``: the other concept on the *retain* images, the
control that scope is compared with (is the other concept hurt on the forget images
specifically, or everywhere?). It is not one of the paper's six metrics.
Every (image, question) is generated once per model, however many metrics use it, by
batched greedy decoding; a metric is a mean over items, so it does not depend on the
batch size or padding (tested).
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

from . import metrics as M
from .data import QA, Dataset, Item, event_qa, person_qa, pope_qa, split_sets
from .models import ModelBundle, generate
from .scorers import get_scorer

if TYPE_CHECKING:
    from .config import EvalConfig

CONCEPTS_OF = {"person": ("person",), "event": ("event",), "both": ("person", "event")}


def sample(items: Sequence, k: int, seed: int, salt: str) -> list:
    """A seeded sample of at most ``k`` items (0 = all), the same for every model compared."""
    items = list(items)
    if k <= 0 or len(items) <= k:
        return items
    rng = random.Random(f"{seed}:{salt}")
    return sorted(rng.sample(items, k), key=lambda i: getattr(i, "id", getattr(i, "item_id", "")))


@dataclass
class EvalPlan:
    """Which questions on which images a target's metrics need (the same for every model)."""

    target: str
    sets: dict[str, list] = field(default_factory=dict)  # split name -> items (or POPE QA)

    def questions(self, ds: Dataset) -> list[QA]:
        """Every distinct (image, question) the metrics need, in a fixed order."""
        seen, out = set(), []
        for split, items in self.sets.items():
            if split == "pope":
                qas = items
            else:
                kind = split.split(":")[0]
                qas = person_qa(items, ds) if kind == "person" else event_qa(items, ds)
            for q in qas:
                key = (q.item_id, q.question)
                if key not in seen:
                    seen.add(key)
                    out.append(q)
        return out


def validation_sets(ds: Dataset, target: str, n: int, seed: int = 0) -> dict[str, list[Item]]:
    """The validation subset of ``target``, which the learning-rate grid is scored on and
    :func:`plan` never evaluates: per concept, ``n`` seeded forget images of that concept
    (``"<concept>:forget"``), and ``n`` retain images (``"retain"``, shared by the concepts).
    Each takes at most a quarter of its pool, so the final metrics keep most of their items.
    They stay in the sets the methods train on: what is held out is the measurement."""
    if n <= 0:
        return {}
    s = split_sets(ds, target)
    fp, fe = set(s.forget_people), set(s.forget_events)
    out: dict[str, list[Item]] = {}
    for concept in CONCEPTS_OF[target]:
        pool = [i for i in s.forget if (i.person in fp if concept == "person" else i.event in fe)]
        out[f"{concept}:forget"] = sample(pool, min(n, len(pool) // 4), seed, f"validation:{concept}:forget")
    out["retain"] = sample(s.retain, min(n, len(s.retain) // 4), seed, "validation:retain")
    return {k: v for k, v in out.items() if v}


def validation_ids(ds: Dataset, target: str, cfg: EvalConfig, seed: int = 0) -> set[str]:
    """The ids of every validation image of ``target`` (see :func:`validation_sets`)."""
    return {i.id for items in validation_sets(ds, target, cfg.val_items, seed).values() for i in items}


def held_out_ids(ds: Dataset, target: str, cfg: EvalConfig, seed: int = 0) -> set[str]:
    """The images no final metric of ``target`` evaluates: its own validation images and the
    validation forget images of *both* concepts (those of target ``both``, which a single
    target's grid does not use). So every target samples a concept's forget images from one
    pool: target ``both`` answers the very person- and event-forget images the single targets
    answer, and finding 4 compares them image by image (a paired interval)."""
    both = validation_sets(ds, "both", cfg.val_items, seed) if "both" in ds.splits else {}
    forget = {i.id for k, items in both.items() if k.endswith(":forget") for i in items}
    return validation_ids(ds, target, cfg, seed) | forget


def plan(ds: Dataset, target: str, cfg: EvalConfig, seed: int = 0) -> EvalPlan:
    """The evaluation plan of ``target``: item sets per (question kind : split), sampled to
    ``cfg.max_items``, the validation images (:func:`held_out_ids`) left out. A concept's
    forget sample is the same for every target that forgets it."""
    s = split_sets(ds, target)
    fp, fe = set(s.forget_people), set(s.forget_events)
    held_out = held_out_ids(ds, target, cfg, seed)
    retain_pool = [i for i in s.retain if i.id not in held_out]
    k = cfg.max_items
    sets: dict[str, list] = {}
    for concept in CONCEPTS_OF[target]:
        other = "event" if concept == "person" else "person"
        hit = (lambda i: i.person in fp) if concept == "person" else (lambda i: i.event in fe)
        other_hit = (lambda i: i.event in fe) if concept == "person" else (lambda i: i.person in fp)
        pool = [i for i in s.forget if hit(i) and i.id not in held_out]
        forget = sample(pool, k, seed, f"{concept}:forget")
        sets[f"{concept}:forget"] = forget
        # Scope asks whether the *other* concept survived on these images, so it is measured
        # where that concept is kept: under target both, a forget person's image at a forget
        # event must lose both, and would count a perfect forgetter as interference.
        kept = [i for i in pool if not other_hit(i)]
        scope = forget if len(kept) == len(pool) else sample(kept, k, seed, f"{other}:scope-of-{concept}")
        sets[f"{other}:scope-of-{concept}"] = scope
        held = [i for i in s.forget_heldout if hit(i)]
        if held:
            sets[f"{concept}:heldout"] = sample(held, k, seed, f"{concept}:heldout")
        sets[f"{concept}:retain"] = sample(retain_pool, k, seed, f"{concept}:retain")
        # The other concept on the same retain images: the control that scope is compared with.
        sets[f"{other}:scope-retain-of-{concept}"] = sets[f"{concept}:retain"]
        if s.pretrain_eval:
            pre = s.pretrain_eval if concept == "person" else [i for i in s.pretrain_eval if i.event not in fe]
            sets[f"{concept}:real"] = sample(pre, k, seed, f"{concept}:real")
    pope = pope_qa(ds, "pretrain_eval")
    if pope:
        sets["pope"] = sample(pope, k, seed, "pope")
    return EvalPlan(target, sets)


def answer_all(
    bundle: ModelBundle, ds: Dataset, qas: Sequence[QA], cfg: EvalConfig, load_image: Callable | None = None
) -> dict[tuple[str, str], str]:
    """Generate an answer to every question; keyed by (item id, question)."""
    load = load_image or (lambda q: ds.image(q.item_id))
    answers = generate(
        bundle, [load(q) for q in qas], [q.question for q in qas], max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    return {(q.item_id, q.question): a for q, a in zip(qas, answers)}


def plan_set(split: str, concept: str) -> str:
    """The name, in an :class:`EvalPlan`, of ``concept``'s view's item set ``split`` (one of
    :data:`pebench_core.metrics.SPLITS`); its prefix is the question its items are asked."""
    other = "event" if concept == "person" else "person"
    if split == "pope":
        return "pope"
    if split in ("scope", "scope_retain"):
        return f"{other}:{split.replace('_', '-')}-of-{concept}"
    return f"{concept}:{split}"


def metrics_from_answers(ds: Dataset, p: EvalPlan, answers: dict[tuple[str, str], str], scorer) -> list[M.MetricResult]:
    """The metric results of plan ``p`` from a table of answers (pure: no model involved):
    every registered metric (:data:`pebench_core.metrics.METRICS`) of each view of the target
    whose item set the plan holds."""
    out: list[M.MetricResult] = []

    def ans(qas):
        return [answers[(q.item_id, q.question)] for q in qas]

    for concept in CONCEPTS_OF[p.target]:
        for m in M.metrics_of(concept):
            items = p.sets.get(plan_set(m.split, concept))
            if not items:
                continue
            if m.asks == "pope":
                ids = [f"{q.item_id}:{q.object}" for q in items]
                r = m.fn(ans(items), [q.answer.lower().startswith("yes") for q in items], ids, concept=concept)
            elif m.asks == "person":
                r = m.fn(ans(person_qa(items, ds)), [ds.person(i.person).name for i in items], [i.id for i in items])
            else:
                r = m.fn(ans(event_qa(items, ds)), [event_reference(ds, i) for i in items], scorer, [i.id for i in items])
            out.append(dataclasses.replace(r, name=m.metric))
    return out


def validation_score(
    bundle: ModelBundle, ds: Dataset, target: str, cfg: EvalConfig, seed: int = 0, scorer=None
) -> dict[str, float]:
    """Efficacy and retain of ``target``'s concepts on its validation images, and the
    learning-rate grid's criterion: the mean over the concepts of (efficacy + retain) / 2.

    Both are scored as the final metrics are (name match, the event scorer), so a rate that
    forgets by breaking the model (efficacy up, retain down) scores no better than one that
    does nothing (efficacy down, retain up)."""
    scorer = scorer or get_scorer(cfg.scorer)
    val = validation_sets(ds, target, cfg.val_items, seed)
    if not val:
        raise ValueError(f"target {target!r} has no validation images (eval.val_items={cfg.val_items})")
    wanted: dict[str, tuple[str, list[Item]]] = {}
    for concept in CONCEPTS_OF[target]:
        wanted[f"efficacy/{concept}"] = (concept, val.get(f"{concept}:forget", []))
        wanted[f"retain/{concept}"] = (concept, val.get("retain", []))
    qas = {name: (person_qa(items, ds) if c == "person" else event_qa(items, ds)) for name, (c, items) in wanted.items()}
    answers = answer_all(bundle, ds, [q for qs in qas.values() for q in qs], cfg)
    out: dict[str, float] = {}
    for name, (concept, items) in wanted.items():
        if not items:
            continue
        a = [answers[(q.item_id, q.question)] for q in qas[name]]
        efficacy = name.startswith("efficacy/")
        if concept == "person":
            fn = M.person_efficacy if efficacy else M.person_retain
            out[name] = fn(a, [ds.person(i.person).name for i in items]).value
        else:
            fn = M.event_efficacy if efficacy else M.event_retain
            out[name] = fn(a, [event_reference(ds, i) for i in items], scorer).value
    per_concept = [(out[f"efficacy/{c}"] + out[f"retain/{c}"]) / 2 for c in CONCEPTS_OF[target] if f"efficacy/{c}" in out]
    out["criterion"] = sum(per_concept) / len(per_concept)
    return out


def event_reference(ds: Dataset, item: Item):
    """The event to score against; a per-image description (real data) replaces the event's."""
    e = ds.event(item.event)
    if item.description and item.description != e.description:
        return dataclasses.replace(e, description=item.description)
    return e


@dataclass
class Evaluation:
    target: str
    results: list[M.MetricResult]
    answers: pd.DataFrame  # item_id, question, answer
    seconds: float
    n_questions: int

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"concept": r.concept, "metric": r.name, "value": r.value, "n": r.n, "scorer": r.scorer or "name_match"}
                for r in self.results
            ]
        )


def evaluate(
    bundle: ModelBundle, ds: Dataset, target: str, cfg: EvalConfig, seed: int = 0, scorer=None, load_image: Callable | None = None
) -> Evaluation:
    """Every metric of ``target`` for one model (the adapter, if any, is on)."""
    p = plan(ds, target, cfg, seed)
    qas = p.questions(ds)
    t0 = time.perf_counter()
    answers = answer_all(bundle, ds, qas, cfg, load_image)
    secs = time.perf_counter() - t0
    scorer = scorer or get_scorer(cfg.scorer)
    results = metrics_from_answers(ds, p, answers, scorer)
    table = pd.DataFrame([{"item_id": k[0], "question": k[1], "answer": v} for k, v in answers.items()])
    return Evaluation(target, results, table, secs, len(qas))


def knowledge_report(
    bundle: ModelBundle, ds: Dataset, cfg: EvalConfig, seed: int = 0, forget_target: str = "person", scorer=None
) -> pd.DataFrame:
    """What a model knows, question by question (chapter 2's table): one row per probe with
    the share answered right (names: exact full-name match; events: the event score).

    Probes: names on training renders and on held-out renders of the retained people, names
    of the forget people (what goal(person) must not know), event descriptions on held-out
    renders, the pre-training world's people, and POPE.
    """
    scorer = scorer or get_scorer(cfg.scorer)
    s = split_sets(ds, forget_target)
    fp = set(split_sets(ds, "person").forget_people)
    probes = {
        "names, training renders": ("person", [i for i in s.retain if i.person not in fp]),
        "names, held-out renders": ("person", [i for i in s.retain_heldout if i.person not in fp]),
        "names of the forget people (training renders)": ("person", [i for i in ds.items_where(role="train") if i.person in fp]),
        "events, held-out renders": ("event", ds.items_where(role="heldout") or s.retain),
        "real-world people (pre-training world)": ("person", s.pretrain_eval),
        "events in the pre-training world": ("event", s.pretrain_eval),
    }
    rows, qas_all, plan_rows = [], [], []
    for name, (kind, items) in probes.items():
        items = sample(items, cfg.max_items, seed, f"report:{name}")
        if not items:
            continue
        qas = person_qa(items, ds) if kind == "person" else event_qa(items, ds)
        plan_rows.append((name, kind, items, qas))
        qas_all += qas
    pope = sample(pope_qa(ds, "pretrain_eval"), cfg.max_items, seed, "pope")
    answers = answer_all(bundle, ds, qas_all + pope, cfg)
    for name, kind, items, qas in plan_rows:
        a = [answers[(q.item_id, q.question)] for q in qas]
        if kind == "person":
            vals = [float(M.name_match(x, ds.person(i.person).name)) for x, i in zip(a, items)]
        else:
            vals = list(scorer.score(a, [event_reference(ds, i) for i in items]))
        rows.append(
            {
                "probe": name,
                "score": sum(vals) / len(vals),
                "n": len(vals),
                "measure": "name match" if kind == "person" else f"event score ({scorer.name})",
            }
        )
    if pope:
        r = M.world_fact([answers[(q.item_id, q.question)] for q in pope], [q.answer.lower().startswith("yes") for q in pope])
        rows.append({"probe": "POPE yes/no objects (pre-training world)", "score": r.value, "n": r.n, "measure": "accuracy"})
    return pd.DataFrame(rows)
