"""A stable short hash of configuration values: what keys the world and every cached stage."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

__all__ = ["config_hash"]


def config_hash(*parts: object, length: int = 12) -> str:
    """A stable short hash of dataclasses / dicts / scalars, used to key cached stages."""

    def norm(x: object) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {k: norm(v) for k, v in dataclasses.asdict(x).items()}
        if isinstance(x, Mapping):
            return {str(k): norm(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        return x

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
