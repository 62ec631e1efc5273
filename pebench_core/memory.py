"""A memory plan before a long stage (design: Models and families): will it fit, and if not, what to change.

For a model configuration (no weights needed: the model is built on PyTorch's ``meta``
device, so a 7B plan costs nothing), a run configuration and a device, :func:`plan` adds up
the peak of each long stage:

* **weights** — every parameter in the model dtype;
* **trainable state** — the trained parameters, their gradients and AdamW's two moments.
  LoRA adapters are kept in float32 by peft (4 + 4 + 8 bytes a parameter); a full
  fine-tune adds a gradient and two moments in the model dtype to weights already counted
  (torch's AdamW allocates its moments like the parameter);
* **activations** — what the backward pass keeps for one micro-batch. A decoder layer of
  hidden size *h*, MLP width *i* and key/value width *kv* keeps about ``8h + 2kv + 4i``
  values a token (norm outputs, q/k/v, attention output, residuals, the MLP's gate, up,
  activation and product); with gradient checkpointing only the layer input (*h*) is kept
  and one layer is recomputed at a time. The frozen vision tower keeps nothing (no
  gradient flows into it) but needs one layer's worth of its tokens transiently;
* **logits** — float32 scores over the vocabulary on the answer positions only (forward,
  log-softmax and gradient), which is all the head ever computes here;
* **KV cache** (evaluation) — keys and values of every layer for a batch of prompts plus the
  new tokens.

The sequence length is measured, not assumed: one prompt is encoded with the checkpoint's
own processor at the world's image size. :func:`check_stage` refuses a stage whose plan
exceeds the device's memory with the numbers and what to change. The estimate is checked
against measured peaks in ``benchmarks/bench_memory.py`` and ``tests/test_families.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .config import RunConfig
from .errors import ConfigError
from .families import family_of

__all__ = [
    "ModelShape",
    "StagePlan",
    "model_shape",
    "plan",
    "plan_for",
    "stage_plans",
    "check_stage",
    "device_memory",
    "activation_bytes",
    "logit_bytes",
    "sequences_per_step",
    "GiB",
]

GiB = 1024**3
# The allocator's slack, the CUDA context and the kernels' workspaces: measured peaks of
# torch.cuda.max_memory_allocated sit 5-15 % above the sum of the tensors.
OVERHEAD_SHARE = 0.10
CUDA_CONTEXT = 0.75 * GiB
MAX_ANSWER_TOKENS = 64  # the longest training answer the plan allows for (descriptions are ~30)


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs to know of a model, read off its configuration."""

    family: str
    parameters: dict[str, int]  # by role: vision tower, projector, language model, embeddings
    lora_per_rank: int  # LoRA parameters on language model + projector per unit of rank
    layers: int
    hidden: int
    intermediate: int
    kv_width: int  # key/value heads x head dim
    vocab: int
    vision_layers: int
    vision_hidden: int
    bytes_per_param: int

    @property
    def total(self) -> int:
        return sum(self.parameters.values())

    def lora(self, r: int) -> int:
        """Trainable parameters of a rank-``r`` LoRA adapter (``r · (in + out)`` per layer)."""
        return r * self.lora_per_rank


@dataclass
class StagePlan:
    """The estimated peak of one stage, by component, against a budget."""

    stage: str
    rows: dict[str, float] = field(default_factory=dict)  # component -> bytes
    budget: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.rows.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in self.rows.items())
        verdict = "fits" if self.fits else "DOES NOT FIT"
        return f"{self.stage}: {self.total / GiB:.2f} GiB of {self.budget / GiB:.1f} GiB, {verdict} ({parts})"


def _text_config(config):
    return getattr(config, "text_config", None) or config


def _vision_config(config):
    return getattr(config, "vision_config", None)


def model_shape(config, dtype: torch.dtype = torch.bfloat16) -> ModelShape:
    """The shape of the model ``config`` describes, from a weightless (``meta``) instance."""
    from transformers import AutoModelForImageTextToText

    from .models import lora_targets

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    fam = family_of(model)
    emb = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        mod = getattr(model, getter)()
        if mod is not None:
            emb.update(id(p) for p in mod.parameters())
    params: dict[str, int] = {"vision tower": 0, "projector": 0, "language model": 0, "embeddings": 0}
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        params["embeddings" if id(p) in emb else fam.role_of(name)] += p.numel()
    modules = dict(model.named_modules())
    targets = lora_targets(model, projector=True)
    per_rank = sum(modules[n].in_features + modules[n].out_features for n in targets)
    t = _text_config(config)
    v = _vision_config(config)
    heads = getattr(t, "num_attention_heads", 1)
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // heads
    return ModelShape(
        family=fam.name,
        parameters=params,
        lora_per_rank=per_rank,
        layers=t.num_hidden_layers,
        hidden=t.hidden_size,
        intermediate=getattr(t, "intermediate_size", 4 * t.hidden_size),
        kv_width=getattr(t, "num_key_value_heads", heads) * head_dim,
        vocab=t.vocab_size,
        vision_layers=getattr(v, "num_hidden_layers", getattr(v, "depth", 0)) if v is not None else 0,
        vision_hidden=getattr(v, "hidden_size", getattr(v, "embed_dim", 0)) if v is not None else 0,
        bytes_per_param=torch.finfo(dtype).bits // 8,
    )


def activation_bytes(s: ModelShape, sequences: int, tokens: int, checkpointing: bool, act_bytes: int) -> float:
    per_token_layer = 8 * s.hidden + 2 * s.kv_width + 4 * s.intermediate
    n = sequences * tokens
    if checkpointing:  # one hidden state a layer, plus one layer recomputed at a time
        return act_bytes * n * (s.layers * s.hidden + per_token_layer)
    return act_bytes * n * s.layers * per_token_layer


def logit_bytes(s: ModelShape, answer_tokens: int) -> float:
    return 3 * 4 * answer_tokens * s.vocab  # float32 scores, log-softmax, their gradient


def _vision_transient(s: ModelShape, images: int, image_tokens: int, act_bytes: int) -> float:
    return act_bytes * images * image_tokens * 12 * s.vision_hidden


def sequences_per_step(cfg: RunConfig) -> int:
    """The most answers one unlearning step runs over the profile's methods (forget, refusals,
    retain, each ``unlearn.batch_size`` long), from the loop's table of inputs
    (:func:`pebench_core.inputs.step_size`): a shared prompt is counted with each of its answers,
    the conservative side for a peak."""
    from . import methods
    from .inputs import step_size

    return max(step_size(methods.get(m).required_inputs(cfg.unlearn.retain_weight), cfg.unlearn.batch_size)[1]
               for m in cfg.unlearn.methods)  # fmt: skip


def plan(
    cfg: RunConfig,
    shape: ModelShape,
    prompt_tokens: int,
    image_tokens: int,
    budget: float,
    device: str = "cuda",
    processes: int = 1,
) -> list[StagePlan]:
    """The peak of each long stage (``inject``: finetune and goal; ``unlearn``; ``eval``) for a
    model of ``shape`` whose prompts are ``prompt_tokens`` long (``image_tokens`` of them the
    image's), under ``cfg``; ``budget`` is one device's memory in bytes. With several
    ``processes`` a full fine-tune is sharded with FSDP: each device holds an N-th of the
    weights and of their training state, plus one decoder layer gathered at a time."""
    bp = shape.bytes_per_param
    act = bp
    t, u, e = cfg.train, cfg.unlearn, cfg.eval
    weights = shape.total * bp
    from .trainer import checkpointing_on

    ckpt = checkpointing_on(t, cfg.model.kind == "local", device)
    fixed = CUDA_CONTEXT if device == "cuda" else 0.0
    seq = prompt_tokens + MAX_ANSWER_TOKENS
    out = []

    def training(p: StagePlan, trainable_bytes: float, sequences: int) -> None:
        p.rows["weights"] = weights
        p.rows["trainable state"] = trainable_bytes
        p.rows["activations"] = activation_bytes(shape, sequences, seq, ckpt, act)
        p.rows["logits"] = logit_bytes(shape, sequences * MAX_ANSWER_TOKENS)
        p.rows["vision (transient)"] = _vision_transient(shape, sequences, image_tokens, act)
        out.append(p)

    inj = StagePlan("inject (finetune, goal)", budget=budget)
    micro = max(1, -(-t.batch_size // max(1, t.micro_batches)))
    if cfg.model.kind == "local" and t.adapter == "lora":
        training(inj, 16.0 * shape.lora(t.lora_r), micro)
        inj.notes.append(f"LoRA r={t.lora_r}: {shape.lora(t.lora_r) / 1e6:.1f} M trainable parameters")
    else:
        n = shape.parameters["language model"] + shape.parameters["projector"] + shape.parameters["embeddings"]
        training(inj, 3.0 * bp * n / processes, micro)  # gradient + two moments (the weights are counted)
        inj.notes.append(f"full fine-tuning of language model + projector: {n / 1e6:.0f} M parameters")
        if processes > 1 and cfg.model.kind == "local":
            layer = shape.parameters["language model"] / max(1, shape.layers)
            inj.rows["weights"] = weights / processes + 2 * layer * bp  # a gathered layer, and its gradient
            inj.notes.append(f"sharded over {processes} processes (FSDP)")
    inj.notes.append(f"micro-batch of {micro} x {seq} tokens, gradient checkpointing {'on' if ckpt else 'off'}")

    seqs = sequences_per_step(cfg)
    un = StagePlan("unlearn", budget=budget)
    training(un, 16.0 * shape.lora(u.lora_r), seqs)
    un.notes.append(f"LoRA r={u.lora_r}: {shape.lora(u.lora_r) / 1e6:.1f} M trainable; {seqs} sequences a step")

    ev = StagePlan("evaluate", budget=budget)
    ev.rows["weights"] = weights
    cache_tokens = prompt_tokens + e.max_new_tokens
    ev.rows["KV cache"] = 2.0 * shape.layers * shape.kv_width * cache_tokens * e.batch_size * bp
    ev.rows["activations"] = act * e.batch_size * prompt_tokens * (8 * shape.hidden + 4 * shape.intermediate)
    ev.rows["logits"] = 4.0 * e.batch_size * shape.vocab * 2
    out.append(ev)

    for p in out:
        p.rows["overhead"] = OVERHEAD_SHARE * p.total + fixed
    return out


def device_memory(device: torch.device | str) -> float:
    """Bytes of memory on ``device``: the GPU's total, or the machine's physical memory."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return float(torch.cuda.get_device_properties(dev).total_memory)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def plan_for(cfg: RunConfig, bundle, budget: float, device: str, processes: int | None = None) -> list[StagePlan]:
    """:func:`plan` for a model (loaded, or a weightless skeleton) on a ``device`` type with
    ``budget`` bytes and ``processes`` (default: this launch's); the prompt length is
    measured with the model's own processor."""
    from . import distributed as D
    from .models import prompt_tokens

    shape = model_shape(bundle.base_model.config, bundle.dtype)
    prompt, image = prompt_tokens(bundle, cfg.world.image_size)
    return plan(cfg, shape, prompt, image, budget, device, D.world_size() if processes is None else processes)


def stage_plans(cfg: RunConfig, bundle, budget: float | None = None) -> list[StagePlan]:
    """:func:`plan_for` a loaded model on its own device (its memory unless ``budget``)."""
    return plan_for(cfg, bundle, device_memory(bundle.device) if budget is None else budget, bundle.device.type)


def check_stage(cfg: RunConfig, bundle, stage: str, ds=None) -> StagePlan | None:
    """Print the plan of ``stage`` for a local checkpoint and refuse it (``ConfigError``, with
    the numbers and what to change) if it does not fit the device. The tiny model is
    kilobytes: it is not planned."""
    if bundle.meta.get("kind") == "tiny":
        return None
    which = {"finetune": 0, "goal": 0, "unlearn": 1, "evaluate": 2}[stage]
    p = stage_plans(cfg, bundle)[which]
    print(f"[plan] {p.describe()}")
    if not p.fits:
        raise ConfigError(
            f"the {stage} stage needs about {p.total / GiB:.1f} GiB but {bundle.device} has "
            f"{p.budget / GiB:.1f} GiB ({'; '.join(p.notes)}); lower train.batch_size / unlearn.batch_size, "
            "raise train.micro_batches, set train.gradient_checkpointing=on, use train.adapter=lora, "
            "or run on a larger device (pebench plan shows every stage)"
        )
    return p
