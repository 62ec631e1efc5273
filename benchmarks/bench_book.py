"""What `make book` costs from a fresh clone, part by part: the table the README's Budgets quote.

    python benchmarks/bench_book.py                       # clone this checkout's HEAD, make book twice
    python benchmarks/bench_book.py --profile smoke --keep

Clones the checkout's committed HEAD into a temporary folder (nothing of this checkout is
reused: no .venv, no runs/, no _build/), runs ``make venv`` (the set-up), then ``make book``,
then ``make book`` again with nothing changed (the cache). It prints one table: the set-up;
the stages by kind, each kind's stages' own seconds summed (from the run's
``stage_times.csv``; they overlap in the worker pool, so their sum exceeds the stages' wall
time); the stages' wall time, the chapters and the HTML as `pebench book` reports them; the
first and the second ``make book``; and the site's weight. Time it on a quiet machine: two
torch jobs on two cores thrash, and quiet 2-core machines differ by up to about 2x.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 15 * 60  # make book, set-up included (book/design.md: Budgets)
_DONE = re.compile(r"\[book\] done in ([\d.]+)s \(stages ([\d.]+)s, chapters ([\d.]+)s, HTML ([\d.]+)s\)")


def _timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"[bench] {' '.join(cmd)} failed (exit {proc.returncode}); its output is in {log}")
    return time.perf_counter() - t0


def _row(part: str, seconds: float, note: str = "") -> str:
    return f"| {part} | {seconds:8.1f} s | {seconds / 60:5.1f} min | {note} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = ap.parse_args()

    where = Path(tempfile.mkdtemp(prefix="pebench-bench-book-"))
    clone = where / "clone"
    log = where / "make.log"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    make = ["make", f"PROFILE={args.profile}", f"SEED={args.seed}"]
    print(f"[bench] commit {commit}, {os.cpu_count()} cores, profile {args.profile}, seed {args.seed}; log: {log}", flush=True)

    setup = _timed([*make, "venv"], clone, log)
    first = _timed([*make, "book"], clone, log)
    found = _DONE.findall(log.read_text())
    if not found:
        sys.exit(f"[bench] `make book` printed no '[book] done in ...' line; see {log}")
    _, stages_wall, chapters, html = (float(x) for x in found[-1])
    second = _timed([*make, "book"], clone, log)

    by_kind: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    times = clone / "runs" / f"{args.profile}-s{args.seed}" / "stage_times.csv"
    with open(times) as f:
        for row in csv.DictReader(f):
            by_kind[row["kind"]] += float(row["seconds"])
            counts[row["kind"]] += 1
    site = clone / "_build" / "html"
    weight = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    heaviest = max((p for p in site.rglob("*.html")), key=lambda p: p.stat().st_size)

    total = setup + first
    print()
    print("| part | seconds | minutes | note |")
    print("|---|---:|---:|---|")
    print(_row("set-up (`make venv`)", setup))
    for kind, seconds in by_kind.items():
        print(_row(f"stages: {kind}", seconds, f"{counts[kind]} stages, their own times summed"))
    print(_row("stages (wall)", stages_wall, "in the worker pool, as `pebench book` reports"))
    print(_row("chapters", chapters, "executed side by side"))
    print(_row("HTML", html))
    print(
        _row(
            "**`make book` from a fresh clone**",
            total,
            f"budget {BUDGET_S / 60:.0f} min: {'within' if total <= BUDGET_S else 'OVER'}",
        )
    )
    print(_row("`make book` again, nothing changed", second, "every stage and chapter reused"))
    print(f"\nsite: {weight / 1e6:.1f} MB; heaviest page {heaviest.relative_to(site)} {heaviest.stat().st_size / 1e6:.2f} MB")
    if args.keep:
        print(f"[bench] the clone is kept at {clone}")
    else:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
