"""Membership inference: can the answer's likelihood tell forget items from never-seen ones?

Per concept, the AUC of telling member items (forget images) from never-seen items of its
kind, scored by the answer's mean log-probability (the loss attack, ``mia_loss``) and by the
mean of its least likely ``robust.mink_share`` tokens (Min-K%, ``mia_mink``). The per-item
value is a member's *placement*, the share of never-seen items it outranks (ties count one
half): their mean is exactly the AUC (Mann-Whitney). The reference is the goal model's AUC.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .. import metrics as M
from ..data import QA, Dataset
from ..encoding import encode_qa
from ..errors import ConfigError
from ..evaluate import CONCEPTS_OF
from ..forward import answer_pass
from ..statistics import packed_token_logprobs
from ..models import ModelBundle
from .context import Context, qa
from .registry import Probe


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


def answer_tokens(bundle: ModelBundle, ds: Dataset, qas: list[QA], batch_size: int):
    """Per QA, the log-probability of each answer token: ``(token_logprobs, rows)``."""
    enc = encode_qa(bundle, qas, lambda q: ds.image(q.item_id))
    lps, rows = [], []
    for s in range(0, len(enc), batch_size):
        idx = list(range(s, min(s + batch_size, len(enc))))
        logits, targets, r, _ = answer_pass(bundle.model, [(enc, idx)], bundle.pad_token_id, bundle.device, bundle.dtype)[0]
        lps.append(packed_token_logprobs(logits, targets).cpu())
        rows.append(r.cpu() + s)
    return torch.cat(lps), torch.cat(rows)


def metrics(r) -> tuple[str, ...]:
    return ("mia_loss", "mia_mink")


@torch.no_grad()
def mia_probe(ctx: Context) -> list[M.MetricResult]:
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
            qas = qa(members, ctx.ds, concept) + qa(unseen, ctx.ds, concept)
            lp, rows = answer_tokens(ctx.bundle, ctx.ds, qas, ctx.cfg.robust.batch_size)
            n = len(qas)
            for name, share in (("mia_loss", 1.0), ("mia_mink", ctx.cfg.robust.mink_share)):
                s = min_k_scores(lp, rows, n, share).numpy()
                place = auc_placements(s[: len(members)], s[len(members) :])
                out.append(M.MetricResult(name, concept, float(place.mean()), len(members), place, [i.id for i in members]))
    finally:
        model.train(was)
    return out


PROBE = Probe(
    "mia",
    "Membership inference",
    "Can the answer's likelihood tell forget items from never-seen ones?",
    metrics,
    run=mia_probe,
)
