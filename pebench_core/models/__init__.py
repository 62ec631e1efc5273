"""One adapter over Hugging Face image-text-to-text models (design: Models and families).

Every chapter, the trainer, the unlearning loop and the evaluator drive a model through the
few functions here, whatever the checkpoint is. Every name is importable from
``pebench_core.models``; the rooms of the package, each standing only on those before it:

* :mod:`~pebench_core.models.bundle` — :class:`ModelBundle` (a model with its processor and
  tokenizer), the device and dtype it runs in (:func:`resolve_device_dtype`) and
  :func:`quiet_transformers` (no progress bars or deprecation chatter around a load).
* :mod:`~pebench_core.models.tokenizer` — the tiny model's special tokens, its chat template
  (:data:`CHAT_TEMPLATE`) and a BPE tokenizer trained on the world's text (:func:`train_tokenizer`).
* :mod:`~pebench_core.models.prompts` — chat messages, encoded prompts, padded batches:
  :func:`encode_train` turns (image, question, answer) triples into a right-padded batch whose
  ``labels`` keep only the answer tokens; :func:`~pebench_core.forward.sequence_logprobs`
  returns the per-sequence sum of answer-token log-probabilities that every unlearning loss
  is built on.
* :mod:`~pebench_core.models.tiny` — :func:`build_tiny` builds the book's default model — a
  ``LlavaForConditionalGeneration`` (small CLIP vision tower → 2-layer projector → small
  Llama) with random, seeded weights, the tokenizer trained on the world's text and a
  ``LlavaProcessor``.
* :mod:`~pebench_core.models.checkpoints` — :func:`save_bundle` / :func:`load_bundle` write and
  read it with ``save_pretrained`` / ``from_pretrained`` like any checkpoint, so the real
  loading path is the tested path; :func:`load_bundle` also takes any local HF
  image-text-to-text folder (LLaVA-1.5/1.6, Qwen2-VL, …). Safetensors only;
  ``trust_remote_code`` is never set. :func:`load_skeleton` reads a folder's model without its
  weights.
* :mod:`~pebench_core.models.lora` — :func:`add_lora` puts LoRA adapters (peft) on the
  language model — and the projector when asked — never on the vision tower;
  :func:`reference_mode` disables them, which gives the reference model of KL / DPO / NPO
  without a second copy of the weights; :func:`plain_linears` runs a small adapted model
  as plain linear layers, the adapter merged, while it decodes.
* :mod:`~pebench_core.models.generation` — :func:`generate` is batched greedy decoding with a
  KV cache whose answers do not depend on the batch size or the order of the items
  (decoding through :func:`plain_linears`).
* :mod:`~pebench_core.models.cards` — :func:`describe` tabulates the parts of the model and
  their parameter counts; :func:`model_card` lists the facts a chapter prints about it.

The prompt is the same at training and at evaluation by construction: a batch for training
is the token ids of the generation prompt followed by the ids of exactly the text that the
chat template puts after it (the answer and the end-of-sequence token), and generation
starts from those same prompt ids.
"""

from __future__ import annotations

# The names the single-module ``models`` exposed through its own imports, still importable
# from here (``from .models import unwrap`` and the like).
from .. import distributed as D  # noqa: F401
from ..errors import DEVICES as DEVICES
from ..errors import DTYPES as DTYPES
from ..errors import TINY_MAX_LENGTH as TINY_MAX_LENGTH
from ..errors import ConfigError as ConfigError
from ..families import Family as Family
from ..families import family_for_type as family_for_type
from ..families import family_of as family_of
from ..families import unwrap as unwrap
from .bundle import ModelBundle, model_device_dtype, quiet_transformers, resolve_device_dtype
from .cards import count_parameters, describe, model_card, prompt_tokens
from .checkpoints import family_of_folder, image_only_processor_class, load_bundle, load_processor, load_skeleton, save_bundle
from .generation import generate
from .lora import (
    add_lora,
    decoder_layers,
    load_adapter,
    load_merged,
    lora_target_regex,
    lora_targets,
    mlp_target_regex,
    plain_linears,
    reference_mode,
    remove_lora,
    save_adapter,
)
from .prompts import (
    Prompt,
    answer_ids,
    build_messages,
    check_length,
    context_length,
    encode_prompts,
    encode_train,
    move_batch,
    pad_batch,
    prompt_and_answer_text,
    stack_vision,
    to_device,
)
from .tiny import build_tiny
from .tokenizer import BOS, CHAT_TEMPLATE, EOS, IMAGE_TOKEN, PAD, SPECIAL_TOKENS, UNK, train_bpe, train_tokenizer

__all__ = [
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "ModelBundle",
    "train_bpe",
    "train_tokenizer",
    "build_tiny",
    "save_bundle",
    "load_bundle",
    "resolve_device_dtype",
    "build_messages",
    "encode_prompts",
    "encode_train",
    "to_device",
    "generate",
    "lora_target_regex",
    "mlp_target_regex",
    "decoder_layers",
    "add_lora",
    "remove_lora",
    "reference_mode",
    "plain_linears",
    "save_adapter",
    "load_adapter",
    "describe",
    "count_parameters",
    "prompt_tokens",
    "model_card",
    "Prompt",
    "pad_batch",
    "stack_vision",
    "move_batch",
    "answer_ids",
    "context_length",
    "check_length",
    "load_processor",
    "family_of_folder",
    "image_only_processor_class",
    "load_skeleton",
    "load_merged",
    "lora_targets",
    # public before but not listed, and the names made public by the split
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "model_device_dtype",
    "quiet_transformers",
    "prompt_and_answer_text",
]
