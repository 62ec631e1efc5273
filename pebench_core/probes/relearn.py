"""Relearning: does a few steps of fine-tuning on some forget images bring the rest back?

A fresh LoRA is fine-tuned on the relearning images' true answers and efficacy is measured on
the held-back forget images at every point of ``robust.relearn_steps``. Step 0 is the model as
it is, asked in the shared generation call; the goal model's curve is the cost of learning the
names from scratch.
"""

from __future__ import annotations

import random

import torch

from .. import metrics as M
from ..encoding import encode_qa
from ..evaluate import CONCEPTS_OF
from ..forward import answer_pass
from ..models import add_lora, remove_lora
from ..world import QUESTIONS
from .context import Context, Planned, ask, plain, qa, score
from .registry import Probe


def metrics(r) -> tuple[str, ...]:
    return tuple(f"relearn@{k}" for k in r.relearn_steps)


def step_zero(ctx: Context, concept: str) -> list[Planned]:
    """Relearning's step 0: the clean answers on the held-back images, in the shared call."""
    if 0 not in ctx.cfg.robust.relearn_steps:
        return []
    ev = ctx.sets.relearn_eval[concept]
    return [Planned(concept, "relearn@0", True, ev, plain(ctx.ds, ev, QUESTIONS[concept]))]


def relearn_probe(ctx: Context) -> list[M.MetricResult]:
    """Fine-tune a fresh LoRA (``unlearn.lora_r``) on the relearning images' true answers for
    ``max(relearn_steps)`` steps of ``unlearn.batch_size`` items at ``robust.relearn_lr``, and
    measure efficacy on the held-back images at every point of ``robust.relearn_steps``."""
    cfg, ds, sets = ctx.cfg, ctx.ds, ctx.sets
    concepts = CONCEPTS_OF[sets.target]
    train_qas = [q for c in concepts for q in qa(sets.relearn_train[c], ds, c)]
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
                answers = ask(tuned, cfg, asks)
                at = 0
                for c, items in evals:
                    out.append(score(ctx, c, f"relearn@{step}", answers[at : at + len(items)], items))
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


PROBE = Probe(
    "relearn",
    "Relearning",
    "Does a few steps of fine-tuning on some forget images bring the rest back?",
    metrics,
    asks=step_zero,
    run=relearn_probe,
)
