"""Prompts and batches: the chat format, the encoded prompt, the padded batch.

The prompt is the same at training and at evaluation by construction: a batch for training
(:func:`encode_train`) is the token ids of the generation prompt (:func:`encode_prompts`, as
the model's own processor expands the image placeholder) followed by the ids of exactly the
text that the chat template puts after it (:func:`answer_ids`: the answer and the
end-of-sequence token), and generation starts from those same prompt ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import TINY_MAX_LENGTH, ConfigError
from ..families import unwrap
from .bundle import ModelBundle

__all__ = [
    "build_messages",
    "prompt_and_answer_text",
    "Prompt",
    "encode_prompts",
    "stack_vision",
    "pad_batch",
    "context_length",
    "check_length",
    "encode_train",
    "answer_ids",
    "to_device",
    "move_batch",
]


def build_messages(question: str, answer: str | None = None) -> list[dict]:
    """Chat messages for one image + ``question`` (and the assistant's ``answer``)."""
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def _render(bundle: ModelBundle, messages: list[dict], add_generation_prompt: bool) -> str:
    proc = bundle.processor
    if getattr(proc, "chat_template", None):
        return proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return bundle.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def prompt_and_answer_text(bundle: ModelBundle, question: str, answer: str | None) -> tuple[str, str | None]:
    """The generation prompt for ``question`` and the text the template puts after it."""
    cache = bundle.prompt_cache
    prompt = cache.get(question)
    if prompt is None:
        prompt = _render(bundle, build_messages(question), True)
        if len(cache) < 100_000:
            cache[question] = prompt
    if answer is None:
        return prompt, None
    full = _render(bundle, build_messages(question, answer), False)
    if not full.startswith(prompt):
        raise ConfigError(
            "the chat template's full conversation does not start with its generation prompt; cannot separate the answer tokens"
        )
    return prompt, full[len(prompt) :]


def _pixel_dtype(bundle: ModelBundle) -> torch.dtype:
    return bundle.dtype if bundle.dtype.is_floating_point else torch.float32


# Processor outputs that belong to the text side: they travel with the token ids (padded like
# them, extended over the answer with 0 = "text"), e.g. Gemma 3's token_type_ids that mark
# the image tokens, Qwen2-VL's mm_token_type_ids that drive its multimodal RoPE.
_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids")


@dataclass
class Prompt:
    """One encoded generation prompt: token ids (image placeholders expanded by the processor),
    the per-token inputs that travel with them, and the image inputs of its one image (every
    tensor the processor returned for it, its leading dimension that image's share)."""

    ids: list[int]
    tokens: dict[str, list[int]]
    vision: dict[str, torch.Tensor]


def _split_processor_output(bundle: ModelBundle, enc, n: int) -> list[Prompt]:
    """Cut a processor's batch output into one :class:`Prompt` per item.

    Per-token outputs (shape of ``input_ids``) are cut with the attention mask; image outputs
    batched by item are cut by row; outputs concatenated over images (``Family.flat_vision``,
    e.g. Qwen2-VL's patches) are cut by each image's share. Anything else is an error naming
    the key: a silent guess would mix one item's pixels into another's.
    """
    mask = enc["attention_mask"].bool()
    ids_t = enc["input_ids"]
    flat = dict(bundle.family.flat_vision)
    out = [Prompt(ids_t[i][mask[i]].tolist(), {}, {}) for i in range(n)]
    for key, value in enc.items():
        if key in ("input_ids", "attention_mask") or not isinstance(value, torch.Tensor):
            continue
        if key in _TOKEN_KEYS or tuple(value.shape) == tuple(ids_t.shape):
            for i in range(n):
                out[i].tokens[key] = value[i][mask[i]].tolist()
        elif key in flat:
            shares = enc[flat[key]].prod(-1).tolist()
            if sum(shares) != value.shape[0]:
                raise ConfigError(
                    f"the {bundle.family.title} processor returned {key} with {value.shape[0]} rows, "
                    f"but {flat[key]} accounts for {sum(shares)}"
                )
            for i, part in enumerate(torch.split(value, shares)):
                out[i].vision[key] = part.clone()
        elif value.ndim >= 1 and value.shape[0] == n:
            for i in range(n):
                out[i].vision[key] = value[i : i + 1].clone()
        else:
            raise ConfigError(
                f"the {bundle.family.title} processor returned {key} of shape {tuple(value.shape)} "
                f"for {n} items: neither per item nor declared in Family.flat_vision"
            )
    return out


def stack_vision(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The image inputs of several items as one batch: each key concatenated along its leading
    dimension (what the processor does for a batch), zero-padded where the items' other
    dimensions differ (the processors pad the same way: LLaVA-NeXT's patches, Idefics3's
    sub-images with a zero pixel_attention_mask)."""
    out = {}
    for key in parts[0]:
        ts = [p[key] for p in parts]
        shape = [max(t.shape[d] for t in ts) for d in range(1, ts[0].ndim)]
        padded = []
        for t in ts:
            pad = []
            for d in range(t.ndim - 1, 0, -1):
                pad += [0, shape[d - 1] - t.shape[d]]
            padded.append(torch.nn.functional.pad(t, pad) if any(pad) else t)
        out[key] = torch.cat(padded)
    return out


def pad_batch(
    ids: Sequence[Sequence[int]],
    tokens: Sequence[dict],
    vision: Sequence[dict] | None,
    pad_id: int,
    side: str = "right",
    labels: Sequence[Sequence[int]] | None = None,
) -> dict:
    """A padded model batch: ``input_ids``, ``attention_mask``, every per-token input
    (padded with 0), ``labels`` (padded with -100) when given, and the stacked image inputs."""
    batch = {"input_ids": _pad(ids, pad_id, side), "attention_mask": _pad([[1] * len(s) for s in ids], 0, side)}
    for key in tokens[0] if tokens else {}:
        batch[key] = _pad([t[key] for t in tokens], 0, side)
    if labels is not None:
        batch["labels"] = _pad(labels, -100, side)
    if vision:
        batch.update(stack_vision(vision))
    return batch


def encode_prompts(bundle: ModelBundle, images: Sequence, questions: Sequence[str]) -> list[Prompt]:
    """One :class:`Prompt` per (image, question): the generation prompt's token ids as the
    model's own processor expands the image placeholder, with every input it returns."""
    if len(images) != len(questions):
        raise ValueError(f"got {len(images)} images but {len(questions)} questions")
    if not len(images):
        raise ValueError("encode_prompts needs at least one item")
    prompts = [prompt_and_answer_text(bundle, q, None)[0] for q in questions]
    enc = bundle.processor(
        images=_images_arg(bundle, images), text=prompts, padding=True, padding_side="right", return_tensors="pt"
    )
    return _split_processor_output(bundle, enc, len(prompts))


def _images_arg(bundle: ModelBundle, images: Sequence):
    """Images as the processor wants them: a flat list, or one list per prompt for processors
    that group images by sample (Idefics3, Gemma 3)."""
    if bundle.family.name in ("idefics3", "gemma3"):
        return [[im] for im in images]
    return list(images)


def _pad(seqs: Sequence[Sequence[int]], value: int, side: str) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        t = s if isinstance(s, torch.Tensor) else torch.tensor(list(s), dtype=torch.long)
        if side == "right":
            out[i, : len(t)] = t
        else:
            out[i, n - len(t) :] = t
    return out


def context_length(bundle: ModelBundle, max_length: int = 0) -> int:
    """The longest training sequence: ``max_length`` when set, else the model's own — the tiny
    model's :data:`~pebench_core.config.TINY_MAX_LENGTH`, a checkpoint's context window
    (``max_position_embeddings`` of its language model)."""
    if max_length:
        return int(max_length)
    if bundle.meta.get("kind") == "tiny":
        return TINY_MAX_LENGTH
    cfg = unwrap(bundle.model).config
    text = getattr(cfg, "text_config", None) or cfg
    n = getattr(text, "max_position_embeddings", None)
    if not n:
        raise ConfigError(f"the {bundle.family.title} checkpoint declares no max_position_embeddings; set model.max_length")
    return int(n)


def check_length(n_prompt: int, n_answer: int, max_length: int | None) -> None:
    """A training sequence longer than ``max_length`` is an error that says what to change,
    never a silent cut (a cut answer teaches the model to stop mid-word)."""
    if max_length is not None and n_prompt + n_answer > max_length:
        raise ConfigError(
            f"a training sequence has {n_prompt + n_answer} tokens ({n_prompt} prompt incl. "
            f"image, {n_answer} answer) but model.max_length is {max_length}; raise "
            "model.max_length (0 = the model's own context window) or lower world.image_size"
        )


def encode_train(
    bundle: ModelBundle, images: Sequence, questions: Sequence[str], answers: Sequence[str], max_length: int | None = None
) -> dict:
    """A right-padded training batch: ``input_ids``, ``attention_mask``, ``labels``, the image
    inputs and any per-token inputs the processor returns.

    ``input_ids`` = generation-prompt ids (as :func:`generate` sees them) + the ids of the
    text the chat template puts after the prompt (``" " + answer + "</s>"``, so the answer
    tokens and the end-of-sequence token). ``labels`` are ``-100`` everywhere but on those
    answer tokens. Tensors are on the CPU; :func:`to_device` moves them. With ``max_length``
    a sequence longer than that (image tokens included) is an error, never a silent cut.
    """
    if not (len(images) == len(questions) == len(answers)):
        raise ValueError(f"got {len(images)} images, {len(questions)} questions, {len(answers)} answers")
    prompts = encode_prompts(bundle, images, questions)
    seqs, labs, toks = [], [], []
    for p, a in zip(prompts, answer_ids(bundle, questions, answers)):
        check_length(len(p.ids), len(a), max_length)
        seqs.append(p.ids + a)
        labs.append([-100] * len(p.ids) + a)
        toks.append({k: v + [0] * len(a) for k, v in p.tokens.items()})
    return pad_batch(seqs, toks, [p.vision for p in prompts], bundle.pad_token_id, "right", labs)


def answer_ids(bundle: ModelBundle, questions: Sequence[str], answers: Sequence[str]) -> list[list[int]]:
    """The token ids of exactly the text the chat template puts after each generation prompt
    (the answer and the end-of-turn marker), ending with the end-of-sequence token."""
    # Trailing whitespace after the end-of-turn marker ("<|im_end|>\n") is the template's
    # separator before the next turn, not part of the answer the model has to write.
    suffixes = [prompt_and_answer_text(bundle, q, a)[1].rstrip() for q, a in zip(questions, answers)]
    ends = set(bundle.eos_token_ids)
    out = []
    for a in bundle.tokenizer(suffixes, add_special_tokens=False)["input_ids"]:
        a = list(a)
        if not a or a[-1] not in ends:
            a.append(bundle.eos_token_id)
        out.append(a)
    return out


def to_device(bundle: ModelBundle, batch: dict) -> dict:
    """Move a batch to the bundle's device; floating tensors (pixels) to the model dtype."""
    return move_batch(batch, bundle.device, _pixel_dtype(bundle))


def move_batch(batch: dict, device, dtype: torch.dtype) -> dict:
    """Every tensor of ``batch`` on ``device``; floating ones (pixels) in ``dtype``."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device=device)
        out[k] = v
    return out
