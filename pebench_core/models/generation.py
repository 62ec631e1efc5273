"""Batched greedy decoding whose answers do not depend on the batch size or the item order."""

from __future__ import annotations

from typing import Sequence

import torch

from .. import distributed as D
from .bundle import ModelBundle, model_device_dtype
from .lora import plain_linears
from .prompts import encode_prompts, move_batch, pad_batch, prompt_and_answer_text

__all__ = ["generate"]


@torch.no_grad()
def generate(
    bundle: ModelBundle,
    images: Sequence,
    questions: Sequence[str],
    max_new_tokens: int = 40,
    batch_size: int = 32,
    sharded: bool = True,
) -> list[str]:
    """Greedy answers (new tokens only, stripped), batched with left padding and a KV cache.

    Items are processed in order of prompt length so that batches need little padding; the
    answers come back in the input order. Every input the processor returns goes to
    ``model.generate`` (per-token ones left-padded with the ids); position ids are derived
    from the attention mask, so a left-padded prompt sees the same positions as an unpadded
    one and the answers do not depend on ``batch_size`` or the order of the items (tested).

    Under a multi-process launch (:mod:`pebench_core.distributed`) each process answers a
    contiguous share of the items and every process gets all the answers back (``sharded``
    False answers all of them here, in this process).
    """
    if len(images) != len(questions):
        raise ValueError(f"got {len(images)} images but {len(questions)} questions")
    n = len(images)
    if sharded and D.world_size() > 1:
        sl = D.shard_slice(n)
        mine = generate(bundle, list(images)[sl], list(questions)[sl], max_new_tokens, batch_size, sharded=False)
        return [a for part in D.all_gather_objects(mine) for a in part]
    if n == 0:
        return []
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be at least 1")
    model = bundle.model
    was_training = model.training
    model.eval()
    device, mdtype = model_device_dtype(model)
    tok = bundle.tokenizer
    pad_id, eos_id = bundle.pad_token_id, bundle.eos_token_ids
    # Order by (prompt length, original index): a deterministic grouping that does not
    # depend on the order the caller gave the items in.
    lengths = [len(prompt_and_answer_text(bundle, q, None)[0]) for q in questions]
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    answers: list[str] = [""] * n
    try:
        # the adapter, if any, merged into plain linear layers while decoding (lora.plain_linears)
        with plain_linears(model):
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                ps = encode_prompts(bundle, [images[i] for i in idx], [questions[i] for i in idx])
                batch = move_batch(
                    pad_batch([p.ids for p in ps], [p.tokens for p in ps], [p.vision for p in ps], pad_id, "left"), device, mdtype
                )
                out = model.generate(
                    **batch,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
                new = out[:, batch["input_ids"].shape[1] :]
                texts = tok.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                for i, t in zip(idx, texts):
                    answers[i] = t.strip()
    finally:
        if was_training:
            model.train()
    return answers
