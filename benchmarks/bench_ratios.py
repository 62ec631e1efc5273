"""Three ratios against the designs a user would otherwise pick, measured in one run (design: Budgets).

    OMP_NUM_THREADS=2 python benchmarks/bench_ratios.py --profile tiny [--run-dir DIR] [--repeats 3] [--json OUT]

1. **Unlearning step, reference once vs every step.** Every method that uses the reference
   model runs the profile's schedule twice on the fine-tuned model: with the reference outputs
   computed once before training (``reference="once"``, what the pipeline does) and with the
   reference run on every step's batch (``"every_step"``, the usual design, e.g. open-unlearning's
   reference model called inside the loss). The same batches; printed are the first step's
   largest loss difference (the designs' arithmetic alone: float rounding, below 1e-7 on the
   tiny profile), the largest over the schedule, absolute and as a share of the largest loss
   (training amplifies those last bits, to ~1e-5 over 40 steps), then the step's cost and the
   whole run's (set-up included) in both designs and their ratio.
2. **Evaluation, batched vs one item at a time.** The answers of a target's evaluation
   questions with the profile's ``eval.batch_size`` (left padding, KV cache) against
   ``batch_size=1``, i.e. one ``model.generate`` call per item. The answers must be identical.
   Then, on an unlearned model of the run (``--merge-method``, its LoRA adapter on), decoding
   with the adapter merged into plain linear layers (``models.plain_linears``, what
   ``generate`` does) against decoding through peft's LoRA layers: answers compared, speed-up.
3. **Injection's arithmetic rate against the machine's.** A few fine-tuning steps (the
   profile's batch and micro-batches) on a fresh tiny model: the FLOPs they execute are
   counted once (``torch.utils.flop_counter``) and the same steps timed again uncounted, which
   gives GFLOP/s. Every matrix product the steps ran is recorded with its shape and replayed
   alone (same shapes, same dtype, same threads): the machine's rate on exactly those products
   is the ceiling, and the injection's rate is printed as a share of it (and of one large
   square product's rate, the machine's best case).

Not a test: timings depend on the machine; run it on a quiet one (two torch jobs on two
cores thrash). Methods run interleaved, ``--repeats`` times; the best repeat is kept.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from pebench_core.config import load_config  # noqa: E402
from pebench_core.data import world_texts  # noqa: E402
from pebench_core.encoding import encode_qa, image_loader  # noqa: E402
from pebench_core.forward import set_vision_trainable  # noqa: E402
from pebench_core.evaluate import plan  # noqa: E402
from pebench_core import methods  # noqa: E402
from pebench_core.methods import BUILT_IN, runs_on  # noqa: E402
from pebench_core.models import build_tiny, context_length, generate, remove_lora  # noqa: E402
from pebench_core.models import lora as lora_module  # noqa: E402
from pebench_core.parallel import torch_threads  # noqa: E402
from pebench_core.stages import get_model, get_world, load_unlearned_model, resolve_run_dir  # noqa: E402
from pebench_core.train import stage_examples  # noqa: E402
from pebench_core.trainer import train_model  # noqa: E402
from pebench_core.unlearn import run_unlearning  # noqa: E402

# The inputs that only the reference model can give (see Method.required_inputs).
REFERENCE_INPUTS = {
    "forget_ref_logp_sum",
    "refusal_ref_logp_sum",
    "retain_kl",
    "forget_adjusted_kl",
    "refusal_dual_masked_kl",
    "retain_rmu_mse",
}
MATMULS = {"mm", "addmm", "bmm", "baddbmm"}


def reference_methods(retain_weight: float) -> list[str]:
    return [m for m in BUILT_IN if REFERENCE_INPUTS & set(methods.get(m).required_inputs(retain_weight))]


def unlearning_ratio(cfg, bundle, ds, target: str, repeats: int) -> list[dict]:
    u = dataclasses.replace(cfg.unlearn, eval_every=10**9)  # the schedule's steps only, no trajectory checks
    runs: dict[tuple[str, str], list] = {}
    methods = reference_methods(u.retain_weight)
    for _ in range(repeats):
        for m in methods:
            t = target if runs_on(m, target) else "both"
            for mode in ("once", "every_step"):
                run = run_unlearning(
                    bundle, ds, t, m, u, cfg.eval, seed=cfg.seed, progress=False, log=lambda *_: None, reference=mode
                )
                remove_lora(run.model)
                runs.setdefault((m, mode), []).append(run)
    rows = []
    for m in methods:
        once = min(runs[(m, "once")], key=lambda r: r.seconds + r.setup_seconds)
        each = min(runs[(m, "every_step")], key=lambda r: r.seconds + r.setup_seconds)
        cols = [c for c in once.trajectory.columns if c.endswith("loss")]
        diff = max(float((once.trajectory[c] - each.trajectory[c]).abs().max()) for c in cols)
        # The first step shows the two designs' arithmetic; later steps add the training's own
        # amplification of last-bit differences (other batch shapes, other summation order).
        first = max(abs(float(once.trajectory[c].iloc[0] - each.trajectory[c].iloc[0])) for c in cols)
        scale = max(float(once.trajectory[c].abs().max()) for c in cols)
        step_once = float(once.trajectory["seconds"].diff().dropna().median())
        step_each = float(each.trajectory["seconds"].diff().dropna().median())
        run_once, run_each = once.seconds + once.setup_seconds, each.seconds + each.setup_seconds
        rows.append(
            {
                "method": m,
                "steps": u.steps,
                "max_loss_diff": diff,
                "first_step_loss_diff": first,
                "max_loss_diff_relative": diff / scale if scale else 0.0,
                "step_s_once": step_once,
                "step_s_every_step": step_each,
                "step_speedup": step_each / step_once,
                "setup_s_once": once.setup_seconds,
                "run_s_once": run_once,
                "run_s_every_step": run_each,
                "run_speedup": run_each / run_once,
            }
        )
    return rows


def evaluation_questions(cfg, ds, target: str) -> tuple[list, list[str]]:
    """The images and questions of ``target``'s evaluation, as the pipeline asks them."""
    qas = plan(ds, target, cfg.eval, cfg.seed).questions(ds)
    return [ds.image(q.item_id) for q in qas], [q.question for q in qas]


def generation_ratio(cfg, bundle, ds, target: str, repeats: int) -> dict:
    images, questions = evaluation_questions(cfg, ds, target)
    kw = {"max_new_tokens": cfg.eval.max_new_tokens}
    times: dict[int, list[float]] = {cfg.eval.batch_size: [], 1: []}
    answers: dict[int, list[str]] = {}
    for _ in range(repeats):
        for bs in times:
            t0 = time.perf_counter()
            answers[bs] = generate(bundle, images, questions, batch_size=bs, **kw)
            times[bs].append(time.perf_counter() - t0)
    b = cfg.eval.batch_size
    same = sum(x == y for x, y in zip(answers[b], answers[1]))
    return {
        "questions": len(questions),
        "batch_size": b,
        "max_new_tokens": cfg.eval.max_new_tokens,
        "identical_answers": same,
        "s_batched": min(times[b]),
        "s_one_at_a_time": min(times[1]),
        "speedup": min(times[1]) / min(times[b]),
    }


def merge_ratio(cfg, run_dir, ds, method: str, target: str, repeats: int) -> dict:
    """Decoding an unlearned model with its adapter merged (``generate``'s way) against peft's
    LoRA layers (merging switched off: ``lora.MERGE_BYTES = 0``), at ``eval.batch_size``."""
    from unittest import mock

    images, questions = evaluation_questions(cfg, ds, target)
    kw = {"max_new_tokens": cfg.eval.max_new_tokens, "batch_size": cfg.eval.batch_size}
    unlearned = load_unlearned_model(cfg, method, target, run_dir)  # built first if the run lacks it
    times: dict[str, list[float]] = {"merged": [], "peft": []}
    answers: dict[str, list[str]] = {}
    try:
        for _ in range(repeats):
            for mode in times:
                limit = lora_module.MERGE_BYTES if mode == "merged" else 0
                with mock.patch.object(lora_module, "MERGE_BYTES", limit):
                    t0 = time.perf_counter()
                    answers[mode] = generate(unlearned, images, questions, **kw)
                    times[mode].append(time.perf_counter() - t0)
    finally:
        remove_lora(unlearned.model)
    return {
        "method": method,
        "target": target,
        "questions": len(questions),
        "batch_size": cfg.eval.batch_size,
        "identical_answers": sum(x == y for x, y in zip(answers["merged"], answers["peft"])),
        "s_merged": min(times["merged"]),
        "s_peft": min(times["peft"]),
        "speedup": min(times["peft"]) / min(times["merged"]),
    }


class MatmulShapes(TorchDispatchMode):
    """Records every matrix product run inside the block: (op, argument shapes, dtype) -> count."""

    def __init__(self):
        super().__init__()
        self.seen: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in MATMULS:
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
            self.seen[(name, shapes, dtype)] += 1
        return func(*args, **(kwargs or {}))


def _matmul_flops(name: str, shapes: tuple) -> int:
    a, b = shapes[-2], shapes[-1]  # (…, m, k) @ (…, k, n); addmm/baddbmm's bias comes first
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def _replay_seconds(name: str, shapes: tuple, dtype, reps: int) -> float:
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(s, generator=g, dtype=torch.float32).to(dtype) for s in shapes]
    fn = getattr(torch.ops.aten, name)
    for _ in range(3):
        fn(*ts)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(*ts)
    return (time.perf_counter() - t0) / reps


def injection_rate(cfg, ds, steps: int) -> dict:
    tcfg = cfg.train
    fresh = build_tiny(cfg.model, world_texts(ds), cfg.world.image_size, seed=cfg.seed)
    examples, replay = stage_examples(ds, "finetune", None, tcfg, cfg.seed)
    enc = encode_qa(fresh, examples + replay, image_loader(ds), max_length=context_length(fresh, cfg.model.max_length))
    enc = enc.subset(list(range(min(len(enc), steps * tcfg.batch_size))))
    set_vision_trainable(fresh, not tcfg.freeze_vision)

    def train(bundle, e):
        return train_model(
            bundle, e, epochs=1, lr=tcfg.lr, batch_size=tcfg.batch_size, seed=cfg.seed, progress=False,
            per_sequence=tcfg.per_sequence_loss, micro_batches=tcfg.micro_batches,
        )  # fmt: skip

    counted = copy.deepcopy(fresh)
    shapes = MatmulShapes()
    with FlopCounterMode(display=False) as fc, shapes:
        train(counted, copy.deepcopy(enc))
    flops = fc.get_total_flops()
    timed = []
    for _ in range(3):
        b = copy.deepcopy(fresh)
        e = copy.deepcopy(enc)
        t0 = time.perf_counter()
        history = train(b, e)
        timed.append(time.perf_counter() - t0)
    secs = min(timed)
    mm_flops, mm_secs = 0, 0.0
    for (name, shp, dtype), n in shapes.seen.items():
        f = _matmul_flops(name, shp)
        reps = max(3, min(200, int(2e8 / max(1, f))))
        mm_flops += n * f
        mm_secs += n * _replay_seconds(name, shp, dtype, reps)
    square = 1024
    sq = _replay_seconds("mm", ((square, square), (square, square)), torch.float32, 20)
    rate = flops / secs / 1e9
    mm_rate = mm_flops / mm_secs / 1e9
    peak = 2 * square**3 / sq / 1e9
    return {
        "steps": len(history),
        "items": len(enc),
        "gflop": flops / 1e9,
        "seconds": secs,
        "gflops": rate,
        "matmul_share_of_flops": mm_flops / flops,
        "matmul_shapes": len(shapes.seen),
        "matmul_gflops_same_shapes": mm_rate,
        "share_of_same_shape_rate": rate / mm_rate,
        "square_mm_gflops": peak,
        "share_of_square_rate": rate / peak,
        "matmul_seconds_alone": mm_secs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--target", default="person")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--injection-steps", type=int, default=12)
    ap.add_argument("--merge-method", default="npo", help="the unlearned model whose merged decoding is timed")
    ap.add_argument("--only", default="unlearn,generate,inject", help="comma-separated parts to run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(torch_threads())
    cfg = load_config(args.profile, seed=args.seed)
    run_dir = resolve_run_dir(cfg, args.run_dir or None)
    parts = set(args.only.split(","))
    ds = get_world(cfg, run_dir, progress=False)
    print(
        f"profile {cfg.profile}, seed {cfg.seed}, target {args.target}, threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}"
    )
    out: dict = {"profile": cfg.profile, "threads": torch.get_num_threads()}
    if parts & {"unlearn", "generate"}:
        bundle = get_model(cfg, "finetune", run_dir=run_dir, progress=False)
    if "unlearn" in parts:
        rows = unlearning_ratio(cfg, bundle, ds, args.target, args.repeats)
        out["unlearn"] = rows
        print(f"\n1. unlearning, reference once vs every step ({cfg.unlearn.steps} steps, batch {cfg.unlearn.batch_size}):")
        cols = (
            ("step 1 |Δ|", 10),
            ("max |Δloss|", 11),
            ("relative", 9),
            ("step once", 10),
            ("every", 8),
            ("x", 5),
            ("run once", 9),
            ("every", 7),
            ("x", 5),
        )
        print(f"{'method':8s}" + "".join(f" {c:>{w}s}" for c, w in cols))
        for r in rows:
            print(
                f"{r['method']:8s} {r['first_step_loss_diff']:10.1e} {r['max_loss_diff']:11.1e} "
                f"{r['max_loss_diff_relative']:9.1e} "
                f"{r['step_s_once']:10.4f} {r['step_s_every_step']:8.4f} {r['step_speedup']:5.2f} "
                f"{r['run_s_once']:9.2f} {r['run_s_every_step']:7.2f} {r['run_speedup']:5.2f}"
            )
    if "generate" in parts:
        g = generation_ratio(cfg, bundle, ds, args.target, args.repeats)
        out["generate"] = g
        print(
            f"\n2. evaluation of {g['questions']} questions (up to {g['max_new_tokens']} new tokens): batch {g['batch_size']} "
            f"{g['s_batched']:.1f}s, one at a time {g['s_one_at_a_time']:.1f}s, {g['speedup']:.1f}x; "
            f"identical answers {g['identical_answers']}/{g['questions']}"
        )
        m = merge_ratio(cfg, run_dir, ds, args.merge_method, args.target, args.repeats)
        out["merge"] = m
        print(
            f"   {m['method']}'s unlearned model ({m['target']}), batch {m['batch_size']}: adapter merged "
            f"{m['s_merged']:.1f}s, through peft's LoRA layers {m['s_peft']:.1f}s, {m['speedup']:.2f}x; "
            f"identical answers {m['identical_answers']}/{m['questions']}"
        )
    if "inject" in parts:
        r = injection_rate(cfg, ds, args.injection_steps)
        out["inject"] = r
        print(
            f"\n3. injection, {r['steps']} fine-tuning steps on {r['items']} items: {r['gflop']:.1f} GFLOP in "
            f"{r['seconds']:.2f}s = {r['gflops']:.1f} GFLOP/s; matrix products are {r['matmul_share_of_flops']:.0%} of the FLOPs "
            f"({r['matmul_shapes']} shapes), alone they run at {r['matmul_gflops_same_shapes']:.1f} GFLOP/s and take "
            f"{r['matmul_seconds_alone']:.2f}s; injection reaches {r['share_of_same_shape_rate']:.0%} of that rate and "
            f"{r['share_of_square_rate']:.0%} of a 1024² product's {r['square_mm_gflops']:.1f} GFLOP/s"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
