"""One unlearning loop for every method (design: Unlearning methods).

The method is looked up in :data:`pebench_core.methods.METHODS`; the loop computes only the
inputs that method needs (``Method.required_inputs``) and hands them to the pure loss.
Fairness: every method gets the same LoRA config, step budget, learning rate and batches
(the forget and retain batches are drawn from the same seeded stream whatever the method).

The reference model is the fine-tuned model with the LoRA adapter disabled, never a
second copy. Reference outputs never change, and the run's batches are drawn up front, so
they are computed once before training for every item the run will see: the
log-likelihoods of the forget answers and of the refusals (DPO, NPO), the next-token
log-probabilities on the answers of the retain items (KL) and forget items (UNDIAL, SIU),
and RMU's layer output on the retain items. ``run_unlearning(..., reference="every_step")``
runs the reference on every step's batch instead, the usual design; the numbers are the same
(tested) and ``benchmarks/bench_ratios.py`` measures what the one-off pass saves.

Cost (why a step costs what it costs): every sequence a method trains on in a step goes
through **one** forward pass (:func:`pack_batch`), and a forget item's refusal shares its
prompt (image and question) with the true answer, so DPO scores both answers behind one copy
of it. The frozen vision encoder's output of every image is computed once before training
(LoRA never touches the encoder) and the output head runs on answer positions only. What
is left scales with the sequences a method runs per step: GA the forget batch,
GD/KL/PO/NPO the forget and retain batches, DPO the same two plus the refusal answers
(``benchmarks/bench_unlearn.py``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import distributed as D
from . import methods
from .config import EvalConfig, UnlearnConfig
from .data import QA, Dataset, event_qa, person_qa, refusal_for, split_sets
from .encoding import encode_qa
from .errors import ConfigError
from .forward import answer_pass, feature_cache_fits, image_features
from .inputs import INPUTS, ITEMS_OF, SETS, Reference, Step, encoded_sets, step_sets
from .losses import LossInputs
from .models import ModelBundle, add_lora, decoder_layers, generate, reference_mode

CONCEPTS_OF = {"person": ("person",), "event": ("event",), "both": ("person", "event")}
# When the reference outputs are computed: once for the whole schedule, or on every step's batch.
REFERENCE_MODES = ("once", "every_step")


@dataclass
class UnlearnSets:
    """The QA the loop trains on: forget (true answers), refusal (same images), retain."""

    forget: list[QA]
    refusal: list[QA]
    retain: list[QA]
    forget_concepts: list[str]
    retain_concepts: list[str]


def unlearn_sets(ds: Dataset, target: str, seed: int = 0) -> UnlearnSets:
    """Forget QA of the target's concept(s) on the forget images, refusals for the same
    questions, and retain QA of the same concept(s) on the retain images."""
    s = split_sets(ds, target)
    fp, fe = set(s.forget_people), set(s.forget_events)
    forget, fc, retain, rc = [], [], [], []
    for concept in CONCEPTS_OF[target]:
        qa = person_qa if concept == "person" else event_qa
        hit = (lambda i: i.person in fp) if concept == "person" else (lambda i: i.event in fe)
        f = qa([i for i in s.forget if hit(i)], ds)
        r = qa(s.retain, ds)
        forget += f
        fc += [concept] * len(f)
        retain += r
        rc += [concept] * len(r)
    if not forget:
        raise ConfigError(
            f"target {target!r} has no forget items in {ds.root}; raise world.forget_share or check the dataset's splits"
        )
    if not retain:
        raise ConfigError(f"target {target!r} has no retain items in {ds.root}; lower world.forget_share")
    rng = random.Random(seed)
    refusal = [dataclasses.replace(q, answer=refusal_for(q.kind, rng)) for q in forget]
    return UnlearnSets(forget, refusal, retain, fc, rc)


@dataclass
class UnlearnRun:
    """What a run leaves: the adapted model, its per-step trajectory and how it ended."""

    method: str
    target: str
    model: torch.nn.Module  # the PeftModel (adapter on)
    trajectory: pd.DataFrame
    seconds: float
    status: str  # "ok" or why it stopped early
    steps_done: int
    hparams: dict = field(default_factory=dict)
    setup_seconds: float = 0.0  # reference outputs computed before the steps (reference='once')
    # With ``checks="later"``: the adapter's tensors at each check step, for :func:`check_trajectory`.
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


class BatchStream:
    """Seeded, endless, epoch-shuffled batches of indices (balanced by concept if asked)."""

    def __init__(self, concepts: list[str], batch_size: int, seed: int, balanced: bool):
        self.rng = random.Random(seed)
        self.bs = batch_size
        self.groups: dict[str, list[int]] = {}
        for i, c in enumerate(concepts):
            self.groups.setdefault(c if balanced else "all", []).append(i)
        self.pos = {g: 0 for g in self.groups}
        self.order = {g: self._shuffled(g) for g in self.groups}

    def _shuffled(self, g):
        o = list(self.groups[g])
        self.rng.shuffle(o)
        return o

    def _take(self, g, n):
        out = []
        while len(out) < n:
            if self.pos[g] >= len(self.order[g]):
                self.order[g], self.pos[g] = self._shuffled(g), 0
            k = min(n - len(out), len(self.order[g]) - self.pos[g])
            out += self.order[g][self.pos[g] : self.pos[g] + k]
            self.pos[g] += k
        return out

    def next(self) -> list[int]:
        gs = sorted(self.groups)
        per = [self.bs // len(gs) + (1 if k < self.bs % len(gs) else 0) for k in range(len(gs))]
        return [i for g, n in zip(gs, per) for i in self._take(g, max(1, n))]


def quick_efficacy(bundle: ModelBundle, sets: UnlearnSets, ds: Dataset, idx: list[int], eval_cfg: EvalConfig) -> dict[str, float]:
    """Efficacy on a fixed subset of the forget items (the trajectory's check), per concept."""
    from . import metrics as M
    from .scorers import get_scorer

    qas = [sets.forget[i] for i in idx]
    answers = generate(
        bundle,
        [ds.image(q.item_id) for q in qas],
        [q.question for q in qas],
        max_new_tokens=eval_cfg.max_new_tokens,
        batch_size=eval_cfg.batch_size,
    )
    out = {}
    scorer = get_scorer("keywords")
    for concept in sorted(set(sets.forget_concepts[i] for i in idx)):
        sel = [k for k, i in enumerate(idx) if sets.forget_concepts[i] == concept]
        a = [answers[k] for k in sel]
        if concept == "person":
            r = M.person_efficacy(a, [ds.person(qas[k].person).name for k in sel])
        else:
            r = M.event_efficacy(a, [ds.event(qas[k].event) for k in sel], scorer)
        out[f"efficacy/{concept}"] = r.value
    return out


def check_items(sets: UnlearnSets, eval_cfg: EvalConfig, seed: int) -> list[int]:
    """The fixed forget items the trajectory's efficacy checks ask about (seeded)."""
    g = random.Random(seed)
    return sorted(g.sample(range(len(sets.forget)), min(len(sets.forget), max(8, eval_cfg.max_items // 2))))


def run_unlearning(
    bundle: ModelBundle,
    ds: Dataset,
    target: str,
    method: str,
    cfg: UnlearnConfig,
    eval_cfg: EvalConfig,
    seed: int = 0,
    progress: bool = True,
    encoded: dict | None = None,
    log: Callable[[str], None] = print,
    reference: str = "once",
    checks: str = "now",
) -> UnlearnRun:
    """Unlearn ``target`` from ``bundle`` (a fine-tuned model) with ``method``; LoRA is added here.

    ``encoded`` may carry pre-encoded sets (``forget``/``refusal``/``retain``) to share
    the encoding cost between methods. The bundle's model is modified in place (LoRA layers
    injected); the caller removes them with ``models.remove_lora`` when done.

    Every ``cfg.eval_every`` steps the trajectory checks efficacy on a fixed subset of the
    forget items. ``checks="later"`` keeps the adapter of each such step instead
    (``run.snapshots``) and leaves the check to :func:`check_trajectory`: a learning-rate grid
    then checks only the rate it keeps. Checking generates and consumes no random numbers, so
    the steps and the checks' numbers are the same either way (tested).
    """
    if checks not in ("now", "later"):
        raise ConfigError(f"checks must be 'now' or 'later'; got {checks!r}")
    spec = methods.get(method)  # unknown method: ConfigError listing the allowed ones
    own = methods.settings_of(method, cfg)  # its own settings (None: it has none)
    if reference not in REFERENCE_MODES:
        raise ConfigError(f"reference must be one of {', '.join(REFERENCE_MODES)}; got {reference!r}")
    if cfg.steps < 1:
        raise ConfigError(f"unlearn.steps must be at least 1, got {cfg.steps}")
    if not cfg.lr > 0:
        raise ConfigError(f"unlearn.lr must be positive, got {cfg.lr}")
    if cfg.batch_size % D.world_size():
        raise ConfigError(
            f"unlearn.batch_size ({cfg.batch_size}) must be a multiple of the number of processes "
            f"({D.world_size()}): each process takes an equal share of every batch"
        )
    sets = unlearn_sets(ds, target, seed)
    need = set(spec.required_inputs(cfg.retain_weight))
    load = lambda q: ds.image(q.item_id)  # noqa: E731
    # ``encoded`` is filled in place, so the next run of a grid finds the sets encoded: an empty
    # dict is the caller's to fill, not a reason to encode into a throw-away one.
    enc = encoded if encoded is not None else {}
    for name in ("forget", *encoded_sets(need)):  # the forget answers always: the checks ask about them
        if name not in enc:
            enc[name] = encode_qa(bundle, getattr(sets, name), load)

    if bundle.family.packed:
        # LoRA never adapts the vision encoder, so its output per image is a constant.
        for e in enc.values():
            if e.features is None and feature_cache_fits(bundle, e):
                e.features = image_features(bundle, e.pixel_values)

    # RMU works on one decoder layer, at a share of the depth (its setting `depth`, which every
    # method reading a layer holds: checked at registration), and adapts the MLPs of it and the two below it.
    at_depth = any(INPUTS[i].hidden for i in need) or spec.lora_on == "mlp_at_depth"
    layer_k = int(round(own.depth * (len(decoder_layers(bundle.model)) - 1))) if at_depth else 0
    mlp_layers = tuple(range(max(0, layer_k - 2), layer_k + 1)) if spec.lora_on == "mlp_at_depth" else None
    model = add_lora(
        bundle, r=cfg.lora_r, alpha=cfg.lora_alpha, projector=cfg.lora_projector and mlp_layers is None, seed=seed,
        mlp_layers=mlp_layers,
    )  # fmt: skip
    layer = decoder_layers(model)[layer_k] if any(INPUTS[i].hidden for i in need) else None
    ub = bundle.with_model(model)
    dev, dt, pad = bundle.device, bundle.dtype, bundle.pad_token_id

    balanced = spec.needs_concepts  # BGD: every batch holds the concepts in equal numbers
    f_stream = BatchStream(sets.forget_concepts, cfg.batch_size, seed, balanced)
    r_stream = BatchStream(sets.retain_concepts, cfg.batch_size, seed + 1, balanced)
    # The whole run's batches, drawn up front (the same for every method): the reference
    # outputs of the retain items KL will see can then be computed before training.
    schedule = [(f_stream.next(), r_stream.next()) for _ in range(cfg.steps)]

    # Reference outputs that never change, computed with the adapter off, each kept per item
    # by its input's `keep` (pebench_core.inputs): the log-likelihoods of the forget answers and
    # refusals (DPO, NPO), the next-token log-probabilities on the answers of the retain items
    # (KL) and of the forget items (UNDIAL, SIU) and RMU's layer output on the retain items.
    # ``reference="once"`` computes them for every item of the schedule before training;
    # ``"every_step"`` runs the reference on each step's batch instead, as the usual design
    # (a reference model called every step) does: the same numbers, kept to measure against.
    # An input's `once` computes a constant of the run (RMU's control vector, SIU's concept tokens).
    t_setup = time.perf_counter()
    special = {bundle.pad_token_id, *bundle.eos_token_ids}
    schedule_items = {
        "forget": sorted({i for b in schedule for i in b[0]}),
        "retain": sorted({i for b in schedule for i in b[1]}),
    }

    def reference_pass(name: str, items: list[int], hidden: bool) -> tuple:
        return answer_pass(model, [(enc[name], items)], pad, dev, dt, hidden_of=layer if hidden else None)[0]

    reference_model = Reference(
        reference_pass,
        {s: schedule_items[ITEMS_OF[s]] for s in SETS},
        {s: e.labels for s, e in enc.items()},
        special,
        own,
        seed,
    )
    kept: dict[str, dict[int, torch.Tensor]] = {}
    constants: dict[str, Any] = {}

    def reference_outputs(forget_items: list[int], retain_items: list[int]) -> None:
        was_training = model.training
        model.eval()
        items = {"forget": forget_items, "retain": retain_items}
        with torch.no_grad(), reference_mode(model):
            for name in need:
                keep = INPUTS[name].keep
                if keep is not None:
                    kept[name] = keep(reference_model, items[ITEMS_OF[INPUTS[name].set]])
        model.train(was_training)

    with torch.no_grad(), reference_mode(model):
        for name in need:
            once = INPUTS[name].once
            if once is not None:
                constants[name] = once(reference_model)
    if reference == "once":
        reference_outputs(schedule_items["forget"], schedule_items["retain"])
    setup_seconds = time.perf_counter() - t_setup

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def grad_norm(term: torch.Tensor) -> float:
        """The norm of ``term``'s gradient over the trained parameters, the whole batch's (each
        process's share of it summed), without touching ``.grad``: BGD weighs its concepts by it."""
        grads = (
            torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            if term.requires_grad
            else [None] * len(params)  # none of this concept's items is in this process's share
        )
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)])
        return float(D.all_reduce_tensor(flat).norm())

    extra = {"grad_norm": grad_norm} if spec.needs_grad_norm else {}
    check_idx = check_items(sets, eval_cfg, seed)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    state, rows, status = None, [], "ok"
    # The adapter's tensors (they share storage with the parameters): the last good step is a
    # copy of these, restored if a loss turns NaN.
    lora = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    good = {k: v.clone() for k, v in lora.items()}
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"{method}/{target}", disable=not progress, leave=False, mininterval=2.0)
    steps_done = 0
    try:
        for step in bar:
            fi, ri = schedule[step]
            if reference == "every_step":
                kept.clear()
                reference_outputs(sorted(set(fi)), sorted(set(ri)))
            # Data parallel: this process runs the model on its share of each batch (all of it
            # when launched alone); each input gathers its per-sequence values, so the loss is
            # the whole batch's everywhere, with gradients through this process's share only.
            mine_f, mine_r = fi[D.shard_slice(len(fi))], ri[D.shard_slice(len(ri))]
            mine = {"forget": mine_f, "refusal": mine_f, "retain": mine_r}
            # Every set this method trains on in one forward pass; the refusals share their
            # prompt (image and question) with the true forget answers when both are needed.
            names = list(step_sets(need))
            branch = {names.index("refusal"): 0} if names[:2] == ["forget", "refusal"] else None
            outs = dict(zip(names, answer_pass(model, [(enc[n], mine[n]) for n in names], pad, dev, dt, branch, hidden_of=layer)))
            batch = {"forget": fi, "refusal": fi, "retain": ri}
            concepts = {"forget": sets.forget_concepts, "retain": sets.retain_concepts}
            step_inputs = Step(outs, mine, batch, kept, constants, own, concepts)
            inp = {name: INPUTS[name].compute(step_inputs) for name in need}
            out = spec(LossInputs(**inp), state=state, **spec.loss_kwargs(cfg), **extra)
            if not torch.isfinite(out.loss):
                status = (
                    f"stopped at step {step}: the {method} loss became {float(out.loss.detach())}; "
                    f"kept the adapter of step {step - 1} (lower unlearn.lr to go further)"
                )
                warnings.warn(status)
                model.load_state_dict(good, strict=False)
                break
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            D.all_reduce_grads(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state = out.state
            good = {k: v.clone() for k, v in lora.items()}
            steps_done = step + 1
            row = {"step": steps_done, "seconds": time.perf_counter() - t0, **out.parts}
            if steps_done % cfg.eval_every == 0 or steps_done == cfg.steps:
                if checks == "later":
                    snapshots[steps_done] = good  # a fresh copy each step: never written to again
                else:
                    model.eval()
                    if spec.finish is not None:  # the check scores what the method would hand over now
                        spec.finish(model, own)
                    row.update(quick_efficacy(ub, sets, ds, check_idx, eval_cfg))
                    if spec.finish is not None:
                        model.load_state_dict(good, strict=False)
                    model.train()
            rows.append(row)
    finally:  # an interrupted run leaves no half-drawn bar after its last line
        bar.close()
    model.eval()
    if spec.finish is not None:
        spec.finish(model, own)
    secs = time.perf_counter() - t0
    traj = pd.DataFrame(rows)
    hp = {
        "method": method,
        "target": target,
        "steps": cfg.steps,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "lora_projector": cfg.lora_projector,
        "retain_weight": cfg.retain_weight,
        "beta": cfg.beta,
        **methods.settings_record(method, cfg),
        "selection": "fixed budget: the last step",
    }
    log(
        f"[unlearn] {method}/{target}: {steps_done} steps in {secs:.1f}s after {setup_seconds:.1f}s of "
        f"reference outputs ({status})"
    )
    return UnlearnRun(method, target, model, traj, secs, status, steps_done, hp, setup_seconds, snapshots)


def check_trajectory(
    bundle: ModelBundle,
    ds: Dataset,
    target: str,
    method: str,
    cfg: UnlearnConfig,
    eval_cfg: EvalConfig,
    seed: int,
    model: torch.nn.Module,
    snapshots: dict[int, dict[str, torch.Tensor]],
    trajectory: pd.DataFrame,
) -> pd.DataFrame:
    """The trajectory of a run made with ``checks="later"``, with the efficacy checks added
    at the steps of ``snapshots``: what the run would have measured at those steps.

    ``model`` carries the run's adapter (the run's own model or its saved adapter loaded
    again); each snapshot is loaded into it, the method's finish applied, and the checks
    asked. The model is left as it came."""
    if not snapshots:
        return trajectory
    spec = methods.get(method)
    own = methods.settings_of(method, cfg)
    sets = unlearn_sets(ds, target, seed)
    idx = check_items(sets, eval_cfg, seed)
    ub = bundle.with_model(model)
    as_given = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    adapter = set(as_given)
    checked: dict[int, dict[str, float]] = {}
    was_training = model.training
    model.eval()
    try:
        for step, state in sorted(snapshots.items()):
            if set(state) != adapter:
                raise ValueError(
                    f"check_trajectory: the snapshot of step {step} does not hold this model's adapter "
                    f"({len(set(state) ^ adapter)} tensors differ): pass the model the run trained"
                )
            model.load_state_dict(state, strict=False)
            if spec.finish is not None:
                spec.finish(model, own)
            checked[step] = quick_efficacy(ub, sets, ds, idx, eval_cfg)
    finally:
        model.load_state_dict(as_given, strict=False)
        model.train(was_training)
    traj = trajectory.copy()
    for col in sorted({c for row in checked.values() for c in row}):
        traj[col] = [checked.get(int(s), {}).get(col, float("nan")) for s in traj["step"]]
    return traj


def step_cost(
    bundle: ModelBundle,
    ds: Dataset,
    target: str,
    method: str,
    cfg: UnlearnConfig,
    eval_cfg: EvalConfig,
    steps: int = 5,
    seed: int = 0,
    with_setup: bool = False,
    reference: str = "once",
):
    """Median seconds per unlearning step of ``method`` (no trajectory evaluation), for
    benchmarks; with ``with_setup`` also the seconds spent on reference outputs before training."""
    from .models import remove_lora

    c = dataclasses.replace(cfg, steps=steps, eval_every=10**9)
    run = run_unlearning(
        bundle, ds, target, method, c, eval_cfg, seed=seed, progress=False, log=lambda *_: None, reference=reference
    )
    remove_lora(run.model)
    per = run.trajectory["seconds"].diff().dropna()
    cost = float(per.median()) if len(per) else math.nan
    return (cost, run.setup_seconds) if with_setup else cost
