"""The supervised training loop on encoded QA (every injection stage runs it).

:func:`train_model` trains a model in place on an :class:`~pebench_core.encoding.EncodedQA`
set: AdamW with linear warm-up and cosine decay, gradients clipped at norm 1, batches of
similar length (or mixed batches cut into micro-batches that add up to the batch's
gradient), data-parallel over processes when launched so, and the frozen encoder's output
computed once when the vision tower does not train. The loss (:func:`answer_loss`) is the
answer tokens' negative log-likelihood, computed on the answer positions only.
"""

from __future__ import annotations

import contextlib
import math
import random
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed as D
from .encoding import EncodedQA, collate, length_batches
from .errors import ConfigError
from .forward import answer_logits, feature_cache_fits, image_features, packed_parts, vision_trainable
from .models import ModelBundle, move_batch

__all__ = ["answer_loss", "mixed_batches", "optimizer_step", "train_model", "checkpointing_on", "gradient_checkpointing"]


def answer_loss(
    model: torch.nn.Module, batch: dict, feats: torch.Tensor | None, per_sequence: bool = False, total: float | None = None
) -> torch.Tensor:
    """Mean answer-token NLL of a LLaVA batch, computing the output head on answer positions only.

    With ``feats`` (frozen encoder output per item) the vision tower is skipped; the result
    equals ``model(**batch).loss`` (tested). ``per_sequence`` averages each sequence's mean NLL
    instead, so a short answer (a name) weighs as much as a long one (a description). With
    ``total`` the sum (of token NLLs, or of sequence means) is divided by ``total`` instead of
    this batch's count: micro-batches of one step then add up to the step's mean.
    """
    logits, target, rows = answer_logits(model, batch, feats)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    if not per_sequence:
        return nll.sum() / (total if total is not None else max(1, nll.numel()))
    B = batch["labels"].shape[0]
    per = torch.zeros(B, device=nll.device).index_add(0, rows, nll)
    n = torch.zeros(B, device=nll.device).index_add(0, rows, torch.ones_like(nll))
    per = (per / n.clamp(min=1))[n > 0]
    return per.sum() / (total if total is not None else max(1, per.numel()))


def mixed_batches(lengths: np.ndarray, batch_size: int, micro_batches: int, rng: random.Random) -> list[list[list[int]]]:
    """Random batches (each a random mix of the set: names, descriptions, yes/no questions),
    each cut into ``micro_batches`` micro-batches of similar length.

    A step's gradient then covers every kind of question while a micro-batch needs little
    padding. (Batches of one kind — what sorting the whole set by length gives, since the
    kinds differ in length — make the steps alternate between tasks, and at a useful learning
    rate the model keeps overwriting one task with the next: measured, events learned 10×
    slower.)
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for k in range(0, len(order), batch_size):
        b = sorted(order[k : k + batch_size], key=lambda i: (lengths[i], i))
        m = max(1, min(micro_batches, len(b)))
        size = math.ceil(len(b) / m)
        out.append([b[j : j + size] for j in range(0, len(b), size)])
    return out


def _answer_counts(enc: EncodedQA, per_sequence: bool) -> np.ndarray:
    """Per item: answer tokens (per-token loss) or 1 (per-sequence loss)."""
    if per_sequence:
        return np.ones(len(enc))
    return np.array([int((lab != -100).sum()) for lab in enc.labels])


def optimizer_step(params: list, opt, sched, history: list[dict], bar, epoch: int, loss: float) -> None:
    """Clip the gradients at norm 1, step the optimiser and the schedule, log the step."""
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    history.append({"step": len(history), "epoch": epoch, "loss": loss, "lr": float(sched.get_last_lr()[0])})
    bar.update(1)
    if len(history) % 20 == 0:
        bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-20:]]):.3f}")


def train_model(
    bundle: ModelBundle,
    enc: EncodedQA,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    warmup_share: float = 0.05,
    desc: str = "train",
    progress: bool = True,
    per_sequence: bool = False,
    micro_batches: int = 2,
) -> list[dict]:
    """Train ``bundle.model`` in place on ``enc``; return the per-step history (step, epoch, loss, lr).

    Each step takes a random batch of ``batch_size`` items, cut into ``micro_batches``
    micro-batches of similar length whose gradients add up to the batch's mean loss
    (:func:`mixed_batches`); ``micro_batches=0`` uses the older length-sorted batches
    (:func:`length_batches`). AdamW, linear warm-up over ``warmup_share`` of the steps, cosine
    decay to 5 %, gradients clipped at norm 1.

    Only parameters with ``requires_grad`` train. With a frozen vision tower (see
    :func:`set_vision_trainable`) on the packed path (LLaVA-1.5), the encoder output of every
    image is computed once up front (when it fits :data:`FEATURE_CACHE_BYTES`) and each step
    runs only projector + language model; every other family runs its own forward. Either way
    the output head runs on the answer positions only — the same loss, a fraction of the cost.

    Under a multi-process launch each process takes its share of every step's micro-batches
    and the gradients are summed before the step (:mod:`pebench_core.distributed`).
    """
    if len(enc) == 0:
        raise ValueError(f"{desc}: the training set is empty")
    model = bundle.model
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    fast = packed_parts(model) is not None
    sharded = D.is_sharded(model)
    feats = None
    if fast and not vision_trainable(bundle) and feature_cache_fits(bundle, enc):
        if enc.features is None or len(enc.features) != enc.n_images:
            enc.features = image_features(bundle, enc.pixel_values)
        feats = enc.features
    model.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(enc) / batch_size)
    total = steps_per_epoch * epochs
    warm = max(1, int(total * warmup_share))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    history: list[dict] = []
    lengths = enc.lengths
    # At least one micro-batch per process; how a batch is cut changes padding, not the step.
    w = D.world_size()
    micro = w * math.ceil(micro_batches / w) if micro_batches > 0 else 0
    counts = _answer_counts(enc, per_sequence)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    t0 = time.perf_counter()
    try:
        for epoch in range(epochs):
            if micro_batches > 0:
                plan = mixed_batches(lengths, batch_size, micro, rng)
            else:
                plan = [[b] for b in length_batches(lengths, batch_size, rng)]
            for groups in plan:
                opt.zero_grad(set_to_none=True)
                n_total = float(sum(counts[i] for g in groups for i in g))
                step_loss = 0.0
                # Data parallel: process r takes micro-batches r, r + W, ...; the losses are
                # scaled by the whole step's count, so the summed gradients are the step's.
                # FSDP averages over the processes where all_reduce_grads sums: scale by their number.
                scale = float(D.world_size()) if sharded else 1.0
                mine = [(idx, scale) for idx in groups[D.rank() :: D.world_size()]]
                if sharded:  # FSDP's collectives need as many passes everywhere: pad with no-weight ones
                    mine += [(groups[0], 0.0)] * (math.ceil(len(groups) / D.world_size()) - len(mine))
                for idx, weight in mine:
                    batch = move_batch(collate(enc, idx, bundle.pad_token_id), bundle.device, bundle.dtype)
                    f = None if feats is None else feats[enc.rows(idx)].to(bundle.device, bundle.dtype)
                    loss = answer_loss(model, batch, f, per_sequence, total=n_total) * weight
                    if not torch.isfinite(loss):  # one line naming the stage, the step and the rate
                        raise ConfigError(
                            f"{desc}: the training loss became {loss.item()} at step {len(history)} (learning rate "
                            f"{sched.get_last_lr()[0]:.3g}); nothing was stored: lower train.lr or raise train.warmup_share"
                        )
                    loss.backward()
                    step_loss += float(loss.detach()) / scale
                if not sharded:  # FSDP's reduce-scatter has summed them already
                    D.all_reduce_grads(params)
                optimizer_step(params, opt, sched, history, bar, epoch, D.all_reduce_sum(step_loss))
    finally:
        bar.close()
        model.eval()
    if history:
        history[-1]["seconds"] = round(time.perf_counter() - t0, 3)
    return history


def checkpointing_on(tcfg, local: bool, device_type: str) -> bool:
    """Whether a stage recomputes activations: ``train.gradient_checkpointing`` on/off, or
    ``auto`` = a local checkpoint on CUDA (the tiny model's activations are kilobytes)."""
    if tcfg.gradient_checkpointing == "auto":
        return local and device_type == "cuda"
    return tcfg.gradient_checkpointing == "on"


@contextlib.contextmanager
def gradient_checkpointing(bundle: ModelBundle, on: bool):
    """Inside the block the decoder layers recompute their activations in the backward pass
    (non-reentrant, so it works with frozen embeddings and LoRA): activation memory falls
    from every layer's intermediates to one hidden state per layer, for about a third more
    compute. Off again afterwards, so evaluation runs at full speed."""
    base = bundle.base_model
    if not on or not getattr(base, "supports_gradient_checkpointing", False):
        yield
        return
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        base.gradient_checkpointing_disable()
