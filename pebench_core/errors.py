"""The leaf every module may import: the error a bad setting raises, and the fixed names the
layers share (the targets, the devices and dtypes, the tiny model's context).

Nothing here imports the rest of the package, so a registry (methods, probes, metrics) or a
model can raise the same error and read the same names as configuration validation without
importing the configuration, which sits above them and validates through them.
"""

from __future__ import annotations

import typing
from typing import Container, Literal

__all__ = ["ConfigError", "check_entry", "Target", "TARGETS", "Device", "DEVICES", "Dtype", "DTYPES", "TINY_MAX_LENGTH"]

# What an unlearning run forgets: the forget people, the forget events, or both at once.
Target = Literal["person", "event", "both"]
TARGETS: tuple[Target, ...] = typing.get_args(Target)
# Where and in what precision a model runs (``model.device``, ``model.dtype``).
Device = Literal["auto", "cpu", "cuda", "mps"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DEVICES: tuple[Device, ...] = typing.get_args(Device)
DTYPES: tuple[Dtype, ...] = typing.get_args(Dtype)
TINY_MAX_LENGTH = 160  # the tiny model's context: 16 image tokens + the longest QA, with room


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the field and the allowed values."""


def check_entry(entry: object, cls: type, kind: str, registered: Container[str], replace: bool) -> None:
    """What every registry (methods, probes) asks of a new entry: of its class, a name a command
    line can carry (no commas, slashes, spaces or '='), and not a name taken unless ``replace``."""
    if not isinstance(entry, cls):
        raise ConfigError(f"register() takes a {cls.__module__}.{cls.__name__}, got {type(entry).__name__}")
    name = getattr(entry, "name", "")
    if not name or any(c in name for c in ", /="):
        raise ConfigError(f"a {kind} name must be non-empty without commas, slashes, spaces or '=', got {name!r}")
    if name in registered and not replace:
        raise ConfigError(f"{kind} {name!r} is registered already; pass replace=True to redefine it")
