"""Typed run configuration: profiles, validation with clear errors, and config hashing.

A run is described by one :class:`RunConfig`, built from a named profile (``tiny``,
``smoke``, ``paper``) or a YAML file, then adjusted with ``key=value`` overrides such as
``world.forget_share=0.2``. Every field is validated before any work starts, and every
error names the field and what is allowed.

Stages are cached under :func:`config_hash` of exactly the sub-configs they depend on,
so changing any input re-runs the stage and never reuses a stale artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# The fixed-string fields: each Literal is the type, and the tuple next to it (its values,
# in order) is what validate() checks and names in its errors.
Target = Literal["person", "event", "both"]
Scorer = Literal["keywords", "rouge_l", "embedding", "llm_judge"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
ModelKind = Literal["tiny", "local"]
Adapter = Literal["lora", "full"]  # how finetune/goal train a local checkpoint
Switch = Literal["auto", "on", "off"]

TARGETS: tuple[Target, ...] = typing.get_args(Target)
SCORERS: tuple[Scorer, ...] = typing.get_args(Scorer)
DEVICES: tuple[Device, ...] = typing.get_args(Device)
DTYPES: tuple[Dtype, ...] = typing.get_args(Dtype)
MODEL_KINDS: tuple[ModelKind, ...] = typing.get_args(ModelKind)
ADAPTERS: tuple[Adapter, ...] = typing.get_args(Adapter)
SWITCHES: tuple[Switch, ...] = typing.get_args(Switch)
# Methods are not a Literal: a reader may register a loss of their own (losses.register).
METHODS: tuple[str, ...] = ("ga", "gd", "kl", "po", "dpo", "npo", "gd+bgd", "kl+bgd")
TINY_MAX_LENGTH = 160  # the tiny model's context: 16 image tokens + the longest QA, with room


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the field and the allowed values."""


@dataclass(frozen=True)
class WorldConfig:
    """The synthetic PEBench world (design: The world)."""

    n_people: int = 20  # fictitious people (PEBench: 200)
    n_events: int = 40  # event scenes, taken in catalogue order (PEBench: 40)
    n_real_people: int = 6  # "real-world" people the base model knows before PEBench
    image_size: int = 64  # square renders, pixels
    train_renders: int = 1  # training renders per (person, event) pair
    heldout_renders: int = 1  # held-out renders per pair, for generality (never trained on)
    pretrain_renders: int = 1  # pre-training renders per (real person, event) pair
    pretrain_eval_renders: int = 1  # held-out pre-training renders, for the "real" metrics
    pope_questions: int = 2  # yes/no object questions per pre-training render (half yes)
    forget_share: float = 0.1  # share of people / of events in the forget set
    data_dir: str = ""  # a real PEBench folder; empty = the embedded synthetic world


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


@dataclass(frozen=True)
class UnlearnConfig:
    """The unlearning stage (design: Unlearning methods): the same budget for every method."""

    methods: tuple[str, ...] = ("ga", "gd", "kl", "po", "dpo", "npo", "gd+bgd", "kl+bgd")
    targets: tuple[Target, ...] = ("person", "event", "both")
    steps: int = 40
    lr: float = 1e-3
    batch_size: int = 8  # forget items per step (and as many retain items)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_projector: bool = True  # also adapt the multimodal projector
    retain_weight: float = 1.0  # lambda in GD / KL / PO / DPO / NPO
    beta: float = 0.1  # DPO / NPO temperature
    eval_every: int = 10  # steps between trajectory evaluations of efficacy


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (design: Metrics)."""

    scorer: Scorer = "keywords"
    batch_size: int = 32
    max_new_tokens: int = 40
    max_items: int = 80  # items per metric split (seeded sample); 0 = all


@dataclass(frozen=True)
class RunConfig:
    profile: str = "tiny"
    seed: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# Profiles. `tiny` is the book's default (2 CPU cores); `smoke` is what the tests execute;
# `paper` matches PEBench's 200 x 40 and expects a real checkpoint on a GPU.
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "smoke": {
        "world": {"n_people": 10, "n_events": 10, "n_real_people": 3, "image_size": 32, "forget_share": 0.2},
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
        "unlearn": {"steps": 4, "eval_every": 2, "batch_size": 4},
        "eval": {"max_items": 12, "max_new_tokens": 24, "batch_size": 16},
    },
    "paper": {
        "world": {"n_people": 200, "n_events": 40, "n_real_people": 20, "image_size": 512},
        "model": {"kind": "local", "dtype": "bfloat16", "device": "cuda"},
        # No replay: a real checkpoint's knowledge survives a short LoRA fine-tune (the tiny
        # model's replay protects what it learned from scratch).
        "train": {"base_epochs": 1, "finetune_epochs": 3, "lr": 2e-4, "batch_size": 8, "replay_share": 0.0},
        "unlearn": {"steps": 200, "lr": 2e-5, "batch_size": 4, "lora_r": 16, "lora_alpha": 32},
        "eval": {"max_items": 0, "batch_size": 16, "max_new_tokens": 64},
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
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        if value is None:
            return ""
        return str(value)
    return value


_D = TypeVar("_D", bound="DataclassInstance")


def _apply(section_obj: _D, updates: Mapping[str, Any], section: str) -> _D:
    hints = typing.get_type_hints(type(section_obj))
    names = [f.name for f in fields(section_obj)]
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in names:
            raise ConfigError(f"unknown field {section}.{key!s}; allowed fields of '{section}': {', '.join(names)}")
        changes[key] = _coerce(value, hints[key], f"{section}.{key}")
    return replace(section_obj, **changes)


def _merge(cfg: RunConfig, updates: Mapping[str, Any]) -> RunConfig:
    sections = _section_types()
    top: dict[str, Any] = {}
    for key, value in updates.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{key}' must be a mapping of fields, got {value!r}")
            top[key] = _apply(getattr(cfg, key), value, key)
        elif key in ("profile", "seed"):
            top[key] = _coerce(value, int if key == "seed" else str, key)
        else:
            allowed = ["profile", "seed", *sections]
            raise ConfigError(f"unknown configuration key '{key}'; allowed: {', '.join(allowed)}")
    return replace(cfg, **top)


def parse_overrides(pairs: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["world.forget_share=0.2", "seed=3"]`` → nested dict. Values stay strings until coerced."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like section.field=value (e.g. world.forget_share=0.2)")
        key, value = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) == 1:
            out[parts[0]] = value
        elif len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            raise ConfigError(f"override key {key!r} has too many dots; use section.field")
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
) -> RunConfig:
    """Build and validate a run configuration.

    ``profile`` is a profile name (``tiny``, ``smoke``, ``paper``) or the path of a YAML file
    whose top level may name a base ``profile`` plus sections to change.
    """
    updates: dict[str, Any] = {}
    name = str(profile)
    if name.endswith((".yml", ".yaml")) or Path(name).is_file():
        import yaml

        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"profile file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"profile file {path} must hold a mapping at the top level")
        base = str(data.pop("profile", "tiny"))
        if base not in PROFILES:
            raise ConfigError(f"profile file {path}: unknown base profile {base!r}; allowed: {', '.join(PROFILES)}")
        cfg = _merge(RunConfig(profile=base), PROFILES[base])
        updates = data
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)} or a .yaml file")
        cfg = _merge(RunConfig(profile=name), PROFILES[name])
    cfg = _merge(cfg, updates)
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(list(overrides))
    if overrides:
        cfg = _merge(cfg, overrides)
    if seed is not None:
        cfg = replace(cfg, seed=_coerce(seed, int, "seed"))
    validate(cfg)
    return cfg


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field; raise :class:`ConfigError` naming the first bad one."""
    w, m, t, u, e = cfg.world, cfg.model, cfg.train, cfg.unlearn, cfg.eval
    _require(cfg.seed >= 0, f"seed must be a non-negative integer, got {cfg.seed}")
    _require(0.0 < w.forget_share < 1.0, f"world.forget_share must be strictly between 0 and 1, got {w.forget_share}")
    _require(2 <= w.n_people <= 10_000, f"world.n_people must be between 2 and 10000, got {w.n_people}")
    _require(2 <= w.n_events <= 40, f"world.n_events must be between 2 and 40 (PEBench has 40 events), got {w.n_events}")
    _require(1 <= w.n_real_people <= 60, f"world.n_real_people must be between 1 and 60, got {w.n_real_people}")
    _require(16 <= w.image_size <= 1024, f"world.image_size must be between 16 and 1024 pixels, got {w.image_size}")
    for name in ("train_renders", "heldout_renders", "pretrain_renders", "pretrain_eval_renders"):
        _require(getattr(w, name) >= 1, f"world.{name} must be at least 1, got {getattr(w, name)}")
    _require(
        w.pope_questions >= 0 and w.pope_questions % 2 == 0,
        f"world.pope_questions must be a non-negative even number (half yes, half no), got {w.pope_questions}",
    )
    n_forget_people = forget_count(w.n_people, w.forget_share)
    n_forget_events = forget_count(w.n_events, w.forget_share)
    _require(
        n_forget_people < w.n_people and n_forget_events < w.n_events,
        f"world.forget_share={w.forget_share} would forget every person or every event; lower it",
    )
    _require(m.kind in MODEL_KINDS, f"model.kind must be one of {', '.join(MODEL_KINDS)}, got {m.kind!r}")
    _require(m.device in DEVICES, f"model.device must be one of {', '.join(DEVICES)}, got {m.device!r}")
    _require(m.dtype in DTYPES, f"model.dtype must be one of {', '.join(DTYPES)}, got {m.dtype!r}")
    if m.kind == "tiny":
        _require(
            w.image_size % m.patch_size == 0,
            f"world.image_size ({w.image_size}) must be a multiple of model.patch_size ({m.patch_size})",
        )
        for hid, heads, name in ((m.vision_hidden, m.vision_heads, "vision"), (m.text_hidden, m.text_heads, "text")):
            _require(
                hid > 0 and heads > 0 and hid % heads == 0,
                f"model.{name}_hidden ({hid}) must be a positive multiple of model.{name}_heads ({heads})",
            )
        _require(m.vocab_size >= 300, f"model.vocab_size must be at least 300, got {m.vocab_size}")
    for name in ("base_epochs", "finetune_epochs", "batch_size"):
        _require(getattr(t, name) >= 1, f"train.{name} must be at least 1, got {getattr(t, name)}")
    _require(t.lr > 0, f"train.lr must be positive, got {t.lr}")
    _require(
        t.vision_epochs >= 0 and t.vision_images >= 1 and t.vision_batch_size >= 1,
        "train.vision_epochs must be >= 0 and train.vision_images, train.vision_batch_size >= 1",
    )
    _require(t.vision_lr > 0, f"train.vision_lr must be positive, got {t.vision_lr}")
    _require(0.0 <= t.replay_share <= 1.0, f"train.replay_share must be between 0 and 1, got {t.replay_share}")
    _require(t.pope_extra >= 0, f"train.pope_extra must be non-negative, got {t.pope_extra}")
    _require(t.micro_batches >= 0, f"train.micro_batches must be non-negative, got {t.micro_batches}")
    _require(t.adapter in ADAPTERS, f"train.adapter must be one of {', '.join(ADAPTERS)}, got {t.adapter!r}")
    _require(
        t.lora_r >= 1 and t.lora_alpha >= 1,
        f"train.lora_r and train.lora_alpha must be at least 1, got {t.lora_r} and {t.lora_alpha}",
    )
    _require(
        t.gradient_checkpointing in SWITCHES,
        f"train.gradient_checkpointing must be one of {', '.join(SWITCHES)}, got {t.gradient_checkpointing!r}",
    )
    _require(m.max_length >= 0, f"model.max_length must be 0 (from the model) or a positive number of tokens, got {m.max_length}")
    unknown = [x for x in u.methods if x not in METHODS]
    _require(
        not unknown and len(u.methods) > 0,
        f"unlearn.methods has unknown method(s) {unknown or '(empty)'}; allowed: {', '.join(METHODS)}",
    )
    bad_t = [x for x in u.targets if x not in TARGETS]
    _require(
        not bad_t and len(u.targets) > 0,
        f"unlearn.targets has unknown target(s) {bad_t or '(empty)'}; allowed: {', '.join(TARGETS)}",
    )
    _require(u.steps >= 1, f"unlearn.steps must be at least 1, got {u.steps}")
    _require(u.lr > 0, f"unlearn.lr must be positive, got {u.lr}")
    _require(u.batch_size >= 1, f"unlearn.batch_size must be at least 1, got {u.batch_size}")
    _require(
        u.lora_r >= 1 and u.lora_alpha >= 1,
        f"unlearn.lora_r and unlearn.lora_alpha must be at least 1, got {u.lora_r} and {u.lora_alpha}",
    )
    _require(u.retain_weight >= 0, f"unlearn.retain_weight must be non-negative, got {u.retain_weight}")
    _require(u.beta > 0, f"unlearn.beta must be positive, got {u.beta}")
    _require(u.eval_every >= 1, f"unlearn.eval_every must be at least 1, got {u.eval_every}")
    _require(e.scorer in SCORERS, f"eval.scorer must be one of {', '.join(SCORERS)}, got {e.scorer!r}")
    _require(e.batch_size >= 1, f"eval.batch_size must be at least 1, got {e.batch_size}")
    _require(e.max_new_tokens >= 1, f"eval.max_new_tokens must be at least 1, got {e.max_new_tokens}")
    _require(e.max_items >= 0, f"eval.max_items must be 0 (all) or positive, got {e.max_items}")
    return cfg


def forget_count(n: int, share: float) -> int:
    """How many of ``n`` items a forget share selects: rounded, and at least one."""
    return max(1, int(round(n * share)))


def config_hash(*parts: object, length: int = 12) -> str:
    """A stable short hash of dataclasses / dicts / scalars, used to key cached stages."""

    def norm(x: object) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {k: norm(v) for k, v in dataclasses.asdict(x).items()}
        if isinstance(x, Mapping):
            return {str(k): norm(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        return x

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def safe_name(s: str) -> str:
    """A string usable as a file or folder name (method names contain '+')."""
    return _SAFE.sub("_", s)
