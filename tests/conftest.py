"""Shared fixtures.

``smoke_world_dir``: the smoke-profile world (seed 0) written once per test session to a
temporary folder; tests that need a dataset on disk reuse it (read it, never modify it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pebench_core.config import load_config
from pebench_core.world import generate_world, write_world


@pytest.fixture(scope="session")
def smoke_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config("smoke")
    world = generate_world(cfg.world, cfg.seed)
    return write_world(world, tmp_path_factory.mktemp("smoke-world") / "world", progress=False)
