"""The `pebench` command line (design: The command line): world, run, book.

    pebench world --profile tiny --seed 0 --out DIR
    pebench run   --profile tiny --seed 0 --out DIR      (or --seeds 0,1,2)
    accelerate launch --multi_gpu --num_processes N -m pebench_core.cli run ...   (data parallel)
    pebench plan  --profile paper --set model.path=DIR   (memory plan per stage)
    pebench book  --profile tiny

``--profile`` takes a profile name or a YAML file; ``--set section.field=value`` overrides
one field. Every bad input stops with one line that names the parameter and what is
allowed, and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from .config import load_config
from .errors import ConfigError
from .ranges import parse_seed_list

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--profile", default="tiny", help="tiny, smoke, paper, or a YAML file (default: tiny)")
    if seed:
        p.add_argument(
            "--seed",
            type=int,
            default=None,
            help="world, model and forget-set seed (default: the profile's `seed`, e.g. from --set seed=N, else 0)",
        )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set world.forget_share=0.4 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pebench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="write the synthetic PEBench world to a folder")
    _common(w)
    w.add_argument("--out", required=True, type=Path, help="folder to write (created)")

    r = sub.add_parser("run", help="run every stage; results in OUT/results/")
    _common(r)
    r.add_argument("--seeds", default=None, help="several distinct seeds, e.g. 0,1,2 (overrides --seed)")
    r.add_argument("--out", type=Path, default=None, help="run folder (default: runs/PROFILE-sSEED)")

    pl = sub.add_parser("plan", help="the memory plan of every long stage for the configured model")
    _common(pl)
    pl.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="the device memory to plan for, in GiB (default: the configured device's, which this machine must then have)",
    )
    pl.add_argument(
        "--processes",
        type=int,
        default=1,
        help="devices the run is launched on (accelerate launch --num_processes); a full fine-tune is then sharded with FSDP",
    )

    b = sub.add_parser("book", help="execute every chapter with papermill, then build the HTML book")
    _common(b)
    b.add_argument("--chapters", default=None, help="comma-separated chapter names to execute (default: all)")
    b.add_argument("--force", action="store_true", help="re-execute chapters even if unchanged")
    b.add_argument("--no-html", action="store_true", help="execute the chapters but do not build HTML")
    return ap


def _cmd_world(args) -> None:
    cfg = load_config(args.profile, seed=args.seed, overrides=args.overrides)
    if cfg.world.data_dir:
        raise ConfigError(
            f"world.data_dir is set ({cfg.world.data_dir}): a real PEBench folder is read where it is, "
            "by `pebench run` and the chapters, and needs no `pebench world` step; "
            "leave world.data_dir empty to write the synthetic world"
        )
    _check_out(args.out)
    from .world import generate_world, write_world

    t0 = time.perf_counter()
    world = generate_world(cfg.world, cfg.seed)
    path = write_world(world, args.out)
    n = sum(1 for _ in (Path(path) / "images").iterdir())
    print(
        f"[world] {len(world.people)} people x {len(world.events)} events, {n} images "
        f"in {time.perf_counter() - t0:.1f}s -> {path}"
    )


def _check_out(out: str | None) -> None:
    """A run folder that cannot be one, refused before torch is imported (its parents are
    created as the stages write)."""
    if out is None:
        return
    path = Path(out).expanduser()
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {out}: {blocker} exists and is not a folder; choose another path")
    if blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {blocker} cannot be written; choose another path")


def _cmd_run(args) -> None:
    several = args.seeds is not None
    seeds: list[int | None] = list(parse_seed_list(args.seeds, "--seeds")) if several else [args.seed]
    # Every seed's configuration is checked before the first one runs.
    cfgs = [load_config(args.profile, seed=seed, overrides=args.overrides) for seed in seeds]
    _check_out(args.out)
    from .parallel import apply_threads
    from .pipeline import run_all
    from .stages.keys import seed_run_dir

    apply_threads()  # the cores this process may use (or OMP_NUM_THREADS), not torch's count of the machine's

    for cfg in cfgs:
        run_all(cfg, seed_run_dir(cfg, args.out, several))


def _cmd_plan(args) -> None:
    cfg = load_config(args.profile, seed=args.seed, overrides=args.overrides, weights=False)  # a plan reads no weights
    if args.memory_gb is not None and not (math.isfinite(args.memory_gb) and args.memory_gb > 0):
        raise ConfigError(f"--memory-gb must be a positive number of GiB, got {args.memory_gb}")
    if args.processes < 1:
        raise ConfigError(f"--processes must be at least 1, got {args.processes}")
    import torch

    from .memory import GiB, device_memory, plan_for
    from .stages import get_model

    # Plan for the configured device even on a machine that lacks it (a laptop planning an
    # 80 GB GPU): the model is weightless (meta) and the budget comes from --memory-gb.
    device = cfg.model.device if cfg.model.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.memory_gb is not None:
        budget = args.memory_gb * GiB
    elif device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("this machine has no CUDA device to read the memory of; pass --memory-gb (e.g. 80)")
    else:
        budget = device_memory(device)
    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    if cfg.model.kind == "local":  # config and processor only: a 7B plan reads no weights
        from .models import load_skeleton

        bundle = load_skeleton(cfg.model.path, "cpu", dtype)
    else:
        bundle = get_model(cfg, "init")
    plans = plan_for(cfg, bundle, budget, device, args.processes)
    print(
        f"memory plan for {cfg.model.path or 'the tiny model'} on {args.processes} x {device} "
        f"({budget / GiB:.1f} GiB each, {dtype}):"
    )
    for p in plans:
        print(p.describe())
        for note in p.notes:
            print(f"    {note}")
    bad = [p.stage for p in plans if not p.fits]
    if bad:
        raise ConfigError(f"{', '.join(bad)} would not fit; see the plan above for what takes the memory")


def _cmd_book(args) -> None:
    cfg = load_config(args.profile, seed=args.seed, overrides=args.overrides)  # bad settings stop here
    from .book import build_html, build_stages_first, execute_chapters, write_toc
    from .parallel import apply_threads, stage_workers

    only = [c.strip() for c in args.chapters.split(",")] if args.chapters else None
    apply_threads()
    t0 = time.perf_counter()
    parts: list[str] = []
    kernels = 1
    if not only:  # a chapter or two asked for: they build what they need themselves
        stages = build_stages_first(cfg)
        if stages is not None:
            parts.append(f"stages {stages:.0f}s")
            # The chapters now only read stages: they execute side by side as the stages were
            # built, one thread each (PEBENCH_WORKERS decides both).
            kernels = stage_workers(cfg, 10**6)
    t1 = time.perf_counter()
    chapters = execute_chapters(
        profile=str(args.profile), seed=cfg.seed, only=only, force=args.force, overrides=args.overrides, kernels=kernels
    )
    parts.append(f"chapters {time.perf_counter() - t1:.0f}s")
    if only:
        from .book import CHAPTERS

        executed = Path(__file__).resolve().parent.parent / "book" / "chapters"
        chapters = [c for c in CHAPTERS if (executed / f"{c.output}.ipynb").is_file()]
    write_toc(chapters)
    where = "no HTML (--no-html)"
    if not args.no_html:
        t1 = time.perf_counter()
        where = str(build_html())
        parts.append(f"HTML {time.perf_counter() - t1:.0f}s")
    print(f"[book] done in {time.perf_counter() - t0:.1f}s ({', '.join(parts)}) -> {where}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Read as distributed.world_size() does, without importing torch: a bad setting stops in
    # a fraction of a second.
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # under `accelerate launch`: one process group, rank 0 speaks
        from . import distributed as D

        D.init()
        if not D.is_main():
            os.environ["TQDM_DISABLE"] = "1"
            sys.stdout = open(os.devnull, "w")
    try:
        {"world": _cmd_world, "run": _cmd_run, "plan": _cmd_plan, "book": _cmd_book}[args.command](args)
    except ConfigError as exc:
        print(f"pebench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every artifact is written atomically: nothing half-written stays
        print(
            f"pebench {args.command}: interrupted; finished stages are kept and the one under way left nothing behind "
            "(the same command resumes)",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a failed book build or notebook: its own message, no traceback
        from .book import BookBuildError

        try:
            from papermill.exceptions import PapermillExecutionError
        except ImportError:  # papermill is an optional extra
            PapermillExecutionError = BookBuildError
        if isinstance(exc, (BookBuildError, PapermillExecutionError)):
            print(f"pebench {args.command}: error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
