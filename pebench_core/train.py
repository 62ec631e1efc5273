"""Knowledge injection (design: Injection): pre-training (base), fine-tuning (finetune), and goal models.

The recipe, as :func:`inject` runs it for each stage:

* **base** = *vision pre-training* + *LLaVA pre-training*. A real LLaVA starts from a CLIP
  encoder that already sees hair, clothes, scenes and objects; a randomly initialised tiny
  ViT does not, and the language-modelling loss alone is far too weak a signal to teach it
  (the model collapses to one answer). So :func:`pretrain_vision` first trains the vision
  tower, with small throw-away heads, to recognise *general visual concepts* on a generic
  crowd: random people (random trait combinations, never the fictitious PEBench people)
  rendered into the event scenes — every person trait (skin, face, hair style and colour,
  glasses, beard, hat, shirt colour and pattern, trousers), the scene, and which objects are
  present (multi-label). A new identity is then a new combination of concepts the encoder
  already sees. The LLaVA stage trains projector + language model on the pre-training
  world's QA (real-world people, every event, POPE) with the vision tower **frozen**, as
  LLaVA-1.5 freezes CLIP; frozen features are computed once per image, so a step runs only
  projector + language model.
* **finetune** = the base model trained on every fictitious training render (person + event
  QA), with **replay**: a share of the base's own pre-training QA is mixed in. A tiny model
  has no massive prior knowledge to protect what it knew, and without replay it forgets the
  real-world people and POPE within a few epochs (catastrophic forgetting) — a deviation from
  the paper, where LLaVA's knowledge survives a short fine-tune.
* **goal(target)** = the same fine-tune without the forget set; for events the forget events
  are also absent from the base's LLaVA pre-training and from the vision pre-training's
  scenes (and so from the replay).

The vision pre-training leaves out the forget events of the dataset's ``event`` split for
*every* base (``TrainConfig.vision_exclude_forget_events``): the encoder is then the same for
``base`` and for the base of ``goal(event)``, and can be computed once and shared; the forget
scenes stay recognisable from their objects, palette and layout, which the encoder learns
from the other scenes.

Every loop is seeded (same seed, same weights) and shows a tqdm bar. The loss is the mean
negative log-likelihood of the answer tokens (AdamW, linear warm-up, cosine decay);
batches group items of similar length so little compute goes to padding.

This module holds the stages (which examples each one trains on, and :func:`inject`); the
rooms it stands on are :mod:`~pebench_core.encoding` (QA sets encoded once),
:mod:`~pebench_core.trainer` (the training loop), :mod:`~pebench_core.vision_pretraining`
and :mod:`~pebench_core.forward` (the model protocol). Their public names are re-exported
here, so ``from pebench_core.train import train_model`` keeps working.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import distributed as D
from .encoding import EncodedQA, collate, encode_qa, image_loader, length_batches
from .errors import ConfigError
from .forward import (
    answer_logits,
    answer_positions,
    image_features,
    load_vision_state,
    merged_embeddings,
    packed_parts,
    set_vision_trainable,
    vision_state,
    vision_trainable,
)
from .models import ModelBundle, add_lora, context_length
from .trainer import checkpointing_on, gradient_checkpointing, mixed_batches, train_model
from .vision_pretraining import CrowdSet, pretrain_vision, render_crowd

__all__ = [
    # the stages
    "pope_examples",
    "base_examples",
    "replay_examples",
    "stage_examples",
    "vision_excluded_events",
    "base_vision",
    "inject",
    # re-exported from the rooms below
    "EncodedQA",
    "encode_qa",
    "collate",
    "length_batches",
    "image_loader",
    "mixed_batches",
    "train_model",
    "checkpointing_on",
    "gradient_checkpointing",
    "CrowdSet",
    "render_crowd",
    "pretrain_vision",
    "set_vision_trainable",
    "vision_trainable",
    "vision_state",
    "load_vision_state",
    "image_features",
    "answer_logits",
    "answer_positions",
    "merged_embeddings",
]


def pope_examples(dataset, items: Sequence, per_image: int, seed: int) -> list:
    """Extra POPE yes/no questions on ``items`` (pre-training images), half yes, half no.

    The world's ``pope.jsonl`` asks ``world.pope_questions`` questions per image; a tiny model
    needs more of them to learn to bind an object word to what the encoder sees. They follow
    the world's rule: "yes" on drawn objects, "no" on objects neither drawn nor resembling a
    drawn object or the scene's layout (``world.LOOKALIKES``, ``LAYOUT_LOOKALIKES``), and
    never repeat a question the world already asks about that image. Items without object
    annotations (the real release) give none.
    """
    from .data import QA
    from .world import LAYOUT_LOOKALIKES, LOOKALIKES, OBJECTS, POPE_ANSWERS, POPE_TEMPLATE

    if per_image <= 0:
        return []
    asked: dict[str, set] = {}
    for row in dataset.pope:
        asked.setdefault(row["image"], set()).add(row["object"])
    rng = random.Random(f"pebench-pope-extra:{seed}")
    out = []
    for it in items:
        if not it.objects:
            continue
        present = [o for o in it.objects if o not in asked.get(it.id, ())]
        layout = dataset.event(it.event).layout
        unsafe = set(it.objects) | set(LAYOUT_LOOKALIKES.get(layout, ()))
        unsafe.update(o for p in it.objects for o in LOOKALIKES.get(p, ()))
        absent = [o for o in OBJECTS if o not in unsafe and o not in asked.get(it.id, ())]
        yes = rng.sample(present, min(len(present), (per_image + 1) // 2))
        no = rng.sample(absent, min(len(absent), per_image - len(yes)))
        for obj, ans in [(o, "yes") for o in yes] + [(o, "no") for o in no]:
            out.append(QA(it.id, it.path, POPE_TEMPLATE.format(obj=obj), POPE_ANSWERS[ans], "pope", it.person, it.event, obj))
    return out


def base_examples(dataset, target: str | None, cfg, seed: int) -> list:
    """The QA of the LLaVA pre-training: ``training_examples(dataset, "base", target)`` plus
    ``cfg.pope_extra`` extra POPE questions per pre-training image (:func:`pope_examples`)."""
    from .data import training_examples

    t = target if target in ("event", "both") else None
    ex = training_examples(dataset, "base", t)
    extra = int(getattr(cfg, "pope_extra", 0) or 0)
    if extra > 0:
        keep = {q.item_id for q in ex}
        items = [i for i in dataset.items_where(role="pretrain") if i.id in keep]
        ex = ex + pope_examples(dataset, items, extra, seed)
    return ex


def replay_examples(dataset, target: str | None, share: float, seed: int, cfg=None) -> list:
    """The base's own pre-training QA to mix into fine-tuning: a seeded ``share`` of
    :func:`base_examples` (for goal(event/both) it holds no forget event). ``share`` 0 = none,
    1 = all of it."""
    if share <= 0:
        return []
    base = base_examples(dataset, target, cfg, seed)
    if share >= 1 or not base:  # a real folder read for a checkpoint has no pre-training world
        return list(base)
    k = min(len(base), max(1, int(round(len(base) * share))))
    idx = sorted(random.Random(f"pebench-replay:{seed}").sample(range(len(base)), k))
    return [base[i] for i in idx]


def stage_examples(dataset, stage: str, target: str | None, cfg, seed: int) -> tuple[list, list]:
    """``(examples, replay)``: the QA that train ``stage`` (design: Injection) and the replayed
    pre-training QA mixed in (empty for base)."""
    from .data import training_examples

    if stage == "base":
        return base_examples(dataset, target, cfg, seed), []
    if stage == "finetune":
        ex = training_examples(dataset, "finetune")
        return ex, replay_examples(dataset, None, cfg.replay_share, seed, cfg)
    if stage == "goal":
        ex = training_examples(dataset, "goal", target)
        return ex, replay_examples(dataset, target, cfg.replay_share, seed, cfg)
    from .errors import ConfigError

    raise ConfigError(f"unknown stage {stage!r}; allowed: base, finetune, goal")


def _configs(cfg):
    """``(train_cfg, max_length, seed_or_None)`` from a RunConfig or a TrainConfig."""
    if hasattr(cfg, "train") and hasattr(cfg, "model"):
        return cfg.train, cfg.model.max_length, cfg.seed
    return cfg, None, None


def vision_excluded_events(dataset, tcfg, target: str | None) -> list[str]:
    """The event scenes the vision pre-training of ``target``'s base leaves out: the event
    split's forget events for every base (``train.vision_exclude_forget_events``, so both
    bases share one encoder), else only for the base of the event and both goals."""
    if tcfg.vision_exclude_forget_events or target in ("event", "both"):
        return list(dataset.splits.get("event", {}).get("forget_events", []))
    return []


def base_vision(
    bundle: ModelBundle,
    dataset,
    tcfg,
    seed: int,
    target: str | None = None,
    progress: bool = True,
    cache: str | Path | None = None,
) -> list[dict] | None:
    """The vision pre-training that ``target``'s base starts with (in place on ``bundle``,
    from ``cache`` when it holds it), or ``None`` when that base has none (``vision_epochs``
    0, or not the tiny model's packed encoder). The first step of :func:`inject` for
    ``base``; a run that builds both bases in parallel processes calls it first, once, so
    that they load the encoder they share instead of both training it."""
    if tcfg.vision_epochs <= 0 or packed_parts(bundle.model) is None:
        return None
    exclude = vision_excluded_events(dataset, tcfg, target)
    return pretrain_vision(bundle, dataset, tcfg, seed, exclude_events=exclude, progress=progress, cache=cache)


def inject(
    bundle: ModelBundle,
    dataset,
    stage: str,
    target: str | None,
    cfg,
    seed: int | None = None,
    progress: bool = True,
    load_image: Callable | None = None,
    vision_cache: str | Path | None = None,
) -> dict:
    """Run one knowledge-injection stage on ``bundle`` in place; return what it did.

    * ``base`` (``bundle`` = the freshly built model): vision pre-training on a generic crowd
      (:func:`pretrain_vision`; skipped with ``train.vision_epochs = 0`` or for a model whose
      encoder is already trained, ``meta["kind"] != "tiny"``; stored in and reused from
      ``vision_cache`` when given), then LLaVA pre-training on the
      pre-training world; ``target`` event/both leaves the forget events out.
    * ``finetune`` / ``goal`` (``bundle`` = the base model): every fictitious training render
      (goal: minus the forget set of ``target``) plus ``train.replay_share`` of the base's own
      pre-training QA.

    ``cfg`` is a :class:`~pebench_core.config.RunConfig` (its ``train`` section, model
    ``max_length`` and ``seed`` are used) or a :class:`~pebench_core.config.TrainConfig`.
    The vision tower is frozen in the LLaVA stages when ``train.freeze_vision`` is set.
    Returns ``{"examples", "replay", "epochs", "seconds", "history", ...}``; ``history`` rows
    carry a ``phase`` (``vision`` or ``llava``).
    """
    tcfg, max_length, cfg_seed = _configs(cfg)
    seed = int(cfg_seed if seed is None else seed)
    if stage not in ("base", "finetune", "goal"):
        raise ConfigError(f"unknown stage {stage!r}; allowed: base, finetune, goal")
    tiny = bundle.meta.get("kind") == "tiny"
    if stage == "base" and not tiny:
        raise ConfigError("a local checkpoint is its own base model: nothing to pre-train (stage 'base')")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"stage": stage, "target": target}
    history: list[dict] = []
    vh = base_vision(bundle, dataset, tcfg, seed, target, progress, vision_cache) if stage == "base" else None
    if vh:
        exclude = vision_excluded_events(dataset, tcfg, target)
        last = vh[-1]
        info["vision"] = {
            "seconds": last.get("seconds"),
            "seconds_render": last.get("seconds_render"),
            "images": tcfg.vision_images,
            "epochs": tcfg.vision_epochs,
            "steps": len(vh),
            "excluded_events": exclude,
            "cached": bool(last.get("cached")),
            "heldout_accuracy": last.get("heldout_accuracy"),
        }
        history += [{"phase": "vision", "step": h["step"], "epoch": h["epoch"], "loss": h["loss"], "lr": h["lr"]} for h in vh]
    examples, replay = stage_examples(dataset, stage, target, tcfg, seed)
    load = load_image or image_loader(dataset)
    t1 = time.perf_counter()
    enc = encode_qa(bundle, examples + replay, load, max_length=context_length(bundle, max_length or 0))
    info["seconds_encode"] = round(time.perf_counter() - t1, 3)
    epochs = tcfg.base_epochs if stage == "base" else tcfg.finetune_epochs
    if not tiny and tcfg.adapter == "lora":
        # The checkpoint stays as it is; a LoRA adapter on the language model and the projector
        # learns the fictitious world (the caller saves the adapter, not 14 GB of weights).
        bundle.model = add_lora(bundle, r=tcfg.lora_r, alpha=tcfg.lora_alpha, projector=True, seed=seed)
        info["adapter"] = {"kind": "lora", "r": tcfg.lora_r, "alpha": tcfg.lora_alpha}
    was_trainable = vision_trainable(bundle)
    if tcfg.freeze_vision or not tiny:  # a pretrained encoder stays frozen, as in LLaVA-1.5
        set_vision_trainable(bundle, False)
    info["trainable_parameters"] = sum(p.numel() for p in bundle.model.parameters() if p.requires_grad)
    if not tiny and tcfg.adapter == "full" and D.world_size() > 1:
        D.shard_model(bundle.model, bundle.family)  # weights, gradients and AdamW state: an N-th each
        info["fsdp"] = D.world_size()
    try:
        with gradient_checkpointing(bundle, checkpointing_on(tcfg, not tiny, bundle.device.type)):
            h = train_model(
                bundle,
                enc,
                epochs=epochs,
                lr=tcfg.lr,
                batch_size=tcfg.batch_size,
                seed=seed + {"base": 0, "finetune": 1, "goal": 2}[stage],
                weight_decay=tcfg.weight_decay,
                warmup_share=tcfg.warmup_share,
                desc=stage if target is None else f"{stage}({target})",
                progress=progress,
                per_sequence=tcfg.per_sequence_loss,
                micro_batches=tcfg.micro_batches,
            )
    finally:
        set_vision_trainable(bundle, was_trainable)
    info["seconds_llava"] = h[-1].get("seconds")
    history += [{"phase": "llava", "step": r["step"], "epoch": r["epoch"], "loss": r["loss"], "lr": r["lr"]} for r in h]
    info.update(
        {
            "examples": len(examples),
            "replay": len(replay),
            "epochs": epochs,
            "steps": len(h),
            "final_loss": round(float(np.mean([r["loss"] for r in h[-10:]])), 5),
            "seconds": round(time.perf_counter() - t0, 3),
            "history": history,
        }
    )
    return info
