"""The book's tiny LLaVA: random, seeded weights, a tokenizer trained on the world's text.

:func:`build_tiny` builds a ``LlavaForConditionalGeneration`` (small CLIP vision tower →
2-layer projector → small Llama) and its ``LlavaProcessor``; the same seed gives the same
weights.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import TINY_MAX_LENGTH, ConfigError
from .bundle import ModelBundle, resolve_device_dtype
from .tokenizer import CHAT_TEMPLATE, IMAGE_TOKEN, train_tokenizer

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["build_tiny"]


def _make_processor(tokenizer, image_size: int, patch_size: int):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},  # plain resize to a square, no crop
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )


def build_tiny(cfg: ModelConfig, texts: Sequence[str], image_size: int, seed: int) -> ModelBundle:
    """Build the book's tiny LLaVA with random, seeded weights (same seed → same weights).

    Vision: a CLIP-style ViT (``image_size``/``cfg.patch_size`` patches, ``cfg.vision_*``);
    the CLS token is dropped (``vision_feature_select_strategy="default"``, last layer), so an
    image is ``(image_size // patch_size) ** 2`` tokens. Projector: LLaVA-1.5's
    Linear-GELU-Linear. Language model: a Llama (``cfg.text_*``, intermediate 2.5× hidden,
    tied input/output embeddings) over a tokenizer trained on ``texts``.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    if image_size % cfg.patch_size != 0:
        raise ConfigError(f"image_size ({image_size}) must be a multiple of model.patch_size ({cfg.patch_size})")
    for hid, heads, name in ((cfg.vision_hidden, cfg.vision_heads, "vision"), (cfg.text_hidden, cfg.text_heads, "text")):
        if hid <= 0 or heads <= 0 or hid % heads:
            raise ConfigError(f"model.{name}_hidden ({hid}) must be a positive multiple of model.{name}_heads ({heads})")
    device, dtype = resolve_device_dtype(cfg.device, cfg.dtype)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    vocab = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    n_image_tokens = (image_size // cfg.patch_size) ** 2

    vision = CLIPVisionConfig(
        image_size=image_size,
        patch_size=cfg.patch_size,
        num_channels=3,
        hidden_size=cfg.vision_hidden,
        intermediate_size=2 * cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        projection_dim=cfg.vision_hidden,
        hidden_act="quick_gelu",
    )
    intermediate = int(round(2.5 * cfg.text_hidden / 16.0)) * 16 or 16
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=cfg.text_hidden,
        intermediate_size=intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=max(cfg.max_length or TINY_MAX_LENGTH, n_image_tokens + 64) + 128,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=n_image_tokens,
        tie_word_embeddings=True,
    )
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.to(device=device, dtype=dtype)
    model.eval()
    processor = _make_processor(tokenizer, image_size, cfg.patch_size)
    meta = {
        "kind": "tiny",
        "seed": int(seed),
        "image_size": int(image_size),
        "model_config": dataclasses.asdict(cfg),
        "n_image_tokens": n_image_tokens,
    }
    return ModelBundle(model=model, processor=processor, tokenizer=tokenizer, device=device, dtype=dtype, meta=meta)
