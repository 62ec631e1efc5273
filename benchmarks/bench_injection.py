"""Benchmark: all six knowledge-injection stages of a profile, their time, and what the models know.

    python benchmarks/bench_injection.py --profile tiny [--threads 2] [--seed 0] [--world DIR]
                                         [--set train.finetune_epochs=8 ...] [--json OUT.json]

Stages (design: Injection): base, base without the forget events, finetune, goal(person),
goal(event), goal(both) — trained directly with ``train.inject`` (no stage cache), from one
world written to a temporary folder (or ``--world``). The vision pre-training is shared by
the two bases (``train.vision_exclude_forget_events``), so the second base reuses it.

Prints per stage its wall time, CPU time and the load average around it (the machine may be
shared: CPU time far above 2× wall time, or a load above the thread count, flags contention),
then the quality bars of the tiny profile, parameter counts and peak RSS. Not a test: timings
depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pebench_core import train as T  # noqa: E402
from pebench_core.config import load_config, parse_overrides  # noqa: E402
from pebench_core.data import event_qa, load_dataset, person_qa, pope_qa, world_texts  # noqa: E402
from pebench_core.evaluate import sample  # noqa: E402
from pebench_core.metrics import name_match, parse_yes_no  # noqa: E402
from pebench_core.models import build_tiny, describe, generate  # noqa: E402
from pebench_core.scorers import keyword_score  # noqa: E402

# (label, stage, target, parent)
STAGES = [
    ("base", "base", None, "init"),
    ("base(noevents)", "base", "event", "init"),
    ("finetune", "finetune", None, "base"),
    ("goal(person)", "goal", "person", "base"),
    ("goal(event)", "goal", "event", "base(noevents)"),
    ("goal(both)", "goal", "both", "base(noevents)"),
]


def clone(bundle):
    return dataclasses.replace(bundle, model=copy.deepcopy(bundle.model), _prompt_cache={})


def probes(ds, n: int, seed: int) -> dict[str, tuple[str, list]]:
    """Question sets: (kind, items or POPE QA), each a seeded sample of at most ``n``."""
    fp = set(ds.splits["person"]["forget_people"])
    fe = set(ds.splits["event"]["forget_events"])
    train = ds.items_where(role="train")
    held = ds.items_where(role="heldout") or train
    pre = ds.items_where(role="pretrain_eval")
    sets = {
        "names, training renders": ("person", [i for i in train if i.person not in fp]),
        "names, held-out renders": ("person", [i for i in held if i.person not in fp]),
        "names of the forget people": ("person", [i for i in train if i.person in fp]),
        "events, held-out renders": ("event", [i for i in held if i.event not in fe]),
        "forget events, held-out renders": ("event", [i for i in held if i.event in fe]),
        "real-world people": ("person", pre),
        "real-world events": ("event", pre),
        "POPE": ("pope", pope_qa(ds, "pretrain_eval")),
    }
    return {k: (kind, sample(items, n, seed, f"bench:{k}")) for k, (kind, items) in sets.items()}


def knowledge(bundle, ds, sets, batch_size: int = 64) -> dict[str, float]:
    cache: dict = {}

    def img(item_id):
        if item_id not in cache:
            cache[item_id] = ds.image(item_id)
        return cache[item_id]

    out = {}
    for name, (kind, items) in sets.items():
        if not items:
            continue
        qas = items if kind == "pope" else (person_qa(items, ds) if kind == "person" else event_qa(items, ds))
        ans = generate(bundle, [img(q.item_id) for q in qas], [q.question for q in qas], max_new_tokens=40, batch_size=batch_size)
        if kind == "person":
            vals = [name_match(a, ds.person(q.person).name) for a, q in zip(ans, qas)]
        elif kind == "event":
            vals = [keyword_score(a, ds.event(q.event).keywords, ds.description(ds.item(q.item_id))) for a, q in zip(ans, qas)]
        else:
            vals = [parse_yes_no(a) == q.answer.lower().startswith("yes") for a, q in zip(ans, qas)]
        out[name] = sum(map(float, vals)) / len(vals)
    return out


BARS = [  # (model, probe, op, bar) — the tiny profile's quality bar
    ("finetune", "names, training renders", ">=", 0.95),
    ("finetune", "names, held-out renders", ">=", 0.85),
    ("finetune", "events, held-out renders", ">=", 0.80),
    ("finetune", "POPE", ">=", 0.85),
    ("base", "real-world people", ">=", 0.90),
    ("goal(person)", "names of the forget people", "<=", 0.05),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--world", default=None, help="a world folder to reuse (default: write one to a temp folder)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--items", type=int, default=160, help="questions per probe (seeded sample)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument(
        "--stages", default=None, help="comma-separated stage labels to run (their parents are added), e.g. base,finetune"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.profile, seed=args.seed, overrides=parse_overrides(args.set))
    print(
        f"profile {cfg.profile}, seed {cfg.seed}, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"train: {cfg.train}")
    tmp = tempfile.TemporaryDirectory(prefix="bench-injection-")
    t0 = time.perf_counter()
    if args.world:
        ds = load_dataset(args.world)
    else:
        from pebench_core.world import generate_world, write_world

        ds = load_dataset(write_world(generate_world(cfg.world, cfg.seed), Path(tmp.name) / "world", progress=False))
    print(f"world: {len(ds.people)} people x {len(ds.events)} events, {ds.image_size} px ({time.perf_counter() - t0:.1f}s)")

    models = {"init": build_tiny(cfg.model, world_texts(ds), cfg.world.image_size, cfg.seed)}
    parts = describe(models["init"])
    stages = STAGES
    if args.stages:
        want = {x.strip() for x in args.stages.split(",") if x.strip()}
        unknown = want - {s[0] for s in STAGES}
        if unknown:
            ap.error(f"--stages: unknown stage(s) {sorted(unknown)}; allowed: {', '.join(s[0] for s in STAGES)}")
        parent_of = {s[0]: s[3] for s in STAGES}
        for x in list(want):
            while parent_of.get(x, "init") != "init":
                x = parent_of[x]
                want.add(x)
        stages = [s for s in STAGES if s[0] in want]
    infos, rows = {}, []
    for label, stage, target, parent in stages:
        b = clone(models[parent])
        load0, c0, w0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
        info = T.inject(b, ds, stage, target, cfg, progress=False, vision_cache=Path(tmp.name) / "vision")
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        models[label] = b
        infos[label] = {k: v for k, v in info.items() if k != "history"}
        v = info.get("vision", {})
        rows.append(
            {
                "stage": label,
                "wall_s": wall,
                "cpu_s": cpu,
                "load": f"{load0:.1f}->{os.getloadavg()[0]:.1f}",
                "vision_s": (v.get("seconds") or 0.0) if not v.get("cached") else 0.0,
                "llava_s": info.get("seconds_llava") or 0.0,
                "steps": info["steps"],
                "examples": info["examples"] + info["replay"],
                "final_loss": info["final_loss"],
            }
        )
        print(
            f"  {label:15s} {wall:6.1f}s wall  {cpu:6.1f}s cpu  "
            f"(vision {rows[-1]['vision_s']:.1f}s{' shared' if v.get('cached') else ''}, llava {rows[-1]['llava_s']:.1f}s, "
            f"{info['steps']} steps on {rows[-1]['examples']} QA)  loss {info['final_loss']:.4f}  "
            f"load {rows[-1]['load']}",
            flush=True,
        )
    total = sum(r["wall_s"] for r in rows)
    print(f"{len(stages)} stage(s): {total:.1f}s wall, {sum(r['cpu_s'] for r in rows):.1f}s cpu")
    if "vision" in infos["base"]:
        print(f"vision pre-training held-out accuracy: {infos['base']['vision']['heldout_accuracy']}")

    sets = probes(ds, args.items, cfg.seed)
    t1 = time.perf_counter()
    know = {label: knowledge(models[label], ds, sets) for label, *_ in stages}
    print(f"\nwhat each model knows ({args.items} questions per probe at most; evaluation {time.perf_counter() - t1:.1f}s)")
    labels = [s[0] for s in stages]
    print(f"{'probe':34s}" + "".join(f"{x:>16s}" for x in labels))
    for p in sets:
        print(f"{p + f' (n={len(sets[p][1])})':34s}" + "".join(f"{know[x].get(p, float('nan')):16.3f}" for x in labels))
    print("\nquality bar:")
    met = 0
    for model, probe, op, bar in BARS:
        if model not in know:
            continue
        v = know[model][probe]
        ok = v >= bar if op == ">=" else v <= bar
        met += ok
        print(f"  {model:13s} {probe:30s} {v:6.3f} {op} {bar:.2f}  {'met' if ok else 'MISSED'}")
    n_bars = sum(m in know for m, *_ in BARS)
    print(
        f"  {met} of {n_bars} met; injection time {total:.0f}s"
        + (" (budget 480s)" if len(stages) == len(STAGES) else f" ({len(stages)} of {len(STAGES)} stages)")
    )
    print("\nparameters:")
    print(parts.to_string(index=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "stages": rows,
                    "knowledge": know,
                    "infos": infos,
                    "parameters": parts.to_dict("records"),
                    "peak_rss_mib": rss,
                    "total_s": total,
                },
                indent=1,
                default=str,
            )
        )
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
