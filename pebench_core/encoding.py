"""QA sets encoded once for training and unlearning: token ids, labels and image inputs.

:func:`encode_qa` runs the model's processor over a QA set once (each distinct image once)
and keeps the result as an :class:`EncodedQA`; :func:`collate` pads any subset of it into
a batch exactly as :func:`~pebench_core.models.encode_train` would build it, and
:func:`length_batches` groups items of similar length so that little compute goes to
padding. Nothing here runs a model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .models import ModelBundle, answer_ids, check_length, encode_prompts, pad_batch

__all__ = ["EncodedQA", "encode_qa", "collate", "length_batches", "image_loader"]


@dataclass
class EncodedQA:
    """A QA set encoded once: one row of token ids and labels per item, images processed once.

    ``vision`` holds each distinct image's inputs once (every tensor the processor returned
    for it: ``pixel_values`` and, per family, ``image_grid_thw``, ``pixel_attention_mask``,
    ``image_sizes`` …; a tensor of stacked pixels is accepted too); ``image_index[i]`` is the
    row of item ``i``'s image (person and event questions about one render share it).
    ``tokens[i]`` holds item ``i``'s per-token inputs (e.g. ``token_type_ids``), aligned with
    its ids. ``features``, when set by :func:`train_model` for a frozen vision tower on the
    packed path, holds the encoder's output per image row (the projector's input).
    """

    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]
    vision: Any  # list[dict[str, Tensor]] per image row (or a [n_images, 3, H, W] tensor)
    qa: list
    image_index: torch.Tensor | None = None  # [N] rows of vision; None = one row per item
    features: torch.Tensor | None = None  # [n_images, T, D] frozen encoder output, or None
    tokens: list[dict[str, torch.Tensor]] | None = None  # per item; None = no per-token inputs

    def __post_init__(self) -> None:
        if isinstance(self.vision, torch.Tensor):
            self.vision = [{"pixel_values": v[None]} for v in self.vision]
        if self.tokens is None:
            self.tokens = [{} for _ in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_images(self) -> int:
        return len(self.vision)

    @property
    def pixel_values(self) -> torch.Tensor:
        """Every image row's ``pixel_values`` stacked (the packed path's encoder input)."""
        return torch.cat([v["pixel_values"] for v in self.vision]) if self.vision else torch.empty(0)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids])

    def rows(self, idx: Sequence[int]) -> torch.Tensor:
        """The image rows of the items ``idx``."""
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        return idx_t if self.image_index is None else self.image_index[idx_t]

    def subset(self, idx: Sequence[int]) -> "EncodedQA":
        """The items ``idx`` (sharing the image inputs)."""
        idx = list(idx)
        return EncodedQA(
            [self.input_ids[i] for i in idx],
            [self.labels[i] for i in idx],
            self.vision,
            [self.qa[i] for i in idx],
            self.rows(idx),
            self.features,
            [self.tokens[i] for i in idx],
        )


def _image_key(q: Any) -> Any:
    return getattr(q, "image_path", None) or getattr(q, "item_id", None) or id(q)


def encode_qa(
    bundle: ModelBundle, qa: Sequence, load_image: Callable, max_length: int | None = None, chunk: int = 128
) -> EncodedQA:
    """Encode ``qa`` (objects with ``image``/``image_path``, ``question``, ``answer``) through the
    model's processor.

    ``load_image(qa_item)`` returns the PIL image; each distinct image (by ``image_path``) is
    decoded once and its image inputs kept once. Token ids are exactly
    :func:`~pebench_core.models.encode_train`'s (tested); with ``max_length`` a longer
    sequence is a :class:`~pebench_core.config.ConfigError` before any training.
    """
    ids, labs, toks = [], [], []
    keys = [_image_key(q) for q in qa]
    first: dict[Any, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    row_of = {k: r for r, k in enumerate(first)}
    image_index = torch.tensor([row_of[k] for k in keys], dtype=torch.long)
    vision: list[dict | None] = [None] * len(first)
    decoded: dict[Any, Any] = {}
    for start in range(0, len(qa), chunk):
        part = qa[start : start + chunk]
        # load_image runs once per distinct image; the processor still needs one per prompt.
        imgs = []
        for j, q in enumerate(part):
            k = keys[start + j]
            if k not in decoded:
                decoded[k] = load_image(q)
            imgs.append(decoded[k])
        questions = [q.question for q in part]
        prompts = encode_prompts(bundle, imgs, questions)
        for row, (p, a) in enumerate(zip(prompts, answer_ids(bundle, questions, [q.answer for q in part]))):
            check_length(len(p.ids), len(a), max_length)
            ids.append(torch.tensor(p.ids + a, dtype=torch.long))
            labs.append(torch.tensor([-100] * len(p.ids) + a, dtype=torch.long))
            toks.append({k: torch.tensor(v + [0] * len(a), dtype=torch.long) for k, v in p.tokens.items()})
            r = row_of[keys[start + row]]
            if vision[r] is None:
                vision[r] = p.vision
    return EncodedQA(ids, labs, vision, list(qa), image_index, tokens=toks)


def collate(enc: EncodedQA, idx: Sequence[int], pad_id: int) -> dict:
    """A right-padded batch of the items ``idx`` (``input_ids``, ``attention_mask``, ``labels``,
    the per-token inputs and the image inputs), as :func:`~pebench_core.models.encode_train`
    would build it."""
    idx = list(idx)
    return pad_batch(
        [enc.input_ids[i] for i in idx],
        [enc.tokens[i] for i in idx],
        [enc.vision[int(r)] for r in enc.rows(idx)],
        pad_id,
        "right",
        [enc.labels[i] for i in idx],
    )


def length_batches(lengths: np.ndarray, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within windows of 50 batches by length, cut into batches, shuffle the batches.

    Items of similar length share a batch (little padding) while the order stays random.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for s in range(0, len(order), window):
        chunk = sorted(order[s : s + window], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def image_loader(dataset) -> Callable:
    cache: dict = {}

    def load(q):
        key = q.image_path
        if key not in cache:
            cache[key] = dataset.image(q.item_id)
        return cache[key]

    return load
