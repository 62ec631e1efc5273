"""Shared fixtures, and the thread count of a test process.

``smoke_world_dir``: the smoke-profile world (seed 0) written once per test session to a
temporary folder; tests that need a dataset on disk reuse it (read it, never modify it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `make test` runs the tests in one process per core (pytest-xdist, a module to a process, so
# its module fixtures are built once): each computes on one thread, so two of them on two cores
# never oversubscribe (two torch jobs of two threads each on two cores thrash). Set before
# anything imports torch, which reads it once; a test's own subprocesses inherit it, and the
# run's pool and kernels then count one core too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

from pebench_core.config import load_config
from pebench_core.world import generate_world, write_world


@pytest.fixture(scope="session")
def smoke_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config("smoke")
    world = generate_world(cfg.world, cfg.seed)
    return write_world(world, tmp_path_factory.mktemp("smoke-world") / "world", progress=False)


@pytest.fixture(scope="session")
def executed(tmp_path_factory: pytest.TempPathFactory):
    """Every chapter executed on the smoke profile, as ``pebench book`` does (the stages first,
    then the chapters side by side where the cores allow), into a
    temporary copy of the book (the checkout is never touched): (site, chapters)."""
    import shutil

    from pebench_core.book import ROOT, build_stages_first, execute_chapters
    from pebench_core.config import load_config

    site = tmp_path_factory.mktemp("site")
    for name in ("_config.yml", "book"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, site / name, ignore=shutil.ignore_patterns("chapters", "_generated"))
        else:
            shutil.copy(src, site / name)
    from pebench_core.parallel import stage_workers

    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config("smoke", seed=0)
    build_stages_first(cfg, root=site, run_dir=run_dir, log=lambda *_: None)
    chapters = execute_chapters(
        profile="smoke",
        seed=0,
        run_dir=str(run_dir),
        out_dir=site / "book" / "chapters",
        log=lambda *_: None,
        kernels=stage_workers(cfg, 10**6),  # side by side, as `pebench book` runs them
    )
    return site, chapters


@pytest.fixture(scope="session")
def built(executed):
    """The HTML book of the executed smoke chapters: (site, html folder, chapters)."""
    from pebench_core.book import build_html, write_toc

    site, chapters = executed
    write_toc(chapters, root=site)
    index = build_html(root=site, log=lambda *_: None)
    return site, index.parent, chapters


@pytest.fixture(scope="session")
def checkpoint_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What configuration validation accepts as a local checkpoint without loading it: a folder
    with a LLaVA ``config.json`` and a (placeholder) ``*.safetensors`` file. For the tests that
    read a profile's settings only; a test that loads a model builds a real one."""
    folder = tmp_path_factory.mktemp("checkpoint") / "llava"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}')
    (folder / "model.safetensors").write_bytes(b"")
    return folder
