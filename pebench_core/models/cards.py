"""What a chapter prints about a model: its parts, their sizes, its prompt's length."""

from __future__ import annotations

import torch

from ..families import family_of, unwrap
from .bundle import ModelBundle
from .prompts import encode_prompts, prompt_and_answer_text

__all__ = ["prompt_tokens", "model_card", "count_parameters", "describe"]


def prompt_tokens(bundle: ModelBundle, image_size: int, question: str = "What is happening in the image?") -> tuple[int, int]:
    """``(prompt tokens, image tokens)`` of one generation prompt with an ``image_size`` px
    image, as the model's own processor encodes it (the image's share is what the image adds
    over the text alone)."""
    from PIL import Image

    img = Image.new("RGB", (image_size, image_size), (128, 128, 128))
    ids = encode_prompts(bundle, [img], [question])[0].ids
    image_id = getattr(bundle.processor, "image_token_id", None)
    if isinstance(image_id, int) and image_id in ids:  # the placeholders the image's features replace
        return len(ids), ids.count(image_id)
    text_only = len(bundle.tokenizer(prompt_and_answer_text(bundle, question, None)[0], add_special_tokens=False)["input_ids"])
    return len(ids), max(0, len(ids) - text_only)


def model_card(bundle: ModelBundle, image_size: int) -> dict:
    """The facts a chapter prints about a model, whatever its family: its parts' depth and
    width, how many tokens an image of ``image_size`` px becomes, the vocabulary, device and
    dtype."""
    cfg = unwrap(bundle.model).config
    text = getattr(cfg, "text_config", None) or cfg
    vision = getattr(cfg, "vision_config", None)
    prompt, image = prompt_tokens(bundle, image_size)
    return {
        "family": bundle.family.title,
        "vision layers": getattr(vision, "num_hidden_layers", getattr(vision, "depth", None)),
        "vision width": getattr(vision, "hidden_size", getattr(vision, "embed_dim", None)),
        "image tokens": image,
        "prompt tokens": prompt,
        "language-model layers": text.num_hidden_layers,
        "language-model width": text.hidden_size,
        "vocabulary": text.vocab_size,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).removeprefix("torch."),
    }


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


def describe(bundle_or_model):
    """A table of the model's parts and their parameter counts (tied weights counted once).

    Parts: vision tower, projector, embeddings (input embeddings and, if not tied, the output
    head), language model (the transformer blocks and final norm), LoRA adapter (if any),
    then the total. Columns: ``part, parameters, trainable, share`` (share of the total).
    """
    import pandas as pd

    model = bundle_or_model.model if isinstance(bundle_or_model, ModelBundle) else bundle_or_model
    base = unwrap(model)
    emb_ids = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        mod = getattr(base, getter)() if hasattr(base, getter) else None
        if mod is not None:
            emb_ids.update(id(p) for p in mod.parameters())
    fam = family_of(base)
    order = ["vision tower", "projector", "embeddings", "language model", "LoRA adapter"]
    counts = {k: [0, 0] for k in order}
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        bare = name.removeprefix("base_model.model.")
        part = (
            "LoRA adapter"
            if ".lora_" in f".{bare}"
            else "embeddings"
            if id(p) in emb_ids
            else fam.role_of(bare.replace(".base_layer", ""))
        )
        counts[part][0] += p.numel()
        if p.requires_grad:
            counts[part][1] += p.numel()
    total = sum(c[0] for c in counts.values())
    rows = [
        {"part": k, "parameters": c[0], "trainable": c[1], "share": c[0] / total if total else 0.0}
        for k, c in counts.items()
        if c[0] or k != "LoRA adapter"
    ]
    rows.append({"part": "total", "parameters": total, "trainable": sum(c[1] for c in counts.values()), "share": 1.0})
    return pd.DataFrame(rows)
