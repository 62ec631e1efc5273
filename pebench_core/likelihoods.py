"""What a model thinks of the two candidate answers to a forget question: the true one and
the refusal the preference methods (PO, DPO) train towards.

The unlearning objectives move these log-likelihoods; the metrics read generated answers.
Putting the two side by side (chapter 4) shows when a method wins its own objective without
changing what the model says. Read off a model on demand; the evaluation and unlearning
stages store them for their model (:func:`pebench_core.run.answer_likelihoods` reads them).
"""

from __future__ import annotations

import pandas as pd
import torch

from .data import Dataset
from .encoding import encode_qa
from .statistics import packed_answer_logprobs, packed_token_logprobs
from .models import ModelBundle
from .unlearn import answer_pass, unlearn_sets


@torch.no_grad()
def answer_likelihoods(bundle: ModelBundle, ds: Dataset, target: str, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
    """What ``bundle``'s model thinks of each forget question's two candidate answers: the
    true one and the refusal the preference methods train towards.

    One row per forget item (``item_id``, ``question``, ``concept``) with, for the true
    answer and the refusal, the summed log-likelihood (``logp_true``, ``logp_refusal``), the
    token count (``n_*``) and the log-probability of the first answer token
    (``logp_first_*``): both answers follow the same prompt, so their first tokens compete
    for the first word greedy decoding writes.
    """
    sets = unlearn_sets(ds, target, seed)
    load = lambda q: ds.image(q.item_id)  # noqa: E731
    true, refusal = encode_qa(bundle, sets.forget, load), encode_qa(bundle, sets.refusal, load)
    model, dev, dt, pad = bundle.model, bundle.device, bundle.dtype, bundle.pad_token_id
    was = model.training
    model.eval()
    cols: dict[str, list] = {f"{k}_{a}": [] for a in ("true", "refusal") for k in ("logp", "n", "logp_first")}
    try:
        for s in range(0, len(true), batch_size):
            idx = list(range(s, min(s + batch_size, len(true))))
            outs = answer_pass(model, [(true, idx), (refusal, idx)], pad, dev, dt, {1: 0})
            for a, (logits, targets, rows, n) in zip(("true", "refusal"), outs):
                logp, count = packed_answer_logprobs(logits, targets, rows, n)
                tok = packed_token_logprobs(logits, targets)
                # tokens come row by row, so a row's first token is where its index first appears
                first = torch.ones_like(rows, dtype=torch.bool)
                first[1:] = rows[1:] != rows[:-1]
                first_lp = tok.new_full((n,), float("nan")).index_copy(0, rows[first], tok[first])
                cols[f"logp_{a}"] += logp.cpu().tolist()
                cols[f"n_{a}"] += count.cpu().tolist()
                cols[f"logp_first_{a}"] += first_lp.cpu().tolist()
    finally:
        model.train(was)
    return pd.DataFrame(
        {
            "item_id": [q.item_id for q in sets.forget],
            "question": [q.question for q in sets.forget],
            "concept": sets.forget_concepts,
            **cols,
        }
    )
