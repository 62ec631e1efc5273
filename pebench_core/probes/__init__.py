"""Is it really forgotten? The robustness probes, one registry entry each (design: Is it really forgotten?).

The metrics of :mod:`pebench_core.evaluate` ask one thing: what greedy decoding writes for the
training question on the forget images. A model can stop *saying* a name and still *know* it.
Each probe here asks the question another way, for one model (an unlearned one, or a bound)
and one target:

==============  =======================================================================  =========================
probe           what it measures (per concept of the target)                            metric names
==============  =======================================================================  =========================
``relearn``     efficacy on held-back forget images after k steps of fine-tuning on       ``relearn@<k>``
                the other forget images (a fresh LoRA; the goal model's curve is the
                cost of learning from scratch)
``paraphrase``  efficacy and retain when the question is worded as no model was          ``paraphrase_efficacy``,
                trained or unlearned on                                                   ``paraphrase_retain``
``perturb``     efficacy on blurred, cropped, recoloured, noisy, JPEG-compressed images   ``perturb_<kind>``
``mia``         AUC of forget items against never-seen items, scored by the answer's      ``mia_loss``, ``mia_mink``
                likelihood (loss) and by its least likely tokens (Min-K%)
``quant``       efficacy and retain after int8 weight quantisation and bf16 rounding       ``int8_efficacy`` …
``probe``       accuracy of a linear probe telling the forget people (events) apart on    ``probe_tower``,
                held-out renders, from the vision tower, the projector and a middle       ``probe_projector``,
                language-model layer                                                      ``probe_lm``
==============  =======================================================================  =========================

Every stage also records ``clean_efficacy`` and ``clean_retain``: the training question on the
same images the generating probes use, so that each probe is read as a paired change.

Every value is per item (an image, a member item for the AUC), in [0, 1], so the intervals of
:mod:`pebench_core.analysis` apply unchanged. The AUC's per-item value is the member's
*placement*, the share of never-seen items it outranks (ties count one half): their mean is
exactly the AUC (Mann-Whitney). For ``mia`` and ``probe`` lower is more forgotten; the
reference is the goal model's value, not 0 (a goal model still tells two people apart by their
looks, and its AUC is near 0.5).

A probe is one module here and one :class:`Probe` entry of :data:`PROBES`, registered by that
module: its name, title, question, the metric names it writes, and its code as functions
(``asks``: what it adds to the one batched generation call every probe shares; ``run``: what
it does on the model besides). :func:`run_probes` runs the entries ``robust.probes`` names;
the pipeline caches what it returns (:func:`pebench_core.stages.get_robustness`), keyed by
the code the entries hold. To add a probe: write a module that registers one entry, and import
it (a built-in, below; a user's, through ``PEBENCH_PLUGINS``). The pure parts
(:func:`perturb`, :func:`auc_placements`, :func:`min_k_scores`, :func:`probe_accuracy`,
:func:`rounded_bf16`, :func:`int8_weights`) are tested on values worked out by hand.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .. import metrics as M
from ..data import Dataset
from ..evaluate import CONCEPTS_OF
from ..models import ModelBundle
from ..scorers import get_scorer
from ..world import QUESTIONS
from . import linear, mia, paraphrase, perturbations, quant, relearn
from .context import Context, Planned, ProbeSets, answer_plan, plain, probe_sets
from .linear import probe_accuracy, probe_features
from .mia import auc_placements, min_k_scores
from .perturbations import PERTURBATIONS, perturb
from .quant import int8_weights, rounded_bf16
from .registry import PROBES, Probe, get, probe_metrics, probe_names, register

if TYPE_CHECKING:
    from ..config import RunConfig

# The built-in probes, in the book's order (the default of ``robust.probes``): each module holds
# its entry; a user's module registers its own.
for _module in (relearn, paraphrase, perturbations, mia, quant, linear):
    register(_module.PROBE)
BUILT_IN = probe_names()

__all__ = [
    "PROBES",
    "Probe",
    "register",
    "get",
    "probe_names",
    "probe_metrics",
    "PERTURBATIONS",
    "perturb",
    "auc_placements",
    "min_k_scores",
    "probe_accuracy",
    "probe_features",
    "rounded_bf16",
    "int8_weights",
    "ProbeSets",
    "probe_sets",
    "Context",
    "run_probes",
]


def _generating(ctx: Context, probes: list[Probe]) -> list[M.MetricResult]:
    """The clean answers (``clean_efficacy``, ``clean_retain``) and every probe's generation
    asks, per concept, in one batched generation call."""
    plan: list[Planned] = []
    for concept in CONCEPTS_OF[ctx.sets.target]:
        q = QUESTIONS[concept]
        forget, retain = ctx.sets.forget[concept], ctx.sets.retain[concept]
        plan.append(Planned(concept, "clean_efficacy", True, forget, plain(ctx.ds, forget, q)))
        plan.append(Planned(concept, "clean_retain", False, retain, plain(ctx.ds, retain, q)))
        for p in probes:
            if p.asks is not None:
                plan += p.asks(ctx, concept)
    return answer_plan(ctx, ctx.bundle, plan)


def run_probes(
    bundle: ModelBundle, ds: Dataset, target: str, cfg: RunConfig, scorer=None, log: Callable[[str], None] = print
) -> tuple[list[M.MetricResult], dict[str, float]]:
    """Every probe of ``cfg.robust.probes`` on ``bundle`` (a plain model: an adapter merged in)
    for ``target``; returns the metric results and the seconds each probe took."""
    probes = [get(name) for name in cfg.robust.probes]
    ctx = Context(bundle, ds, cfg, probe_sets(ds, target, cfg), scorer or get_scorer(cfg.eval.scorer), log)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    results = _generating(ctx, probes)
    seconds["generation"] = round(time.perf_counter() - t0, 2)  # the clean answers and every probe's asks
    for p in probes:
        if p.run is None:
            continue
        t0 = time.perf_counter()
        results += p.run(ctx)
        seconds[p.name] = round(time.perf_counter() - t0, 2)
        log(f"[robust] {p.name} on {target}: {seconds[p.name]:.1f}s")
    return results, seconds
