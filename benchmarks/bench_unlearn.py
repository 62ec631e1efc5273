"""Benchmark: the cost of one unlearning step per method (as a ratio to GA's) and evaluation
throughput, on a profile's fine-tuned model (built and cached first if needed).

    python benchmarks/bench_unlearn.py --profile tiny [--steps 30] [--repeats 3] [--run-dir runs/tiny-s0]

Not a test: timings depend on the machine. The budget (design: Budgets): KL, DPO and NPO steps
cost at most 1.5x a GA step. Each method runs ``--repeats`` times, interleaved (GA, GD, …, GA,
GD, …) so that a slow spell of the machine hits every method alike; the table shows the best
repeat's median step. Beside the ratio to GA it shows the sequences a step runs and the answers
it scores (:func:`pebench_core.analysis.sequences_per_step`), the same ratio with the optional
retain term of DPO and NPO switched off (the design writes it as "+ optional NLL_r"), and the
one-off cost of the reference outputs computed before training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pebench_core.analysis import sequences_per_step  # noqa: E402
from pebench_core.config import load_config  # noqa: E402
from pebench_core.methods import BUILT_IN, runs_on  # noqa: E402
from pebench_core.evaluate import evaluate  # noqa: E402
from pebench_core.stages import get_model, get_world  # noqa: E402
from pebench_core.unlearn import step_cost  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run (median reported)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method, interleaved (best reported)")
    ap.add_argument("--target", default="person")
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = load_config(args.profile, seed=args.seed)
    bundle = get_model(cfg, "finetune", run_dir=args.run_dir)
    ds = get_world(cfg, args.run_dir, progress=False)
    print(
        f"profile {cfg.profile}, target {args.target}, {args.steps} steps, batch {cfg.unlearn.batch_size} "
        f"forget + {cfg.unlearn.batch_size} retain, device {bundle.device}, threads {torch.get_num_threads()}"
    )
    runs: dict[str, list[tuple[float, float]]] = {}
    no_retain = dataclasses.replace(cfg.unlearn, retain_weight=0.0)
    for _ in range(args.repeats):
        for m in BUILT_IN:
            target = args.target if runs_on(m, args.target) else "both"
            runs.setdefault(m, []).append(
                step_cost(bundle, ds, target, m, cfg.unlearn, cfg.eval, steps=args.steps, seed=cfg.seed, with_setup=True)
            )
            if m in ("dpo", "npo"):
                runs.setdefault(f"{m} (λ=0)", []).append(
                    step_cost(bundle, ds, target, m, no_retain, cfg.eval, steps=args.steps, seed=cfg.seed, with_setup=True)
                )
    best = {m: min(v) for m, v in runs.items()}  # (seconds per step, set-up seconds) of the fastest repeat
    ga = best["ga"][0]
    print(f"{'method':10s} {'s/step':>8s} {'x GA':>6s} {'seqs':>5s} {'answers':>8s} {'ref set-up s':>13s}  repeats (ms)")
    for m, (c, setup) in best.items():
        name = m.split(" ")[0]
        lam = 0.0 if "λ=0" in m else cfg.unlearn.retain_weight
        n_seq, n_ans = sequences_per_step(name, cfg.unlearn.batch_size, lam)
        flag = "  (over 1.5x GA)" if name in ("kl", "dpo", "npo") and c > 1.5 * ga else ""
        reps = " ".join(f"{x * 1000:.0f}" for x, _ in runs[m])
        print(f"{m:10s} {c:8.4f} {c / ga:6.2f} {n_seq:5d} {n_ans:8d} {setup:13.2f}  {reps}{flag}")
    t0 = time.perf_counter()
    ev = evaluate(bundle, ds, args.target, cfg.eval, cfg.seed)
    total = time.perf_counter() - t0
    print(
        f"evaluation: {ev.n_questions} questions, generation {ev.seconds:.1f}s "
        f"({ev.n_questions / ev.seconds:.1f} items/s), with metrics {total:.1f}s"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
