"""What the robustness probes add to a run: seconds per probe, in all, and as a share of the run.

    python benchmarks/bench_robustness.py --profile tiny --seed 0          # runs/tiny-s0
    python benchmarks/bench_robustness.py --profile tiny --run-dir DIR --fresh

The run's other stages are built first if missing (not timed). With ``--fresh`` the probe cache
(``<run>/robust``) is moved aside and the probes are rebuilt, so the time is the probes' own;
without it, cached probes are only read. Time it on a quiet machine: two torch jobs on two
cores thrash. Prints the seconds of each probe summed over every (model, target), the wall
time of all probes, and that time against the unlearning stages of the same run folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from pathlib import Path

from pebench_core.config import load_config
from pebench_core.stages import collect_results, collect_robustness, resolve_run_dir
from pebench_core.storage import MARKER, read_marker


def _seconds(folder: Path, stage: str) -> list[dict]:
    return [read_marker(p) for p in sorted((folder / stage).glob("*/*")) if (p / MARKER).is_file()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--fresh", action="store_true", help="move the probe cache aside and rebuild every probe")
    args = ap.parse_args()
    cfg = load_config(args.profile, seed=args.seed)
    out = resolve_run_dir(cfg, args.run_dir or None)
    collect_results(cfg, out)  # everything the probes read, built if missing (not timed)
    if args.fresh and (out / "robust").exists():
        aside = out / f"robust.before-bench-{int(time.time())}"
        shutil.move(str(out / "robust"), aside)
        print(f"[bench] the probe cache moved to {aside}")
    t0 = time.perf_counter()
    res, _ = collect_robustness(cfg, out)
    wall = time.perf_counter() - t0
    per_probe: Counter = Counter()
    stages = _seconds(out, "robust")
    for meta in stages:
        per_probe.update(meta.get("seconds_probe", {}))
    unlearn = sum(m.get("seconds", 0.0) for m in _seconds(out, "unlearn")) + sum(
        m.get("seconds", 0.0) for m in _seconds(out, "tune")
    )
    print(json.dumps({"probe_stages": len(stages), "rows": len(res), "seconds_per_probe": dict(per_probe)}, indent=1))
    print(f"[bench] all probes: {wall:.1f}s wall; unlearning and its grid in this folder: {unlearn:.1f}s; "
          f"probes / unlearning = {wall / max(unlearn, 1e-9):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
