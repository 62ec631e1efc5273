"""Knowledge injection (DESIGN §5): pre-training (base), fine-tuning (finetune), and goal models.

Every stage is the same supervised loop over question–answer pairs on images: the loss
is the mean negative log-likelihood of the answer tokens, AdamW with a linear warm-up
and cosine decay, seeded shuffling. The QA sets are encoded once (pixels and token ids),
then batched by index, with batches built from items of similar length so little
compute goes to padding.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .models import ModelBundle, encode_train


@dataclass
class EncodedQA:
    """A QA set encoded once: one row of token ids and labels per item, one image tensor per item."""

    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]
    pixel_values: torch.Tensor  # [N, 3, H, W] (shared images are stored once per item; small at tiny scale)
    qa: list

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids])


def encode_qa(bundle: ModelBundle, qa: Sequence, load_image: Callable, max_length: int | None = None,
              chunk: int = 128) -> EncodedQA:
    """Encode ``qa`` (objects with ``image``/``question``/``answer``) through the model's processor.

    ``load_image(qa_item)`` returns the PIL image; images are decoded once per item.
    """
    ids, labs, pix = [], [], []
    for start in range(0, len(qa), chunk):
        part = qa[start:start + chunk]
        batch = encode_train(bundle, [load_image(q) for q in part], [q.question for q in part],
                             [q.answer for q in part], max_length=max_length)
        for row in range(len(part)):
            n = int(batch["attention_mask"][row].sum())
            ids.append(batch["input_ids"][row, :n].clone())
            labs.append(batch["labels"][row, :n].clone())
        pix.append(batch["pixel_values"])
    pixel_values = torch.cat(pix) if pix else torch.empty(0)
    return EncodedQA(ids, labs, pixel_values, list(qa))


def collate(enc: EncodedQA, idx: Sequence[int], pad_id: int) -> dict:
    """A right-padded batch of the items ``idx``."""
    n = max(len(enc.input_ids[i]) for i in idx)
    B = len(idx)
    input_ids = torch.full((B, n), pad_id, dtype=torch.long)
    labels = torch.full((B, n), -100, dtype=torch.long)
    mask = torch.zeros((B, n), dtype=torch.long)
    for r, i in enumerate(idx):
        L = len(enc.input_ids[i])
        input_ids[r, :L] = enc.input_ids[i]
        labels[r, :L] = enc.labels[i]
        mask[r, :L] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "pixel_values": enc.pixel_values[list(idx)]}


def length_batches(lengths: np.ndarray, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within windows of 50 batches by length, cut into batches, shuffle the batches.

    Items of similar length share a batch (little padding) while the order stays random.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for s in range(0, len(order), window):
        chunk = sorted(order[s:s + window], key=lambda i: lengths[i])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _to(batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
    out = {k: v.to(device) for k, v in batch.items()}
    out["pixel_values"] = out["pixel_values"].to(dtype)
    return out


def train_model(bundle: ModelBundle, enc: EncodedQA, *, epochs: int, lr: float, batch_size: int, seed: int,
                weight_decay: float = 0.0, warmup_share: float = 0.05, desc: str = "train",
                progress: bool = True) -> list[dict]:
    """Train ``bundle.model`` in place on ``enc``; return the per-step history (step, epoch, loss, lr)."""
    if len(enc) == 0:
        raise ValueError(f"{desc}: the training set is empty")
    model = bundle.model
    model.train()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
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
    history, step = [], 0
    lengths = enc.lengths
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for idx in length_batches(lengths, batch_size, rng):
            batch = _to(collate(enc, idx, bundle.pad_token_id), bundle.device, bundle.dtype)
            out = model(**batch)
            loss = out.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step}; lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            history.append({"step": step, "epoch": epoch, "loss": float(loss.detach()),
                            "lr": float(sched.get_last_lr()[0])})
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-20:]]):.3f}")
    bar.close()
    model.eval()
    if history:
        history[-1]["seconds"] = round(time.perf_counter() - t0, 3)
    return history
