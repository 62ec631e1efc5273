"""One adapter over Hugging Face image-text-to-text models (DESIGN §4).

Every chapter, the trainer, the unlearning loop and the evaluator drive a model through the
few functions here, whatever the checkpoint is:

* :func:`build_tiny` builds the book's default model — a ``LlavaForConditionalGeneration``
  (small CLIP vision tower → 2-layer projector → small Llama) with random, seeded weights,
  a BPE tokenizer trained on the world's text (:func:`train_tokenizer`) and a
  ``LlavaProcessor``. :func:`save_bundle` / :func:`load_bundle` write and read it with
  ``save_pretrained`` / ``from_pretrained`` like any checkpoint, so the real loading path is
  the tested path; :func:`load_bundle` also takes any local HF image-text-to-text folder
  (LLaVA-1.5/1.6, Qwen2-VL, …). Safetensors only; ``trust_remote_code`` is never set.
* :func:`encode_train` turns (image, question, answer) triples into a right-padded batch whose
  ``labels`` keep only the answer tokens; :func:`~pebench_core.forward.sequence_logprobs` returns the per-sequence
  sum of answer-token log-probabilities that every unlearning loss is built on;
  :func:`generate` is batched greedy decoding with a KV cache whose answers do not depend on
  the batch size or the order of the items.
* :func:`add_lora` puts LoRA adapters (peft) on the language model — and the projector when
  asked — never on the vision tower; :func:`reference_mode` disables them, which gives the
  reference model of KL / DPO / NPO without a second copy of the weights.
* :func:`describe` tabulates the parts of the model and their parameter counts.

The prompt is the same at training and at evaluation by construction: a batch for training
is the token ids of the generation prompt followed by the ids of exactly the text that the
chat template puts after it (the answer and the end-of-sequence token), and generation
starts from those same prompt ids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .config import DEVICES, DTYPES, TINY_MAX_LENGTH, ConfigError, ModelConfig
from . import distributed as D
from .families import Family, family_for_type, family_of, unwrap

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
    "add_lora",
    "remove_lora",
    "reference_mode",
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
]

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

_WEIGHT_PATTERNS = ("*.safetensors",)
_PEBENCH_META = "pebench_model.json"


# ---------------------------------------------------------------------------------------
# The bundle


@dataclass
class ModelBundle:
    """A model with everything needed to feed it.

    ``model`` may be the plain HF model or a peft ``PeftModel`` wrapping it (see
    :meth:`with_model`). ``meta`` holds what :func:`build_tiny` was built from (empty for a
    foreign checkpoint).
    """

    model: torch.nn.Module
    processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    meta: dict = field(default_factory=dict)
    _prompt_cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -- helpers ------------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        if tok.pad_token_id is not None:
            return int(tok.pad_token_id)
        return int(tok.eos_token_id)

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def eos_token_ids(self) -> list[int]:
        """Every token that ends an answer: the tokenizer's end of sequence and the model's
        generation config's (a chat model's end-of-turn marker, e.g. ``<|im_end|>``)."""
        ids = [self.eos_token_id]
        gen = getattr(unwrap(self.model), "generation_config", None)
        extra = getattr(gen, "eos_token_id", None)
        for i in (extra if isinstance(extra, (list, tuple)) else [extra]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
        return ids

    @property
    def family(self) -> Family:
        """The model's row of :data:`pebench_core.families.FAMILIES`."""
        return family_of(self.model)

    @property
    def base_model(self) -> torch.nn.Module:
        """The HF model underneath any peft wrapper."""
        return unwrap(self.model)

    def with_model(self, model: torch.nn.Module) -> "ModelBundle":
        """The same processor/tokenizer around another model (e.g. the ``PeftModel``)."""
        return dataclasses.replace(self, model=model, _prompt_cache=self._prompt_cache)

    def prompt_text(self, question: str) -> str:
        """The generation prompt (text, one image placeholder) for ``question``."""
        return _prompt_and_answer_text(self, question, None)[0]

    def encode_train(self, images, questions, answers, max_length: int | None = None) -> dict:
        return encode_train(self, images, questions, answers, max_length=max_length)

    def generate(self, images, questions, max_new_tokens: int = 40, batch_size: int = 32) -> list[str]:
        return generate(self, images, questions, max_new_tokens=max_new_tokens, batch_size=batch_size)

    def sequence_logprobs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        from .forward import sequence_logprobs  # the model protocol stands on this module

        return sequence_logprobs(self, batch)

    def describe(self):
        return describe(self)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No transformers progress bars and no peft/transformers deprecation chatter inside."""
    import warnings

    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        if was:
            hf_logging.enable_progress_bar()




# ---------------------------------------------------------------------------------------
# Device and dtype


_DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device_dtype(device: str | torch.device = "auto",
                         dtype: str | torch.dtype = "auto") -> tuple[torch.device, torch.dtype]:
    """Pick the device and dtype: CUDA + bfloat16 when CUDA is there, else CPU + float32.

    Either may be forced (``device`` in cpu/cuda/mps, ``dtype`` in float32/bfloat16/float16);
    asking for a device this machine does not have is a :class:`ConfigError`.
    """
    if isinstance(device, torch.device):
        dev_name = device.type
    else:
        dev_name = str(device).split(":")[0]
        if dev_name not in DEVICES:
            raise ConfigError(f"model.device must be one of {', '.join(DEVICES)}, got {device!r}")
    if dev_name == "auto":
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    elif dev_name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("model.device is 'cuda' but CUDA is not available on this machine; "
                              "use model.device=auto or model.device=cpu")
        dev = torch.device(device) if not isinstance(device, torch.device) else device
    elif dev_name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("model.device is 'mps' but MPS is not available on this machine; "
                              "use model.device=auto or model.device=cpu")
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")

    dev = D.device_for_rank(dev)  # one GPU per process under a multi-process launch
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_NAMES.values():
            raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)}, got {dtype}")
        return dev, dtype
    name = str(dtype)
    if name not in DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if name == "auto":
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dt = torch.float32
    else:
        dt = _DTYPE_NAMES[name]
    return dev, dt


# ---------------------------------------------------------------------------------------
# Tokenizer


def train_bpe(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str] = SPECIAL_TOKENS,
              template_text: Sequence[str] = tuple(_TEMPLATE_TEXT), unk_token: str | None = UNK):
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
        raise ConfigError(f"model.vocab_size must be at least {len(special_tokens) + 256} for a "
                          f"byte-level tokenizer, got {vocab_size}")
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
        pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=100_000,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ---------------------------------------------------------------------------------------
# The tiny LLaVA


def _make_processor(tokenizer, image_size: int, patch_size: int):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},  # plain resize to a square, no crop
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
        do_resize=True, do_rescale=True, do_normalize=True, do_convert_rgb=True,
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
        image_size=image_size, patch_size=cfg.patch_size, num_channels=3,
        hidden_size=cfg.vision_hidden, intermediate_size=2 * cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
        projection_dim=cfg.vision_hidden, hidden_act="quick_gelu",
    )
    intermediate = int(round(2.5 * cfg.text_hidden / 16.0)) * 16 or 16
    text = LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.text_hidden, intermediate_size=intermediate,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=max(cfg.max_length or TINY_MAX_LENGTH, n_image_tokens + 64) + 128,
        rms_norm_eps=1e-5, initializer_range=0.02, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id,
        projector_hidden_act="gelu", vision_feature_select_strategy="default",
        vision_feature_layer=-1, image_seq_length=n_image_tokens, tie_word_embeddings=True,
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
    meta = {"kind": "tiny", "seed": int(seed), "image_size": int(image_size),
            "model_config": dataclasses.asdict(cfg), "n_image_tokens": n_image_tokens}
    return ModelBundle(model=model, processor=processor, tokenizer=tokenizer,
                       device=device, dtype=dtype, meta=meta)


# ---------------------------------------------------------------------------------------
# Saving and loading


def save_bundle(bundle: ModelBundle, path: str | Path, state_dict: dict | None = None) -> Path:
    """Write model (safetensors) + processor to ``path`` with ``save_pretrained``, atomically.

    Everything is written to a temporary sibling folder first and renamed into place, so an
    interrupted save never leaves a half-written checkpoint at ``path``. A ``PeftModel`` is
    refused (merge or save the adapter with :func:`save_adapter`).
    """
    model = bundle.model
    if unwrap(model) is not model:
        raise ConfigError("save_bundle got a model with LoRA adapters; save them with save_adapter(), "
                          "or merge them first (model.merge_and_unload())")
    from .storage import atomic_dir

    path = Path(path)
    with atomic_dir(path) as tmp, _quiet():
        # state_dict: the whole weights of a model sharded over processes (gathered on rank 0)
        model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
        bundle.processor.save_pretrained(tmp)
        if bundle.meta:
            (tmp / _PEBENCH_META).write_text(json.dumps(bundle.meta, indent=2, sort_keys=True))
    return path


def load_bundle(path: str | Path, device: str | torch.device = "auto",
                dtype: str | torch.dtype = "auto") -> ModelBundle:
    """Load a local image-text-to-text checkpoint folder (the tiny model or a real one).

    ``AutoModelForImageTextToText`` + ``AutoProcessor``, safetensors weights only, no remote
    code, no hub access. Raises :class:`ConfigError` naming the folder when it does not exist,
    holds no ``*.safetensors`` weights, or holds a model the adapter cannot drive.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path).expanduser()
    expected = ("a Hugging Face image-text-to-text checkpoint folder (config.json, *.safetensors "
                "weights and the processor files, as written by save_pretrained)")
    if not path.exists():
        raise ConfigError(f"model path {path} does not exist; expected {expected}")
    if not path.is_dir():
        raise ConfigError(f"model path {path} is not a folder; expected {expected}")
    if not (path / "config.json").is_file():
        raise ConfigError(f"model path {path} has no config.json; expected {expected}")
    weights = [p for pat in _WEIGHT_PATTERNS for p in path.glob(pat)]
    if not weights:
        others = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".gguf"))
        found = f" (found {', '.join(others)}; pickled/other weight formats are refused)" if others else ""
        raise ConfigError(f"model path {path} holds no *.safetensors weights{found}; expected {expected}. "
                          "Convert the checkpoint to safetensors first.")
    family = family_of_folder(path)
    try:
        AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # malformed json, a config this transformers cannot read, ...
        raise ConfigError(f"model path {path}: config.json cannot be read as a transformers config "
                          f"({type(exc).__name__}: {exc}); expected {expected}") from None
    # The processor first: it is cheap, and a missing chat template should stop the run
    # before gigabytes of weights are read.
    processor = load_processor(path, family)
    dev, dt = resolve_device_dtype(device, dtype)
    try:
        with _quiet():
            model = AutoModelForImageTextToText.from_pretrained(
                path, use_safetensors=True, trust_remote_code=False, local_files_only=True, dtype=dt,
                **({"device_map": str(dev)} if dev.type == "cuda" else {}))
    except Exception as exc:
        raise ConfigError(f"model path {path}: AutoModelForImageTextToText could not load it "
                          f"({type(exc).__name__}: {exc})") from None
    tokenizer = processor.tokenizer
    model.to(device=dev)
    model.eval()
    meta = {"kind": "local", "path": str(path), "family": family.name}
    if (path / _PEBENCH_META).is_file():
        meta = json.loads((path / _PEBENCH_META).read_text())
    return ModelBundle(model=model, processor=processor, tokenizer=tokenizer, device=dev, dtype=dt, meta=meta)


def family_of_folder(path: Path) -> Family:
    """The family a checkpoint folder's ``config.json`` declares, read as plain JSON: an
    architecture the adapter cannot drive is named before transformers parses anything."""
    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model path {path}: config.json is not valid JSON ({exc})") from None
    return family_for_type(raw.get("model_type"), raw.get("architectures"), f"model path {path}")


def load_processor(path: str | Path, family: Family):
    """The checkpoint's own processor (``AutoProcessor``), with its tokenizer and chat template.

    Where ``AutoProcessor`` cannot build it on this machine (transformers 5 builds Qwen2-VL's
    video processor with torchvision, which the CPU torch here cannot load), the processor is
    assembled from the same files: the tokenizer, the PIL variant of the image processor and
    the chat template, all read from the folder (:func:`_assemble_processor`). A processor
    without a tokenizer or a chat template is refused.
    """
    from transformers import AutoProcessor

    path = Path(path)
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except Exception as exc:
        try:
            processor = _assemble_processor(path, family)
        except Exception:
            raise ConfigError(f"model path {path}: AutoProcessor could not load the processor files "
                              f"({type(exc).__name__}: {exc}); expected the processor/tokenizer files that "
                              "save_pretrained writes") from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError(f"model path {path}: the processor has no tokenizer")
    if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(f"model path {path}: neither the processor nor the tokenizer has a chat template "
                          "(chat_template.jinja); the adapter formats every prompt with the model's own template")
    return processor


def image_only_processor_class(base: type, family: Family) -> type:
    """``base`` (a processor class whose ``__init__`` takes a video processor) without it.

    ``Qwen2VLProcessor.__init__`` takes a ``video_processor``, and transformers' ``ProcessorMixin``
    checks every such argument (``None`` included) against ``VideoProcessorMixin``, which it only
    exports with torchvision; the one video processor there is needs torchvision too. A
    subclass whose ``__init__`` has no ``video_processor`` has only the image processor and
    the tokenizer as parts (``ProcessorMixin`` reads them off the signature) and is otherwise
    the real processor: the same ``__call__``, the same image-token expansion, and
    ``isinstance`` of the base holds. Only families whose table row names their image and
    video tokens (``Family.image_only_processor``) are built this way.
    """
    from transformers.processing_utils import ProcessorMixin

    if not family.image_only_processor:
        raise ConfigError(f"no image-only fallback for the {family.title} processor")
    image_token, video_token = family.image_only_processor

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # what the family's __init__ does before ProcessorMixin's, minus the video processor
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.video_token = getattr(tokenizer, "video_token", None) or video_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self):
        # saved under the real class's name, so the folder stays a checkpoint of that family
        out = base.to_dict(self)
        out["processor_class"] = base.__name__
        return out

    return type(base.__name__ + "ImageOnly", (base,),
                {"__init__": __init__, "to_dict": to_dict, "__module__": __name__})


def _assemble_processor(path: Path, family: Family):
    """The folder's processor class, image-only (:func:`image_only_processor_class`), loaded
    from the same files."""
    import transformers

    cfg = json.loads((path / "processor_config.json").read_text())
    base = getattr(transformers, cfg.get("processor_class", ""), None)
    if base is None:
        raise ConfigError(f"unknown processor class {cfg.get('processor_class')!r} in {path}")
    return image_only_processor_class(base, family).from_pretrained(path, local_files_only=True,
                                                                    trust_remote_code=False)


# ---------------------------------------------------------------------------------------
# Prompts and batches


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


def _prompt_and_answer_text(bundle: ModelBundle, question: str, answer: str | None) -> tuple[str, str | None]:
    """The generation prompt for ``question`` and the text the template puts after it."""
    cache = bundle._prompt_cache
    prompt = cache.get(question)
    if prompt is None:
        prompt = _render(bundle, build_messages(question), True)
        if len(cache) < 100_000:
            cache[question] = prompt
    if answer is None:
        return prompt, None
    full = _render(bundle, build_messages(question, answer), False)
    if not full.startswith(prompt):
        raise ConfigError("the chat template's full conversation does not start with its generation prompt; "
                          "cannot separate the answer tokens")
    return prompt, full[len(prompt):]


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
                raise ConfigError(f"the {bundle.family.title} processor returned {key} with {value.shape[0]} rows, "
                                  f"but {flat[key]} accounts for {sum(shares)}")
            for i, part in enumerate(torch.split(value, shares)):
                out[i].vision[key] = part.clone()
        elif value.ndim >= 1 and value.shape[0] == n:
            for i in range(n):
                out[i].vision[key] = value[i:i + 1].clone()
        else:
            raise ConfigError(f"the {bundle.family.title} processor returned {key} of shape {tuple(value.shape)} "
                              f"for {n} items: neither per item nor declared in Family.flat_vision")
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


def pad_batch(ids: Sequence[Sequence[int]], tokens: Sequence[dict], vision: Sequence[dict] | None, pad_id: int,
              side: str = "right", labels: Sequence[Sequence[int]] | None = None) -> dict:
    """A padded model batch: ``input_ids``, ``attention_mask``, every per-token input
    (padded with 0), ``labels`` (padded with -100) when given, and the stacked image inputs."""
    batch = {"input_ids": _pad(ids, pad_id, side), "attention_mask": _pad([[1] * len(s) for s in ids], 0, side)}
    for key in (tokens[0] if tokens else {}):
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
    prompts = [_prompt_and_answer_text(bundle, q, None)[0] for q in questions]
    enc = bundle.processor(images=_images_arg(bundle, images), text=prompts, padding=True, padding_side="right",
                           return_tensors="pt")
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
            out[i, :len(t)] = t
        else:
            out[i, n - len(t):] = t
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
        raise ConfigError(f"the {bundle.family.title} checkpoint declares no max_position_embeddings; "
                          "set model.max_length")
    return int(n)


def check_length(n_prompt: int, n_answer: int, max_length: int | None) -> None:
    """A training sequence longer than ``max_length`` is an error that says what to change,
    never a silent cut (a cut answer teaches the model to stop mid-word)."""
    if max_length is not None and n_prompt + n_answer > max_length:
        raise ConfigError(f"a training sequence has {n_prompt + n_answer} tokens ({n_prompt} prompt incl. "
                          f"image, {n_answer} answer) but model.max_length is {max_length}; raise "
                          "model.max_length (0 = the model's own context window) or lower world.image_size")


def encode_train(bundle: ModelBundle, images: Sequence, questions: Sequence[str], answers: Sequence[str],
                 max_length: int | None = None) -> dict:
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
    suffixes = [_prompt_and_answer_text(bundle, q, a)[1].rstrip() for q, a in zip(questions, answers)]
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


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


@torch.no_grad()
def generate(bundle: ModelBundle, images: Sequence, questions: Sequence[str], max_new_tokens: int = 40,
             batch_size: int = 32, sharded: bool = True) -> list[str]:
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
    lengths = [len(_prompt_and_answer_text(bundle, q, None)[0]) for q in questions]
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    answers: list[str] = [""] * n
    try:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            ps = encode_prompts(bundle, [images[i] for i in idx], [questions[i] for i in idx])
            batch = move_batch(pad_batch([p.ids for p in ps], [p.tokens for p in ps], [p.vision for p in ps],
                                         pad_id, "left"), device, mdtype)
            out = model.generate(
                **batch, do_sample=False, num_beams=1, use_cache=True, max_new_tokens=max_new_tokens,
                pad_token_id=pad_id, eos_token_id=eos_id,
                temperature=None, top_p=None, top_k=None,
            )
            new = out[:, batch["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            for i, t in zip(idx, texts):
                answers[i] = t.strip()
    finally:
        if was_training:
            model.train()
    return answers


# ---------------------------------------------------------------------------------------
# LoRA


_LM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _is_linear(m: torch.nn.Module) -> bool:
    """A linear layer, or one already wrapped by peft (which keeps it as ``base_layer``)."""
    return isinstance(m, torch.nn.Linear) or isinstance(getattr(m, "base_layer", None), torch.nn.Linear)


def lora_targets(model: torch.nn.Module, projector: bool) -> list[str]:
    """The names of the linear layers LoRA adapts (see :func:`lora_target_regex`)."""
    model = unwrap(model)
    fam = family_of(model)
    lm = fam.language_model
    names = {n: m for n, m in model.named_modules()
             if _is_linear(m) and not any(p.startswith("lora_") or p == "base_layer" for p in n.split("."))}
    out = [n for n in names if n.startswith(lm + ".") and n.rsplit(".", 1)[-1] in _LM_TARGETS]
    if not out:
        raise ConfigError(f"add_lora: no {'/'.join(_LM_TARGETS)} linear layers under {lm} in this "
                          f"{fam.title} model")
    if projector:
        # Gemma 3's projector is a bare weight matrix behind a norm, not a linear layer: LoRA
        # cannot adapt it, and its language model carries the adapter alone.
        out += [n for n in names if fam.role_of(n) == "projector"]
    return sorted(out)


def lora_target_regex(model: torch.nn.Module, projector: bool) -> str:
    """The regex (peft ``target_modules``) of the linear layers LoRA adapts.

    The language model's attention and MLP projections (``q/k/v/o_proj``, ``gate/up/down_proj``)
    — factual associations such as name ↔ face live in the MLPs as much as in attention, and
    the adapter stays small — plus, with ``projector=True``, the multimodal projector's linear
    layers. The parts are found through the model's family (:mod:`pebench_core.families`).
    The vision tower is never adapted: the paper's unlearning acts on what the language side
    says about what the encoder sees.
    """
    fam = family_of(model)
    lm = [n for n in lora_targets(model, False)]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in lm})
    parts = [rf"{re.escape(fam.language_model)}\..*\.(?:{'|'.join(leaves)})"]
    proj = [n for n in lora_targets(model, projector) if n not in set(lm)]
    if proj:
        parts.append("|".join(re.escape(n) for n in proj))
    return "^(?:" + "|".join(parts) + ")$"


def add_lora(bundle: ModelBundle, r: int = 8, alpha: int = 16, projector: bool = True, dropout: float = 0.0,
             seed: int = 0):
    """Wrap ``bundle.model`` in a peft ``PeftModel`` with a fresh LoRA adapter (seeded init).

    Targets come from :func:`lora_target_regex`. Only the adapter is trainable. peft injects
    the LoRA layers into ``bundle.model`` in place; :func:`remove_lora` takes them out again.
    Use ``bundle.with_model(peft_model)`` to generate / score with the adapter on.
    """
    from peft import LoraConfig, get_peft_model

    if r < 1 or alpha < 1:
        raise ConfigError(f"LoRA rank and alpha must be at least 1, got r={r}, alpha={alpha}")
    base = unwrap(bundle.model)
    if base is not bundle.model:
        raise ConfigError("add_lora: the bundle's model already carries LoRA adapters; call remove_lora first")
    config = LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout), bias="none",
                        target_modules=lora_target_regex(base, projector), init_lora_weights=True)
    with torch.random.fork_rng(devices=[bundle.device] if bundle.device.type == "cuda" else []):
        torch.manual_seed(seed)
        with _quiet():
            peft_model = get_peft_model(base, config)
    return peft_model


def remove_lora(peft_model) -> torch.nn.Module:
    """Take the LoRA layers out again and return the untouched base model."""
    return peft_model.unload()


@contextlib.contextmanager
def reference_mode(model) -> Iterator[torch.nn.Module]:
    """Inside the block ``model`` computes the reference model: the same weights, adapter off.

    ``with reference_mode(peft_model): ref = sequence_logprobs(peft_model, batch)`` — no second
    copy of the weights in memory. ``model`` may also be a bundle holding a ``PeftModel``.
    """
    m = model.model if isinstance(model, ModelBundle) else model
    if not hasattr(m, "disable_adapter") or unwrap(m) is m:
        raise ConfigError("reference_mode needs a model with a LoRA adapter (from add_lora); "
                          f"got {type(m).__name__}")
    with m.disable_adapter():
        yield m


def save_adapter(peft_model, path: str | Path) -> Path:
    """Save only the LoRA adapter (``adapter_model.safetensors`` + config), atomically."""
    if unwrap(peft_model) is peft_model:
        raise ConfigError(f"save_adapter needs a model with a LoRA adapter, got {type(peft_model).__name__}")
    from .storage import atomic_dir

    path = Path(path)
    with atomic_dir(path) as tmp, _quiet():
        peft_model.save_pretrained(tmp, safe_serialization=True)
    return path


def load_adapter(bundle: ModelBundle, path: str | Path, trainable: bool = False):
    """Put a saved LoRA adapter on ``bundle.model`` (in place) and return the ``PeftModel``."""
    from peft import PeftModel

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"adapter path {path} does not exist; expected a folder written by save_adapter "
                          "(adapter_config.json + adapter_model.safetensors)")
    if not (path / "adapter_model.safetensors").is_file() or not (path / "adapter_config.json").is_file():
        raise ConfigError(f"adapter path {path} holds no adapter_config.json + adapter_model.safetensors; "
                          "only safetensors adapters are loaded")
    base = unwrap(bundle.model)
    if base is not bundle.model:
        raise ConfigError("load_adapter: the bundle's model already carries LoRA adapters; call remove_lora first")
    with _quiet():
        model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
    if not trainable:
        model.eval()
    return model


def load_skeleton(path: str | Path, device: str | torch.device = "auto",
                  dtype: str | torch.dtype = "auto") -> ModelBundle:
    """A checkpoint folder's model *without its weights* (built on the ``meta`` device) and its
    real processor: enough to plan memory (:mod:`pebench_core.memory`) or to count the tokens
    of a prompt for a 7B model in a second, with only ``config.json`` and the processor files."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model path {path} has no config.json; expected a Hugging Face checkpoint folder")
    family = family_of_folder(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    processor = load_processor(path, family)
    dev, dt = resolve_device_dtype(device, dtype)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dt)
    return ModelBundle(model=model, processor=processor, tokenizer=processor.tokenizer, device=dev, dtype=dt,
                       meta={"kind": "skeleton", "path": str(path), "family": family.name})


def load_merged(path: str | Path, adapter: str | Path, device: str | torch.device = "auto",
                dtype: str | torch.dtype = "auto") -> ModelBundle:
    """The checkpoint at ``path`` with the LoRA adapter at ``adapter`` merged into its weights:
    one model in memory, the fine-tuned one, which a later adapter (unlearning) adapts and
    whose weights are the reference when that adapter is off."""
    bundle = load_bundle(path, device, dtype)
    peft_model = load_adapter(bundle, adapter)
    bundle.model = peft_model.merge_and_unload()
    bundle.model.eval()
    return bundle


# ---------------------------------------------------------------------------------------
# Description


def prompt_tokens(bundle: ModelBundle, image_size: int,
                  question: str = "What is happening in the image?") -> tuple[int, int]:
    """``(prompt tokens, image tokens)`` of one generation prompt with an ``image_size`` px
    image, as the model's own processor encodes it (the image's share is what the image adds
    over the text alone)."""
    from PIL import Image

    img = Image.new("RGB", (image_size, image_size), (128, 128, 128))
    ids = encode_prompts(bundle, [img], [question])[0].ids
    image_id = getattr(bundle.processor, "image_token_id", None)
    if isinstance(image_id, int) and image_id in ids:  # the placeholders the image's features replace
        return len(ids), ids.count(image_id)
    text_only = len(bundle.tokenizer(bundle.prompt_text(question), add_special_tokens=False)["input_ids"])
    return len(ids), max(0, len(ids) - text_only)


def model_card(bundle: ModelBundle, image_size: int) -> dict:
    """The facts a chapter prints about a model, whatever its family: its parts' depth and
    width, how many tokens an image of ``image_size`` px becomes, the vocabulary, device and
    dtype."""
    cfg = unwrap(bundle.model).config
    text = getattr(cfg, "text_config", None) or cfg
    vision = getattr(cfg, "vision_config", None)
    prompt, image = prompt_tokens(bundle, image_size)
    return {"family": bundle.family.title,
            "vision layers": getattr(vision, "num_hidden_layers", getattr(vision, "depth", None)),
            "vision width": getattr(vision, "hidden_size", getattr(vision, "embed_dim", None)),
            "image tokens": image, "prompt tokens": prompt,
            "language-model layers": text.num_hidden_layers, "language-model width": text.hidden_size,
            "vocabulary": text.vocab_size, "device": str(bundle.device), "dtype": str(bundle.dtype).removeprefix("torch.")}


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
        part = ("LoRA adapter" if ".lora_" in f".{bare}" else "embeddings" if id(p) in emb_ids
                else fam.role_of(bare.replace(".base_layer", "")))
        counts[part][0] += p.numel()
        if p.requires_grad:
            counts[part][1] += p.numel()
    total = sum(c[0] for c in counts.values())
    rows = [{"part": k, "parameters": c[0], "trainable": c[1], "share": c[0] / total if total else 0.0}
            for k, c in counts.items() if c[0] or k != "LoRA adapter"]
    rows.append({"part": "total", "parameters": total, "trainable": sum(c[1] for c in counts.values()),
                 "share": 1.0})
    return pd.DataFrame(rows)
