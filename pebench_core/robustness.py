"""Is it really forgotten? The robustness probes (design: Is it really forgotten?).

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

The probes' table (:data:`PROBES`, what each asks and writes) and the image perturbations live
in :mod:`pebench_core.probes`, which imports no torch, so that the settings are checked before
anything heavy loads. The pure parts (:func:`perturb`, :func:`auc_placements`, :func:`min_k_scores`,
:func:`probe_accuracy`, :func:`rounded_bf16`, :func:`int8_weights`) are tested on values worked
out by hand; :func:`run_probes` applies them to a model and returns metric results, which the
pipeline caches (:func:`pebench_core.pipeline.get_robustness`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from . import metrics as M
from .config import ConfigError, RunConfig
from .data import QA, Dataset, Item, event_qa, person_qa, split_sets
from .evaluate import CONCEPTS_OF, event_reference, held_out_ids, sample
from .models import ModelBundle, generate
from .probes import PERTURBATIONS, PROBES, Probe, perturb, probe_metrics, probe_names

__all__ = [
    "PROBES",
    "PERTURBATIONS",
    "Probe",
    "probe_names",
    "probe_metrics",
    "perturb",
    "auc_placements",
    "min_k_scores",
    "probe_accuracy",
    "rounded_bf16",
    "int8_weights",
    "ProbeSets",
    "probe_sets",
    "run_probes",
]


# ---------------------------------------------------------------------------------------
# Membership inference
def auc_placements(members: Sequence[float], nonmembers: Sequence[float]) -> np.ndarray:
    """Per member, the share of non-members whose score it exceeds (a tie counts ½). Their mean
    is the AUC of telling members from non-members by the score (higher = member)."""
    m = np.asarray(members, dtype=np.float64)
    n = np.asarray(nonmembers, dtype=np.float64)
    if m.size == 0 or n.size == 0:
        raise ValueError(f"an AUC needs members and non-members, got {m.size} and {n.size}")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("membership scores must be finite")
    return ((m[:, None] > n[None, :]).sum(1) + 0.5 * (m[:, None] == n[None, :]).sum(1)) / n.size


def min_k_scores(token_logprobs: torch.Tensor, rows: torch.Tensor, n_rows: int, share: float) -> torch.Tensor:
    """Min-K% (Shi et al., 2024) per sequence: the mean log-probability of its ``⌈share · len⌉``
    least likely answer tokens (``rows[i]`` is the sequence of token ``i``). ``share`` 1 is the
    mean log-probability, the loss attack."""
    if not 0.0 < share <= 1.0:
        raise ConfigError(f"robust.mink_share must be > 0 and <= 1, got {share}")
    out = torch.full((n_rows,), float("nan"), dtype=torch.float64)
    lp = token_logprobs.detach().double().cpu()
    r = rows.cpu()
    for i in range(n_rows):
        x = lp[r == i]
        if len(x):
            k = max(1, math.ceil(share * len(x)))
            out[i] = torch.sort(x).values[:k].mean()
    return out


# ---------------------------------------------------------------------------------------
# Linear probes
def probe_accuracy(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, seed: int = 0) -> np.ndarray:
    """Fit a logistic regression on standardised ``train_x`` and return, per test item, 1 if it
    predicts the label right, else 0 (the mean is the probe's accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ty, sy = np.asarray(list(train_y)), np.asarray(list(test_y))
    if len(set(ty.tolist())) < 2:
        raise ConfigError(f"a linear probe needs at least two classes to tell apart, got {sorted(set(ty.tolist()))}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(np.asarray(train_x, dtype=np.float64), ty)
    return (clf.predict(np.asarray(test_x, dtype=np.float64)) == sy).astype(np.float64)


# ---------------------------------------------------------------------------------------
# Lower-precision copies of a model
def rounded_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose floating-point weights are rounded to bfloat16 and stored back in their own
    dtype: what a bf16 checkpoint of the model would hold, computed as before."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in [*out.parameters(), *out.buffers()]:
            if p.is_floating_point():
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
    return out


def int8_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose every ``nn.Linear`` weight is quantised to int8 and back, per output
    channel and symmetric (scale = the row's largest magnitude / 127, zero point 0, round
    half to even, as ``torch.quantize_per_channel`` does), computed in the weight's own
    dtype: what an int8 checkpoint of the model holds (weight-only int8, as GPTQ, AWQ and
    LLM.int8 store weights).

    Not torch's dynamic quantisation: that also quantises the activations with one scale per
    tensor, so an item's answer depends on the other items (and the padding) in its batch:
    measured on the tiny world, the quant probe's metrics moved with the evaluation batch size (sums
    6.391, 6.395, 6.378 at 32, 64, 128), which a metric must not do.
    """
    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight.float()
                scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
                # by hand: torch's quantized-tensor constructors are deprecated (they move to torchao)
                q = torch.round(w / scale[:, None]).clamp_(-127, 127) * scale[:, None]
                m.weight.copy_(q.to(m.weight.dtype))
    return out


# ---------------------------------------------------------------------------------------
# The item sets every probe of one (model, target) reads: the same for every model
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


def _label(item: Item, concept: str) -> str:
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


# ---------------------------------------------------------------------------------------
# What one (model, target) is asked
@dataclass
class _Context:
    bundle: ModelBundle  # the model probed, a plain one (any adapter merged in)
    ds: Dataset
    cfg: RunConfig
    sets: ProbeSets
    scorer: M.ScorerLike
    log: Callable[[str], None]


def _qa(items: Sequence[Item], ds: Dataset, concept: str, question: str | None = None) -> list[QA]:
    qas = person_qa(items, ds) if concept == "person" else event_qa(items, ds)
    return qas if question is None else [dataclasses.replace(q, question=question) for q in qas]


def _score(
    ctx: _Context, concept: str, name: str, answers: Sequence[str], items: Sequence[Item], efficacy: bool = True
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


def _ask(bundle: ModelBundle, cfg: RunConfig, asks: list[tuple[Image.Image, str]]) -> list[str]:
    """Greedy answers to (image, question) pairs, batched in one call."""
    if not asks:
        return []
    e = cfg.eval
    images, questions = [a[0] for a in asks], [a[1] for a in asks]
    return generate(bundle, images, questions, max_new_tokens=e.max_new_tokens, batch_size=cfg.robust.batch_size)


def _paraphrase_of(item: Item, concept: str, seed: int) -> str:
    from .world import PARAPHRASES

    return random.Random(f"{seed}:paraphrase:{concept}:{item.id}").choice(PARAPHRASES[concept])


def _generating(ctx: _Context, probes: Sequence[str]) -> list[M.MetricResult]:
    """``clean``, ``paraphrase``, ``perturb`` and relearning's step 0 (the model as it is) in
    one batched generation call."""
    from .world import QUESTIONS

    cfg, ds, sets = ctx.cfg, ctx.ds, ctx.sets
    plan: list[tuple[str, str, bool, list[Item], list[_Ask]]] = []
    for concept in CONCEPTS_OF[sets.target]:
        q = QUESTIONS[concept]
        forget, retain = sets.forget[concept], sets.retain[concept]
        plan.append((concept, "clean_efficacy", True, forget, _plain(ds, forget, q)))
        plan.append((concept, "clean_retain", False, retain, _plain(ds, retain, q)))
        if "relearn" in probes and 0 in cfg.robust.relearn_steps:
            ev = sets.relearn_eval[concept]
            plan.append((concept, "relearn@0", True, ev, _plain(ds, ev, q)))
        if "paraphrase" in probes:
            for name, eff, items in (("paraphrase_efficacy", True, forget), ("paraphrase_retain", False, retain)):
                worded = [(i, _paraphrase_of(i, concept, cfg.seed)) for i in items]
                plan.append((concept, name, eff, items, [_Ask((i.id, p), lambda i=i: ds.image(i), p) for i, p in worded]))
        if "perturb" in probes:
            for kind in cfg.robust.perturbations:
                asks = [
                    _Ask(
                        (i.id, q, kind),
                        lambda i=i, kind=kind: perturb(ds.image(i), kind, cfg.robust.strength, f"{cfg.seed}:{i.id}"),
                        q,
                    )
                    for i in forget
                ]
                plan.append((concept, f"perturb_{kind}", True, forget, asks))
    return _answer_plan(ctx, ctx.bundle, plan)


@dataclass(frozen=True)
class _Ask:
    """One (image, question) to answer: ``key`` names it, so an ask that two metrics share is
    generated once; ``image`` makes the image only when it is asked."""

    key: tuple
    image: Callable[[], Image.Image]
    question: str


def _plain(ds: Dataset, items: Sequence[Item], question: str) -> list[_Ask]:
    return [_Ask((i.id, question), lambda i=i: ds.image(i), question) for i in items]


def _answer_plan(ctx: _Context, bundle: ModelBundle, plan: list) -> list[M.MetricResult]:
    """Answer every ``(concept, name, efficacy?, items, asks)`` of ``plan`` in one batched call,
    each distinct ask once, and score each entry as its metric."""
    unique: dict[tuple, _Ask] = {}
    for *_, asks in plan:
        for a in asks:
            unique.setdefault(a.key, a)
    answers = dict(zip(unique, _ask(bundle, ctx.cfg, [(a.image(), a.question) for a in unique.values()]), strict=True))
    return [_score(ctx, concept, name, [answers[a.key] for a in asks], items, eff) for concept, name, eff, items, asks in plan]


def quant_probe(ctx: _Context) -> list[M.MetricResult]:
    from .world import QUESTIONS

    out = []
    for label, make in (("int8", int8_weights), ("bf16", rounded_bf16)):
        low = ctx.bundle.with_model(make(ctx.bundle.model))
        plan = []
        for concept in CONCEPTS_OF[ctx.sets.target]:
            q = QUESTIONS[concept]
            for name, eff, items in (("efficacy", True, ctx.sets.forget[concept]), ("retain", False, ctx.sets.retain[concept])):
                plan.append((concept, f"{label}_{name}", eff, items, _plain(ctx.ds, items, q)))
        out += _answer_plan(ctx, low, plan)
        del low
    return out


def _answer_tokens(bundle: ModelBundle, ds: Dataset, qas: list[QA], batch_size: int):
    """Per QA, the log-probability of each answer token: ``(token_logprobs, rows)``."""
    from .encoding import encode_qa
    from .forward import answer_pass
    from .losses import packed_token_logprobs

    enc = encode_qa(bundle, qas, lambda q: ds.image(q.item_id))
    lps, rows = [], []
    for s in range(0, len(enc), batch_size):
        idx = list(range(s, min(s + batch_size, len(enc))))
        logits, targets, r, _ = answer_pass(bundle.model, [(enc, idx)], bundle.pad_token_id, bundle.device, bundle.dtype)[0]
        lps.append(packed_token_logprobs(logits, targets).cpu())
        rows.append(r.cpu() + s)
    return torch.cat(lps), torch.cat(rows)


@torch.no_grad()
def mia_probe(ctx: _Context) -> list[M.MetricResult]:
    out = []
    model = ctx.bundle.model
    was = model.training
    model.eval()
    try:
        for concept in CONCEPTS_OF[ctx.sets.target]:
            members, unseen = ctx.sets.members[concept], ctx.sets.unseen[concept]
            if not unseen:
                what = "world.n_unseen_people" if concept == "person" else "world.n_unseen_events"
                raise ConfigError(
                    f"robust.probes: 'mia' on target {ctx.sets.target!r} needs never-seen {concept}s and the world has none "
                    f"(set {what} above 0, or drop mia from robust.probes; a real PEBench folder holds no never-seen group)"
                )
            qas = _qa(members, ctx.ds, concept) + _qa(unseen, ctx.ds, concept)
            lp, rows = _answer_tokens(ctx.bundle, ctx.ds, qas, ctx.cfg.robust.batch_size)
            n = len(qas)
            for name, share in (("mia_loss", 1.0), ("mia_mink", ctx.cfg.robust.mink_share)):
                score = min_k_scores(lp, rows, n, share).numpy()
                place = auc_placements(score[: len(members)], score[len(members) :])
                out.append(M.MetricResult(name, concept, float(place.mean()), len(members), place, [i.id for i in members]))
    finally:
        model.train(was)
    return out


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "last_hidden_state") and out.last_hidden_state is not None:
        return out.last_hidden_state
    return out[0]


@torch.no_grad()
def probe_features(
    bundle: ModelBundle, images: Sequence[Image.Image], question: str, depth: float, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Per image, the mean vision-tower output, the mean projector output and a decoder
    layer's output (at ``depth`` of the stack) at the last prompt token, where the answer's
    first token is predicted. Forward hooks on the family's modules, so every family works;
    a family without the packed path runs one image at a time (its image outputs are not
    stacked per image)."""
    from .models import decoder_layers, encode_prompts, move_batch, pad_batch

    fam, model = bundle.family, bundle.model
    layers = decoder_layers(model)
    sites = {
        "tower": fam.module(model, fam.vision_tower[0]),
        "projector": fam.module(model, fam.projector[0]),
        "lm": layers[min(len(layers) - 1, int(depth * len(layers)))],
    }
    seen: dict[str, list[torch.Tensor]] = {k: [] for k in sites}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen[k].append(_first_tensor(o))) for k, m in sites.items()]
    bs = batch_size if fam.packed else 1
    out: dict[str, list[np.ndarray]] = {k: [] for k in sites}
    was = model.training
    model.eval()
    try:
        for s in range(0, len(images), bs):
            imgs = list(images[s : s + bs])
            ps = encode_prompts(bundle, imgs, [question] * len(imgs))
            batch = pad_batch([p.ids for p in ps], [p.tokens for p in ps], [p.vision for p in ps], bundle.pad_token_id, "left")
            for k in seen:
                seen[k].clear()
            model(**move_batch(batch, bundle.device, bundle.dtype), use_cache=False)
            for k in ("tower", "projector"):
                t = seen[k][0].float()
                pooled = (
                    t.mean(1) if t.dim() == 3 and t.shape[0] == len(imgs) else t.reshape(-1, t.shape[-1]).mean(0, keepdim=True)
                )
                out[k].append(pooled.cpu().numpy())
            h = seen["lm"][-1].float()
            out["lm"].append(h[:, -1].cpu().numpy())  # left padding: the last position is the prompt's last token
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was)
    return {k: np.concatenate(v) for k, v in out.items()}


def linear_probe(ctx: _Context) -> list[M.MetricResult]:
    from .world import QUESTIONS

    out = []
    for concept in CONCEPTS_OF[ctx.sets.target]:
        train, test = ctx.sets.probe_train[concept], ctx.sets.probe_test[concept]
        if not test:
            raise ConfigError(
                f"robust.probes: 'probe' on target {ctx.sets.target!r} tests on held-out renders of the forget {concept}s, "
                "and this world has none (world.heldout_renders; a real PEBench folder has one image per pair): drop probe"
            )
        q, d = QUESTIONS[concept], ctx.cfg.robust.probe_depth
        ftr = probe_features(ctx.bundle, [ctx.ds.image(i) for i in train], q, d, ctx.cfg.robust.batch_size)
        fte = probe_features(ctx.bundle, [ctx.ds.image(i) for i in test], q, d, ctx.cfg.robust.batch_size)
        ytr, yte = [_label(i, concept) for i in train], [_label(i, concept) for i in test]
        for site in ("tower", "projector", "lm"):
            hit = probe_accuracy(ftr[site], ytr, fte[site], yte, ctx.cfg.seed)
            out.append(M.MetricResult(f"probe_{site}", concept, float(hit.mean()), len(test), hit, [i.id for i in test]))
    return out


def relearn_probe(ctx: _Context) -> list[M.MetricResult]:
    """Fine-tune a fresh LoRA (``unlearn.lora_r``) on the relearning images' true answers for
    ``max(relearn_steps)`` steps of ``unlearn.batch_size`` items at ``robust.relearn_lr``, and
    measure efficacy on the held-back images at every point of ``robust.relearn_steps``."""
    from .encoding import encode_qa
    from .forward import answer_pass
    from .models import add_lora, remove_lora
    from .world import QUESTIONS

    cfg, ds, sets = ctx.cfg, ctx.ds, ctx.sets
    concepts = CONCEPTS_OF[sets.target]
    train_qas = [q for c in concepts for q in _qa(sets.relearn_train[c], ds, c)]
    evals = [(c, sets.relearn_eval[c]) for c in concepts]
    asks = [(ds.image(i), QUESTIONS[c]) for c, items in evals for i in items]
    u = cfg.unlearn
    peft = add_lora(ctx.bundle, u.lora_r, u.lora_alpha, u.lora_projector, seed=cfg.seed)
    tuned = ctx.bundle.with_model(peft)
    out: list[M.MetricResult] = []
    try:
        enc = encode_qa(tuned, train_qas, lambda q: ds.image(q.item_id))
        params = [p for p in peft.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.robust.relearn_lr, weight_decay=0.0)
        rng = random.Random(f"{cfg.seed}:relearn:{sets.target}")
        queue: list[int] = []
        last = max(cfg.robust.relearn_steps)
        for step in range(last + 1):
            if step in cfg.robust.relearn_steps and step > 0:  # step 0 is asked with the clean answers
                answers = _ask(tuned, cfg, asks)
                at = 0
                for c, items in evals:
                    out.append(_score(ctx, c, f"relearn@{step}", answers[at : at + len(items)], items))
                    at += len(items)
            if step == last:
                break
            while len(queue) < u.batch_size:  # seeded passes over the relearning items
                queue += rng.sample(range(len(enc)), len(enc))
            idx, queue = queue[: u.batch_size], queue[u.batch_size :]
            peft.train()
            logits, targets, _, _ = answer_pass(peft, [(enc, idx)], tuned.pad_token_id, tuned.device, tuned.dtype)[0]
            loss = torch.nn.functional.cross_entropy(logits, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        remove_lora(peft)
    return out


def run_probes(
    bundle: ModelBundle, ds: Dataset, target: str, cfg: RunConfig, scorer=None, log: Callable[[str], None] = print
) -> tuple[list[M.MetricResult], dict[str, float]]:
    """Every probe of ``cfg.robust.probes`` on ``bundle`` (a plain model: an adapter merged in)
    for ``target``; returns the metric results and the seconds each probe took."""
    import time

    from .scorers import get_scorer

    for name in cfg.robust.probes:
        if name not in PROBES:
            raise ConfigError(f"robust.probes: unknown probe {name!r}; allowed: {', '.join(PROBES)}")
    ctx = _Context(bundle, ds, cfg, probe_sets(ds, target, cfg), scorer or get_scorer(cfg.eval.scorer), log)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    results = _generating(ctx, cfg.robust.probes)
    seconds["clean+paraphrase+perturb"] = round(time.perf_counter() - t0, 2)
    for name in cfg.robust.probes:
        runner = PROBES[name].run
        if runner is None:
            continue
        fn = globals()[runner]
        t0 = time.perf_counter()
        results += fn(ctx)
        seconds[name] = round(time.perf_counter() - t0, 2)
        log(f"[robust] {name} on {target}: {seconds[name]:.1f}s")
    return results, seconds
