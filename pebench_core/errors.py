"""The leaf every module may import: the error a bad setting raises, and the target names.

Nothing here imports the rest of the package, so a registry (methods, probes, metrics) can
raise the same error as configuration validation without importing the configuration.
"""

from __future__ import annotations

import typing
from typing import Literal

__all__ = ["ConfigError", "Target", "TARGETS"]

# What an unlearning run forgets: the forget people, the forget events, or both at once.
Target = Literal["person", "event", "both"]
TARGETS: tuple[Target, ...] = typing.get_args(Target)


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the field and the allowed values."""
