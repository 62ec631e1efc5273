"""Benchmark: the cost of one unlearning step per method (as a ratio to GA's) and evaluation
throughput, on a profile's fine-tuned model (built and cached first if needed).

    python benchmarks/bench_unlearn.py --profile tiny [--steps 8] [--run-dir runs/tiny-s0]

Not a test: timings depend on the machine. The target DESIGN §12 sets: KL, DPO and NPO steps
cost at most 1.5x a GA step. Beside the ratio to GA, the table shows the sequences each method
runs per step and the ratio to the method that trains on the same sequences without a
reference model (KL vs GD, DPO vs PO, NPO vs GD): that ratio isolates what the reference
model costs, which is what the DESIGN's budget is about.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pebench_core.config import METHODS, load_config  # noqa: E402
from pebench_core.evaluate import evaluate  # noqa: E402
from pebench_core.pipeline import get_model, get_world  # noqa: E402
from pebench_core.unlearn import step_cost  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per method (median reported)")
    ap.add_argument("--target", default="person")
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = load_config(args.profile, seed=args.seed)
    bundle = get_model(cfg, "finetune", run_dir=args.run_dir)
    ds = get_world(cfg, args.run_dir, progress=False)
    print(f"profile {cfg.profile}, target {args.target}, {args.steps} steps, batch {cfg.unlearn.batch_size} "
          f"forget + {cfg.unlearn.batch_size} retain, device {bundle.device}, threads {torch.get_num_threads()}")
    costs = {}
    for m in METHODS:
        target = "both" if m.endswith("+bgd") else args.target
        costs[m] = step_cost(bundle, ds, target, m, cfg.unlearn, cfg.eval, steps=args.steps, seed=cfg.seed)
    b = cfg.unlearn.batch_size
    # sequences per step: (with gradient, without); the retain term is on with retain_weight > 0
    seqs = {"ga": (b, 0), "gd": (2 * b, 0), "kl": (2 * b, b), "po": (2 * b, 0), "dpo": (3 * b, 0),
            "npo": (2 * b, 0), "gd+bgd": (2 * b, 0), "kl+bgd": (2 * b, b)}
    twin = {"kl": "gd", "dpo": "po", "npo": "gd", "kl+bgd": "gd+bgd"}
    print(f"{'method':10s} {'s/step':>8s} {'x GA':>6s} {'seqs (grad+ref)':>16s} {'x twin':>12s}")
    for m, c in costs.items():
        flag = "  (over 1.5x GA)" if m in ("kl", "dpo", "npo") and c > 1.5 * costs["ga"] else ""
        g, r = seqs.get(m, (float("nan"), 0))
        tw = f"{c / costs[twin[m]]:5.2f} ({twin[m]})" if m in twin and twin[m] in costs else ""
        print(f"{m:10s} {c:8.3f} {c / costs['ga']:6.2f} {f'{g}+{r}':>16s} {tw:>12s}{flag}")
    t0 = time.perf_counter()
    ev = evaluate(bundle, ds, args.target, cfg.eval, cfg.seed)
    total = time.perf_counter() - t0
    print(f"evaluation: {ev.n_questions} questions, generation {ev.seconds:.1f}s "
          f"({ev.n_questions / ev.seconds:.1f} items/s), with metrics {total:.1f}s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
