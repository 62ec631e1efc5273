"""Executing the chapters with papermill and building the Jupyter Book (design: Chapters and the book).

The chapter list lives here, once: the order is the dependency order, and ``_toc.yml`` is
generated from the chapters that were executed, so the book never points at a missing file.
A chapter is re-executed only when its notebook, its parameters or the core library
changed; otherwise the executed copy in ``book/chapters/`` is kept (its key is stored in
the notebook's metadata).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .explorers import page_state
from .methods import chapter_methods
from .results import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent


class BookBuildError(RuntimeError):
    """jupyter-book failed; the message holds the tail of its output."""


@dataclass(frozen=True)
class Chapter:
    source: str  # notebook under notebooks/
    output: str  # executed notebook under book/chapters/ (without suffix)
    part: str  # the part of the book it belongs to
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # replaces the executed copy's first heading (one notebook, several chapters)


CHAPTERS: list[Chapter] = [
    Chapter("01_world.ipynb", "01_world", "The world and the model"),
    Chapter("02_injection.ipynb", "02_injection", "The world and the model"),
    Chapter("03_measuring.ipynb", "03_measuring", "Measuring forgetting"),
    # one chapter per registered method that has one, titled by the registry
    *[Chapter("04_method.ipynb", f"04_{m.name}", "Unlearning methods", {"method": m.name}, m.title) for m in chapter_methods()],
    Chapter("05_simultaneous.ipynb", "05_simultaneous", "Interference"),
    Chapter("06_interference.ipynb", "06_interference", "Interference"),
    Chapter("07_robustness.ipynb", "07_robustness", "Is it really forgotten?"),
    Chapter("08_leaderboard.ipynb", "08_leaderboard", "Results"),
]

FRONT = ["book/how_to_read", "book/syllabus"]
RUN_TIMES = "book/_generated/run_times.md"  # the syllabus includes it
STAGES_FIRST = "book/_generated/stages_first.json"  # what build_stages_first did, for the run-time table
BACK = ["book/glossary", "book/design", "book/bibliography"]


def _core_fingerprint() -> str:
    h = hashlib.sha256()
    core = ROOT / "pebench_core"
    for p in sorted(core.rglob("*.py")):  # every module, the sub-packages' too (stages/, probes/, models/, ...)
        h.update(p.relative_to(core).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def chapter_key(ch: Chapter, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update((ROOT / "notebooks" / ch.source).read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(_core_fingerprint().encode())
    return h.hexdigest()[:16]


def _stored_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"].get("pebench", {}).get("key")
    except (OSError, ValueError, KeyError):
        return None


def build_stages_first(cfg, root: Path = ROOT, run_dir=None, log=print) -> float | None:
    """Before the chapters, build every stage of the run the chapters read (``pebench run``'s
    pipeline into the run folder they use) when independent stages can be built in parallel
    worker processes (:func:`pebench_core.parallel.stage_workers`: the tiny model on a CPU of
    two or more cores). The chapters then read their stages from the cache instead of
    building them one after another in their kernels. ``run_dir``: the chapters' run folder
    (default ``runs/PROFILE-sSEED``, as theirs). Returns the seconds it took, or
    ``None`` (nothing done: the chapters build what they need, as before)."""
    from .parallel import stage_workers
    from .pipeline import run_all
    from .stages import default_run_dir

    record = root / STAGES_FIRST
    workers = stage_workers(cfg, 10**6)
    if workers <= 1:
        record.unlink(missing_ok=True)
        return None
    log(f"[book] first the run's stages, independent ones in {workers} processes of one thread each (the chapters read them)")
    t0 = time.perf_counter()
    run_all(cfg, run_dir or default_run_dir(cfg))
    seconds = round(time.perf_counter() - t0, 1)
    info = {"seconds": seconds, "workers": workers, "profile": str(cfg.profile), "cores": os.cpu_count()}
    atomic_write_bytes(record, (json.dumps(info) + "\n").encode())
    log(f"[book] stages ready in {seconds:.1f}s")
    return seconds


def execute_chapters(
    profile: str = "tiny",
    seed: int = 0,
    run_dir: str | None = None,
    only: list[str] | None = None,
    force: bool = False,
    extra: dict[str, Any] | None = None,
    out_dir: Path | None = None,
    log=print,
    overrides: list[str] | None = None,
    kernels: int = 1,
) -> list[Chapter]:
    """Run every chapter's notebook with papermill into ``book/chapters/``; return the chapters run.

    ``overrides`` (``key=value`` strings, as ``pebench --set`` takes them) reach every chapter
    as its ``overrides`` parameter, and are part of each chapter's key. ``kernels``: how many
    chapters execute at once, the cores shared among them. More than one only pays once the
    run's stages are built (:func:`build_stages_first`): chapters that build a stage themselves
    would build it twice, side by side.
    """
    # A kernel started with MPLBACKEND=Agg silently drops every inline figure.
    os.environ.pop("MPLBACKEND", None)
    # A progress bar saved in an executed notebook is frozen at its first frame ("0%"):
    # the kernels run without them (tqdm reads TQDM_* variables as its defaults).
    os.environ["TQDM_DISABLE"] = "1"
    if kernels < 1:
        raise ConfigError(f"kernels={kernels}: how many chapters execute at once; allowed: 1 or more")
    out_dir = Path(out_dir or ROOT / "book" / "chapters")
    out_dir.mkdir(parents=True, exist_ok=True)
    known = {c.output for c in CHAPTERS}
    if only:
        unknown = sorted(set(only) - known)
        if unknown:
            raise ConfigError(f"unknown chapter(s) {unknown}; allowed: {', '.join(sorted(known))}")
    todo: list[tuple[Chapter, dict[str, Any], Path, str]] = []
    for ch in CHAPTERS:
        if only and ch.output not in only:
            continue
        params = {"profile": profile, "seed": seed, **ch.parameters, **(extra or {})}
        if run_dir:
            params["run_dir"] = str(run_dir)
        if overrides:  # absent when empty: the default build keeps its chapter keys
            params["overrides"] = list(overrides)
        target = out_dir / f"{ch.output}.ipynb"
        key = chapter_key(ch, params)
        if not force and target.is_file() and _stored_key(target) == key:
            log(f"[book] {ch.output}: unchanged, kept")
        else:
            todo.append((ch, params, target, key))
    # Each kernel's torch takes its thread count from here when it starts: its share of the
    # cores this process may use (torch's own count is the machine's: more, under a quota).
    # Never more kernels than that budget of threads, nor than chapters to execute.
    from .parallel import torch_threads

    budget = torch_threads()
    kernels = max(1, min(kernels, budget, len(todo)))
    threads = str(max(1, budget // kernels))
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        if kernels == 1:
            for k, job in enumerate(todo, 1):
                seconds = _execute_one(*job, kernels, log)
                log(f"[book] {job[0].output}: executed in {seconds:.1f}s ({k}/{len(todo)})")
        else:
            _execute_side_by_side(todo, kernels, log)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
    return [ch for ch in CHAPTERS if not only or ch.output in only]


def _execute_side_by_side(todo: list[tuple[Chapter, dict[str, Any], Path, str]], kernels: int, log) -> None:
    """The chapters of ``todo`` in ``kernels`` papermill runs at a time. Threads are enough
    here: each run waits on its own kernel process, which does the work. The first failure is
    raised once the running chapters end; those not yet started are dropped."""
    import threading
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    lock, finished = threading.Lock(), []

    def one(job) -> None:
        seconds = _execute_one(*job, kernels, log)
        with lock:
            finished.append(job[0].output)
            log(f"[book] {job[0].output}: executed in {seconds:.1f}s ({len(finished)}/{len(todo)}, {kernels} at a time)")

    with ThreadPoolExecutor(kernels, thread_name_prefix="chapter") as ex:
        futures = [ex.submit(one, job) for job in todo]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
    for f in futures:
        error = None if f.cancelled() else f.exception()
        if error is not None:
            raise error


def _execute_one(ch: Chapter, params: dict[str, Any], target: Path, key: str, kernels: int, log) -> float:
    """Execute one chapter into ``target`` (atomically, its key in the metadata); its seconds."""
    import papermill as pm

    t0 = time.perf_counter()
    tmp = target.with_name(f".{target.name}.tmp.ipynb")
    try:
        pm.execute_notebook(
            str(ROOT / "notebooks" / ch.source),
            str(tmp),
            parameters=params,
            kernel_name="python3",
            cwd=str(ROOT / "notebooks"),
            progress_bar=False,
            log_output=False,
        )
    except Exception:
        log(f"[book] {ch.output}: FAILED; the partly executed notebook is at {tmp}")
        raise
    nb = json.loads(tmp.read_text())
    if ch.title:
        _retitle(nb, ch.title)
    tidy_for_the_page(nb, params)
    seconds = round(time.perf_counter() - t0, 1)
    meta = {"key": key, "parameters": params, "seconds": seconds, "cores": os.cpu_count(), "kernels": kernels}
    nb["metadata"]["pebench"] = meta
    atomic_write_bytes(target, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode())
    tmp.unlink()
    return seconds


def _text(src: Any) -> str:
    return "".join(src) if isinstance(src, list) else str(src)


def _literal(value: Any) -> str:
    """``value`` as the parameters cell would write it (double-quoted strings, as the cell does)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


# Machine-specific: where the build ran. Scrubbed from what a page shows.
_LOCAL_PARAMETERS = ("run_dir",)


def tidy_for_the_page(nb: dict, params: dict[str, Any], root: Path = ROOT) -> None:
    """What a reader of the rendered page should see of an executed notebook.

    papermill adds an "injected-parameters" cell after the notebook's own ``parameters``
    cell; the page would show both (``method = "ga"`` then ``method = "gd"``). The injected
    cell stays in the notebook (it is the record of what ran) but is tagged ``remove-cell``,
    and the parameters cell shows the values that ran, its comments kept. Outputs lose the
    build machine's absolute paths (``/home/…/runs/tiny-s0`` reads ``runs/tiny-s0``; a run
    folder outside the checkout, e.g. ``/tmp/x/run0``, reads by its name, ``run0``); progress
    bars drawn as widgets go, and the explorers' widget state keeps only what the page needs
    (:func:`pebench_core.explorers.page_state`).
    """
    places = _places(params, root)
    shown = {k: v for k, v in params.items() if k not in _LOCAL_PARAMETERS}
    page_state(nb)
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        elif "parameters" in tags:
            lines = _text(cell["source"]).split("\n")
            for k, line in enumerate(lines):
                name, eq, rest = line.partition("=")
                name = name.strip()
                if not eq or name not in shown or not name.isidentifier():
                    continue
                comment = rest[rest.index("#") :] if "#" in rest else ""
                value = _literal(shown[name])
                width = len(line) - len(comment)  # keep the comment where it was when the value fits
                code = f"{name} = {value}"
                lines[k] = f"{code.ljust(width - 1)} {comment}".rstrip() if comment else code
            cell["source"] = "\n".join(lines)
        if cell.get("cell_type") == "code":
            for out in cell["outputs"]:
                _scrub_output(out, places)


def _places(params: dict[str, Any], root: Path) -> list[tuple[str, str]]:
    """(absolute prefix, what the page shows instead), longest first: the checkout reads as
    relative paths, a run folder elsewhere by its own name."""
    places = {str(root): "."}
    run_dir = params.get("run_dir")
    if run_dir:
        run = Path(run_dir).absolute()
        if not run.is_relative_to(root):
            places[str(run)] = run.name or "."
    return sorted(places.items(), key=lambda kv: -len(kv[0]))


def _scrub(text: str, places: list[tuple[str, str]]) -> str:
    for prefix, shown in places:
        text = text.replace(f"{prefix}{os.sep}", "" if shown == "." else f"{shown}{os.sep}").replace(prefix, shown)
    return text


def _scrub_output(out: dict, places: list[tuple[str, str]]) -> None:
    if "text" in out:
        out["text"] = _scrub(_text(out["text"]), places)
    for mime, value in out.get("data", {}).items():
        if mime.startswith("text/") or mime in ("application/javascript",):
            out["data"][mime] = _scrub(_text(value), places)
    if "traceback" in out:
        out["traceback"] = [_scrub(t, places) for t in out["traceback"]]


def _retitle(nb: dict, title: str) -> None:
    """Replace the first ``# heading`` of the notebook with ``title``."""
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = src.split("\n")
        for k, line in enumerate(lines):
            if line.startswith("# "):
                lines[k] = f"# {title}"
                cell["source"] = "\n".join(lines)
                return


def write_toc(chapters: list[Chapter], root: Path = ROOT) -> Path:
    """Generate ``_build/_toc.yml`` listing the executed chapters, grouped into parts in book order.

    It goes under ``_build/`` (not over the committed ``_toc.yml``) so a build never dirties
    the checkout; :func:`build_html` points jupyter-book at it.
    """
    parts: list[dict[str, Any]] = [{"caption": "Getting started", "chapters": [{"file": f} for f in FRONT]}]
    for ch in chapters:
        if not parts or parts[-1]["caption"] != ch.part:
            parts.append({"caption": ch.part, "chapters": []})
        parts[-1]["chapters"].append({"file": f"book/chapters/{ch.output}"})
    parts.append({"caption": "Reference", "chapters": [{"file": f} for f in BACK]})
    toc = {"format": "jb-book", "root": "book/intro", "parts": parts}
    write_run_times(chapters, root)
    text = "# Generated by `pebench book` from pebench_core/book.py:CHAPTERS; edit that list, not this file.\n"
    text += yaml.safe_dump(toc, sort_keys=False)
    return atomic_write_bytes(root / "_build" / "_toc.yml", text.encode())


def write_run_times(chapters: list[Chapter], root: Path = ROOT) -> Path:
    """The syllabus's table of how long each chapter took to execute in this build (from
    each executed notebook's metadata), written to ``book/_generated/run_times.md``."""
    rows = []
    side_by_side = 1
    for ch in chapters:
        try:
            nb = json.loads((root / "book" / "chapters" / f"{ch.output}.ipynb").read_text())
        except (OSError, ValueError):
            continue
        meta = nb.get("metadata", {}).get("pebench", {})
        title = ch.title or next(
            (
                ln[2:].strip()
                for c in nb["cells"]
                if c["cell_type"] == "markdown"
                for ln in _text(c["source"]).split("\n")
                if ln.startswith("# ")
            ),
            ch.output,
        )
        sec = meta.get("seconds")
        p = meta.get("parameters", {})
        side_by_side = max(side_by_side, int(meta.get("kernels", 1)))
        rows.append(
            f"| {title} | {f'{sec / 60:.1f} min' if sec is not None else 'not recorded'} | "
            f"{p.get('profile', '')} | {meta.get('cores', '')} |"
        )
    try:
        info = json.loads((root / STAGES_FIRST).read_text())
        rows.insert(
            0,
            f"| The run's stages, built before the chapters ({info['workers']} processes) | {info['seconds'] / 60:.1f} min | "
            f"{info['profile']} | {info['cores']} |",
        )
        first = (
            " This build made every stage of the run first (the models, the unlearning runs, the probes) in "
            "parallel processes, each stage as soon as the stages it reads were there, so the chapters below only read them; "
        )
    except (OSError, ValueError, KeyError):
        first = " "
    together = (
        f"up to {side_by_side} chapters executed at a time, the cores shared among them, so their times overlap and "
        "a chapter on its own runs faster than its line; "
        if side_by_side > 1
        else ""
    )
    text = (
        "| Chapter | Time to execute | Profile | CPU cores |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Times are those of the build that made these pages." + first + together + "a chapter reads what an earlier chapter "
        "(or `pebench run`) already computed from the run's cache, so a chapter executed on its own, over an empty "
        "cache, may take longer than its line here.\n"
    )
    return atomic_write_bytes(root / RUN_TIMES, text.encode())


def build_html(root: Path = ROOT, log=print) -> Path:
    """Build the HTML book with execution off and warnings as errors."""
    exe = Path(sys.executable).with_name("jupyter-book")
    toc = root / "_build" / "_toc.yml"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "-W", "-n", "--keep-going"]
    if toc.is_file():
        cmd += ["--toc", str(toc)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BookBuildError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    log(f"[book] HTML built in {time.perf_counter() - t0:.1f}s: {root / '_build' / 'html' / 'index.html'}")
    return root / "_build" / "html" / "index.html"


def clean_build(root: Path = ROOT) -> None:
    shutil.rmtree(root / "_build", ignore_errors=True)
