"""A world on disk: the image plan, POPE questions, atomic writing (optionally with a
process pool), reading back, and the digest that compares two written worlds.

The layout written by :func:`write_world` is read back by
:func:`pebench_core.data.load_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from ..code_keys import state
from ..errors import ConfigError
from ..storage import folder_bytes, is_complete, mark_complete, no_space_left, space_error, temp_dir_for, verify
from .catalogue import GENERATOR_VERSION, LAYOUT_LOOKALIKES, LOOKALIKES, OBJECTS, POPE_TEMPLATE, World
from .drawing import render
from .scenes import objects_in


# ---------------------------------------------------------------------------------------
# Writing a world to disk
def _dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, fixed separators, so files are byte-identical."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Job:
    id: str
    person: str
    event: str
    role: str
    render_seed: int

    @property
    def path(self) -> str:
        return f"images/{self.id}.png"


def plan_images(world: World) -> list[_Job]:
    """Every image of the world in a fixed order, with a unique render seed each.

    Seeds come from one seeded stream and are never reused, so a held-out render can
    never coincide with a training render."""
    cfg = world.config
    rng = random.Random(f"pebench-renders:{world.seed}")
    used: set[int] = set()
    jobs: list[_Job] = []
    groups = (
        ("train", world.people, cfg.train_renders),
        ("heldout", world.people, cfg.heldout_renders),
        ("pretrain", world.real_people, cfg.pretrain_renders),
        ("pretrain_eval", world.real_people, cfg.pretrain_eval_renders),
    )
    for role, people, k in groups:
        for p in people:
            for e in world.events:
                for j in range(k):
                    s = rng.getrandbits(31)
                    while s in used:
                        s = rng.getrandbits(31)
                    used.add(s)
                    jobs.append(_Job(f"{role}-{p.id}-{e.id}-{j}", p.id, e.id, role, s))
    # The never-seen group: its own seed stream, after every other image, so that adding it
    # changes no other render. Each never-seen person at every event, every person at each
    # never-seen event: one render each.
    rng = random.Random(f"pebench-unseen-renders:{world.seed}")
    pairs = [(p, e) for p in world.unseen_people for e in world.events]
    pairs += [(p, e) for e in world.unseen_events for p in world.people]
    for p, e in pairs:
        s = rng.getrandbits(31)
        while s in used:
            s = rng.getrandbits(31)
        used.add(s)
        jobs.append(_Job(f"unseen-{p.id}-{e.id}-0", p.id, e.id, "unseen", s))
    return jobs


def _pope_rows(world: World, jobs: list[_Job], objects: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Half "yes" questions (objects drawn) and half "no" (objects absent), per pretrain image."""
    rng = random.Random(f"pebench-pope:{world.seed}")
    n = world.config.pope_questions
    rows = []
    for job in jobs:
        if job.role not in ("pretrain", "pretrain_eval") or n == 0:
            continue
        present = list(objects[job.id])
        unsafe = set(present) | set(LAYOUT_LOOKALIKES.get(world.event(job.event).layout, ()))
        unsafe.update(o for p in present for o in LOOKALIKES.get(p, ()))
        absent = [o for o in OBJECTS if o not in unsafe]
        yes = rng.sample(present, min(n // 2, len(present)))
        while len(yes) < n // 2:  # fewer objects than questions: repeat some
            yes.append(rng.choice(present))
        no = rng.sample(absent, n // 2)
        qs = [(o, "yes") for o in yes] + [(o, "no") for o in no]
        rng.shuffle(qs)
        for q, (obj, ans) in enumerate(qs):
            rows.append(
                {"id": f"{job.id}-q{q}", "image": job.id, "object": obj, "answer": ans, "question": POPE_TEMPLATE.format(obj=obj)}
            )
    return rows


# Worker state for the optional process pool (set by the initializer, one per process).
_WORKER: dict[str, Any] = state({})


def _init_worker(world_dict: dict[str, Any], root: str) -> None:
    _WORKER["world"] = World.from_dict(world_dict)
    _WORKER["root"] = root


def _init_pool_worker(world_dict: dict[str, Any], root: str) -> None:
    # Ctrl-C reaches the whole process group: the parent alone stops (and cleans up), the
    # workers do not print a traceback each
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(world_dict, root)


def _render_job(job: _Job) -> None:
    world: World = _WORKER["world"]
    img = render(world, world.person(job.person), world.event(job.event), job.render_seed)
    _save_png(img, Path(_WORKER["root"]) / job.path)


def _save_png(img: Image.Image, path: Path) -> None:
    # Fixed settings and no metadata: Pillow writes no timestamps, so bytes are stable.
    img.save(path, format="PNG", compress_level=6, optimize=False)


def _world_complete(out: Path, world_json: str) -> bool | None:
    """True: ``out`` holds this exact world; False: a different one; None: no world at all."""
    wj = out / "world.json"
    if not wj.is_file():
        return None
    try:
        same = wj.read_text(encoding="utf-8") == world_json
    except OSError:
        return False
    if not same:
        return False
    man = out / "manifest.jsonl"
    if not man.is_file() or not (out / "pope.jsonl").is_file() or not is_complete(out) or verify(out) is not None:
        return False
    try:
        with man.open(encoding="utf-8") as f:
            return all((out / json.loads(line)["path"]).is_file() for line in f if line.strip())
    except (OSError, ValueError, KeyError):
        return False


def _auto_workers(n_images: int, size: int) -> int:
    # Process start-up (~1 s) only pays off for big worlds; small ones render in-process.
    if n_images * size * size < 5_000 * 128 * 128:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def write_world(world: World, out_dir: str | Path, progress: bool = True, workers: int | None = None) -> Path:
    """Write ``world`` to ``out_dir`` atomically and return the folder.

    Layout: ``world.json`` (people, real people, events with descriptions and keywords,
    splits, seed, generator version, config), ``manifest.jsonl`` (one row per image: id,
    path, person, event, role, render_seed, objects), ``pope.jsonl`` (POPE questions on
    pretrain / pretrain_eval images) and ``images/<id>.png``.

    Everything is written into a temporary sibling folder which is renamed to ``out_dir``
    at the end, so ``out_dir`` either holds a complete world or does not exist. If it
    already holds this very world it is returned as is (cache); a different world there
    is a :class:`ConfigError`.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir).expanduser().absolute()
    wd = world.to_dict()
    world_json = _dumps(wd) + "\n"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"cannot write the world to {out}: it exists and is not a folder; choose another --out")
    if out.is_dir():
        state = _world_complete(out, world_json)
        if state is True:
            return out
        if state is False or any(out.iterdir()):
            raise ConfigError(
                f"{out} already holds a different or incomplete world (or other files); "
                f"choose another --out or delete that folder"
            )
    try:
        tmp = temp_dir_for(out)
    except OSError as exc:
        raise ConfigError(f"cannot write the world to {out}: {exc.strerror or exc}") from None

    bar = None
    try:
        (tmp / "images").mkdir()
        jobs = plan_images(world)
        objects = {j.id: objects_in(world, world.event(j.event), j.render_seed) for j in jobs}
        n_workers = workers if workers is not None else _auto_workers(len(jobs), world.config.image_size)
        bar = tqdm(total=len(jobs), desc=f"world {out.name}", unit="img", disable=not progress)
        if n_workers <= 1:
            _init_worker(wd, str(tmp))
            try:
                for job in jobs:
                    _render_job(job)
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            import multiprocessing as mp

            # fork is cheap and needs no importable __main__; but a process that has torch
            # (and its thread pools) loaded is safer with spawn.
            method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
            ctx = mp.get_context(method)
            with ctx.Pool(n_workers, initializer=_init_pool_worker, initargs=(wd, str(tmp))) as pool:
                for _ in pool.imap_unordered(_render_job, jobs, chunksize=32):
                    bar.update()
        bar.close()
        with (tmp / "manifest.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for j in jobs:
                f.write(
                    _dumps(
                        {
                            "id": j.id,
                            "path": j.path,
                            "person": j.person,
                            "event": j.event,
                            "role": j.role,
                            "render_seed": j.render_seed,
                            "objects": list(objects[j.id]),
                        }
                    )
                    + "\n"
                )
        with (tmp / "pope.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for row in _pope_rows(world, jobs, objects):
                f.write(_dumps(row) + "\n")
        (tmp / "world.json").write_text(world_json, encoding="utf-8")
        # The marker last: only a folder that has it is a finished world.
        mark_complete(tmp, {"artifact": "world", "generator": GENERATOR_VERSION, "images": len(jobs)})
        try:
            os.rename(tmp, out)  # atomic; also replaces an empty folder
        except OSError:
            # Somebody else finished the same world first: theirs is as good as ours.
            if out.is_dir() and _world_complete(out, world_json) is True:
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise
    except BaseException as exc:
        if bar is not None:  # before the message: a bar left open is redrawn after it at exit
            bar.close()
        written = folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if no_space_left(exc):
            raise space_error(out, written) from None
        if isinstance(exc, PermissionError):
            raise ConfigError(f"cannot write the world to {out}: {exc.strerror or exc}") from None
        raise
    return out


# ---------------------------------------------------------------------------------------
# Reading a written world back, and comparing two
def read_world(out_dir: str | Path) -> World:
    """The :class:`World` stored in a folder written by :func:`write_world`."""
    wj = Path(out_dir) / "world.json"
    try:
        return World.from_dict(json.loads(wj.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{wj} is missing: not a world folder written by `pebench world`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{wj} is malformed: {exc}") from None


def world_digest(out_dir: str | Path) -> str:
    """SHA-256 over every file of a written world (names and bytes): equal digests mean
    byte-identical worlds."""
    root = Path(out_dir)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
