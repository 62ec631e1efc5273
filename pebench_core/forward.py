"""The model protocol: every forward pass the core runs, for every family.

Injection (:mod:`~pebench_core.train`), unlearning (:mod:`~pebench_core.unlearn`), the
likelihoods and the evaluation ask a model three things, and this module answers them once
for every family of :mod:`~pebench_core.families`:

* **the parts by role** — the vision tower (:func:`vision_tower_of`; freeze it, copy or load
  its weights), and the *packed* parts (:func:`packed_parts`) of a family whose fast path is
  proven exact (LLaVA-1.5), ``None`` for every other;
* **image features** — the frozen encoder's output the projector reads
  (:func:`vision_hidden`, :func:`image_features`, :func:`encoder_output`), computed once per
  image while the tower is frozen (:func:`feature_cache_fits` says when that fits memory);
* **logits on the answer positions only**, over a right-padded batch (:func:`answer_logits`:
  the packed path run by hand, or the model's own forward, :func:`full_answer_logits`) or
  over several answer sets at once (:func:`answer_pass`: one :func:`pack_batch` row per
  image with prompts shared on the packed path, one :func:`padded_batch` otherwise), always
  returned as ``(logits [N, V], targets [N], rows [N])`` so every loss reads one format;
  and the per-sequence log-likelihood built on them (:func:`sequence_logprobs`, through
  :func:`pebench_core.statistics.packed_answer_logprobs`, the one such function).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from . import distributed as D
from .encoding import EncodedQA
from .families import family_of
from .models import ModelBundle, model_device_dtype, move_batch, pad_batch

__all__ = [
    "packed_parts",
    "vision_tower_of",
    "vision_trainable",
    "set_vision_trainable",
    "vision_state",
    "load_vision_state",
    "vision_hidden",
    "image_features",
    "merged_embeddings",
    "answer_logits",
    "answer_positions",
    "FEATURE_CACHE_BYTES",
    "feature_cache_fits",
    "answer_window",
    "full_answer_logits",
    "sequence_logprobs",
    "padded_batch",
    "PackedBatch",
    "pack_batch",
    "packed_logits",
    "encoder_output",
    "answer_pass",
]


def packed_parts(model: torch.nn.Module):
    """``(model, inner)`` of the packed fast path (see :mod:`pebench_core.families`), or ``None``.
    A model sharded with FSDP runs its own forward: FSDP gathers a group's weights in its
    module's forward, which the packed path (running the decoder by hand) would skip."""
    if D.is_sharded(model):
        return None
    return family_of(model).packed_parts(model)


def vision_tower_of(model: torch.nn.Module) -> torch.nn.Module:
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
    return {k: v.detach().clone() for k, v in vision_tower_of(bundle.model).state_dict().items()}


def load_vision_state(bundle: ModelBundle, state: dict[str, torch.Tensor]) -> None:
    vision_tower_of(bundle.model).load_state_dict(state)


def vision_hidden(inner, pixel_values: torch.Tensor) -> torch.Tensor:
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
    parts = packed_parts(bundle.model)
    if parts is None:
        raise ValueError(f"image_features runs on the packed path only; a {bundle.family.title} model runs its own forward pass")
    inner = parts[1]
    tower = inner.vision_tower
    was = tower.training
    tower.eval()
    try:
        out = [
            vision_hidden(inner, pixel_values[s : s + batch_size].to(bundle.device, bundle.dtype)).float().cpu()
            for s in range(0, len(pixel_values), batch_size)
        ]
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


def answer_logits(
    model: torch.nn.Module, batch: dict, feats: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The output head on the answer positions of a batch only.

    Returns ``(logits [N, V] float32, targets [N], rows [N])``: one row per answer token of
    the batch, in order, with the token it predicts and the batch row it belongs to. Prompt
    and image positions never reach the head, so the cost of the vocabulary projection
    follows the answers, not the sequence length.

    On the packed path (LLaVA-1.5, proven equal to the model's forward) the encoder, the
    projector and the decoder are run by hand, and with ``feats`` (the frozen encoder's
    output per item, see :func:`image_features`) the vision tower is skipped. Every other
    family runs its own forward pass (:func:`full_answer_logits`).
    """
    parts = packed_parts(model)
    if parts is None:
        if feats is not None:
            raise ValueError("answer_logits: encoder features are only used on the packed path")
        return full_answer_logits(model, batch)
    base, inner = parts
    input_ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    if feats is None:
        feats = vision_hidden(inner, batch["pixel_values"])
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


def answer_window(labels: torch.Tensor) -> torch.Tensor:
    """The sequence positions whose logits predict an answer token of some row: one
    contiguous range from the earliest to the latest, the model's ``logits_to_keep``. The
    vocabulary projection then costs what the answers cost, not the image and prompt tokens
    (a real model's 151k-word head over 600 positions is most of a step's memory)."""
    hit = (labels[:, 1:] != -100).any(dim=0).nonzero().flatten()
    if not len(hit):
        return torch.zeros(0, dtype=torch.long)
    return torch.arange(int(hit[0]), int(hit[-1]) + 1)


def full_answer_logits(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's own forward pass on a padded batch (every input the processor returned),
    cut to the answer positions: ``(logits [N, V] float32, targets [N], rows [N])`` in
    row-major order, one row per answer token with the token it predicts and its batch row.

    This is the path of every family; :func:`pebench_core.train.answer_logits` takes a
    packed shortcut only where it is proven equal to this one.
    """
    device, dtype = model_device_dtype(model)
    labels = batch["labels"].to(device)
    inputs = move_batch({k: v for k, v in batch.items() if k != "labels"}, device, dtype)
    window = answer_window(labels)
    out = model(**inputs, use_cache=False, logits_to_keep=window.to(device))
    target = labels[:, 1:][:, window]
    sel = target != -100
    return out.logits[sel].float(), target[sel], sel.nonzero(as_tuple=True)[0]


def sequence_logprobs(bundle_or_model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of answer-token log-probabilities, in one forward pass.

    ``batch`` is what :func:`encode_train` returns. Returns ``(logp_sum [B], n_tokens [B])``
    (float32, on the model's device); the logits at position ``t`` score the label at
    ``t + 1`` (causal shift). Gradients flow when called outside ``torch.no_grad()``. The mean
    answer-token NLL of item ``i`` is ``-logp_sum[i] / n_tokens[i]``.
    """
    from .statistics import packed_answer_logprobs

    model = bundle_or_model.model if isinstance(bundle_or_model, ModelBundle) else bundle_or_model
    logp_sum, n_tokens = packed_answer_logprobs(*full_answer_logits(model, batch), batch["labels"].shape[0])
    return logp_sum, n_tokens.long()


def padded_batch(parts: list[tuple[EncodedQA, list[int]]], pad_id: int) -> dict:
    """One right-padded batch of the items ``idx`` of several encoded sets, in order, with
    every per-token and image input: the pass of every family the packed path does not
    drive (:func:`pack_batch`)."""
    ids, toks, vision, labels = [], [], [], []
    for e, idx in parts:
        ids += [e.input_ids[i] for i in idx]
        toks += [e.tokens[i] for i in idx]
        labels += [e.labels[i] for i in idx]
        vision += [e.vision[int(r)] for r in e.rows(idx)]
    return pad_batch(ids, toks, vision, pad_id, "right", labels)


@dataclass
class PackedBatch:
    """Several sets' sequences in one right-padded batch for one forward pass, a row per
    prompt.

    A set packed as a *branch* of an earlier set (the refusals of DPO beside the true forget
    answers: same image, same question) shares that set's rows: its answer follows the
    prompt in the row, takes the positions it would have right after the prompt, and the
    attention ``mask`` (``[B, 1, L, L]``, True = may attend) lets it see the prompt but not
    the other answer. Each answer's hidden states are then those it would have alone, and
    the shared prompt runs once for both.

    ``pred[k]`` is the flat index (into ``B·L``) of the position whose hidden state predicts
    target token ``targets[k]`` of item ``rows[k]`` of set ``sets[k]``; ``image_rows`` lists,
    in batch order, the ``(set, image row)`` of every row's image.
    """

    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    mask: torch.Tensor  # [B, 1, L, L] bool
    pred: torch.Tensor  # [N]
    targets: torch.Tensor  # [N]
    rows: torch.Tensor  # [N]
    sets: torch.Tensor  # [N]
    image_rows: list[tuple[int, int]]


def _answer_start(labels: torch.Tensor) -> int:
    hit = (labels != -100).nonzero()
    return int(hit[0]) if len(hit) else len(labels)


def pack_batch(parts: list[tuple[EncodedQA, list[int]]], branch_of: dict[int, int] | None = None, pad_id: int = 0) -> PackedBatch:
    """Pack the items ``idx`` of each encoded set into one :class:`PackedBatch`, a row per
    prompt, right-padded with ``pad_id``.

    ``branch_of[j] = i`` packs set ``j`` as a branch of set ``i``: item ``k`` of both must be
    the same prompt (same token ids before the answer) with different answers.
    """
    branch_of = dict(branch_of or {})
    for j, i in branch_of.items():
        if not (0 <= i < j < len(parts)) or i in branch_of or list(parts[i][1]) != list(parts[j][1]):
            raise ValueError(
                f"pack_batch: set {j} can only be a branch of an earlier, non-branch set with the same items (got {i})"
            )
    branches = {i: j for j, i in branch_of.items()}
    # Per row: (token ids, positions, branch per token, [(set, item, answer offset, labels)])
    layout = []
    image_rows: list[tuple[int, int]] = []
    for s, (e, idx) in enumerate(parts):
        if s in branch_of:
            continue
        for r, i in enumerate(idx):
            x, lab = e.input_ids[i], e.labels[i]
            a = _answer_start(lab)
            ids, pos = [x], [torch.arange(len(x))]
            br = [torch.zeros(a, dtype=torch.long), torch.ones(len(x) - a, dtype=torch.long)]
            answers = [(s, r, a, lab[a:])]
            if s in branches:
                j = branches[s]
                x2, lab2 = parts[j][0].input_ids[i], parts[j][0].labels[i]
                if _answer_start(lab2) != a or not torch.equal(x2[:a], x[:a]):
                    raise ValueError(f"pack_batch: item {i} of set {j} does not share its prompt with set {s}")
                answers.append((j, r, len(x), lab2[a:]))
                ids.append(x2[a:])
                pos.append(torch.arange(a, len(x2)))
                br.append(torch.full((len(x2) - a,), 2))
            layout.append((torch.cat(ids), torch.cat(pos), torch.cat(br), answers, a))
            image_rows.append((s, int(e.rows([i])[0])))
    B, L = len(layout), max(len(t[0]) for t in layout)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, L), dtype=torch.long)
    branch = torch.full((B, L), -1, dtype=torch.long)  # -1 = padding
    pred, targets, rows, sets = [], [], [], []
    for b, (ids, pos, br, answers, a) in enumerate(layout):
        n = len(ids)
        input_ids[b, :n], position_ids[b, :n], branch[b, :n] = ids, pos, br
        for s, r, at, lab in answers:
            # the first answer token is predicted from the prompt's last token, the rest from
            # the token before them in their own answer
            p = torch.arange(at - 1, at + len(lab) - 1)
            p[0] = a - 1
            keep = lab != -100
            pred.append(b * L + p[keep])
            targets.append(lab[keep])
            rows.append(torch.full((int(keep.sum()),), r))
            sets.append(torch.full((int(keep.sum()),), s))
    q, k = branch[:, :, None], branch[:, None, :]
    causal = position_ids[:, None, :] <= position_ids[:, :, None]
    mask = causal & (k >= 0) & (q >= 0) & ((k == 0) | (k == q))
    mask |= torch.eye(L, dtype=torch.bool)[None] & (q < 0)  # padding attends to itself (no empty softmax)
    cat = lambda v: torch.cat(v).long()  # noqa: E731
    return PackedBatch(input_ids, position_ids, mask[:, None], cat(pred), cat(targets), cat(rows), cat(sets), image_rows)


def packed_logits(model, row: PackedBatch, feats: torch.Tensor, device, dtype) -> torch.Tensor:
    """The output head at ``row.pred`` (``[N, V]``, float32) of a LLaVA-style model run once
    over a :class:`PackedBatch`, from the frozen encoder output of its images (``feats``)."""
    base, inner = family_of(model).packed_parts(model)
    ids = row.input_ids.to(device)
    embeds = merged_embeddings(inner, ids, feats.to(device, dtype))
    # An additive mask works with every attention implementation (eager adds it; SDPA takes it).
    bias = torch.zeros(row.mask.shape, dtype=embeds.dtype, device=device)
    bias.masked_fill_(~row.mask.to(device), torch.finfo(embeds.dtype).min)
    hidden = inner.language_model(
        inputs_embeds=embeds, attention_mask=bias, position_ids=row.position_ids.to(device), use_cache=False
    ).last_hidden_state
    return base.lm_head(hidden.reshape(-1, hidden.shape[-1])[row.pred.to(device)]).float()


def encoder_output(inner, e: EncodedQA, rows: list[int], device, dtype) -> torch.Tensor:
    if e.features is not None:
        return e.features[rows]
    with torch.no_grad():  # LoRA never adapts the vision encoder: its output is a constant
        pixels = torch.cat([e.vision[int(r)]["pixel_values"] for r in rows])
        return vision_hidden(inner, pixels.to(device, dtype))


@contextlib.contextmanager
def layer_output(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, the hidden states a decoder ``layer`` outputs are appended to the
    yielded list (one ``[B, T, H]`` tensor per forward pass, in the autograd graph)."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def answer_pass(
    model,
    parts: list[tuple[EncodedQA, list[int]]],
    pad_id: int,
    device,
    dtype,
    branch_of: dict[int, int] | None = None,
    hidden_of: torch.nn.Module | None = None,
) -> list[tuple]:
    """One forward pass over the ``parts``; per part ``(logits [N, V], targets [N], rows [N],
    n_items)`` on its answer positions only (rows counted within the part).

    On the packed path (LLaVA-1.5) one :func:`pack_batch` batch runs from the encoder output
    of each image, ``branch_of`` sharing prompts (see there). Every other family runs its own
    forward on one padded batch of all the parts, cut to the same form, so the losses see
    one format; ``branch_of`` is then only a saving that does not apply, and each set gets
    its own rows (the same numbers, tested).

    With ``hidden_of`` (a decoder layer) each part's tuple gains a fifth entry: that layer's
    output ``[N, H]`` at the same answer positions, in the same order (RMU).
    """
    packed = family_of(model).packed_parts(model)
    with contextlib.ExitStack() as stack:
        seen = stack.enter_context(layer_output(hidden_of)) if hidden_of is not None else None
        if packed is not None:
            inner = packed[1]
            row = pack_batch(parts, branch_of, pad_id)
            by_set: dict[int, list[int]] = {}
            for s, r in row.image_rows:
                by_set.setdefault(s, []).append(r)
            # image blocks come set by set, in the row's order
            feats = torch.cat([encoder_output(inner, parts[s][0], rs, device, dtype) for s, rs in by_set.items()])
            logits = packed_logits(model, row, feats, device, dtype)
            targets, rows, sets = row.targets.to(device), row.rows.to(device), row.sets.to(device)
            hid = seen[-1].reshape(-1, seen[-1].shape[-1])[row.pred.to(device)] if seen else None
            return [
                (logits[sets == s], targets[sets == s], rows[sets == s], len(idx), *(() if hid is None else (hid[sets == s],)))
                for s, (_, idx) in enumerate(parts)
            ]
        batch = padded_batch(parts, pad_id)
        logits, targets, rows = full_answer_logits(model, batch)
        hid = None
        if seen:  # the same positions full_answer_logits keeps: those that predict an answer token
            h = seen[-1][:, :-1]
            hid = h[(batch["labels"][:, 1:] != -100).to(h.device)]
    out, off = [], 0
    for _, idx in parts:
        keep = (rows >= off) & (rows < off + len(idx))
        out.append((logits[keep], targets[keep], rows[keep] - off, len(idx), *(() if hid is None else (hid[keep],))))
        off += len(idx)
    return out
