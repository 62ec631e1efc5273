"""The probe registry: one :class:`Probe` per probe, holding the functions that run it.

A probe is one entry: its name (what ``robust.probes`` lists), title, question, the metric
names it writes under a configuration, and its code. The code is held as functions, never as
names: a stage's key follows what its entries hold (:mod:`pebench_core.code_keys`), so an
edited probe re-runs exactly the probe stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, check_entry

if TYPE_CHECKING:
    from ..config import RobustConfig

__all__ = ["Probe", "PROBES", "register", "get", "probe_names", "probe_metrics"]


@dataclass(frozen=True)
class Probe:
    """One probe.

    ``metrics(robust_cfg)`` names what it writes. ``asks(ctx, concept)``, where given, returns
    the generation asks it adds to the one batched call every probe shares (each a
    :class:`~pebench_core.probes.context.Planned`); ``run(ctx)``, where given, runs the rest on
    the probed model and returns metric results. A probe has one or both."""

    name: str
    title: str
    question: str
    metrics: Callable[[RobustConfig], tuple[str, ...]]
    asks: Callable[..., list[Any]] | None = None
    run: Callable[..., list[Any]] | None = None


PROBES: dict[str, Probe] = {}


def register(probe: Probe, replace: bool = False) -> Probe:
    """Add ``probe`` to the registry (``replace=True`` to redefine a name already there)."""
    check_entry(probe, Probe, "probe", PROBES, replace)
    if probe.asks is None and probe.run is None:
        raise ConfigError(f"probe {probe.name!r} has neither asks nor run: it would measure nothing")
    PROBES[probe.name] = probe
    return probe


def get(name: str) -> Probe:
    """The registered probe ``name``; an unknown one is a ConfigError listing the allowed names."""
    try:
        return PROBES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"robust.probes: unknown probe {name!r}; allowed: {', '.join(PROBES)}") from None


def probe_names() -> tuple[str, ...]:
    """Every registered probe, in the book's order (the default of ``robust.probes``)."""
    return tuple(PROBES)


def probe_metrics(name: str, cfg) -> tuple[str, ...]:
    """The metric names probe ``name`` writes under ``cfg`` (a RunConfig)."""
    return tuple(get(name).metrics(cfg.robust))
