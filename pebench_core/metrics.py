"""The paper's six metrics for both concepts (design: Metrics) as pure functions. Higher is better.

Each metric function takes the model's answers and the references for the same items, in
the same order, and returns a :class:`MetricResult` that keeps every per-item value, so a
number can always be traced back to its items. The aggregate is the mean over items,
computed with :func:`math.fsum`, so it is exactly the same whatever the order of the items
or the batches the answers were generated in.

================  ==========================================  ==========================================
metric            person unlearning (``person/…``)            event unlearning (``event/…``)
================  ==========================================  ==========================================
efficacy          mean(1 − name_match) on forget images       mean(1 − event score) on forget images
generality        same, on held-out renders of forget people  same, on held-out renders of forget events
retain            mean(name_match) on retain images           mean(event score) on retain images
scope             mean(event score) on the forget images      mean(name_match) on the forget images
real              mean(name_match), pre-training people       mean(event score), pre-training scenes
world_fact        POPE yes/no accuracy                        same
================  ==========================================  ==========================================

``concept`` of a result is the Table 1 column it belongs to, i.e. the concept being
unlearned for ``scope`` (``person/scope`` measures *events* on the person-forget images).

Name matching (:func:`name_match`) normalises case and punctuation, needs the **full** name
as a contiguous word sequence (a first name alone does not count), and treats a refusal
(:func:`is_refusal`) as "no name". The event score comes from a pluggable scorer
(:mod:`pebench_core.scorers`); its ``.name`` is recorded in the result.

Every function raises ``ValueError`` on an empty input (an empty forget set is an error,
never a silent 100 %) and on answers/references of different lengths.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import numpy.typing as npt

from .world.catalogue import REFUSALS

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EventLike",
    "ScorerLike",
    "MetricResult",
    "Metric",
    "METRICS",
    "SPLITS",
    "register",
    "metrics_of",
    "metric_order",
    "paper_metric_order",
    "REFUSAL_PHRASES",
    "normalise",
    "is_refusal",
    "name_match",
    "parse_yes_no",
    "person_efficacy",
    "person_generality",
    "person_retain",
    "person_real",
    "person_scope",
    "event_efficacy",
    "event_generality",
    "event_retain",
    "event_real",
    "event_scope",
    "world_fact",
    "bootstrap_ci",
    "metrics_table",
]

DIRECTION = "higher is better"


@runtime_checkable
class EventLike(Protocol):
    """Anything with an event ``description`` (str) and its ``keywords`` (list of str)."""

    description: str
    keywords: Sequence[str]


@runtime_checkable
class ScorerLike(Protocol):
    """An event scorer (see :mod:`pebench_core.scorers`)."""

    name: str

    def score(self, answers: list[str], events: list[EventLike]) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------
# Text helpers

_APOS = re.compile(r"[’‘`´]")
_POSSESSIVE = re.compile(r"'s\b")
_NONWORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace.

    Apostrophes are removed *inside* words (``don't`` → ``dont``) and a possessive ``'s``
    is dropped (``Mia Chen's`` → ``mia chen``); every other non-alphanumeric character
    (hyphens, commas, full stops …) becomes a space. Unicode is NFKC-normalised first.
    """
    if text is None:
        return ""
    t = unicodedata.normalize("NFKC", str(text)).lower()
    t = _APOS.sub("'", t)
    t = _POSSESSIVE.sub("", t)
    t = t.replace("'", "")
    return _NONWORD.sub(" ", t).strip()


#: Phrases (already normalised) that make an answer a refusal. Matched as whole words: the
#: usual ways a model declines, then every refusal the world itself teaches (PO and DPO train
#: towards those), so the two lists cannot drift apart.
_DECLINING: tuple[str, ...] = (
    "dont know",
    "do not know",
    "not able to identify",
    "unable to identify",
    "not able to tell",
    "unable to tell",
    "not able to recognize",
    "not able to recognise",
    "unable to recognize",
    "unable to recognise",
    "cant tell",
    "can not tell",
    "cannot",
    "cant identify",
    "cant say",
    "cant recognize",
    "cant recognise",
    "dont recognize",
    "do not recognize",
    "dont recognise",
    "do not recognise",
    "not sure",
    "no idea",
    "im unable",
    "i am unable",
    "im not able",
    "i am not able",
    "unknown person",
    "not possible to identify",
    "sorry",
)
REFUSAL_PHRASES: tuple[str, ...] = tuple(
    dict.fromkeys([*_DECLINING, *(normalise(r) for kind in REFUSALS.values() for r in kind)])
)


def _contains_words(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def is_refusal(text: str) -> bool:
    """True when the normalised answer contains one of :data:`REFUSAL_PHRASES` as whole words
    (e.g. "I don't know who this is.", "I'm not able to identify them", "Can't tell.")."""
    t = normalise(text)
    return any(_contains_words(t, p) for p in REFUSAL_PHRASES)


def name_match(answer: str, name: str) -> bool:
    """Does ``answer`` name the person ``name``?

    True iff the answer is not a refusal and the normalised **full** name appears in the
    normalised answer as a contiguous sequence of whole words. Case and punctuation do not
    matter (``"It's MIA CHEN."`` matches ``"Mia Chen"``); a first or last name alone does not
    match; ``"Chen, Mia"`` (reordered) does not match; a refusal never matches, even if it
    mentions the name.
    """
    n = normalise(name)
    if not n:
        raise ValueError(f"name_match: the reference name {name!r} is empty after normalisation")
    if is_refusal(answer):
        return False
    return _contains_words(normalise(answer), n)


def parse_yes_no(answer: str) -> bool | None:
    """First word of the normalised answer: ``yes`` → True, ``no`` → False, else None."""
    words = normalise(answer).split()
    if not words:
        return None
    return {"yes": True, "no": False}.get(words[0])


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class MetricResult:
    """One metric on one split. ``value`` = mean of ``per_item`` (each in [0, 1]).

    ``key`` is ``"<concept>/<name>"`` (e.g. ``person/efficacy``); ``scorer`` is the event
    scorer's name for metrics that use one (``None`` for name-based and POPE metrics).
    """

    name: str
    concept: str
    value: float
    n: int
    per_item: npt.NDArray[np.float64]
    item_ids: list[Any]
    direction: str = DIRECTION
    scorer: str | None = None

    @property
    def key(self) -> str:
        return f"{self.concept}/{self.name}"

    def ci(self, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
        """Seeded percentile bootstrap interval of the mean (see :func:`bootstrap_ci`)."""
        return bootstrap_ci(self.per_item, n_boot=n_boot, alpha=alpha, seed=seed)

    def to_dict(self, per_item: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "metric": self.name,
            "concept": self.concept,
            "key": self.key,
            "value": self.value,
            "n": self.n,
            "direction": self.direction,
            "scorer": self.scorer,
        }
        if per_item:
            d["per_item"] = [float(x) for x in self.per_item]
            d["item_ids"] = list(self.item_ids)
        return d


def _check(key: str, answers: Sequence[str], refs: Sequence[Any], ref_name: str, ids: Sequence[Any] | None) -> list[Any]:
    if answers is None or refs is None:
        raise ValueError(f"{key}: answers and {ref_name} must be given (got None)")
    na, nr = len(answers), len(refs)
    if na != nr:
        raise ValueError(f"{key}: answers has {na} items but {ref_name} has {nr}; they must be the same items in the same order")
    if na == 0:
        raise ValueError(f"{key} has no items: an empty forget set is an error, not a silent 100%")
    if ids is None:
        return list(range(na))
    ids = list(ids)
    if len(ids) != na:
        raise ValueError(f"{key}: answers has {na} items but ids has {len(ids)}")
    return ids


def _result(key: str, per_item: Iterable[float], ids: list[Any], scorer: str | None) -> MetricResult:
    concept, name = key.split("/", 1)
    arr = np.asarray(list(per_item), dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"{key}: per-item values must be finite numbers in [0, 1]")
    value = math.fsum(arr.tolist()) / arr.size  # exact: independent of order and batching
    return MetricResult(name=name, concept=concept, value=value, n=int(arr.size), per_item=arr, item_ids=ids, scorer=scorer)


def _names(key: str, answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None, invert: bool) -> MetricResult:
    item_ids = _check(key, answers, names, "names", ids)
    vals = [float(name_match(a, n)) for a, n in zip(answers, names)]
    if invert:
        vals = [1.0 - v for v in vals]
    return _result(key, vals, item_ids, None)


def _scorer_name(scorer: object) -> str:
    name = getattr(scorer, "name", None)
    if not isinstance(name, str) or not hasattr(scorer, "score"):
        raise TypeError(
            "scorer must have a .name (str) and a .score(answers, events) method; use pebench_core.scorers.get_scorer(...)"
        )
    return name


def _events(
    key: str, answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None, invert: bool
) -> MetricResult:
    item_ids = _check(key, answers, events, "events", ids)
    sname = _scorer_name(scorer)
    scores = np.asarray(scorer.score(list(answers), list(events)), dtype=np.float64)
    if scores.shape != (len(answers),):
        raise ValueError(f"{key}: scorer {sname!r} returned {scores.shape} scores for {len(answers)} answers")
    vals = 1.0 - scores if invert else scores
    return _result(key, vals, item_ids, sname)


# ---------------------------------------------------------------------------------------
# Person metrics


def person_efficacy(answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None = None) -> MetricResult:
    """``person/efficacy = mean_i (1 − name_match(answer_i, name_i))`` on the forget images
    (training renders of the forget people). Higher is better: the name is gone."""
    return _names("person/efficacy", answers, names, ids, invert=True)


def person_generality(answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None = None) -> MetricResult:
    """``person/generality = mean_i (1 − name_match)`` on **held-out** renders of the forget
    people (never trained on). Higher is better."""
    return _names("person/generality", answers, names, ids, invert=True)


def person_retain(answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None = None) -> MetricResult:
    """``person/retain = mean_i name_match`` ("name precision") on the retain images (the
    other, not-forgotten people). Higher is better."""
    return _names("person/retain", answers, names, ids, invert=False)


def person_real(answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None = None) -> MetricResult:
    """``person/real = mean_i name_match`` on the pre-training world's ("real-world") people.
    Higher is better."""
    return _names("person/real", answers, names, ids, invert=False)


def person_scope(
    answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None = None
) -> MetricResult:
    """Scope of **person** unlearning: ``person/scope = mean_i score(answer_i, event_i)`` — the
    event score (the other concept) on the person-forget images. Higher is better: forgetting
    who is in the image should not forget what is happening in it."""
    return _events("person/scope", answers, events, scorer, ids, invert=False)


# ---------------------------------------------------------------------------------------
# Event metrics


def event_efficacy(
    answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None = None
) -> MetricResult:
    """``event/efficacy = mean_i (1 − score(answer_i, event_i))`` on the event-forget images.
    Higher is better."""
    return _events("event/efficacy", answers, events, scorer, ids, invert=True)


def event_generality(
    answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None = None
) -> MetricResult:
    """``event/generality = mean_i (1 − score)`` on held-out renders of the forget events.
    Higher is better."""
    return _events("event/generality", answers, events, scorer, ids, invert=True)


def event_retain(
    answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None = None
) -> MetricResult:
    """``event/retain = mean_i score`` on the retain images (the other events). Higher is better."""
    return _events("event/retain", answers, events, scorer, ids, invert=False)


def event_real(
    answers: Sequence[str], events: Sequence[EventLike], scorer: ScorerLike, ids: Sequence[Any] | None = None
) -> MetricResult:
    """``event/real = mean_i score`` on pre-training-world scenes. Higher is better."""
    return _events("event/real", answers, events, scorer, ids, invert=False)


def event_scope(answers: Sequence[str], names: Sequence[str], ids: Sequence[Any] | None = None) -> MetricResult:
    """Scope of **event** unlearning: ``event/scope = mean_i name_match(answer_i, name_i)`` — name
    precision (the other concept) on the event-forget images. Higher is better."""
    return _names("event/scope", answers, names, ids, invert=False)


# ---------------------------------------------------------------------------------------
# World fact (POPE)


def world_fact(
    answers: Sequence[str], yes_no_truth: Sequence[bool | str], ids: Sequence[Any] | None = None, concept: str = "person"
) -> MetricResult:
    """POPE accuracy: ``mean_i [parse_yes_no(answer_i) == truth_i]``. Higher is better.

    The answer's first normalised word must be ``yes`` or ``no``; anything else is wrong.
    ``yes_no_truth`` holds booleans or the strings ``"yes"``/``"no"``. ``concept`` only labels
    the result (Table 1 shows world fact under both concepts; the measurement itself does not
    depend on the concept): the key is ``<concept>/world_fact``. To file one measurement
    under both columns, relabel it with ``dataclasses.replace(result, concept="event")``.
    """
    if concept not in ("person", "event"):
        raise ValueError(f"world_fact: concept must be 'person' or 'event', got {concept!r}")
    key = f"{concept}/world_fact"
    ids = _check(key, answers, yes_no_truth, "yes_no_truth", ids)
    truth: list[bool] = []
    for t in yes_no_truth:
        if isinstance(t, (bool, np.bool_)):
            truth.append(bool(t))
        elif isinstance(t, str) and normalise(t) in ("yes", "no"):
            truth.append(normalise(t) == "yes")
        else:
            raise ValueError(f"{key}: yes_no_truth values must be booleans or 'yes'/'no', got {t!r}")
    vals = [float(parse_yes_no(a) is not None and parse_yes_no(a) == t) for a, t in zip(answers, truth)]
    return _result(key, vals, ids, None)


# ---------------------------------------------------------------------------------------
# Uncertainty


def bootstrap_ci(
    per_item: Sequence[float] | np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile bootstrap ``(lo, hi)`` of the mean of ``per_item``.

    Draws ``n_boot`` resamples of size ``n`` with replacement
    (``numpy.random.default_rng(seed)``) and returns the ``alpha/2`` and ``1 − alpha/2``
    percentiles of their means. Same inputs and seed → same interval.
    """
    x = np.asarray(per_item, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci has no items: cannot bootstrap an empty set")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be at least 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap_ci: alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------
# The metrics table (design: Metrics)


Measure = Literal["name match", "event score", "POPE"]
# The item sets of a concept's view that a metric can be computed on (what
# :func:`pebench_core.evaluate.plan` draws): the view's forget images, the held-out renders of
# its forget people (events), the retain images, the pre-training world, the forget images
# asked about the *other* concept (scope), the retain images asked about it (scope's control),
# and the POPE questions.
SPLITS = ("forget", "heldout", "retain", "real", "scope", "scope_retain", "pope")


@dataclass(frozen=True)
class Metric:
    """One metric of one concept's view, as evaluation computes it and the book describes it.

    ``fn`` is the pure function; what it is given follows ``measure``: ``(answers, names, ids)``
    for a name match, ``(answers, events, scorer, ids)`` for an event score, ``(answers, truth,
    ids, concept=...)`` for POPE. ``split`` is the item set of the view it is computed on (one
    of :data:`SPLITS`); ``about`` says in words what those items are. ``paper``: one of the
    paper's six (Table 1), else a control of our own."""

    key: str  # "<concept>/<metric>": the view's concept (the Table 1 column) and the metric
    fn: Callable[..., MetricResult]
    split: str
    title: str
    about: str
    formula: str
    measure: Measure
    paper: bool = True
    direction: str = DIRECTION

    @property
    def concept(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def metric(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def uses_scorer(self) -> bool:
        return self.measure == "event score"

    @property
    def asks(self) -> str:
        """The question its items are asked: ``person`` (the name), ``event`` or ``pope``."""
        if self.measure == "POPE":
            return "pope"
        return "person" if self.measure == "name match" else "event"


METRICS: dict[str, Metric] = {}


def register(metric: Metric, replace: bool = False) -> Metric:
    """Add ``metric`` to the registry (``replace=True`` to redefine a key already there).
    Evaluation computes every registered metric of a view whose item set the plan holds."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register() takes a pebench_core.metrics.Metric, got {type(metric).__name__}")
    concept, _, name = metric.key.partition("/")
    if concept not in ("person", "event") or not name or "/" in name:
        raise ValueError(f"a metric key is '<person|event>/<name>', got {metric.key!r}")
    if metric.split not in SPLITS:
        raise ValueError(f"metric {metric.key!r}: split must be one of {', '.join(SPLITS)}, got {metric.split!r}")
    if (metric.split == "pope") != (metric.measure == "POPE"):
        raise ValueError(f"metric {metric.key!r}: the POPE measure goes with the pope split, and only it")
    if metric.key in METRICS and not replace:
        raise ValueError(f"metric {metric.key!r} is registered already; pass replace=True to redefine it")
    METRICS[metric.key] = metric
    return metric


def metrics_of(concept: str) -> list[Metric]:
    """The registered metrics of ``concept``'s view, in the book's order."""
    order = {m: k for k, m in enumerate(metric_order())}
    return sorted((m for m in METRICS.values() if m.concept == concept), key=lambda m: order[m.metric])


def metric_order() -> tuple[str, ...]:
    """Every metric name in the book's order: the registry's order, the first key of a name
    deciding its place (the paper's six, with our control after scope, then any added)."""
    return tuple(dict.fromkeys(m.metric for m in METRICS.values()))


def paper_metric_order() -> tuple[str, ...]:
    """The paper's six metric names, in the paper's order."""
    return tuple(dict.fromkeys(m.metric for m in METRICS.values() if m.paper))


_NAME: Measure = "name match"
_EVENT: Measure = "event score"
_POPE: Measure = "POPE"
for _m in (
    Metric("person/efficacy", person_efficacy, "forget", "Efficacy",
           "forget images (forget people, training renders)", "mean(1 − name_match)", _NAME),
    Metric("event/efficacy", event_efficacy, "forget", "Efficacy",
           "forget images (forget events, training renders)", "mean(1 − event score)", _EVENT),
    Metric("person/generality", person_generality, "heldout", "Generality",
           "held-out renders of the forget people", "mean(1 − name_match)", _NAME),
    Metric("event/generality", event_generality, "heldout", "Generality",
           "held-out renders of the forget events", "mean(1 − event score)", _EVENT),
    Metric("person/retain", person_retain, "retain", "Retain",
           "retain images (the other people)", "mean(name_match)  (name precision)", _NAME),
    Metric("event/retain", event_retain, "retain", "Retain",
           "retain images (the other events)", "mean(event score)", _EVENT),
    Metric("person/scope", person_scope, "scope", "Scope",
           "forget images (forget people)", "mean(event score)  (the other concept)", _EVENT),
    Metric("event/scope", event_scope, "scope", "Scope",
           "forget images (forget events)", "mean(name_match)  (name precision, the other concept)", _NAME),
    Metric("person/scope_retain", person_scope, "scope_retain", "Scope on retain images",
           "retain images (scope's control)", "mean(event score)  (the other concept)", _EVENT, paper=False),
    Metric("event/scope_retain", event_scope, "scope_retain", "Scope on retain images",
           "retain images (scope's control)", "mean(name_match)  (the other concept)", _NAME, paper=False),
    Metric("person/real", person_real, "real", "Real",
           "pre-training world's people (held-out renders)", "mean(name_match)", _NAME),
    Metric("event/real", event_real, "real", "Real",
           "pre-training-world scenes (held-out renders)", "mean(event score)", _EVENT),
    Metric("person/world_fact", world_fact, "pope", "World fact",
           "POPE yes/no questions on pre-training renders", "mean(parsed yes/no == truth)", _POPE),
    Metric("event/world_fact", world_fact, "pope", "World fact",
           "POPE yes/no questions on pre-training renders", "mean(parsed yes/no == truth)", _POPE),
):  # fmt: skip
    register(_m)


def metrics_table() -> pd.DataFrame:
    """:data:`METRICS` as a pandas DataFrame (one row per metric key), for the book."""
    import pandas as pd

    rows = [
        {
            "key": m.key,
            "concept": m.concept,
            "metric": m.metric,
            "split": m.about,
            "formula": m.formula,
            "measure": m.measure,
            "paper": m.paper,
            "direction": m.direction,
        }
        for c in ("person", "event")
        for m in metrics_of(c)
    ]
    return pd.DataFrame(rows)
