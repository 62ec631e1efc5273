"""The model families the adapter drives, in one table (design: Models and families).

A *family* is one Hugging Face image-text-to-text architecture. What the rest of the core
needs to know about it is written here once, as data, and nowhere else:

* where its parts live — the language model (the decoder that holds the layers), the vision
  tower and the multimodal projector — as dotted module paths under the
  ``*ForConditionalGeneration`` model (LoRA targets, freezing the tower and the parameter
  table of :func:`pebench_core.models.describe` all read them);
* whether the *packed fast path* (frozen encoder output computed once, several answers behind
  one prompt, the output head on answer positions only) is exact for it. Only LLaVA-1.5 is:
  a test proves it equal to the model's own forward pass. Every other family runs the model's
  own forward on a padded batch (with every input its processor returns);
* which processor outputs are concatenated over the images of a batch rather than stacked by
  item (Qwen2-VL's flattened patches), so that a batch can be cut into items and put together
  again.

Adding a family is one :class:`Family` row plus a tiny checkpoint in
``tests/model_families.py`` that drives it through the pipeline; a checkpoint of an
architecture that is not in :data:`FAMILIES` is refused with one message naming it and the
supported ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError

__all__ = ["Family", "FAMILIES", "family_of", "family_for_type", "supported_families", "unwrap"]


@dataclass(frozen=True)
class Family:
    """One architecture: its model types, where its parts are, and which path drives it."""

    name: str
    title: str  # how the book names it
    model_types: tuple[str, ...]  # config.model_type values
    language_model: str  # dotted path of the decoder (embeddings + layers + final norm)
    vision_tower: tuple[str, ...]
    projector: tuple[str, ...]  # may sit inside the vision tower (Qwen2-VL's merger)
    packed: bool = False  # the packed fast path is exact for this family (tested)
    # Processor outputs concatenated over images, with the key whose rows give each image's
    # share: rows of ``pixel_values`` per image = prod(image_grid_thw[i]).
    flat_vision: tuple[tuple[str, str], ...] = ()
    # (image token, video token) of a processor that transformers 5 builds only with
    # torchvision (for its video processor): without it, the processor is loaded image-only
    # (pebench_core.models.load_processor).
    image_only_processor: tuple[str, str] | None = None

    def module(self, model: torch.nn.Module, path: str) -> torch.nn.Module:
        m: Any = unwrap(model)
        for part in path.split("."):
            m = getattr(m, part, None)
            if m is None:
                raise ConfigError(
                    f"a {self.title} model ({type(unwrap(model)).__name__}) has no module {path!r}; "
                    "the family table in pebench_core/families.py does not match this checkpoint"
                )
        return m

    def language_model_of(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.module(model, self.language_model)

    def role_of(self, name: str) -> str:
        """``language model``, ``vision tower`` or ``projector`` for a parameter or module name
        of the unwrapped model (the longest matching path wins: Qwen2-VL's merger is the
        projector although it sits inside the vision tower)."""
        best, role = "", "language model"
        for r, paths in (
            ("vision tower", self.vision_tower),
            ("projector", self.projector),
            ("language model", (self.language_model,)),
        ):
            for p in paths:
                if (name == p or name.startswith(p + ".")) and len(p) > len(best):
                    best, role = p, r
        return role

    def vision_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The vision tower's own parameters (the projector excluded where it sits inside)."""
        return [p for n, p in unwrap(model).named_parameters() if self.role_of(n) == "vision tower"]

    def packed_parts(self, model: torch.nn.Module):
        """``(model, inner)`` for the packed fast path (``inner`` = the LlavaModel with
        ``vision_tower``, ``multi_modal_projector``, ``language_model``), or ``None``."""
        if not self.packed:
            return None
        base = unwrap(model)
        return base, base.model


FAMILIES: tuple[Family, ...] = (
    Family(
        "llava",
        "LLaVA-1.5",
        ("llava",),
        "model.language_model",
        ("model.vision_tower",),
        ("model.multi_modal_projector",),
        packed=True,
    ),
    Family(
        "llava_next",
        "LLaVA-NeXT",
        ("llava_next",),
        "model.language_model",
        ("model.vision_tower",),
        ("model.multi_modal_projector", "model.image_newline"),
    ),
    Family(
        "qwen2_vl",
        "Qwen2-VL",
        ("qwen2_vl",),
        "model.language_model",
        ("model.visual",),
        ("model.visual.merger",),
        flat_vision=(("pixel_values", "image_grid_thw"),),
        image_only_processor=("<|image_pad|>", "<|video_pad|>"),
    ),
    Family(
        "qwen2_5_vl",
        "Qwen2.5-VL",
        ("qwen2_5_vl",),
        "model.language_model",
        ("model.visual",),
        ("model.visual.merger",),
        flat_vision=(("pixel_values", "image_grid_thw"),),
        image_only_processor=("<|image_pad|>", "<|video_pad|>"),
    ),
    Family("idefics3", "Idefics3 / SmolVLM", ("idefics3",), "model.text_model", ("model.vision_model",), ("model.connector",)),
    Family("gemma3", "Gemma 3", ("gemma3",), "model.language_model", ("model.vision_tower",), ("model.multi_modal_projector",)),
)

_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def supported_families() -> str:
    """``LLaVA-1.5 (llava), …``: the list every refusal prints."""
    return ", ".join(f"{f.title} ({'/'.join(f.model_types)})" for f in FAMILIES)


def family_for_type(model_type: str | None, architectures: Any = None, where: str = "the checkpoint") -> Family:
    """The family of a ``config.model_type``; a :class:`ConfigError` naming the architecture
    and the supported families otherwise."""
    fam = _BY_TYPE.get(str(model_type))
    if fam is None:
        arch = ", ".join(architectures or []) or "unknown architecture"
        raise ConfigError(
            f"{where} is a '{model_type}' model ({arch}), which the adapter cannot drive; "
            f"supported families: {supported_families()}"
        )
    return fam


def family_of(model: torch.nn.Module) -> Family:
    cfg = unwrap(model).config
    return family_for_type(
        getattr(cfg, "model_type", None), getattr(cfg, "architectures", None), f"the model {type(unwrap(model)).__name__}"
    )


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model underneath a peft wrapper (the model itself otherwise)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return model
    return model.get_base_model() if isinstance(model, PeftModel) else model
