"""One unlearning loop for every method (DESIGN §6).

The method is looked up in :data:`pebench_core.losses.LOSSES`; the loop computes only the
inputs that method needs (``LossSpec.required_inputs``) and hands them to the pure loss.
Fairness: every method gets the same LoRA config, step budget, learning rate and batches
(the forget and retain batches are drawn from the same seeded stream whatever the method).

The reference model is the fine-tuned model with the LoRA adapter disabled, never a
second copy. Reference outputs never change, so they are computed once before training:
the log-likelihoods of the forget answers and of the refusals (DPO, NPO), and, since the
run's batches are drawn up front, the next-token log-probabilities on the answers of every
retain item KL will see.

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
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import ConfigError, EvalConfig, UnlearnConfig
from .data import QA, Dataset, event_qa, person_qa, refusal_for, split_sets
from .losses import LossInputs, get_loss, packed_answer_logprobs, packed_kl_per_sequence
from .models import ModelBundle, add_lora, generate, reference_mode
from . import distributed as D
from .families import family_of
from .models import full_answer_logits, pad_batch
from .train import EncodedQA, _vision_hidden, encode_qa, feature_cache_fits, image_features, merged_embeddings

CONCEPTS_OF = {"person": ("person",), "event": ("event",), "both": ("person", "event")}


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
        raise ConfigError(f"target {target!r} has no forget items in {ds.root}; "
                          "raise world.forget_share or check the dataset's splits")
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
    setup_seconds: float = 0.0  # reference outputs computed once before the steps


def padded_batch(parts: list[tuple[EncodedQA, list[int]]], pad_id: int) -> dict:
    """One right-padded batch of the items ``idx`` of several encoded sets, in order, with
    every per-token and image input: the pass of every family the packed path does not
    drive (:func:`pack_batch`)."""
    ids, toks, vision, labels = [], [], [], []
    for e, idx in parts:
        ids += [e.input_ids[i] for i in idx]
        toks += [e.tokens[i] for i in idx]
        labels += [e.labels[i] for i in idx]
        vision += [e.vision[int(r)] for r in e.rows(idx)]
    return pad_batch(ids, toks, vision, pad_id, "right", labels)


@dataclass
class PackedBatch:
    """Several sets' sequences in one right-padded batch for one forward pass, a row per
    prompt.

    A set packed as a *branch* of an earlier set (the refusals of DPO beside the true forget
    answers: same image, same question) shares that set's rows: its answer follows the
    prompt in the row, takes the positions it would have right after the prompt, and the
    attention ``mask`` (``[B, 1, L, L]``, True = may attend) lets it see the prompt but not
    the other answer. Each answer's hidden states are then those it would have alone, and
    the shared prompt runs once for both.

    ``pred[k]`` is the flat index (into ``B·L``) of the position whose hidden state predicts
    target token ``targets[k]`` of item ``rows[k]`` of set ``sets[k]``; ``image_rows`` lists,
    in batch order, the ``(set, image row)`` of every row's image.
    """

    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    mask: torch.Tensor  # [B, 1, L, L] bool
    pred: torch.Tensor  # [N]
    targets: torch.Tensor  # [N]
    rows: torch.Tensor  # [N]
    sets: torch.Tensor  # [N]
    image_rows: list[tuple[int, int]]


def _answer_start(labels: torch.Tensor) -> int:
    hit = (labels != -100).nonzero()
    return int(hit[0]) if len(hit) else len(labels)


def pack_batch(parts: list[tuple[EncodedQA, list[int]]], branch_of: dict[int, int] | None = None,
             pad_id: int = 0) -> PackedBatch:
    """Pack the items ``idx`` of each encoded set into one :class:`PackedBatch`, a row per
    prompt, right-padded with ``pad_id``.

    ``branch_of[j] = i`` packs set ``j`` as a branch of set ``i``: item ``k`` of both must be
    the same prompt (same token ids before the answer) with different answers.
    """
    branch_of = dict(branch_of or {})
    for j, i in branch_of.items():
        if not (0 <= i < j < len(parts)) or i in branch_of or list(parts[i][1]) != list(parts[j][1]):
            raise ValueError(f"pack_batch: set {j} can only be a branch of an earlier, non-branch set "
                             f"with the same items (got {i})")
    branches = {i: j for j, i in branch_of.items()}
    # Per row: (token ids, positions, branch per token, [(set, item, answer offset, labels)])
    layout = []
    image_rows: list[tuple[int, int]] = []
    for s, (e, idx) in enumerate(parts):
        if s in branch_of:
            continue
        for r, i in enumerate(idx):
            x, lab = e.input_ids[i], e.labels[i]
            a = _answer_start(lab)
            ids, pos = [x], [torch.arange(len(x))]
            br = [torch.zeros(a, dtype=torch.long), torch.ones(len(x) - a, dtype=torch.long)]
            answers = [(s, r, a, lab[a:])]
            if s in branches:
                j = branches[s]
                x2, lab2 = parts[j][0].input_ids[i], parts[j][0].labels[i]
                if _answer_start(lab2) != a or not torch.equal(x2[:a], x[:a]):
                    raise ValueError(f"pack_batch: item {i} of set {j} does not share its prompt with set {s}")
                answers.append((j, r, len(x), lab2[a:]))
                ids.append(x2[a:])
                pos.append(torch.arange(a, len(x2)))
                br.append(torch.full((len(x2) - a,), 2))
            layout.append((torch.cat(ids), torch.cat(pos), torch.cat(br), answers, a))
            image_rows.append((s, int(e.rows([i])[0])))
    B, L = len(layout), max(len(t[0]) for t in layout)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, L), dtype=torch.long)
    branch = torch.full((B, L), -1, dtype=torch.long)  # -1 = padding
    pred, targets, rows, sets = [], [], [], []
    for b, (ids, pos, br, answers, a) in enumerate(layout):
        n = len(ids)
        input_ids[b, :n], position_ids[b, :n], branch[b, :n] = ids, pos, br
        for s, r, at, lab in answers:
            # the first answer token is predicted from the prompt's last token, the rest from
            # the token before them in their own answer
            p = torch.arange(at - 1, at + len(lab) - 1)
            p[0] = a - 1
            keep = lab != -100
            pred.append(b * L + p[keep])
            targets.append(lab[keep])
            rows.append(torch.full((int(keep.sum()),), r))
            sets.append(torch.full((int(keep.sum()),), s))
    q, k = branch[:, :, None], branch[:, None, :]
    causal = position_ids[:, None, :] <= position_ids[:, :, None]
    mask = causal & (k >= 0) & (q >= 0) & ((k == 0) | (k == q))
    mask |= torch.eye(L, dtype=torch.bool)[None] & (q < 0)  # padding attends to itself (no empty softmax)
    cat = lambda v: torch.cat(v).long()  # noqa: E731
    return PackedBatch(input_ids, position_ids, mask[:, None], cat(pred), cat(targets), cat(rows), cat(sets), image_rows)


def packed_logits(model, row: PackedBatch, feats: torch.Tensor, device, dtype) -> torch.Tensor:
    """The output head at ``row.pred`` (``[N, V]``, float32) of a LLaVA-style model run once
    over a :class:`PackedBatch`, from the frozen encoder output of its images (``feats``)."""
    base, inner = family_of(model).packed_parts(model)
    ids = row.input_ids.to(device)
    embeds = merged_embeddings(inner, ids, feats.to(device, dtype))
    # An additive mask works with every attention implementation (eager adds it; SDPA takes it).
    bias = torch.zeros(row.mask.shape, dtype=embeds.dtype, device=device)
    bias.masked_fill_(~row.mask.to(device), torch.finfo(embeds.dtype).min)
    hidden = inner.language_model(inputs_embeds=embeds, attention_mask=bias, position_ids=row.position_ids.to(device),
                                  use_cache=False).last_hidden_state
    return base.lm_head(hidden.reshape(-1, hidden.shape[-1])[row.pred.to(device)]).float()


def _features(inner, e: EncodedQA, rows: list[int], device, dtype) -> torch.Tensor:
    if e.features is not None:
        return e.features[rows]
    with torch.no_grad():  # LoRA never adapts the vision encoder: its output is a constant
        pixels = torch.cat([e.vision[int(r)]["pixel_values"] for r in rows])
        return _vision_hidden(inner, pixels.to(device, dtype))


def answer_pass(model, parts: list[tuple[EncodedQA, list[int]]], pad_id: int, device, dtype,
                branch_of: dict[int, int] | None = None
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """One forward pass over the ``parts``; per part ``(logits [N, V], targets [N], rows [N],
    n_items)`` on its answer positions only (rows counted within the part).

    On the packed path (LLaVA-1.5) one :func:`pack_batch` batch runs from the encoder output
    of each image, ``branch_of`` sharing prompts (see there). Every other family runs its own
    forward on one padded batch of all the parts, cut to the same form, so the losses see
    one format; ``branch_of`` is then only a saving that does not apply, and each set gets
    its own rows (the same numbers, tested).
    """
    packed = family_of(model).packed_parts(model)
    if packed is not None:
        inner = packed[1]
        row = pack_batch(parts, branch_of, pad_id)
        by_set: dict[int, list[int]] = {}
        for s, r in row.image_rows:
            by_set.setdefault(s, []).append(r)
        # image blocks come set by set, in the row's order
        feats = torch.cat([_features(inner, parts[s][0], rs, device, dtype) for s, rs in by_set.items()])
        logits = packed_logits(model, row, feats, device, dtype)
        targets, rows, sets = row.targets.to(device), row.rows.to(device), row.sets.to(device)
        return [(logits[sets == s], targets[sets == s], rows[sets == s], len(idx)) for s, (_, idx) in enumerate(parts)]
    logits, targets, rows = full_answer_logits(model, padded_batch(parts, pad_id))
    out, off = [], 0
    for _, idx in parts:
        keep = (rows >= off) & (rows < off + len(idx))
        out.append((logits[keep], targets[keep], rows[keep] - off, len(idx)))
        off += len(idx)
    return out


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
            out += self.order[g][self.pos[g]:self.pos[g] + k]
            self.pos[g] += k
        return out

    def next(self) -> list[int]:
        gs = sorted(self.groups)
        per = [self.bs // len(gs) + (1 if k < self.bs % len(gs) else 0) for k in range(len(gs))]
        return [i for g, n in zip(gs, per) for i in self._take(g, max(1, n))]


def quick_efficacy(bundle: ModelBundle, sets: UnlearnSets, ds: Dataset, idx: list[int],
                   eval_cfg: EvalConfig) -> dict[str, float]:
    """Efficacy on a fixed subset of the forget items (the trajectory's check), per concept."""
    from . import metrics as M
    from .scorers import get_scorer

    qas = [sets.forget[i] for i in idx]
    answers = generate(bundle, [ds.image(q.item_id) for q in qas], [q.question for q in qas],
                       max_new_tokens=eval_cfg.max_new_tokens, batch_size=eval_cfg.batch_size)
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


def run_unlearning(bundle: ModelBundle, ds: Dataset, target: str, method: str, cfg: UnlearnConfig,
                   eval_cfg: EvalConfig, seed: int = 0, progress: bool = True,
                   encoded: dict | None = None, log: Callable[[str], None] = print) -> UnlearnRun:
    """Unlearn ``target`` from ``bundle`` (a fine-tuned model) with ``method``; LoRA is added here.

    ``encoded`` may carry pre-encoded sets (``forget``/``refusal``/``retain``) to share
    the encoding cost between methods. The bundle's model is modified in place (LoRA layers
    injected); the caller removes them with ``models.remove_lora`` when done.
    """
    spec = get_loss(method)  # unknown method: ConfigError listing the allowed ones
    if cfg.steps < 1:
        raise ConfigError(f"unlearn.steps must be at least 1, got {cfg.steps}")
    if not cfg.lr > 0:
        raise ConfigError(f"unlearn.lr must be positive, got {cfg.lr}")
    if cfg.batch_size % D.world_size():
        raise ConfigError(f"unlearn.batch_size ({cfg.batch_size}) must be a multiple of the number of processes "
                          f"({D.world_size()}): each process takes an equal share of every batch")
    sets = unlearn_sets(ds, target, seed)
    need = set(spec.required_inputs(cfg.retain_weight))
    load = lambda q: ds.image(q.item_id)  # noqa: E731
    enc = encoded or {}
    if "forget" not in enc:
        enc["forget"] = encode_qa(bundle, sets.forget, load)
    if "refusal" not in enc and ({"refusal_logp_sum", "refusal_ref_logp_sum"} & need):
        enc["refusal"] = encode_qa(bundle, sets.refusal, load)
    if "retain" not in enc and ({"retain_logp_sum", "retain_kl"} & need):
        enc["retain"] = encode_qa(bundle, sets.retain, load)

    if bundle.family.packed:
        # LoRA never adapts the vision encoder, so its output per image is a constant.
        for e in enc.values():
            if e.features is None and feature_cache_fits(bundle, e):
                e.features = image_features(bundle, e.pixel_values)

    model = add_lora(bundle, r=cfg.lora_r, alpha=cfg.lora_alpha, projector=cfg.lora_projector, seed=seed)
    ub = bundle.with_model(model)
    dev, dt, pad = bundle.device, bundle.dtype, bundle.pad_token_id

    def logp(parts):
        return [packed_answer_logprobs(lg, tg, rw, n) for lg, tg, rw, n in answer_pass(model, parts, pad, dev, dt)]

    balanced = method.endswith("+bgd")
    f_stream = BatchStream(sets.forget_concepts, cfg.batch_size, seed, balanced)
    r_stream = BatchStream(sets.retain_concepts, cfg.batch_size, seed + 1, balanced)
    # The whole run's batches, drawn up front (the same for every method): the reference
    # outputs of the retain items KL will see can then be computed before training.
    schedule = [(f_stream.next(), r_stream.next()) for _ in range(cfg.steps)]

    # Reference outputs that never change, computed once with the adapter off: the
    # log-likelihoods of the forget answers and refusals (DPO, NPO) and the next-token
    # log-probabilities on the answers of the retain items in the schedule (KL).
    t_setup = time.perf_counter()
    ref: dict[str, torch.Tensor] = {}
    ref_retain: dict[int, torch.Tensor] = {}
    chunks = lambda idx: [idx[s:s + 32] for s in range(0, len(idx), 32)]  # noqa: E731
    with torch.no_grad(), reference_mode(model):
        for name, key in (("forget", "forget_ref_logp_sum"), ("refusal", "refusal_ref_logp_sum")):
            if key in need:
                ref[name] = torch.cat([logp([(enc[name], c)])[0][0] for c in chunks(list(range(len(enc[name]))))])
        if "retain_kl" in need:
            for c in chunks(sorted({i for _, ri in schedule for i in ri})):
                lg, _, rws, _ = answer_pass(model, [(enc["retain"], c)], pad, dev, dt)[0]
                lp = torch.log_softmax(lg, dim=-1).cpu()
                ref_retain.update({i: lp[rws.cpu() == k] for k, i in enumerate(c)})
    setup_seconds = time.perf_counter() - t_setup

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    g = random.Random(seed)
    check_idx = sorted(g.sample(range(len(sets.forget)), min(len(sets.forget), max(8, eval_cfg.max_items // 2))))
    state, rows, status = None, [], "ok"
    # The adapter's tensors (they share storage with the parameters): the last good step is a
    # copy of these, restored if a loss turns NaN.
    lora = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    good = {k: v.clone() for k, v in lora.items()}
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"{method}/{target}", disable=not progress, leave=False, mininterval=2.0)
    steps_done = 0
    for step in bar:
        fi, ri = schedule[step]
        # Data parallel: this process runs the model on its share of each batch (all of it
        # when launched alone); the per-sequence results are gathered so the loss is the
        # whole batch's everywhere, with gradients through this process's share only.
        mine_f, mine_r = fi[D.shard_slice(len(fi))], ri[D.shard_slice(len(ri))]
        inp: dict = {}
        # Every set this method trains on in one forward pass; the refusals share their
        # prompt (image and question) with the true forget answers when both are needed.
        parts = [(name, e, idx) for name, e, idx, keys in (
            ("forget", enc.get("forget"), mine_f, {"forget_logp_sum"}),
            ("refusal", enc.get("refusal"), mine_f, {"refusal_logp_sum"}),
            ("retain", enc.get("retain"), mine_r, {"retain_logp_sum", "retain_kl"})) if keys & need]
        names = [p[0] for p in parts]
        branch = {names.index("refusal"): 0} if names[:2] == ["forget", "refusal"] else None
        outs = dict(zip(names, answer_pass(model, [(e, idx) for _, e, idx in parts], pad, dev, dt, branch)))
        for name in ("forget", "refusal", "retain"):
            if name in outs and f"{name}_logp_sum" in need:
                lp, nt = packed_answer_logprobs(*outs[name])
                inp[f"{name}_logp_sum"], inp[f"{name}_n_tokens"] = D.gather_cat(lp), D.gather_cat(nt)
        for name in ("forget", "refusal"):
            if f"{name}_ref_logp_sum" in need:
                inp[f"{name}_ref_logp_sum"] = ref[name][fi]
        if "retain_kl" in need:
            lg, _, seq, n = outs["retain"]
            lp_ref = torch.cat([ref_retain[i] for i in mine_r]).to(lg.device)
            inp["retain_kl"] = D.gather_cat(packed_kl_per_sequence(lg, lp_ref, seq, n))
        if "forget_concepts" in need:
            inp["forget_concepts"] = [sets.forget_concepts[i] for i in fi]
        if "retain_concepts" in need:
            inp["retain_concepts"] = [sets.retain_concepts[i] for i in ri]
        out = spec(LossInputs(**inp), retain_weight=cfg.retain_weight, beta=cfg.beta, state=state)
        if not torch.isfinite(out.loss):
            status = (f"stopped at step {step}: the {method} loss became {float(out.loss.detach())}; "
                      f"kept the adapter of step {step - 1} (lower unlearn.lr to go further)")
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
            model.eval()
            row.update(quick_efficacy(ub, sets, ds, check_idx, eval_cfg))
            model.train()
        rows.append(row)
    bar.close()
    model.eval()
    secs = time.perf_counter() - t0
    traj = pd.DataFrame(rows)
    hp = {"method": method, "target": target, "steps": cfg.steps, "lr": cfg.lr, "batch_size": cfg.batch_size,
          "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_projector": cfg.lora_projector,
          "retain_weight": cfg.retain_weight, "beta": cfg.beta, "selection": "fixed budget: the last step"}
    log(f"[unlearn] {method}/{target}: {steps_done} steps in {secs:.1f}s after {setup_seconds:.1f}s of "
        f"reference outputs ({status})")
    return UnlearnRun(method, target, model, traj, secs, status, steps_done, hp, setup_seconds)


def step_cost(bundle: ModelBundle, ds: Dataset, target: str, method: str, cfg: UnlearnConfig,
              eval_cfg: EvalConfig, steps: int = 5, seed: int = 0, with_setup: bool = False):
    """Median seconds per unlearning step of ``method`` (no trajectory evaluation), for
    benchmarks; with ``with_setup`` also the seconds spent on reference outputs before training."""
    from .models import remove_lora

    c = dataclasses.replace(cfg, steps=steps, eval_every=10**9)
    run = run_unlearning(bundle, ds, target, method, c, eval_cfg, seed=seed, progress=False, log=lambda *_: None)
    remove_lora(run.model)
    per = run.trajectory["seconds"].diff().dropna()
    cost = float(per.median()) if len(per) else math.nan
    return (cost, run.setup_seconds) if with_setup else cost
