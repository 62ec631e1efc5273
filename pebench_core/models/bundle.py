"""The bundle: a model with its processor and tokenizer, the device and dtype it runs in.

:class:`ModelBundle` is what every other room of :mod:`pebench_core.models` takes and
returns. :func:`resolve_device_dtype` picks where a model runs (CUDA + bfloat16 when there
is CUDA, else CPU + float32); :func:`quiet_transformers` silences transformers' progress
bars and deprecation chatter around a load, a save or a peft call.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .. import distributed as D
from ..errors import DEVICES, DTYPES, ConfigError
from ..families import Family, family_of, unwrap

__all__ = ["ModelBundle", "quiet_transformers", "resolve_device_dtype", "model_device_dtype"]


# ---------------------------------------------------------------------------------------
# The bundle


@dataclass
class ModelBundle:
    """A model with everything needed to feed it.

    ``model`` may be the plain HF model or a peft ``PeftModel`` wrapping it (see
    :meth:`with_model`). ``meta`` holds what :func:`~pebench_core.models.tiny.build_tiny` was built from (empty for a
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
        for i in extra if isinstance(extra, (list, tuple)) else [extra]:
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

    @property
    def prompt_cache(self) -> dict:
        """The rendered generation prompts by question (:func:`~pebench_core.models.prompts.prompt_and_answer_text`
        fills it), shared with every :meth:`with_model` copy: the same processor, the same prompts."""
        return self._prompt_cache


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
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


def resolve_device_dtype(
    device: str | torch.device = "auto", dtype: str | torch.dtype = "auto"
) -> tuple[torch.device, torch.dtype]:
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
            raise ConfigError(
                "model.device is 'cuda' but CUDA is not available on this machine; use model.device=auto or model.device=cpu"
            )
        dev = torch.device(device) if not isinstance(device, torch.device) else device
    elif dev_name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(
                "model.device is 'mps' but MPS is not available on this machine; use model.device=auto or model.device=cpu"
            )
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


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the model's first parameter: where its inputs go."""
    p = next(model.parameters())
    return p.device, p.dtype
