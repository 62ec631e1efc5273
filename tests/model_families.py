"""Tiny, random-weight checkpoints of real multimodal-LLM architectures, for the tests.

The book's own model is a tiny LLaVA (:func:`pebench_core.models.build_tiny`). The training,
unlearning and evaluation code is meant to drive *any* local Hugging Face image-text-to-text
checkpoint, and the differences between families (image-token expansion, extra processor
outputs such as ``image_grid_thw`` or ``pixel_attention_mask``, where the decoder and the
vision tower live, chat templates) are exactly what breaks such code. This module writes a
checkpoint folder of each family, small enough for a CPU test:

* built from the architecture's own config classes, with 1-2 layers, hidden sizes 32-64 and
  random weights seeded by ``seed`` (same seed, same weights);
* a byte-level BPE tokenizer trained on ``texts`` that has the family's real special tokens
  (image placeholders, turn markers, pad/bos/eos), and whose ids the config points at;
* the family's processor (PIL image processors, since torchvision is not required) with a
  faithful, simplified version of the family's chat template;
* written with ``save_pretrained`` (safetensors), so that
  ``AutoModelForImageTextToText.from_pretrained(path)`` loads it back, and
  ``AutoProcessor.from_pretrained(path)`` too, except Qwen2-VL / Qwen2.5-VL on a machine
  without torchvision (their processor requires a video processor, which requires
  torchvision): use :func:`load_processor`, which falls back to an image-only processor.

Image tokens per ``image_size`` x ``image_size`` image (``image_size`` a multiple of 8):

========== ============================================================== ============
family     vision layout                                                   at 32 px
========== ============================================================== ============
llava      CLIP ViT, patch 8, CLS dropped: ``(image_size / 8) ** 2``       16
llava_next tiles of ``image_size / 2``, patch ``image_size / 4``: base 2x2  24
           + unpadded 4x4 grid + 4 newline tokens (any image_size)
qwen2_vl   patch 4, 2x2 merge, images resized to ``image_size ** 2`` px:   16
           ``(image_size / 8) ** 2``
qwen2_5_vl as qwen2_vl (windowed + full attention vision blocks)           16
idefics3   tiles of ``image_size / 2`` (patch ``image_size / 8``, pixel    20 (+14 markers)
           shuffle 2): 2x2 tiles + 1 global, 4 tokens each
gemma3     SigLIP, 8x8 patches average-pooled to 16 (any image_size)       16 (+2 markers)
========== ============================================================== ============

Use :func:`build_checkpoint` (``FAMILIES`` lists the names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = ["FAMILIES", "build_checkpoint", "load_processor", "train_tokenizer"]

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3")

DEFAULT_VOCAB_SIZE = 600


# ---------------------------------------------------------------------------------------
# Shared helpers


def train_tokenizer(
    texts: Sequence[str],
    special_tokens: Sequence[str],
    template_text: Sequence[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    **tokenizer_kwargs,
):
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    The approach of :func:`pebench_core.models.train_tokenizer`: byte-level BPE never meets an
    unknown character, and trained on the world's own text it turns names into few tokens.
    ``special_tokens`` get ids ``0..n-1`` in that order and are never split;
    ``template_text`` (the fixed words of the chat template) is added to the training text so
    that those words become single tokens and prompts stay short. ``tokenizer_kwargs`` are the
    ``pad_token`` / ``bos_token`` / ``eos_token`` / ``unk_token`` / ``extra_special_tokens``
    of the family. No post-processor: nothing is added to a text implicitly, the chat
    template writes every special token itself (as the real LLaVA-1.5 / Gemma 3 templates
    write ``bos``). Deterministic: same texts, same tokenizer.
    """
    from transformers import PreTrainedTokenizerFast

    from pebench_core.models import train_bpe

    tok = train_bpe(texts, vocab_size, special_tokens, template_text, tokenizer_kwargs.get("unk_token"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=100_000,
        **tokenizer_kwargs,
    )


def _token_id(tokenizer, token: str) -> int:
    """The id of ``token``, which must be a single (special) token of ``tokenizer``."""
    i = tokenizer.convert_tokens_to_ids(token)
    if i is None or tokenizer.convert_ids_to_tokens(i) != token:
        raise ValueError(f"{token!r} is not a token of the tokenizer")
    return int(i)


def _check_image_size(image_size: int) -> None:
    # Every layout below divides the image (or its tiles) into 2, 4 or 8 equal parts.
    if image_size < 16 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 and at least 16, got {image_size}")


def _seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _set_special_ids(model, tokenizer) -> None:
    """The tokenizer's pad/bos/eos ids on the config, its text config and the generation config.

    Transformers 5 reads them from the text config; the top-level copies are for code that
    still looks there (``model.config.pad_token_id``). Idefics3Config's top-level
    ``pad_token_id`` is a deprecated property (it warns), set through the constructor instead.
    """
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = model.config
    for name, value in ids.items():
        setattr(config.get_text_config(), name, value)
        if not isinstance(getattr(type(config), name, None), property):
            setattr(config, name, value)
        setattr(model.generation_config, name, value)


def _save(model, processor, out: Path) -> Path:
    """``save_pretrained`` of both (safetensors weights), without a progress bar."""
    from transformers.utils import logging as hf_logging

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
    finally:
        if was:
            hf_logging.enable_progress_bar()
    return out


# Jinja fragments shared by the templates. A message's content is a string or a list of
# {"type": "image"} / {"type": "text", "text": ...} parts; `IMAGE` is what one image part
# renders to. Raw strings, so that Jinja (not Python) reads the '\n' escapes.
def _content(image: str, strip: bool = False) -> str:
    text = "(part['text'] | trim)" if strip else "part['text']"
    whole = "(message['content'] | trim)" if strip else "message['content']"
    return (
        r"{%- if message['content'] is string -%}{{- " + whole + r" -}}"
        r"{%- else -%}{%- for part in message['content'] -%}"
        r"{%- if part['type'] == 'image' -%}{{- '" + image + r"' -}}"
        r"{%- elif part['type'] == 'text' -%}{{- " + text + r" -}}{%- endif -%}"
        r"{%- endfor -%}{%- endif -%}"
    )


def _text_only() -> str:
    return (
        r"{%- if message['content'] is string -%}{{- message['content'] -}}"
        r"{%- else -%}{%- for part in message['content'] -%}"
        r"{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        r"{%- endfor -%}{%- endif -%}"
    )


# ---------------------------------------------------------------------------------------
# LLaVA-1.5 and LLaVA-NeXT (vicuna layout): CLIP ViT -> MLP projector -> Llama


_LLAVA_SPECIALS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")  # llava-hf: unk 0, bos 1, eos 2

# LLaVA-1.5 (vicuna v1): "<s>USER: <image>\n{q} ASSISTANT: {a}</s>". The generation prompt ends
# at "ASSISTANT:"; the answer's leading space belongs to the answer, so the full conversation
# starts with the generation prompt. Image parts render where they appear.
LLAVA_CHAT_TEMPLATE = (
    r"{{- bos_token -}}"
    r"{%- for message in messages -%}"
    r"{%- if message['role'] == 'system' -%}" + _text_only() + r"{{- ' ' -}}"
    r"{%- elif message['role'] == 'user' -%}{{- 'USER: ' -}}"
    + _content(r"<image>\n")
    + r"{%- elif message['role'] == 'assistant' -%}{{- ' ASSISTANT: ' -}}"
    + _text_only()
    + r"{{- eos_token -}}"
    r"{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
)
_LLAVA_TEMPLATE_TEXT = ["USER: ASSISTANT:", "USER: <image>\n ASSISTANT: yes no Yes No"]


def _llava_tokenizer(texts, vocab_size):
    return train_tokenizer(
        texts,
        _LLAVA_SPECIALS,
        _LLAVA_TEMPLATE_TEXT,
        vocab_size,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def _clip_vision(image_size: int, patch_size: int):
    from transformers import CLIPVisionConfig

    # 2 layers so that vision_feature_layer=-2 (the llava-hf choice) is a real layer's output.
    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=3,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
        hidden_act="quick_gelu",
    )


def _llama_text(tokenizer, hidden: int = 64, tie: bool = False):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tie,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _build_llava(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """LLaVA-1.5 (llava-hf layout): ``image_size / 8`` patches a side, CLS dropped."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    patch = 8
    n_image = (image_size // patch) ** 2
    tokenizer = _llava_tokenizer(texts, vocab_size)
    config = LlavaConfig(
        vision_config=_clip_vision(image_size, patch),
        text_config=_llama_text(tokenizer),
        image_token_id=_token_id(tokenizer, "<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",  # drop CLS ...
        vision_feature_layer=-2,  # ... of the penultimate layer, as LLaVA-1.5
        image_seq_length=n_image,
        tie_word_embeddings=False,
    )
    model = _seeded(seed, lambda: LlavaForConditionalGeneration(config))
    _set_special_ids(model, tokenizer)
    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},  # plain resize to a square, no crop
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token the "default" strategy drops
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    return _save(model, processor, out)


def _build_llava_next(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """LLaVA-NeXT (llava-v1.6-vicuna layout) with any-resolution tiles of ``image_size / 2``.

    The pinpoints are the real ones ([336, 672], [672, 336], [672, 672], [1008, 336],
    [336, 1008]) scaled to a tile of ``c = image_size / 2``: a square image picks [2c, 2c], i.e.
    2x2 tiles + the resized whole image (``pixel_values`` [B, 5, 3, c, c]); each is 2x2 patches,
    so 4 base tokens + a 4x4 unpadded grid + 4 ``image_newline`` tokens = 24 image tokens.
    """
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    tile = image_size // 2
    patch = tile // 2
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
    tokenizer = _llava_tokenizer(texts, vocab_size)
    config = LlavaNextConfig(
        vision_config=_clip_vision(tile, patch),
        text_config=_llama_text(tokenizer),
        image_token_id=_token_id(tokenizer, "<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=pinpoints,
        image_seq_length=(tile // patch) ** 2,
        tie_word_embeddings=False,
    )
    model = _seeded(seed, lambda: LlavaNextForConditionalGeneration(config))
    _set_special_ids(model, tokenizer)
    image_processor = LlavaNextImageProcessorPil(
        size={"height": tile, "width": tile},
        crop_size={"height": tile, "width": tile},
        do_center_crop=False,
        image_grid_pinpoints=pinpoints,
        do_pad=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    return _save(model, processor, out)


# ---------------------------------------------------------------------------------------
# Qwen2-VL and Qwen2.5-VL: ViT with 2x2 patch merger -> Qwen2 with M-RoPE


_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL-Instruct without the default system prompt:
# "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
QWEN_CHAT_TEMPLATE = (
    r"{%- for message in messages -%}"
    r"{{- '<|im_start|>' + message['role'] + '\n' -}}"
    + _content("<|vision_start|><|image_pad|><|vision_end|>")
    + r"{{- '<|im_end|>\n' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)
_QWEN_TEMPLATE_TEXT = ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\nyes no Yes No", "<|im_start|>system\n"]

_QWEN_PATCH, _QWEN_MERGE, _QWEN_TEMPORAL = 4, 2, 2


def _qwen_tokenizer(texts, vocab_size):
    # Qwen2-VL-Instruct: eos <|im_end|>, pad <|endoftext|>; Qwen has no bos token in its
    # tokenizer but <|endoftext|> as bos_token_id in its config, which we mirror.
    return train_tokenizer(
        texts,
        _QWEN_SPECIALS,
        _QWEN_TEMPLATE_TEXT,
        vocab_size,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )


def _qwen_text_kwargs(tokenizer) -> dict:
    # Width 64, 4 heads: head_dim 16. M-RoPE splits the head_dim / 2 = 8 rotary frequencies
    # between time, height and width ([16, 24, 24] of 64 in the real models).
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1_000_000.0},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _qwen_token_ids(tokenizer) -> dict:
    return {
        name: _token_id(tokenizer, token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }


def _qwen_image_processor(image_size: int):
    from transformers import Qwen2VLImageProcessorPil

    # min_pixels = max_pixels = image_size**2: every image is resized to (about) that area, so
    # an image is always (image_size / 8)**2 merged tokens whatever its own size.
    return Qwen2VLImageProcessorPil(
        patch_size=_QWEN_PATCH,
        merge_size=_QWEN_MERGE,
        temporal_patch_size=_QWEN_TEMPORAL,
        size={"shortest_edge": image_size * image_size, "longest_edge": image_size * image_size},
    )


def _qwen_processor(name: str, image_size: int, tokenizer):
    """The Qwen processor ``name`` without a video processor (which needs torchvision):
    :func:`pebench_core.models.image_only_processor_class`, what the adapter itself loads."""
    import transformers

    from pebench_core.families import family_for_type
    from pebench_core.models import image_only_processor_class

    cls = image_only_processor_class(getattr(transformers, name), family_for_type("qwen2_vl"))
    return cls(image_processor=_qwen_image_processor(image_size), tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)


def _save_qwen(model, processor, out: Path, processor_class: str) -> Path:
    """Save, and make processor_config.json what the real processor would have written.

    The image-only processor writes its own class name and no video processor; rewritten to
    ``processor_class`` + a ``video_processor`` entry (a ``Qwen2VLVideoProcessor`` with the
    image processor's patch/merge/size settings), the folder is laid out like a real
    Qwen2-VL checkpoint, for ``AutoProcessor`` on a machine that has torchvision (not tested
    here: no torchvision). The image-only processor is used to build on every machine, so
    the files written do not depend on whether torchvision is installed.
    """
    out = _save(model, processor, out)
    cfg_path = out / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["processor_class"] = processor_class
    image = cfg["image_processor"]
    keys = (
        "patch_size",
        "merge_size",
        "temporal_patch_size",
        "size",
        "image_mean",
        "image_std",
        "do_resize",
        "do_rescale",
        "do_normalize",
        "do_convert_rgb",
        "resample",
        "rescale_factor",
    )
    cfg["video_processor"] = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "do_sample_frames": False,
        **{k: image[k] for k in keys if k in image},
    }
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def _build_qwen2_vl(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """Qwen2-VL: patch 4, 2x2 merge, 2 vision blocks (width 32) -> 2-layer Qwen2 (64)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLTextConfig, Qwen2VLVisionConfig

    tokenizer = _qwen_tokenizer(texts, vocab_size)
    vision = Qwen2VLVisionConfig(
        depth=2,
        embed_dim=32,
        hidden_size=64,  # hidden_size: the merger's output = text width
        num_heads=2,
        mlp_ratio=2,
        patch_size=_QWEN_PATCH,
        spatial_merge_size=_QWEN_MERGE,
        temporal_patch_size=_QWEN_TEMPORAL,
    )
    return _finish_qwen(
        out,
        tokenizer,
        vision,
        Qwen2VLTextConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        "Qwen2VLProcessor",
        image_size,
        seed,
    )


def _build_qwen2_5_vl(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """Qwen2.5-VL: as Qwen2-VL, with a SwiGLU vision MLP, RMSNorm and window attention.

    ``window_size`` 16 px = 2x2 merged tokens per window; block 0 is windowed and block 1 is
    a full-attention block (``fullatt_block_indexes``), so both code paths run.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLTextConfig, Qwen2_5_VLVisionConfig

    tokenizer = _qwen_tokenizer(texts, vocab_size)
    vision = Qwen2_5_VLVisionConfig(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=_QWEN_PATCH,
        spatial_merge_size=_QWEN_MERGE,
        temporal_patch_size=_QWEN_TEMPORAL,
        window_size=_QWEN_PATCH * _QWEN_MERGE * 2,
        fullatt_block_indexes=[1],
        tokens_per_second=2,
    )
    return _finish_qwen(
        out,
        tokenizer,
        vision,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        "Qwen2_5_VLProcessor",
        image_size,
        seed,
    )


def _finish_qwen(
    out: Path, tokenizer, vision, text_cls, config_cls, model_cls, processor_name: str, image_size: int, seed: int
) -> Path:
    """The part both Qwen builders share: text config, model, special ids, processor, save."""
    config = config_cls(
        vision_config=vision,
        text_config=text_cls(**_qwen_text_kwargs(tokenizer)),
        tie_word_embeddings=True,
        **_qwen_token_ids(tokenizer),
    )
    model = _seeded(seed, lambda: model_cls(config))
    _set_special_ids(model, tokenizer)
    return _save_qwen(model, _qwen_processor(processor_name, image_size, tokenizer), out, processor_name)


# ---------------------------------------------------------------------------------------
# Idefics3 (SmolVLM layout): SigLIP-style ViT -> pixel shuffle + linear -> Llama


_IDEFICS3_ROW_COL = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
_IDEFICS3_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
) + _IDEFICS3_ROW_COL

# SmolVLM-Instruct: "<|im_start|>User:<image>{q}<end_of_utterance>\nAssistant: {a}<end_of_utterance>\n"
# (the role is followed by ':' when the content starts with an image, else by ': ').
IDEFICS3_CHAT_TEMPLATE = (
    r"{{- '<|im_start|>' -}}"
    r"{%- for message in messages -%}"
    r"{{- message['role'] | capitalize -}}"
    r"{%- if message['content'] is not string and message['content'] and message['content'][0]['type'] == 'image' -%}"
    r"{{- ':' -}}{%- else -%}{{- ': ' -}}{%- endif -%}" + _content("<image>") + r"{{- '<end_of_utterance>\n' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
)
_IDEFICS3_TEMPLATE_TEXT = ["User:<end_of_utterance>\nAssistant: yes no Yes No", "System: User: Assistant:"]


def _build_idefics3(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """Idefics3 / SmolVLM with image splitting, tiles of ``image_size / 2``.

    The image is resized to ``image_size`` (longest edge) and split into 2x2 tiles of
    ``image_size / 2`` + the whole image resized to one tile (``pixel_values`` [B, 5, 3, t, t],
    ``pixel_attention_mask`` [B, 5, t, t]). Each tile is 4x4 patches, pixel-shuffled by 2
    (``scale_factor``) into 4 tokens: 20 ``<image>`` tokens, framed by
    ``<fake_token_around_image>``, ``<row_i_col_j>`` and ``<global-img>`` markers.
    """
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    tile = image_size // 2
    patch = tile // 4
    scale = 2
    image_seq_len = (tile // patch) ** 2 // scale**2
    # SmolVLM-Instruct: bos <|im_start|>, eos <end_of_utterance>, pad <|im_end|>, unk <|endoftext|>.
    tokenizer = train_tokenizer(
        texts,
        _IDEFICS3_SPECIALS,
        _IDEFICS3_TEMPLATE_TEXT,
        vocab_size,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    vision = Idefics3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=tile, patch_size=patch
    )
    text = _llama_text(tokenizer, tie=True)
    config = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=scale,
        image_token_id=_token_id(tokenizer, "<image>"),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = _seeded(seed, lambda: Idefics3ForConditionalGeneration(config))
    _set_special_ids(model, tokenizer)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len, chat_template=IDEFICS3_CHAT_TEMPLATE
    )
    return _save(model, processor, out)


# ---------------------------------------------------------------------------------------
# Gemma 3: SigLIP ViT -> average pool + RMSNorm + linear -> Gemma 3 text model


_GEMMA3_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",  # Gemma's ids 0..3
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)

# Gemma 3 (its system turn, when there is one, is folded into the first user turn):
# "<bos><start_of_turn>user\n<start_of_image>{q}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n".
# The processor expands <start_of_image> into "\n\n<start_of_image>" + 16 x <image_soft_token>
# + "<end_of_image>\n\n". Texts are trimmed, as in the real template.
GEMMA3_CHAT_TEMPLATE = (
    r"{{- bos_token -}}"
    r"{%- set ns = namespace(system='') -%}"
    r"{%- for message in messages -%}"
    r"{%- if message['role'] == 'system' -%}"
    r"{%- if message['content'] is string -%}{%- set ns.system = message['content'] + '\n\n' -%}"
    r"{%- else -%}{%- set ns.system = (message['content'] | selectattr('type', 'equalto', 'text')"
    r" | map(attribute='text') | join('')) + '\n\n' -%}{%- endif -%}"
    r"{%- else -%}"
    r"{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' -}}"
    r"{%- if message['role'] == 'user' -%}{{- ns.system -}}{%- set ns.system = '' -%}{%- endif -%}"
    + _content("<start_of_image>", strip=True)
    + r"{{- '<end_of_turn>\n' -}}"
    r"{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)
_GEMMA3_TEMPLATE_TEXT = [
    "<start_of_turn>user\n<end_of_turn>\n<start_of_turn>model\nyes no Yes No",
    "\n\n<start_of_image><end_of_image>\n\n",
]
_GEMMA3_TOKENS_PER_IMAGE = 16


def _build_gemma3(out: Path, texts, image_size: int, seed: int, vocab_size: int) -> Path:
    """Gemma 3: SigLIP (8x8 patches of ``image_size / 8``) pooled to 16 tokens -> Gemma 3 text.

    The text model alternates a sliding-window and a global layer (Gemma 3's 5:1 pattern,
    shortened). Training should pass the processor's ``token_type_ids`` (1 on image tokens):
    with them, the image tokens attend to each other bidirectionally, as in the real model.
    """
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    patch = image_size // 8
    tokenizer = train_tokenizer(
        texts,
        _GEMMA3_SPECIALS,
        _GEMMA3_TEMPLATE_TEXT,
        vocab_size,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    boi, eoi, image, end_of_turn = (
        _token_id(tokenizer, t) for t in ("<start_of_image>", "<end_of_image>", "<image_soft_token>", "<end_of_turn>")
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        vision_use_head=False,
    )
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=512,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = Gemma3Config(
        vision_config=vision,
        text_config=text,
        mm_tokens_per_image=_GEMMA3_TOKENS_PER_IMAGE,
        boi_token_index=boi,
        eoi_token_index=eoi,
        image_token_index=image,
        tie_word_embeddings=True,
    )

    def make():
        m = Gemma3ForConditionalGeneration(config)
        # Gemma 3 initialises the projector's matrix to zeros (real checkpoints overwrite it):
        # every image would embed to the zero vector, the output would not depend on the
        # image, the vision tower would get no gradient, and the first RMSNorm's gradient at 0
        # is 1/sqrt(eps). A normal init like the other linear layers' makes images count.
        with torch.no_grad():
            m.model.multi_modal_projector.mm_input_projection_weight.normal_(std=config.initializer_range)
        return m

    model = _seeded(seed, make)
    _set_special_ids(model, tokenizer)
    # As gemma-3-*-it: generation also stops at <end_of_turn>.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
    image_processor = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size}, do_pan_and_scan=False)
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=_GEMMA3_TOKENS_PER_IMAGE,
    )
    return _save(model, processor, out)


# ---------------------------------------------------------------------------------------
# Entry points


_BUILDERS = {
    "llava": _build_llava,
    "llava_next": _build_llava_next,
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": _build_qwen2_5_vl,
    "idefics3": _build_idefics3,
    "gemma3": _build_gemma3,
}


def build_checkpoint(
    family: str, out: Path, texts: list[str], image_size: int = 32, seed: int = 0, *, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> Path:
    """Write a tiny random-weight checkpoint of `family` to `out` (created) and return it.

    ``texts`` train the tokenizer; ``image_size`` (a multiple of 8, 16..64) is the side of the
    square images the checkpoint is sized for; ``seed`` seeds the weights (same seed, same
    weights; the caller's RNG state is left as it was).
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    _check_image_size(image_size)
    return _BUILDERS[family](Path(out), list(texts), int(image_size), int(seed), int(vocab_size))


def load_processor(path):
    """The processor of a checkpoint folder as the adapter loads it
    (:func:`pebench_core.models.load_processor`: ``AutoProcessor``, or the image-only Qwen
    processor where torchvision is missing)."""
    from pebench_core.models import family_of_folder
    from pebench_core.models import load_processor as load

    return load(Path(path), family_of_folder(Path(path)))


def build_llava_7b_config_folder(out: Path, texts: Sequence[str], seed: int = 0) -> Path:
    """A folder with the *configuration* of LLaVA-1.5-7B (CLIP ViT-L/14 at 336 px, a 32-layer,
    4096-wide Llama, vocabulary 32,064) and a processor in its layout, but no weights: what the
    memory plan reads (``pebench_core.models.load_skeleton`` builds the model on the ``meta``
    device). The tokenizer is the tiny one: only the prompt's token count matters here, and
    its image tokens (576) come from the real patch grid."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig

    out = Path(out)
    small = build_checkpoint("llava", out.parent / f".{out.name}-processor", texts, seed=seed)
    processor = load_processor(small)
    processor.image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True
    )
    processor.patch_size = 14
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=32000,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=576,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    processor.save_pretrained(out)
    return out
