"""The tiny model's tokenizer and chat format.

Its special tokens (:data:`SPECIAL_TOKENS`, ids 0-4), its chat template
(:data:`CHAT_TEMPLATE`, LLaVA-1.5 style) and the byte-level BPE trained on the world's own
text (:func:`train_bpe`, wrapped as a fast HF tokenizer by :func:`train_tokenizer`).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError

__all__ = ["IMAGE_TOKEN", "PAD", "BOS", "EOS", "UNK", "SPECIAL_TOKENS", "CHAT_TEMPLATE", "train_bpe", "train_tokenizer"]

IMAGE_TOKEN = "<image>"
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE_TOKEN)  # ids 0..4 in a trained tokenizer

# A single user turn (an image + a question) and the assistant's answer, LLaVA-1.5 style:
#   "<s>USER: <image>\n{question} ASSISTANT: {answer}</s>"
# With add_generation_prompt the text ends at "ASSISTANT:"; the answer's leading space is
# part of the answer's first token, so the answer tokens are exactly what the model has to
# produce after the prompt. `content` may be a string or a list of {"type": "image"} /
# {"type": "text", "text": ...} parts.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- 'USER: ' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>' + '\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- ' ASSISTANT: ' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
)

# Fixed words of the prompt, added to the tokenizer's training text so that they become
# single tokens and the prompt stays short.
_TEMPLATE_TEXT = ["USER: ASSISTANT:", "USER: <image>\n ASSISTANT: yes no Yes No"]


def train_bpe(
    texts: Sequence[str],
    vocab_size: int,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    template_text: Sequence[str] = tuple(_TEMPLATE_TEXT),
    unk_token: str | None = UNK,
):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts`` (deterministic).

    Byte-level BPE never meets an unknown character (every string round-trips exactly) and,
    trained on the world's own text, turns frequent names and description words into one or
    two tokens. ``special_tokens`` get ids ``0..n-1`` in that order; ``template_text`` (the
    fixed words of a chat template) is trained on too, so those words become single tokens
    and prompts stay short. The vocabulary can come out smaller than ``vocab_size`` when the
    text is small.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < len(special_tokens) + 256:
        raise ConfigError(
            f"model.vocab_size must be at least {len(special_tokens) + 256} for a byte-level tokenizer, got {vocab_size}"
        )
    corpus = [str(t) for t in texts if str(t)]
    if not corpus:
        raise ConfigError("train_tokenizer needs at least one non-empty text")
    # Each text also with a leading space: answers follow "ASSISTANT:" after a space, so a
    # name that starts a sentence in the world's text should also be one token there.
    corpus = corpus + [" " + t for t in corpus] + list(template_text) * 4
    tok = Tokenizer(models.BPE(unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return tok


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """The tiny model's tokenizer: :func:`train_bpe` on ``texts`` wrapped as a fast HF
    tokenizer. Special tokens (ids 0-4): ``<pad> <s> </s> <unk> <image>``; the chat template
    is :data:`CHAT_TEMPLATE`. Same texts, same tokenizer.
    """
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(texts, vocab_size),
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=100_000,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
