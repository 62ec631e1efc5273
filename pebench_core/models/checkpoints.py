"""Saving and loading checkpoint folders, and the processors that come with them.

:func:`save_bundle` / :func:`load_bundle` write and read a model with ``save_pretrained`` /
``from_pretrained`` like any checkpoint, so the tiny model's loading path is the path every
real checkpoint takes; :func:`load_bundle` takes any local HF image-text-to-text folder
(LLaVA-1.5/1.6, Qwen2-VL, …). Safetensors only; ``trust_remote_code`` is never set.
:func:`load_processor` reads a folder's own processor (image-only where transformers would
need torchvision, :func:`image_only_processor_class`); :func:`load_skeleton` a folder's model
without its weights, to plan memory or count tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ConfigError
from ..families import Family, family_for_type, unwrap
from .bundle import ModelBundle, quiet_transformers, resolve_device_dtype

__all__ = ["save_bundle", "load_bundle", "family_of_folder", "load_processor", "image_only_processor_class", "load_skeleton"]

_WEIGHT_PATTERNS = ("*.safetensors",)
_PEBENCH_META = "pebench_model.json"


def save_bundle(bundle: ModelBundle, path: str | Path, state_dict: dict | None = None) -> Path:
    """Write model (safetensors) + processor to ``path`` with ``save_pretrained``, atomically.

    Everything is written to a temporary sibling folder first and renamed into place, so an
    interrupted save never leaves a half-written checkpoint at ``path``. A ``PeftModel`` is
    refused (merge or save the adapter with :func:`save_adapter`).
    """
    model = bundle.model
    if unwrap(model) is not model:
        raise ConfigError(
            "save_bundle got a model with LoRA adapters; save them with save_adapter(), "
            "or merge them first (model.merge_and_unload())"
        )
    from ..storage import atomic_dir

    path = Path(path)
    with atomic_dir(path) as tmp, quiet_transformers():
        # state_dict: the whole weights of a model sharded over processes (gathered on rank 0)
        model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
        bundle.processor.save_pretrained(tmp)
        if bundle.meta:
            (tmp / _PEBENCH_META).write_text(json.dumps(bundle.meta, indent=2, sort_keys=True))
    return path


def load_bundle(path: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> ModelBundle:
    """Load a local image-text-to-text checkpoint folder (the tiny model or a real one).

    ``AutoModelForImageTextToText`` + ``AutoProcessor``, safetensors weights only, no remote
    code, no hub access. Raises :class:`ConfigError` naming the folder when it does not exist,
    holds no ``*.safetensors`` weights, or holds a model the adapter cannot drive.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path).expanduser()
    family = check_checkpoint_folder(path)
    try:
        AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # malformed json, a config this transformers cannot read, ...
        raise ConfigError(
            f"model path {path}: config.json cannot be read as a transformers config "
            f"({type(exc).__name__}: {exc}); expected {_EXPECTED}"
        ) from None
    # The processor first: it is cheap, and a missing chat template should stop the run
    # before gigabytes of weights are read.
    processor = load_processor(path, family)
    dev, dt = resolve_device_dtype(device, dtype)
    try:
        with quiet_transformers():
            model = AutoModelForImageTextToText.from_pretrained(
                path,
                use_safetensors=True,
                trust_remote_code=False,
                local_files_only=True,
                dtype=dt,
                **({"device_map": str(dev)} if dev.type == "cuda" else {}),
            )
    except Exception as exc:
        raise ConfigError(
            f"model path {path}: AutoModelForImageTextToText could not load it ({type(exc).__name__}: {exc})"
        ) from None
    tokenizer = processor.tokenizer
    model.to(device=dev)
    model.eval()
    meta = {"kind": "local", "path": str(path), "family": family.name}
    if (path / _PEBENCH_META).is_file():
        meta = json.loads((path / _PEBENCH_META).read_text())
    return ModelBundle(model=model, processor=processor, tokenizer=tokenizer, device=dev, dtype=dt, meta=meta)


_EXPECTED = (
    "a Hugging Face image-text-to-text checkpoint folder (config.json, *.safetensors "
    "weights and the processor files, as written by save_pretrained)"
)


def check_checkpoint_folder(path: str | Path, weights: bool = True) -> Family:
    """What can be told of a checkpoint folder without reading a weight: it exists, is a folder,
    holds a ``config.json`` and ``*.safetensors`` weights, and declares a family the adapter
    drives (returned); ``weights=False`` leaves the weights out (a memory plan reads the
    configuration only). Configuration validation calls it, so a bad ``model.path`` stops a run
    before anything is built; :func:`load_bundle` calls it again before it loads."""
    path = Path(path).expanduser()
    if not path.exists():
        hub = "/" in str(path) and not path.is_absolute() and str(path).count("/") == 1
        hint = " (it looks like a hub id: nothing is downloaded here; give the folder a download wrote)" if hub else ""
        raise ConfigError(f"model path {path} does not exist{hint}; expected {_EXPECTED}")
    if not path.is_dir():
        raise ConfigError(f"model path {path} is not a folder; expected {_EXPECTED}")
    if not (path / "config.json").is_file():
        raise ConfigError(f"model path {path} has no config.json; expected {_EXPECTED}")
    found_weights = [p for pat in _WEIGHT_PATTERNS for p in path.glob(pat)]
    if weights and not found_weights:
        others = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".gguf"))
        found = f" (found {', '.join(others)}; pickled/other weight formats are refused)" if others else ""
        raise ConfigError(
            f"model path {path} holds no *.safetensors weights{found}; expected {_EXPECTED}. "
            "Convert the checkpoint to safetensors first."
        )
    return family_of_folder(path)


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
            raise ConfigError(
                f"model path {path}: AutoProcessor could not load the processor files "
                f"({type(exc).__name__}: {exc}); expected the processor/tokenizer files that "
                "save_pretrained writes"
            ) from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError(f"model path {path}: the processor has no tokenizer")
    if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            f"model path {path}: neither the processor nor the tokenizer has a chat template "
            "(chat_template.jinja); the adapter formats every prompt with the model's own template"
        )
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

    return type(base.__name__ + "ImageOnly", (base,), {"__init__": __init__, "to_dict": to_dict, "__module__": __name__})


def _assemble_processor(path: Path, family: Family):
    """The folder's processor class, image-only (:func:`image_only_processor_class`), loaded
    from the same files."""
    import transformers

    cfg = json.loads((path / "processor_config.json").read_text())
    base = getattr(transformers, cfg.get("processor_class", ""), None)
    if base is None:
        raise ConfigError(f"unknown processor class {cfg.get('processor_class')!r} in {path}")
    return image_only_processor_class(base, family).from_pretrained(path, local_files_only=True, trust_remote_code=False)


def load_skeleton(path: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> ModelBundle:
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
    return ModelBundle(
        model=model,
        processor=processor,
        tokenizer=processor.tokenizer,
        device=dev,
        dtype=dt,
        meta={"kind": "skeleton", "path": str(path), "family": family.name},
    )
