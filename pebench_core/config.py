"""Typed run configuration: profiles, validation with clear errors, and config hashing.

A run is described by one :class:`RunConfig`, built from a named profile (``tiny``,
``smoke``, ``paper``) or a YAML file, then adjusted with ``key=value`` overrides such as
``world.forget_share=0.4``. Every field is validated before any work starts, and every
error names the field and what is allowed.

Stages are cached under :func:`config_hash` of exactly the sub-configs they depend on,
so changing any input re-runs the stage and never reuses a stale artifact.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, TypeVar

from . import methods, probes
from .methods.registry import check_value
from .errors import TARGETS, ConfigError, Device, Dtype, Target
from .models.checkpoints import check_checkpoint_folder
from .ranges import AT_LEAST_1, NON_NEGATIVE, POSITIVE, SEED, SHARE, THREADS_ENV, WORKERS_ENV, Range, env_count
from .world.settings import WorldConfig, forget_count

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# The fixed-string fields: each Literal is the type, and the tuple next to it (its values,
# in order) is what validate() checks and names in its errors.
Scorer = Literal["keywords", "rouge_l", "embedding", "llm_judge"]
ModelKind = Literal["tiny", "local"]
Adapter = Literal["lora", "full"]  # how finetune/goal train a local checkpoint
Switch = Literal["auto", "on", "off"]

SCORERS: tuple[Scorer, ...] = typing.get_args(Scorer)
MODEL_KINDS: tuple[ModelKind, ...] = typing.get_args(ModelKind)
ADAPTERS: tuple[Adapter, ...] = typing.get_args(Adapter)
SWITCHES: tuple[Switch, ...] = typing.get_args(Switch)
# Methods are not a Literal: a reader may register one of their own (pebench_core.methods).


@dataclass(frozen=True)
class ModelConfig:
    """Which model to drive. ``tiny`` is built from configs; ``local`` loads ``path``."""

    kind: ModelKind = "tiny"
    path: str = ""  # local checkpoint folder when kind == "local"
    device: Device = "auto"
    dtype: Dtype = "auto"
    vocab_size: int = 1200
    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    patch_size: int = 16  # 16 image tokens at 64 px: what fits 2 CPU cores (see train.py)
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    # Tokens per training sequence, image tokens included. 0 = from the model: the tiny
    # model's TINY_MAX_LENGTH, a local checkpoint's own context window (its image tokens at
    # world.image_size plus the text must fit, checked before any training).
    max_length: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Knowledge injection (design: Injection): pre-training (base) and fine-tuning (finetune, goal)."""

    base_epochs: int = 20
    finetune_epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_share: float = 0.05
    # Vision pre-training of the tiny model (train.pretrain_vision): a random crowd rendered
    # into the event scenes, classified by trait, scene and objects. 0 epochs = skip.
    vision_images: int = 8000
    vision_epochs: int = 6
    vision_lr: float = 3e-3
    vision_batch_size: int = 64
    vision_exclude_forget_events: bool = True  # leave the event split's forget scenes out of every base
    freeze_vision: bool = True  # LLaVA stages train projector + language model only (as LLaVA-1.5)
    replay_share: float = 0.67  # share of the base's pre-training QA mixed into fine-tuning
    # Extra POPE questions per pre-training image in the LLaVA pre-training. Measured on tiny
    # (bench_injection, seed 0): 0 gives POPE 0.68, 2 gives 0.79 at the same injection time
    # once base_epochs goes 30 -> 20 and replay_share 1.0 -> 0.67.
    pope_extra: int = 2
    per_sequence_loss: bool = False  # average per sequence instead of per answer token
    micro_batches: int = 2  # a random batch is cut into this many length-sorted micro-batches; 0 = length-sorted batches
    # A local checkpoint (design: Models and families): its base is the checkpoint; finetune and goal train LoRA
    # adapters on the language model + projector ("lora", merged when loaded) or every weight
    # but the vision tower ("full"). The tiny model is always trained whole, from scratch.
    adapter: Adapter = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: Switch = "auto"  # auto = on for a local checkpoint on CUDA


def _default_methods() -> tuple[str, ...]:
    return methods.default_methods()


@dataclass(frozen=True)
class UnlearnConfig:
    """The unlearning stage (design: Unlearning methods): the same budget for every method."""

    methods: tuple[str, ...] = field(default_factory=lambda: _default_methods())  # the registry's built-ins
    targets: tuple[Target, ...] = ("person", "event", "both")
    steps: int = 40
    lr: float = 1e-3
    batch_size: int = 8  # forget items per step (and as many retain items)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_projector: bool = True  # also adapt the multimodal projector
    retain_weight: float = 1.0  # lambda in GD / KL / PO / DPO / NPO (every loss is given it)
    beta: float = 0.1  # DPO / NPO / SimNPO temperature (every loss is given it)
    eval_every: int = 10  # steps between trajectory evaluations of efficacy
    # The learning-rate grid, as multiples of `lr`, the same for every method: each rate runs
    # for `grid_steps` (0: the whole budget, and the chosen run is the final one) and the one
    # with the best validation score is kept (pebench_core.tuning). One factor: no tuning.
    lr_factors: tuple[float, ...] = (0.3, 1.0, 3.0)
    grid_steps: int = 0
    # A run whose loss turned NaN fails its stage (no result row); true keeps what it reached,
    # with the status in every row, for a reader who wants to see how far it got.
    keep_stopped: bool = False
    # A method's own settings, as set: unlearn.<method>.<field> (e.g. unlearn.simnpo.gamma=1)
    # lands here as {"simnpo": {"gamma": 1.0}}; methods.settings_of gives a run the defaults of
    # its settings dataclass with these on top, and only they are in the key of its runs.
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (design: Metrics)."""

    scorer: Scorer = "keywords"
    # Items per generation batch. Answers do not depend on it (tested); the tiny model's
    # decoding is per-token overhead, so 64 is 1.1x faster than 32 (1.4x without the merged
    # adapter of models.plain_linears). The paper profile sets 16 for a 7B's KV cache.
    batch_size: int = 64
    max_new_tokens: int = 40
    max_items: int = 80  # items per metric split (seeded sample); 0 = all
    # Items per concept held out of every metric: the learning-rate grid is scored on this many
    # forget images and as many retain images (at most a quarter of each pool); 0 = none.
    val_items: int = 16


def _default_probes() -> tuple[str, ...]:
    return probes.probe_names()


@dataclass(frozen=True)
class RobustConfig:
    """The robustness probes (design: Is it really forgotten?): is the knowledge gone, or only
    hidden from the training question? Each probe runs for every method × target and the two
    bounds (pebench_core.probes)."""

    probes: tuple[str, ...] = field(default_factory=lambda: _default_probes())  # the registry's probes
    items: int = 24  # forget (and retain) images per concept a generating probe asks about; 0 = all
    relearn_steps: tuple[int, ...] = (0, 5, 10, 20)  # points of the relearning curve, in steps
    relearn_share: float = 0.25  # share of the forget images relearning trains on (the rest measure it)
    relearn_lr: float = 1e-3  # relearning's rate, on a fresh LoRA of unlearn.lora_r
    perturbations: tuple[str, ...] = ("blur", "crop", "colour", "noise", "jpeg")
    strength: float = 0.5  # of every perturbation, 0 (none) to 1 (the strongest the probe allows)
    mink_share: float = 0.4  # Min-K%: the share of an answer's least likely tokens averaged
    probe_depth: float = 0.5  # the language-model layer the linear probe reads, as a share of the depth
    # Items per forward pass of every probe. Answers and scores do not depend on it (tested); 64
    # as eval.batch_size (the tiny model's decoding is per-token overhead).
    batch_size: int = 64


@dataclass(frozen=True)
class FindingsConfig:
    """What a forgetting verdict must rest on (design: The paper's numbers). The unit of a
    forgetting result is a person or an event, not an image: a verdict on two people is two
    observations, however many images show them. No stage reads these settings; validation
    refuses a forget split below them before any work starts."""

    min_people: int = 6  # forget people per concept, at least
    min_events: int = 8  # forget events per concept, at least
    # The paper's protocol as an ablation (stages.get_fixed_rate): these methods on these
    # targets at the one rate unlearn.lr for the whole budget, untuned. Table 1's five methods.
    paper_methods: tuple[str, ...] = ("po", "ga", "gd", "kl", "dpo")
    paper_targets: tuple[str, ...] = ("person", "event")


@dataclass(frozen=True)
class RunConfig:
    profile: str = "tiny"
    seed: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# The allowed values of every numeric field. validate() checks each int and float field of
# RunConfig against its row here (an int field must hold an int, a float field a finite
# number, then the range), so a field added above needs a row: validate() refuses a numeric
# field without one. Relations between fields (a multiple of, fewer than) are checked after.
RANGES: dict[str, Range] = {
    "seed": SEED,
    # world
    "world.n_people": Range(lo=2, hi=10_000),
    "world.n_events": Range(lo=2, hi=40, why="PEBench has 40 events"),
    "world.n_real_people": Range(lo=1, hi=60),
    "world.image_size": Range(lo=16, hi=1024, unit="pixels"),
    "world.train_renders": AT_LEAST_1,
    "world.heldout_renders": AT_LEAST_1,
    "world.pretrain_renders": AT_LEAST_1,
    "world.pretrain_eval_renders": AT_LEAST_1,
    "world.pope_questions": NON_NEGATIVE,  # and even: checked in validate()
    "world.forget_share": Range(lo=0, hi=1, lo_open=True, hi_open=True),
    "world.n_unseen_people": Range(lo=0, hi=1_000, why="0: no never-seen people, no membership inference of names"),
    "world.n_unseen_events": Range(lo=0, hi=4, why="the catalogue holds 4; 0: no membership inference of events"),
    # model (architecture sizes of the tiny model)
    "findings.min_people": Range(lo=1, why="forget people a verdict rests on"),
    "findings.min_events": Range(lo=1, why="forget events a verdict rests on"),
    "model.vocab_size": Range(lo=300),
    "model.vision_hidden": AT_LEAST_1,
    "model.vision_layers": AT_LEAST_1,
    "model.vision_heads": AT_LEAST_1,
    "model.patch_size": AT_LEAST_1,
    "model.text_hidden": AT_LEAST_1,
    "model.text_layers": AT_LEAST_1,
    "model.text_heads": AT_LEAST_1,
    "model.max_length": Range(lo=0, zero="from the model", unit="tokens"),
    # train
    "train.base_epochs": AT_LEAST_1,
    "train.finetune_epochs": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.batch_size": AT_LEAST_1,
    "train.weight_decay": NON_NEGATIVE,
    "train.warmup_share": SHARE,
    "train.vision_images": AT_LEAST_1,
    "train.vision_epochs": Range(lo=0, zero="skip vision pre-training"),
    "train.vision_lr": POSITIVE,
    "train.vision_batch_size": AT_LEAST_1,
    "train.replay_share": SHARE,
    "train.pope_extra": NON_NEGATIVE,
    "train.micro_batches": Range(lo=0, zero="length-sorted batches"),
    "train.lora_r": AT_LEAST_1,
    "train.lora_alpha": AT_LEAST_1,
    # unlearn
    "unlearn.steps": AT_LEAST_1,
    "unlearn.lr": POSITIVE,
    "unlearn.batch_size": AT_LEAST_1,
    "unlearn.lora_r": AT_LEAST_1,
    "unlearn.lora_alpha": AT_LEAST_1,
    "unlearn.retain_weight": NON_NEGATIVE,
    "unlearn.beta": POSITIVE,
    "unlearn.eval_every": AT_LEAST_1,
    "unlearn.lr_factors": Range(lo=0, lo_open=True, why="multiples of unlearn.lr"),
    "unlearn.grid_steps": Range(lo=0, zero="the whole step budget", unit="steps"),
    # eval
    "eval.batch_size": AT_LEAST_1,
    "robust.batch_size": AT_LEAST_1,
    "eval.max_new_tokens": AT_LEAST_1,
    "eval.max_items": Range(lo=0, zero="all"),
    "eval.val_items": Range(lo=0, zero="no validation subset: the learning rate is not tuned"),
    # robust
    "robust.items": Range(lo=0, zero="all"),
    "robust.relearn_steps": Range(lo=0, hi=10_000, unit="steps"),
    "robust.relearn_share": Range(lo=0, hi=1, lo_open=True, hi_open=True, why="some forget images train, the rest measure"),
    "robust.relearn_lr": POSITIVE,
    "robust.strength": Range(lo=0, hi=1, lo_open=True, why="0 would leave the images untouched; 1 is the strongest"),
    "robust.mink_share": Range(lo=0, hi=1, lo_open=True),
    "robust.probe_depth": SHARE,
}


# ---------------------------------------------------------------------------------------
# Profiles. `tiny` is the book's default (2 CPU cores); `smoke` is what the tests execute;
# `paper` matches PEBench's 200 x 40 and expects a real checkpoint on a GPU.
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "smoke": {
        "world": {
            "n_people": 10,
            "n_events": 10,
            "n_real_people": 3,
            "image_size": 32,
            "forget_share": 0.2,
            "n_unseen_events": 2,
        },
        "model": {
            "vocab_size": 700,
            "patch_size": 8,
            "vision_hidden": 32,
            "text_hidden": 48,
            "vision_layers": 1,
            "text_layers": 1,
            "vision_heads": 2,
            "text_heads": 2,
        },
        "train": {"base_epochs": 2, "finetune_epochs": 2, "vision_images": 256, "vision_epochs": 1},
        "unlearn": {"steps": 4, "eval_every": 2, "batch_size": 4, "lr_factors": (1.0, 3.0)},
        "eval": {"max_items": 12, "max_new_tokens": 24, "batch_size": 16, "val_items": 3},
        "robust": {"items": 6, "relearn_steps": (0, 2)},
        # A plumbing check of every stage and chapter on 2 people and 2 events: its verdicts
        # carry the floor they were held to, and no conclusion is drawn from them.
        "findings": {"min_people": 1, "min_events": 1},
    },
    "paper": {
        # 0.2 of 40 events forgets 8, the findings' floor (0.1 would forget 4); 40 of 200 people.
        "world": {"n_people": 200, "n_events": 40, "n_real_people": 20, "image_size": 512, "forget_share": 0.2},
        "model": {"kind": "local", "dtype": "bfloat16", "device": "cuda"},
        # No replay: a real checkpoint's knowledge survives a short LoRA fine-tune (the tiny
        # model's replay protects what it learned from scratch).
        "train": {"base_epochs": 1, "finetune_epochs": 3, "lr": 2e-4, "batch_size": 8, "replay_share": 0.0},
        "unlearn": {"steps": 200, "lr": 2e-5, "batch_size": 4, "lora_r": 16, "lora_alpha": 32},
        "eval": {"max_items": 0, "batch_size": 16, "max_new_tokens": 64},
        "robust": {"batch_size": 16},  # a 7B's KV cache: as the evaluation's
    },
}


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in fields(RunConfig) if dataclasses.is_dataclass(hints[f.name])}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or say why not."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list (or a comma-separated string), got {value!r}")
        if typing.get_args(typ)[:1] in ((float,), (int,)):  # a list of numbers, each read as one
            return tuple(_coerce(v, typing.get_args(typ)[0], where) for v in value)
        return tuple(str(v) for v in value)
    if origin is Literal:
        typ = str  # a fixed-strings field reads as a string; validate() checks it is one of them
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass  # "1e3" or "4.0": read as a number below, kept if it is a whole one
        f = _finite(value)
        if f is None or not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if typ is float:
        f = _finite(value)
        if f is None:
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return f
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, (list, tuple, dict, set)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _finite(value: Any) -> float | None:
    """``value`` as a finite float (a number or a numeric string), else None (true/false,
    inf and nan included: they are no setting's value)."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


_D = TypeVar("_D", bound="DataclassInstance")


def _apply(section_obj: _D, updates: Mapping[str, Any], section: str) -> _D:
    hints = typing.get_type_hints(type(section_obj))
    names = [f.name for f in fields(section_obj) if f.name != "settings"]
    changes: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {}
    for key, value in updates.items():
        if isinstance(section_obj, UnlearnConfig) and key not in names:
            own[str(key)] = _method_settings(str(key), value)
            continue
        if key not in names:
            raise ConfigError(f"unknown field {section}.{key!s}; allowed fields of '{section}': {', '.join(names)}")
        changes[key] = _coerce(value, hints[key], f"{section}.{key}")
    if own:
        given = {k: dict(v) for k, v in getattr(section_obj, "settings").items()}
        for key, values in own.items():
            given[key] = {**given.get(key, {}), **values}
        changes["settings"] = given
    return replace(section_obj, **changes)


def _method_settings(key: str, values: Any) -> dict[str, Any]:
    """``unlearn.<key>.*``: the settings of the method(s) configured under ``key``, each read
    as its field's type (checked against its range in :func:`validate`)."""
    known = methods.settings_keys()
    plain = [f.name for f in fields(UnlearnConfig) if f.name != "settings"]
    if key not in known:
        own = ", ".join(f"{k}.{f.name}" for k, cls in known.items() for f in fields(cls))
        raise ConfigError(
            f"unknown field unlearn.{key}; allowed fields of 'unlearn': {', '.join(plain)}; "
            f"and a method's own settings, unlearn.<method>.<setting>: {own}"
        )
    cls = known[key]
    if not isinstance(values, Mapping):
        allowed = ", ".join(f"unlearn.{key}.{f.name}" for f in fields(cls))
        raise ConfigError(f"unlearn.{key} is a method's settings, set one at a time: {allowed}; got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in names:
            raise ConfigError(f"unknown setting unlearn.{key}.{name!s}; the settings of {key!r}: {', '.join(names)}")
        out[str(name)] = _coerce(value, hints[name], f"unlearn.{key}.{name}")
    return out


def _merge(cfg: RunConfig, updates: Mapping[str, Any]) -> RunConfig:
    sections = _section_types()
    top: dict[str, Any] = {}
    for key, value in updates.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{key}' must be a mapping of fields, got {value!r}")
            top[key] = _apply(getattr(cfg, key), value, key)
        elif key == "seed":
            top[key] = _coerce(value, int, key)
        elif key == "profile":
            # The profile is the base a run starts from, not a field: setting it would only
            # relabel the run (its values, already merged, would stay).
            raise ConfigError(
                f"'profile' is not a field to set (got {value!r}): choose the profile with --profile NAME; "
                "a YAML file names its base profile in a top-level 'profile:' key"
            )
        else:
            allowed = ["seed", *sections]
            raise ConfigError(f"unknown configuration key '{key}'; allowed: {', '.join(allowed)}")
    return replace(cfg, **top)


def parse_overrides(pairs: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["world.forget_share=0.4", "seed=3"]`` → nested dict. Values stay strings until coerced."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like section.field=value (e.g. world.forget_share=0.4)")
        key, value = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) == 1:
            out[parts[0]] = value
        elif len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
        elif len(parts) == 3 and parts[0] == "unlearn":  # a method's own setting: unlearn.<method>.<field>
            out.setdefault("unlearn", {}).setdefault(parts[1], {})[parts[2]] = value
        else:
            raise ConfigError(
                f"override key {key!r} has too many dots; use section.field, or unlearn.<method>.<setting> for a method's own"
            )
    return out


def notebook_overrides(
    device: str = "auto",
    dtype: str = "auto",
    model_path: str = "",
    data_dir: str = "",
    overrides: str | list[str] | tuple[str, ...] | None = (),
) -> list[str]:
    """A chapter's parameters as ``key=value`` settings, the same strings ``pebench --set``
    takes: the device and dtype, a local checkpoint (``model_path``) instead of the tiny model,
    a real PEBench folder (``data_dir``) instead of the synthetic world, then the chapter's
    ``overrides`` (one setting or a list), which win. Empty strings leave the profile's choice.

    One route for parameters: ``pebench run --set K=V``, ``pebench book --set K=V`` and
    ``papermill … -y 'overrides: [K=V]'`` all end here, in :func:`load_config`.
    """
    out = [f"model.device={device}", f"model.dtype={dtype}"]
    if model_path:
        out += ["model.kind=local", f"model.path={model_path}"]
    if data_dir:
        out.append(f"world.data_dir={data_dir}")
    if overrides is not None and not isinstance(overrides, (str, list, tuple)):
        raise ConfigError(
            f"overrides must be a key=value string or a list of them, such as ['unlearn.steps=80'], got {overrides!r}"
        )
    extra = [overrides] if isinstance(overrides, str) else list(overrides or ())
    for item in extra:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(
                f"overrides must be key=value strings such as 'unlearn.steps=80' (what pebench --set takes), got {item!r}"
            )
    return out + extra


def load_config(
    profile: str | Path = "tiny",
    seed: int | None = None,
    overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None = None,
    weights: bool = True,
) -> RunConfig:
    """Build and validate a run configuration.

    ``profile`` is a profile name (``tiny``, ``smoke``, ``paper``) or the path of a YAML file
    (UTF-8) whose top level may name a base ``profile`` and a ``seed`` plus sections to change.
    ``overrides`` come next and win. The seed: ``seed`` when given (``pebench --seed``), else
    the overrides' or the YAML file's ``seed``, else 0. ``weights=False``: a local checkpoint
    folder need hold no weights (the memory plan reads its configuration only).
    """
    name = str(profile)
    from_file: tuple[Path, set[str]] | None = None  # the YAML file and the fields it set
    if name.endswith((".yml", ".yaml")) or Path(name).is_file():
        import yaml

        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"profile file {path} {'is not a file' if path.exists() else 'does not exist'}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"profile file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(f"profile file {path} cannot be read: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:  # one line: the problem and where it is
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise ConfigError(f"profile file {path} is not valid YAML: {problem}{where}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"profile file {path} must hold a mapping at the top level")
        base = str(data.pop("profile", "tiny"))
        if base not in PROFILES:
            raise ConfigError(f"profile file {path}: unknown base profile {base!r}; allowed: {', '.join(PROFILES)}")
        cfg = _merge(RunConfig(profile=base), PROFILES[base])
        try:
            cfg = _merge(cfg, data)
        except ConfigError as exc:  # name the file the bad value came from
            raise ConfigError(f"profile file {path}: {exc}") from None
        from_file = path, _dotted(data)
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)} or a .yaml file")
        cfg = _merge(RunConfig(profile=name), PROFILES[name])
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(list(overrides))
    if overrides:
        cfg = _merge(cfg, overrides)
    if seed is not None:
        cfg = replace(cfg, seed=_coerce(seed, int, "seed"))
    try:
        validate(cfg, weights=weights)
    except ConfigError as exc:
        if from_file is not None:  # a value the file set and nothing later replaced: name the file
            path, keys = from_file
            keys -= _dotted(overrides or {}) | ({"seed"} if seed is not None else set())
            if any(re.search(rf"(?<![\w.]){re.escape(k)}\b", str(exc)) for k in keys):
                raise ConfigError(f"profile file {path}: {exc}") from None
        raise
    return cfg


def _dotted(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The ``section.field`` names a nested settings mapping sets."""
    out: set[str] = set()
    for key, value in data.items():
        name = f"{prefix}{key}"
        out |= _dotted(value, f"{name}.") if isinstance(value, Mapping) else {name}
    return out


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_field(where: str, value: Any, typ: Any) -> None:
    """One field against its type, its choices (a Literal) or its row in :data:`RANGES`."""
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        _require(value in choices, f"{where} must be one of {', '.join(choices)}, got {value!r}")
    elif origin is tuple and typing.get_args(typ)[:1] in ((float,), (int,)):
        _require(isinstance(value, tuple), f"{where} must be a list of numbers, got {value!r}")
        for v in value:  # each number against the field's RANGES row
            _check_field(where, v, typing.get_args(typ)[0])
        _require(len(set(value)) == len(value), f"{where} lists a number more than once, got {list(value)}")
    elif origin is tuple:
        _require(
            isinstance(value, tuple) and all(isinstance(v, str) for v in value),
            f"{where} must be a list of names, got {value!r}",
        )
    elif typ is bool:
        _require(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
    elif typ is str:
        _require(isinstance(value, str), f"{where} must be a string, got {value!r}")
    elif typ in (int, float):
        rule = RANGES.get(where)
        if rule is None:  # a new numeric field needs its row: no number goes unchecked
            raise ConfigError(f"{where} has no rule in pebench_core.config.RANGES; add one")
        if typ is int:
            _require(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        else:
            _require(
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                f"{where} must be a finite number, got {value!r}",
            )
        _require(rule.allows(value), f"{where} must be {rule.describe()}, got {value}")


def _duplicates(names: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def validate(cfg: RunConfig, weights: bool = True) -> RunConfig:
    """Check every field; raise :class:`ConfigError` naming the first bad one.

    Each field on its own first (its type, then its choices or its :data:`RANGES` row), section
    by section; then what relates fields, the data folder, which must exist, a local
    checkpoint's folder (with its weights unless ``weights`` is false) and the environment's
    settings (``PEBENCH_WORKERS``, ``OMP_NUM_THREADS``): all before any work starts.
    """
    top = typing.get_type_hints(RunConfig)
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(top[f.name]):
            hints = typing.get_type_hints(type(value))
            for g in fields(value):
                if g.name != "settings":  # a method's own settings: checked against its dataclass below
                    _check_field(f"{f.name}.{g.name}", getattr(value, g.name), hints[g.name])
        else:
            _check_field(f.name, value, top[f.name])
    w, m, u = cfg.world, cfg.model, cfg.unlearn
    _require(
        w.pope_questions % 2 == 0,
        f"world.pope_questions must be a non-negative even number (half yes, half no), got {w.pope_questions}",
    )
    n_forget_people = forget_count(w.n_people, w.forget_share)
    n_forget_events = forget_count(w.n_events, w.forget_share)
    _require(
        n_forget_people < w.n_people and n_forget_events < w.n_events,
        f"world.forget_share={w.forget_share} would forget every person or every event; lower it",
    )
    if not w.data_dir:  # a data folder's counts are known once it is read (data.load_pebench_folder)
        check_forget_floor(w.n_people, w.n_events, w.forget_share, cfg.findings)
    if w.data_dir:
        folder = Path(w.data_dir).expanduser()
        _require(
            folder.is_dir(),
            f"world.data_dir must be a folder holding a real PEBench release, but {folder} "
            f"{'is not a folder' if folder.exists() else 'does not exist'} (leave it empty for the synthetic world)",
        )
    for name in (WORKERS_ENV, THREADS_ENV):  # the environment's settings, before anything is laid out
        env_count(name)
    if m.kind == "local":  # the folder, before anything is built (its weights are read by the model stage)
        _require(bool(m.path), "model.path must name a local checkpoint folder when model.kind is 'local'")
        check_checkpoint_folder(m.path, weights=weights)
    if m.kind == "tiny":
        _require(
            w.image_size % m.patch_size == 0,
            f"world.image_size ({w.image_size}) must be a multiple of model.patch_size ({m.patch_size})",
        )
        for hid, heads, name in ((m.vision_hidden, m.vision_heads, "vision"), (m.text_hidden, m.text_heads, "text")):
            _require(
                hid % heads == 0,
                f"model.{name}_hidden ({hid}) must be a positive multiple of model.{name}_heads ({heads})",
            )
    for name, given, allowed in (("methods", u.methods, methods.names()), ("targets", u.targets, TARGETS)):
        unknown = [x for x in given if x not in allowed]
        _require(
            not unknown and len(given) > 0,
            f"unlearn.{name} has unknown {name[:-1]}(s) {unknown or '(empty)'}; allowed: {', '.join(allowed)}",
        )
        twice = _duplicates(given)
        _require(
            not twice,
            f"unlearn.{name} names {', '.join(twice)} more than once; give each {name[:-1]} once, got {','.join(given)}",
        )
    check_method_settings(u)
    fc = cfg.findings
    for name, given, allowed in (
        ("paper_methods", fc.paper_methods, methods.names()),
        ("paper_targets", fc.paper_targets, TARGETS),
    ):
        unknown = [x for x in given if x not in allowed]
        _require(not unknown, f"findings.{name} has unknown entries {unknown}; allowed: {', '.join(allowed)} (empty: none)")
    r = cfg.robust
    for name, given, allowed in (
        ("probes", r.probes, probes.probe_names()),
        ("perturbations", r.perturbations, tuple(probes.PERTURBATIONS)),
    ):
        unknown = [x for x in given if x not in allowed]
        _require(not unknown, f"robust.{name} has unknown {name[:-1]}(s) {unknown}; allowed: {', '.join(allowed)}")
        twice = _duplicates(given)
        _require(not twice, f"robust.{name} names {', '.join(twice)} more than once; give each once")
    _require(
        len(r.relearn_steps) >= 1 and list(r.relearn_steps) == sorted(set(r.relearn_steps)),
        f"robust.relearn_steps must list the curve's step counts in increasing order, each once (e.g. 0,5,10,20), "
        f"got {list(r.relearn_steps)}",
    )
    _require(
        "perturb" not in r.probes or len(r.perturbations) >= 1,
        "robust.perturbations is empty while robust.probes asks for perturb; list at least one of "
        f"{', '.join(probes.PERTURBATIONS)} or drop perturb",
    )
    _require(
        len(u.lr_factors) >= 1,
        "unlearn.lr_factors must list at least one multiple of unlearn.lr (1.0 alone: no tuning)",
    )
    _require(
        len(u.lr_factors) == 1 or cfg.eval.val_items > 0,
        f"unlearn.lr_factors lists {len(u.lr_factors)} rates but eval.val_items is 0: the grid is scored on "
        "validation items; set eval.val_items (e.g. 16) or unlearn.lr_factors=1",
    )
    return cfg


def check_method_settings(u: UnlearnConfig) -> None:
    """Every method's own settings as set (``unlearn.<method>.<field>``) against its settings
    dataclass: a known method and field, a value of the field's type within its range. A
    method whose settings name is also a field of ``unlearn`` could not be set: refused."""
    known = methods.settings_keys()
    plain = {f.name for f in fields(UnlearnConfig)}
    clash = sorted(set(known) & plain)
    _require(not clash, f"method settings named {', '.join(clash)} would shadow unlearn.{clash[0] if clash else ''}; "
             "give the method another settings_name")  # fmt: skip
    _require(isinstance(u.settings, Mapping), f"unlearn.settings must be a mapping, got {u.settings!r}")
    for key, given in u.settings.items():
        _require(key in known, f"unknown field unlearn.{key}; methods with settings: {', '.join(known) or 'none'}")
        cls = known[key]
        hints = typing.get_type_hints(cls)
        meta = {f.name: f for f in fields(cls)}
        for name, value in given.items():
            _require(name in meta, f"unknown setting unlearn.{key}.{name}; the settings of {key!r}: {', '.join(meta)}")
            check_value(f"unlearn.{key}.{name}", value, hints[name], meta[name].metadata.get("range"))


def check_forget_floor(n_people: int, n_events: int, share: float, floor: FindingsConfig, where: str = "") -> None:
    """Refuse a forget split with fewer forget people or events than a verdict needs
    (``findings.min_people``, ``findings.min_events``), or with no retain side, naming the
    parameter and the smallest share that would do."""

    def smallest(n: int, k: int) -> str:
        for i in range(1, 100):  # the smallest share in steps of 0.01 that selects k of n
            if forget_count(n, i / 100) >= k:
                return f"{i / 100:g}"
        return "none below 1"

    of = f" of {where}" if where else ""
    for what, n, k, name in (
        ("people", n_people, floor.min_people, "min_people"),
        ("events", n_events, floor.min_events, "min_events"),
    ):
        got = forget_count(n, share)
        _require(
            k < n,
            f"findings.{name}={k} needs at least {k + 1} {what}{of} (one kept for the retain side), "
            f"but there are {n}; raise world.n_{what} or lower findings.{name}",
        )
        _require(
            got >= k,
            f"world.forget_share={share} forgets {got} of the {n} {what}{of}, fewer than findings.{name}={k} "
            f"(every verdict rests on at least {k} forget {what}); raise world.forget_share to at least "
            f"{smallest(n, k)}, raise world.n_{what}, or lower findings.{name}",
        )


_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def safe_name(s: str) -> str:
    """A string usable as a file or folder name (method names contain '+')."""
    return _SAFE.sub("_", s)
