"""What the analysis reads, and the order it shows things in: the keys and required columns of a
run's ``results`` and ``items`` tables (see :mod:`pebench_core.results`), the unlearning methods
and their BGD variants, and the display orders of methods and metrics."""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from .. import methods
from ..errors import ConfigError
from ..metrics import metric_order

__all__ = [
    "KEYS",
    "unlearn_methods",
    "bgd_base",
    "metric_order",
    "method_order",
    "RESULT_COLUMNS",
    "ITEM_COLUMNS",
    "require_columns",
    "in_order",
]

KEYS = ["target", "method", "concept", "metric"]


# Functions, not constants: they read the method registry when called, so a method a reader
# registers after this module was imported is in every table.
def unlearn_methods() -> tuple[str, ...]:
    """The single-concept methods (not a BGD balancing of another), in registry order."""
    return methods.single_concept()


def bgd_base() -> dict[str, str]:
    """Each BGD variant and the method it balances."""
    return methods.balanced()


def method_order() -> list[str]:
    """The display order of models: finetune, every registered method, goal."""
    return ["finetune", *methods.names(), "goal"]


#: The columns a ``results`` / ``items`` table must have for the analysis to read it.
RESULT_COLUMNS = {"seed", "target", "method", "concept", "metric", "value"}
ITEM_COLUMNS = {"seed", "target", "method", "concept", "metric", "item_id", "value"}


def require_columns(df: pd.DataFrame, cols: set[str], what: str) -> None:
    """Refuse (``ConfigError``) a ``what`` table that lacks any of ``cols``, naming them."""
    missing = sorted(cols - set(df.columns))
    if missing:
        raise ConfigError(f"the {what} table lacks column(s) {missing}; it must come from a run's results/ folder")


def in_order(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct ``values``: those listed in ``order`` first, in that order, then the rest sorted."""
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)
