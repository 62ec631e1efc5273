"""What a numeric setting allows: :class:`Range`, the ranges most settings share, and the
parser of a seed list. A leaf: the configuration, a method's own settings and the analysis
read it without importing each other."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "Range",
    "AT_LEAST_1",
    "NON_NEGATIVE",
    "POSITIVE",
    "SHARE",
    "SEED",
    "parse_seed_list",
    "WORKERS_ENV",
    "THREADS_ENV",
    "env_count",
]


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``<`` where open); ``None`` = no bound. ``zero`` says what 0
    means where 0 is allowed below positive values; ``unit`` and ``why`` go in the message."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    zero: str = ""
    unit: str = ""
    why: str = ""

    def allows(self, v: float) -> bool:
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return lo_ok and hi_ok

    def describe(self) -> str:
        lo, hi, unit = self.lo, self.hi, f" {self.unit}" if self.unit else ""
        if self.zero:
            text = f"0 ({self.zero}) or a positive number{f' of{unit}' if unit else ''}"
        elif lo is not None and hi is not None:
            if self.lo_open and self.hi_open:
                text = f"strictly between {_num(lo)} and {_num(hi)}{unit}"
            elif not self.lo_open and not self.hi_open:
                text = f"between {_num(lo)} and {_num(hi)}{unit}"
            else:
                text = f"{'>' if self.lo_open else '>='} {_num(lo)} and {'<' if self.hi_open else '<='} {_num(hi)}{unit}"
        elif lo is not None:
            if lo == 0:
                text = ("positive" if self.lo_open else "non-negative") + unit
            else:
                text = f"{'greater than' if self.lo_open else 'at least'} {_num(lo)}{unit}"
        elif hi is not None:
            text = f"{'less than' if self.hi_open else 'at most'} {_num(hi)}{unit}"
        else:
            text = "any number"
        return f"{text} ({self.why})" if self.why else text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


AT_LEAST_1 = Range(lo=1)
NON_NEGATIVE = Range(lo=0)
POSITIVE = Range(lo=0, lo_open=True)  # learning rates, temperatures
SHARE = Range(lo=0, hi=1)  # a share of something, 0 and 1 included


SEED = Range(lo=0, hi=2**32 - 1)  # what every seeded generator (numpy's too) accepts


def parse_seed_list(seeds: str | typing.Sequence[Any], name: str = "seeds") -> list[int]:
    """``"0,1,2"`` (or ``[0, 1, 2]``) → ``[0, 1, 2]``: at least one seed, each an integer in
    the ``seed`` range, none twice (a seed run twice would be counted twice). ``name`` is the
    parameter the message names (``--seeds`` on the command line)."""
    parts = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    out: list[int] = []
    for part in parts:
        text = str(part).strip()
        if not text:  # "0,1," : a stray comma names no seed
            continue
        try:
            out.append(int(text))
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated integers such as '0,1,2', got {seeds!r}") from None
    if not out:
        raise ConfigError(f"{name} names no seed, got {seeds!r}; give comma-separated integers such as '0,1,2'")
    rule = SEED
    bad = [s for s in out if not rule.allows(s)]
    if bad:
        raise ConfigError(f"{name}: every seed must be {rule.describe()}, got {', '.join(map(str, bad))} in {seeds!r}")
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise ConfigError(f"{name} must be distinct seeds, got {', '.join(map(str, twice))} more than once in {seeds!r}")
    return out


# The environment settings a run reads: how many stage processes (1 turns the pool off) and
# how many threads each torch job may use. Each is a whole number of at least 1, or unset.
WORKERS_ENV = "PEBENCH_WORKERS"
THREADS_ENV = "OMP_NUM_THREADS"


def env_count(name: str) -> int | None:
    """The environment variable ``name`` as a whole number of at least 1 (``None`` if unset);
    anything else is a :class:`ConfigError` naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number of at least 1")
    return value
