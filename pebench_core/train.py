"""Knowledge injection (DESIGN §5): pre-training (base), fine-tuning (finetune), and goal models.

The recipe, as :func:`inject` runs it for each stage:

* **base** = *vision pre-training* + *LLaVA pre-training*. A real LLaVA starts from a CLIP
  encoder that already sees hair, clothes, scenes and objects; a randomly initialised tiny
  ViT does not, and the language-modelling loss alone is far too weak a signal to teach it
  (the model collapses to one answer). So :func:`pretrain_vision` first trains the vision
  tower, with small throw-away heads, to recognise *general visual concepts* on a generic
  crowd: random people (random trait combinations, never the fictitious PEBench people)
  rendered into the event scenes — every person trait (skin, face, hair style and colour,
  glasses, beard, hat, shirt colour and pattern, trousers), the scene, and which objects are
  present (multi-label). A new identity is then a new combination of concepts the encoder
  already sees. The LLaVA stage trains projector + language model on the pre-training
  world's QA (real-world people, every event, POPE) with the vision tower **frozen**, as
  LLaVA-1.5 freezes CLIP; frozen features are computed once per image, so a step runs only
  projector + language model.
* **finetune** = the base model trained on every fictitious training render (person + event
  QA), with **replay**: a share of the base's own pre-training QA is mixed in. A tiny model
  has no massive prior knowledge to protect what it knew, and without replay it forgets the
  real-world people and POPE within a few epochs (catastrophic forgetting) — a deviation from
  the paper, where LLaVA's knowledge survives a short fine-tune.
* **goal(target)** = the same fine-tune without the forget set; for events the forget events
  are also absent from the base's LLaVA pre-training and from the vision pre-training's
  scenes (and so from the replay).

The vision pre-training leaves out the forget events of the dataset's ``event`` split for
*every* base (``TrainConfig.vision_exclude_forget_events``): the encoder is then the same for
``base`` and for the base of ``goal(event)``, and can be computed once and shared; the forget
scenes stay recognisable from their objects, palette and layout, which the encoder learns
from the other scenes.

Every loop is seeded (same seed, same weights) and shows a tqdm bar. The loss is the mean
negative log-likelihood of the answer tokens (AdamW, linear warm-up, cosine decay);
batches group items of similar length so little compute goes to padding.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed as D
from .config import ConfigError
from .families import family_of
from .models import (ModelBundle, add_lora, answer_ids, check_length, context_length, encode_prompts,
                     full_answer_logits, move_batch, pad_batch)

__all__ = [
    "EncodedQA",
    "encode_qa",
    "collate",
    "length_batches",
    "mixed_batches",
    "train_model",
    "CrowdSet",
    "render_crowd",
    "pretrain_vision",
    "set_vision_trainable",
    "vision_trainable",
    "vision_state",
    "load_vision_state",
    "image_features",
    "answer_logits",
    "answer_positions",
    "merged_embeddings",
    "pope_examples",
    "base_examples",
    "replay_examples",
    "stage_examples",
    "inject",
    "checkpointing_on",
    "gradient_checkpointing",
]


# ---------------------------------------------------------------------------------------
# Encoded QA sets


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
        return EncodedQA([self.input_ids[i] for i in idx], [self.labels[i] for i in idx], self.vision,
                         [self.qa[i] for i in idx], self.rows(idx), self.features,
                         [self.tokens[i] for i in idx])


def _image_key(q: Any) -> Any:
    return getattr(q, "image_path", None) or getattr(q, "item_id", None) or id(q)


def encode_qa(bundle: ModelBundle, qa: Sequence, load_image: Callable, max_length: int | None = None,
              chunk: int = 128) -> EncodedQA:
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
        part = qa[start:start + chunk]
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
    return pad_batch([enc.input_ids[i] for i in idx], [enc.tokens[i] for i in idx],
                     [enc.vision[int(r)] for r in enc.rows(idx)], pad_id, "right",
                     [enc.labels[i] for i in idx])


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


# ---------------------------------------------------------------------------------------
# The vision tower of a LLaVA-style model


def _packed(model: torch.nn.Module):
    """``(model, inner)`` of the packed fast path (see :mod:`pebench_core.families`), or ``None``.
    A model sharded with FSDP runs its own forward: FSDP gathers a group's weights in its
    module's forward, which the packed path (running the decoder by hand) would skip."""
    if D.is_sharded(model):
        return None
    return family_of(model).packed_parts(model)


def _vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    fam = family_of(model)
    return fam.module(model, fam.vision_tower[0])


def vision_trainable(bundle: ModelBundle) -> bool:
    """Whether any vision-tower parameter is trainable (the projector is not the tower)."""
    return any(p.requires_grad for p in bundle.family.vision_parameters(bundle.model))


def set_vision_trainable(bundle: ModelBundle, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the vision tower (``requires_grad`` on its parameters)."""
    for p in bundle.family.vision_parameters(bundle.model):
        p.requires_grad_(trainable)


def vision_state(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    """A copy of the vision tower's weights (to share one vision pre-training between bases)."""
    return {k: v.detach().clone() for k, v in _vision_tower(bundle.model).state_dict().items()}


def load_vision_state(bundle: ModelBundle, state: dict[str, torch.Tensor]) -> None:
    _vision_tower(bundle.model).load_state_dict(state)


def _vision_hidden(inner, pixel_values: torch.Tensor) -> torch.Tensor:
    """The encoder output LLaVA feeds its projector: the configured layer(s), CLS dropped with
    the ``default`` strategy (mirrors ``LlavaModel.get_image_features`` before the projector)."""
    cfg = inner.config
    layer = cfg.vision_feature_layer
    out = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
    layers = [layer] if isinstance(layer, int) else list(layer)
    hs = [out.hidden_states[i] for i in layers]
    if cfg.vision_feature_select_strategy == "default":
        hs = [h[:, 1:] for h in hs]
    return hs[0] if len(hs) == 1 else torch.cat(hs, dim=-1)


@torch.no_grad()
def image_features(bundle: ModelBundle, pixel_values: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The frozen encoder's output for ``pixel_values`` (``[N, tokens, dim]``, CPU, float32)."""
    parts = _packed(bundle.model)
    if parts is None:
        raise ValueError(f"image_features runs on the packed path only; a {bundle.family.title} model runs its own "
                         "forward pass")
    inner = parts[1]
    tower = inner.vision_tower
    was = tower.training
    tower.eval()
    try:
        out = [_vision_hidden(inner, pixel_values[s:s + batch_size].to(bundle.device, bundle.dtype)).float().cpu()
               for s in range(0, len(pixel_values), batch_size)]
    finally:
        tower.train(was)
    return torch.cat(out)


def merged_embeddings(inner, input_ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Token embeddings with the projected encoder output ``feats`` (``[n_images, tokens, dim]``,
    in the order the image blocks appear in ``input_ids``) written over the ``<image>`` tokens,
    as ``LlavaModel`` merges them."""
    embeds = inner.get_input_embeddings()(input_ids)
    img = inner.multi_modal_projector(feats.to(embeds.dtype))
    mask = (input_ids == inner.config.image_token_id).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, img.reshape(-1, img.shape[-1]).to(embeds.dtype))


def answer_logits(model: torch.nn.Module, batch: dict, feats: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The output head on the answer positions of a batch only.

    Returns ``(logits [N, V] float32, targets [N], rows [N])``: one row per answer token of
    the batch, in order, with the token it predicts and the batch row it belongs to. Prompt
    and image positions never reach the head, so the cost of the vocabulary projection
    follows the answers, not the sequence length.

    On the packed path (LLaVA-1.5, proven equal to the model's forward) the encoder, the
    projector and the decoder are run by hand, and with ``feats`` (the frozen encoder's
    output per item, see :func:`image_features`) the vision tower is skipped. Every other
    family runs its own forward pass (:func:`~pebench_core.models.full_answer_logits`).
    """
    parts = _packed(model)
    if parts is None:
        if feats is not None:
            raise ValueError("answer_logits: encoder features are only used on the packed path")
        return full_answer_logits(model, batch)
    base, inner = parts
    input_ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    if feats is None:
        feats = _vision_hidden(inner, batch["pixel_values"])
    embeds = merged_embeddings(inner, input_ids, feats)
    hidden = inner.language_model(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state
    h, targets, rows = answer_positions(hidden, labels)
    return base.lm_head(h).float(), targets, rows


def answer_positions(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` (``[B, T, …]``, hidden states or logits) at the positions that predict an answer
    token: ``(x_sel [N, …], targets [N], rows [N])``, in row-major order."""
    target = labels[:, 1:]
    sel = target != -100
    return x[:, :-1][sel], target[sel], sel.nonzero(as_tuple=True)[0]


# Frozen encoder outputs are kept for the whole set only below this size: the tiny model's are
# kilobytes, a 7B LLaVA's 8,000 PEBench images would be 19 GB of host memory (576 x 1024
# floats each); past it each step runs the frozen tower on its own images instead.
FEATURE_CACHE_BYTES = 2 * 1024**3


def feature_cache_fits(bundle: ModelBundle, enc: EncodedQA) -> bool:
    """Whether the frozen encoder output of every image of ``enc`` fits :data:`FEATURE_CACHE_BYTES`."""
    if enc.features is not None and len(enc.features) == enc.n_images:
        return True
    if not enc.n_images:
        return False
    one = image_features(bundle, enc.vision[0]["pixel_values"])
    return one.numel() * one.element_size() * enc.n_images <= FEATURE_CACHE_BYTES


def _answer_loss(model: torch.nn.Module, batch: dict, feats: torch.Tensor | None,
                 per_sequence: bool = False, total: float | None = None) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------
# Supervised training on QA


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
        b = sorted(order[k:k + batch_size], key=lambda i: (lengths[i], i))
        m = max(1, min(micro_batches, len(b)))
        size = math.ceil(len(b) / m)
        out.append([b[j:j + size] for j in range(0, len(b), size)])
    return out


def _answer_counts(enc: EncodedQA, per_sequence: bool) -> np.ndarray:
    """Per item: answer tokens (per-token loss) or 1 (per-sequence loss)."""
    if per_sequence:
        return np.ones(len(enc))
    return np.array([int((lab != -100).sum()) for lab in enc.labels])


def _optimizer_step(params: list, opt, sched, history: list[dict], bar, epoch: int, loss: float) -> None:
    """Clip the gradients at norm 1, step the optimiser and the schedule, log the step."""
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    history.append({"step": len(history), "epoch": epoch, "loss": loss, "lr": float(sched.get_last_lr()[0])})
    bar.update(1)
    if len(history) % 20 == 0:
        bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-20:]]):.3f}")


def train_model(bundle: ModelBundle, enc: EncodedQA, *, epochs: int, lr: float, batch_size: int, seed: int,
                weight_decay: float = 0.0, warmup_share: float = 0.05, desc: str = "train",
                progress: bool = True, per_sequence: bool = False, micro_batches: int = 2) -> list[dict]:
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
    fast = _packed(model) is not None
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
                mine = [(idx, scale) for idx in groups[D.rank()::D.world_size()]]
                if sharded:  # FSDP's collectives need as many passes everywhere: pad with no-weight ones
                    mine += [(groups[0], 0.0)] * (math.ceil(len(groups) / D.world_size()) - len(mine))
                for idx, weight in mine:
                    batch = move_batch(collate(enc, idx, bundle.pad_token_id), bundle.device, bundle.dtype)
                    f = None if feats is None else feats[enc.rows(idx)].to(bundle.device, bundle.dtype)
                    loss = _answer_loss(model, batch, f, per_sequence, total=n_total) * weight
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {len(history)}; lower train.lr")
                    loss.backward()
                    step_loss += float(loss.detach()) / scale
                if not sharded:  # FSDP's reduce-scatter has summed them already
                    D.all_reduce_grads(params)
                _optimizer_step(params, opt, sched, history, bar, epoch, D.all_reduce_sum(step_loss))
    finally:
        bar.close()
        model.eval()
    if history:
        history[-1]["seconds"] = round(time.perf_counter() - t0, 3)
    return history


# ---------------------------------------------------------------------------------------
# Vision pre-training on a generic crowd


@dataclass
class CrowdSet:
    """Random people rendered into event scenes, with the concept labels of each image.

    ``labels[:, k]`` is the value index of trait ``tasks[k]`` (``tasks`` ends with ``"scene"``,
    the index into ``events``); ``objects`` is the multi-hot vector of the objects drawn.
    """

    pixel_values: torch.Tensor  # [N, 3, H, W]
    labels: torch.Tensor  # [N, len(tasks)] long
    objects: torch.Tensor  # [N, len(object_names)] float 0/1
    tasks: tuple[str, ...]
    classes: tuple[int, ...]  # number of values per task
    object_names: tuple[str, ...]
    events: tuple[str, ...]  # event names, the classes of the "scene" task

    def __len__(self) -> int:
        return len(self.labels)


def _scene_events(dataset, exclude_events: Sequence[str] = ()) -> list:
    """The event scenes the crowd is rendered into: the dataset's events minus ``exclude_events``
    (ids or names). A dataset without drawable scenes (the real PEBench release) uses the
    world catalogue's events of the same names, or the whole catalogue."""
    from .world import EVENTS

    excl = set(exclude_events)
    events = [e for e in dataset.events if e.id not in excl and e.name not in excl]
    drawable = [e for e in events if e.layout and e.palette]
    if len(drawable) < len(events) or not drawable:
        names = {e.name.lower() for e in events}
        drawable = [e for e in EVENTS if e.name in names] or \
                   [e for e in EVENTS if e.name not in {x.name for x in dataset.events if x.id in excl}]
    if not drawable:
        raise ValueError("pretrain_vision: no event scene left to render")
    return drawable


def render_crowd(events: Sequence, n: int, image_size: int, seed: int, processor=None,
                 progress: bool = False) -> CrowdSet:
    """``n`` renders of random people (random trait combinations, never the PEBench people)
    into ``events`` (cycled, so every scene is equally frequent), seeded.

    ``processor`` (a LlavaProcessor or an image processor) turns the images into pixel
    values; without it they are scaled to [0, 1].
    """
    from .world import OBJECTS, SALIENT_TRAITS, TRAIT_VALUES, Person, objects_in, random_traits, render

    rng = random.Random(f"pebench-crowd:{seed}")
    tasks = tuple(SALIENT_TRAITS) + ("scene",)
    obj_pos = {o: i for i, o in enumerate(OBJECTS)}
    labels = np.zeros((n, len(tasks)), dtype=np.int64)
    objects = np.zeros((n, len(OBJECTS)), dtype=np.float32)
    images = []
    for k in tqdm(range(n), desc="render crowd", disable=not progress, leave=False, mininterval=2.0):
        gender = rng.choice(("female", "male"))
        traits = random_traits(rng, gender)
        ei = k % len(events)
        rs = rng.getrandbits(31)
        person = Person(id="crowd", name="", age=None, gender=gender, profession=None,
                        occupation_category=None, birthplace=None, region=None, traits=traits)
        images.append(render(None, person, events[ei], rs, size=image_size))
        labels[k, :-1] = [TRAIT_VALUES[t].index(traits[t]) for t in SALIENT_TRAITS]
        labels[k, -1] = ei
        for o in objects_in(None, events[ei], rs):
            objects[k, obj_pos[o]] = 1.0
    ip = getattr(processor, "image_processor", processor)
    if ip is not None:
        pix = ip(images, return_tensors="pt")["pixel_values"]
    else:
        pix = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    classes = tuple(len(TRAIT_VALUES[t]) for t in SALIENT_TRAITS) + (len(events),)
    return CrowdSet(pix, torch.from_numpy(labels), torch.from_numpy(objects), tasks, classes,
                    tuple(OBJECTS), tuple(e.name for e in events))


class ConceptHeads(torch.nn.Module):
    """Throw-away heads of the vision pre-training: one attention-pooling query and one linear
    classifier per concept (traits, scene) plus one for the objects (multi-label).

    Attention pooling lets each concept read the tokens that show it (the shirt, the hat, the
    background) instead of an average over the whole image, which teaches localised concepts
    far faster than mean pooling.
    """

    def __init__(self, dim: int, classes: Sequence[int], n_objects: int):
        super().__init__()
        self.classes = list(classes)
        self.norm = torch.nn.LayerNorm(dim)
        self.query = torch.nn.Parameter(torch.randn(len(self.classes) + 1, dim) * 0.02)
        self.out = torch.nn.ModuleList([torch.nn.Linear(dim, c) for c in [*self.classes, n_objects]])

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        h = self.norm(tokens)  # [B, T, D]
        att = torch.softmax(h @ self.query.T * h.shape[-1] ** -0.5, dim=1)  # [B, T, K]
        pooled = torch.einsum("btk,btd->bkd", att, h)
        return [lin(pooled[:, k]) for k, lin in enumerate(self.out)]


def _concept_loss(outs: list[torch.Tensor], labels: torch.Tensor, objects: torch.Tensor,
                  object_weight: float = 4.0) -> tuple[torch.Tensor, list[float]]:
    """Sum of the concepts' cross-entropies + ``object_weight`` × mean binary cross-entropy of
    the objects; also each concept's accuracy (objects: per-object accuracy)."""
    loss = outs[-1].new_zeros(())
    acc = []
    for k, lg in enumerate(outs[:-1]):
        loss = loss + torch.nn.functional.cross_entropy(lg, labels[:, k])
        acc.append(float((lg.argmax(1) == labels[:, k]).float().mean()))
    ol = outs[-1]
    loss = loss + object_weight * torch.nn.functional.binary_cross_entropy_with_logits(ol, objects)
    acc.append(float(((ol > 0).float() == objects).float().mean()))
    return loss, acc


def _vision_key(bundle: ModelBundle, events: Sequence, cfg, seed: int, image_size: int) -> str:
    """Everything a vision pre-training depends on: the tower's initial weights, the settings,
    the scenes, the seed, the image size and the code it runs."""
    from .code_keys import code_key

    h = hashlib.sha256()
    for k, v in sorted(_vision_tower(bundle.model).state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    fields = {f: getattr(cfg, f) for f in ("vision_images", "vision_epochs", "vision_lr", "vision_batch_size")}
    h.update(repr((sorted(fields.items()), [e.name for e in events], seed, image_size)).encode())
    h.update(code_key(pretrain_vision).encode())
    return h.hexdigest()[:16]


def _load_vision_cache(folder: Path):
    from safetensors.torch import load_file

    from .storage import is_complete, read_marker

    if not is_complete(folder):
        return None
    return load_file(str(folder / "vision.safetensors")), read_marker(folder)["history"]


def _save_vision_cache(folder: Path, state: dict, history: list) -> None:
    """Write the tower and its history to ``folder`` atomically, the history in the marker."""
    from safetensors.torch import save_file

    from .storage import atomic_dir

    with atomic_dir(folder, marker={"artifact": "vision pre-training", "history": history}) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "vision.safetensors"))


def pretrain_vision(bundle: ModelBundle, dataset, cfg, seed: int, exclude_events: Sequence[str] = (),
                    progress: bool = True, cache: str | Path | None = None) -> list[dict]:
    """Pre-train the vision tower on general visual concepts (in place); return the history.

    ``cfg`` is a :class:`~pebench_core.config.TrainConfig` (``vision_images`` renders of a
    random crowd into the dataset's event scenes minus ``exclude_events``, ``vision_epochs``
    passes, AdamW at ``vision_lr``, batches of ``vision_batch_size``). No augmentation: the
    renders already vary pose, position, scale, lighting and noise, and flips or shifts slowed
    the learning of the person traits (measured).
    The concept heads are discarded afterwards; the projector and language model are
    untouched. The history ends with the held-out accuracy of every concept (on fresh renders).

    With ``cache`` (a folder) the tower is stored in ``cache/<key>`` (safetensors, written
    atomically), keyed by the tower's initial weights, the settings, the scenes, the seed and
    this module's source; a later call with the same inputs — the second base, which leaves
    the same events out, or another process — loads it instead of training again (its
    history rows then carry ``cached=True``).
    """
    image_size = int(bundle.meta.get("image_size") or dataset.image_size or 64)
    events = _scene_events(dataset, exclude_events)
    folder = Path(cache) / _vision_key(bundle, events, cfg, seed, image_size) if cache is not None else None
    hit = _load_vision_cache(folder) if folder is not None else None
    if hit is not None:
        state, history = hit
        load_vision_state(bundle, state)
        return [dict(h, cached=True) for h in history]
    parts = _packed(bundle.model)
    if parts is None:
        raise ValueError("pretrain_vision trains the tiny LLaVA's encoder (the packed path) only")
    inner = parts[1]
    t0 = time.perf_counter()
    n = int(cfg.vision_images)
    crowd = render_crowd(events, n, image_size, seed, bundle.processor, progress=progress)
    val = render_crowd(events, min(512, max(64, n // 10)), image_size, seed + 7_919, bundle.processor)
    t_render = time.perf_counter() - t0
    tower = inner.vision_tower
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = ConceptHeads(tower.config.hidden_size * (1 if isinstance(inner.config.vision_feature_layer, int)
                                                         else len(inner.config.vision_feature_layer)),
                             crowd.classes, len(crowd.object_names)).to(bundle.device, bundle.dtype)
    g = torch.Generator().manual_seed(seed)
    trainable = vision_trainable(bundle)
    set_vision_trainable(bundle, True)
    params = list(tower.parameters()) + list(heads.parameters())
    bs = int(cfg.vision_batch_size)
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * int(cfg.vision_epochs)
    opt = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    history: list[dict] = []
    tower.train()
    heads.train()
    bar = tqdm(total=total, desc="vision pre-training", disable=not progress, leave=False, mininterval=2.0)
    try:
        for epoch in range(int(cfg.vision_epochs)):
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, bs):
                i = perm[s:s + bs]
                x = crowd.pixel_values[i].to(bundle.device, bundle.dtype)
                outs = heads(_vision_hidden(inner, x))
                loss, acc = _concept_loss(outs, crowd.labels[i].to(bundle.device), crowd.objects[i].to(bundle.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _optimizer_step(params, opt, sched, history, bar, epoch, float(loss.detach()))
    finally:
        bar.close()
        tower.eval()
        set_vision_trainable(bundle, trainable)
    with torch.no_grad():
        outs = [heads(_vision_hidden(inner, val.pixel_values[s:s + 256].to(bundle.device, bundle.dtype)))
                for s in range(0, len(val), 256)]
        outs = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]
        _, acc = _concept_loss(outs, val.labels.to(bundle.device), val.objects.to(bundle.device))
    history[-1].update({"seconds": round(time.perf_counter() - t0, 3), "seconds_render": round(t_render, 3),
                        "heldout_accuracy": dict(zip([*crowd.tasks, "objects"], [round(a, 4) for a in acc]))})
    if folder is not None and D.is_main():  # every process trained the same tower; one writes it
        _save_vision_cache(folder, vision_state(bundle), history)
    return history


# ---------------------------------------------------------------------------------------
# The stages


def pope_examples(dataset, items: Sequence, per_image: int, seed: int) -> list:
    """Extra POPE yes/no questions on ``items`` (pre-training images), half yes, half no.

    The world's ``pope.jsonl`` asks ``world.pope_questions`` questions per image; a tiny model
    needs more of them to learn to bind an object word to what the encoder sees. They follow
    the world's rule: "yes" on drawn objects, "no" on objects neither drawn nor resembling a
    drawn object or the scene's layout (``world.LOOKALIKES``, ``LAYOUT_LOOKALIKES``), and
    never repeat a question the world already asks about that image. Items without object
    annotations (the real release) give none.
    """
    from .data import QA
    from .world import LAYOUT_LOOKALIKES, LOOKALIKES, OBJECTS, POPE_ANSWERS, POPE_TEMPLATE

    if per_image <= 0:
        return []
    asked: dict[str, set] = {}
    for row in dataset.pope:
        asked.setdefault(row["image"], set()).add(row["object"])
    rng = random.Random(f"pebench-pope-extra:{seed}")
    out = []
    for it in items:
        if not it.objects:
            continue
        present = [o for o in it.objects if o not in asked.get(it.id, ())]
        layout = dataset.event(it.event).layout
        unsafe = set(it.objects) | set(LAYOUT_LOOKALIKES.get(layout, ()))
        unsafe.update(o for p in it.objects for o in LOOKALIKES.get(p, ()))
        absent = [o for o in OBJECTS if o not in unsafe and o not in asked.get(it.id, ())]
        yes = rng.sample(present, min(len(present), (per_image + 1) // 2))
        no = rng.sample(absent, min(len(absent), per_image - len(yes)))
        for obj, ans in [(o, "yes") for o in yes] + [(o, "no") for o in no]:
            out.append(QA(it.id, it.path, POPE_TEMPLATE.format(obj=obj), POPE_ANSWERS[ans], "pope",
                          it.person, it.event, obj))
    return out


def base_examples(dataset, target: str | None, cfg, seed: int) -> list:
    """The QA of the LLaVA pre-training: ``training_examples(dataset, "base", target)`` plus
    ``cfg.pope_extra`` extra POPE questions per pre-training image (:func:`pope_examples`)."""
    from .data import training_examples

    t = target if target in ("event", "both") else None
    ex = training_examples(dataset, "base", t)
    extra = int(getattr(cfg, "pope_extra", 0) or 0)
    if extra > 0:
        keep = {q.item_id for q in ex}
        items = [i for i in dataset.items_where(role="pretrain") if i.id in keep]
        ex = ex + pope_examples(dataset, items, extra, seed)
    return ex


def replay_examples(dataset, target: str | None, share: float, seed: int, cfg=None) -> list:
    """The base's own pre-training QA to mix into fine-tuning: a seeded ``share`` of
    :func:`base_examples` (for goal(event/both) it holds no forget event). ``share`` 0 = none,
    1 = all of it."""
    if share <= 0:
        return []
    base = base_examples(dataset, target, cfg, seed)
    if share >= 1:
        return list(base)
    k = max(1, int(round(len(base) * share)))
    idx = sorted(random.Random(f"pebench-replay:{seed}").sample(range(len(base)), k))
    return [base[i] for i in idx]


def stage_examples(dataset, stage: str, target: str | None, cfg, seed: int) -> tuple[list, list]:
    """``(examples, replay)``: the QA that train ``stage`` (DESIGN §5) and the replayed
    pre-training QA mixed in (empty for base)."""
    from .data import training_examples

    if stage == "base":
        return base_examples(dataset, target, cfg, seed), []
    if stage == "finetune":
        ex = training_examples(dataset, "finetune")
        return ex, replay_examples(dataset, None, cfg.replay_share, seed, cfg)
    if stage == "goal":
        ex = training_examples(dataset, "goal", target)
        return ex, replay_examples(dataset, target, cfg.replay_share, seed, cfg)
    from .config import ConfigError

    raise ConfigError(f"unknown stage {stage!r}; allowed: base, finetune, goal")


def _image_loader(dataset) -> Callable:
    cache: dict = {}

    def load(q):
        key = q.image_path
        if key not in cache:
            cache[key] = dataset.image(q.item_id)
        return cache[key]

    return load


def _configs(cfg):
    """``(train_cfg, max_length, seed_or_None)`` from a RunConfig or a TrainConfig."""
    if hasattr(cfg, "train") and hasattr(cfg, "model"):
        return cfg.train, cfg.model.max_length, cfg.seed
    return cfg, None, None


def inject(bundle: ModelBundle, dataset, stage: str, target: str | None, cfg, seed: int | None = None,
           progress: bool = True, load_image: Callable | None = None, vision_cache: str | Path | None = None) -> dict:
    """Run one knowledge-injection stage on ``bundle`` in place; return what it did.

    * ``base`` (``bundle`` = the freshly built model): vision pre-training on a generic crowd
      (:func:`pretrain_vision`; skipped with ``train.vision_epochs = 0`` or for a model whose
      encoder is already trained, ``meta["kind"] != "tiny"``; stored in and reused from
      ``vision_cache`` when given), then LLaVA pre-training on the
      pre-training world; ``target`` event/both leaves the forget events out.
    * ``finetune`` / ``goal`` (``bundle`` = the base model): every fictitious training render
      (goal: minus the forget set of ``target``) plus ``train.replay_share`` of the base's own
      pre-training QA.

    ``cfg`` is a :class:`~pebench_core.config.RunConfig` (its ``train`` section, model
    ``max_length`` and ``seed`` are used) or a :class:`~pebench_core.config.TrainConfig`.
    The vision tower is frozen in the LLaVA stages when ``train.freeze_vision`` is set.
    Returns ``{"examples", "replay", "epochs", "seconds", "history", ...}``; ``history`` rows
    carry a ``phase`` (``vision`` or ``llava``).
    """
    tcfg, max_length, cfg_seed = _configs(cfg)
    seed = int(cfg_seed if seed is None else seed)
    if stage not in ("base", "finetune", "goal"):
        raise ConfigError(f"unknown stage {stage!r}; allowed: base, finetune, goal")
    tiny = bundle.meta.get("kind") == "tiny"
    if stage == "base" and not tiny:
        raise ConfigError("a local checkpoint is its own base model: nothing to pre-train (stage 'base')")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"stage": stage, "target": target}
    history: list[dict] = []
    if stage == "base" and tcfg.vision_epochs > 0 and _packed(bundle.model) is not None:
        exclude: list[str] = []
        if tcfg.vision_exclude_forget_events or target in ("event", "both"):
            exclude = list(dataset.splits.get("event", {}).get("forget_events", []))
        vh = pretrain_vision(bundle, dataset, tcfg, seed, exclude_events=exclude, progress=progress,
                             cache=vision_cache)
        last = vh[-1]
        info["vision"] = {"seconds": last.get("seconds"), "seconds_render": last.get("seconds_render"),
                          "images": tcfg.vision_images, "epochs": tcfg.vision_epochs, "steps": len(vh),
                          "excluded_events": exclude, "cached": bool(last.get("cached")),
                          "heldout_accuracy": last.get("heldout_accuracy")}
        history += [{"phase": "vision", "step": h["step"], "epoch": h["epoch"], "loss": h["loss"],
                     "lr": h["lr"]} for h in vh]
    examples, replay = stage_examples(dataset, stage, target, tcfg, seed)
    load = load_image or _image_loader(dataset)
    t1 = time.perf_counter()
    enc = encode_qa(bundle, examples + replay, load, max_length=context_length(bundle, max_length or 0))
    info["seconds_encode"] = round(time.perf_counter() - t1, 3)
    epochs = tcfg.base_epochs if stage == "base" else tcfg.finetune_epochs
    if not tiny and tcfg.adapter == "lora":
        # The checkpoint stays as it is; a LoRA adapter on the language model and the projector
        # learns the fictitious world (the caller saves the adapter, not 14 GB of weights).
        bundle.model = add_lora(bundle, r=tcfg.lora_r, alpha=tcfg.lora_alpha, projector=True, seed=seed)
        info["adapter"] = {"kind": "lora", "r": tcfg.lora_r, "alpha": tcfg.lora_alpha}
    was_trainable = vision_trainable(bundle)
    if tcfg.freeze_vision or not tiny:  # a pretrained encoder stays frozen, as in LLaVA-1.5
        set_vision_trainable(bundle, False)
    info["trainable_parameters"] = sum(p.numel() for p in bundle.model.parameters() if p.requires_grad)
    if not tiny and tcfg.adapter == "full" and D.world_size() > 1:
        D.shard_model(bundle.model, bundle.family)  # weights, gradients and AdamW state: an N-th each
        info["fsdp"] = D.world_size()
    try:
        with gradient_checkpointing(bundle, checkpointing_on(tcfg, not tiny, bundle.device.type)):
            h = train_model(bundle, enc, epochs=epochs, lr=tcfg.lr, batch_size=tcfg.batch_size,
                            seed=seed + {"base": 0, "finetune": 1, "goal": 2}[stage],
                            weight_decay=tcfg.weight_decay, warmup_share=tcfg.warmup_share,
                            desc=stage if target is None else f"{stage}({target})", progress=progress,
                            per_sequence=tcfg.per_sequence_loss, micro_batches=tcfg.micro_batches)
    finally:
        set_vision_trainable(bundle, was_trainable)
    info["seconds_llava"] = h[-1].get("seconds")
    history += [{"phase": "llava", "step": r["step"], "epoch": r["epoch"], "loss": r["loss"], "lr": r["lr"]}
                for r in h]
    info.update({"examples": len(examples), "replay": len(replay), "epochs": epochs,
                 "steps": len(h), "final_loss": round(float(np.mean([r["loss"] for r in h[-10:]])), 5),
                 "seconds": round(time.perf_counter() - t0, 3), "history": history})
    return info


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
