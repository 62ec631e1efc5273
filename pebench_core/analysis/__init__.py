"""Analysis across runs and seeds: intervals, the paper's tables, and its findings.

Functions on the two long tables every run writes (``results`` and ``items``, see
:mod:`pebench_core.results`), one module per idea. A module imports only modules listed above
it: ``runs`` and ``stats`` read ``schema``; ``costs`` reads ``runs``; ``tables``, ``paper`` and
``verdicts`` and ``robustness`` read ``stats`` and ``schema``, not each other; ``rule`` reads
nothing, and every module that calls a verdict reads it.

* :mod:`~pebench_core.analysis.schema` — the keys and required columns of those tables, the
  unlearning methods and their BGD variants, and the order methods and metrics are shown in.
* :mod:`~pebench_core.analysis.runs` — loading one run folder per seed into one
  ``(results, items)`` pair (:func:`load_runs`, :func:`parse_seeds`, :class:`Runs`).
* :mod:`~pebench_core.analysis.stats` — the item bootstrap and the seed interval,
  :class:`Estimate`, :func:`summarise`, :func:`format_ci`; its docstring states the conventions
  every number of the analysis follows (higher is better, means over seeds, paired comparisons).
* :mod:`~pebench_core.analysis.costs` — what a method costs: sequences and seconds per
  unlearning step, and the likelihood race between the true answer and the refusal.
* :mod:`~pebench_core.analysis.tables` — the chapters' tables: the leaderboard, simultaneous
  against single-target unlearning, cross-concept interference, scope, the image-level test.
* :mod:`~pebench_core.analysis.paper` — the paper's Tables 1 and 2 as printed, Table 2's
  layout on our runs (:func:`table2`), and our numbers beside the paper's.
* :mod:`~pebench_core.analysis.rule` — the book's one verdict rule (cannot test at a ceiling or
  floor, inconclusive when the interval straddles the margin, else the claim's two words).
* :mod:`~pebench_core.analysis.verdicts` — the paper's five findings tested on our runs, with a
  verdict and an explanation each.
* :mod:`~pebench_core.analysis.robustness` — the robustness probes read as paired recoveries
  against a reference, and which methods' forgetting survives which probe (one wording rule).

Nothing here trains, evaluates, loads a model or finds a run's files: building the runs that
are missing and reading their folders is the run handle's job (:mod:`pebench_core.run`, a room
above this one: :meth:`~pebench_core.run.Run.for_seeds`, :meth:`~pebench_core.run.Run.trajectories_for_seeds`).
The analysis reads the tables it is handed; :func:`sequences_per_step` reads which inputs a
method's loss needs from the loop's table of inputs (:mod:`pebench_core.inputs`).

Every public name is importable from here. Patch a function in the module that defines it
(e.g. ``pebench_core.analysis.stats.summarise``): the modules import each other's functions
directly, so a patch on this package reaches only callers that go through it.
"""

from __future__ import annotations

from .costs import likelihood_race, sequences_per_step, step_cost_table, step_costs
from .paper import (
    PAPER_COLUMNS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PATTERNS,
    event_scorers,
    paper_table1_long,
    paper_table2_long,
    protocol_patterns,
    side_by_side,
    table2,
)
from .robustness import (
    BREAKS,
    FORGOT_TOO_LITTLE,
    HOLDS,
    UNINFORMATIVE,
    probe_measures,
    relearn_curves,
    survival,
    survival_matrix,
)
from .rule import BOUND_TOL, CANNOT_TEST, CONTRADICTED, INCONCLUSIVE, REPRODUCED, at_bound, decide, decided
from .runs import Runs, concat_runs, load_runs, parse_seeds
from .schema import KEYS, bgd_base, method_order, metric_order, unlearn_methods
from .stats import Estimate, ItemIndex, ci_column, format_ci, interval_words, item_units, paired_delta, summarise, unit_note
from .tables import (
    IMAGE_DIRECTIONS,
    INTERFERENCE_CELLS,
    chosen_rates,
    interference_matrix,
    interference_table,
    leaderboard,
    paired_image_level,
    scope_table,
    simultaneous_vs_single,
    wide_ci,
)
from .verdicts import (
    FINDINGS,
    MIXED,
    TESTS,
    combine_verdicts,
    finding_tests,
    findings,
    findings_markdown,
)

__all__ = [
    "KEYS",
    "HOLDS",
    "BREAKS",
    "FORGOT_TOO_LITTLE",
    "UNINFORMATIVE",
    "probe_measures",
    "relearn_curves",
    "survival",
    "survival_matrix",
    "chosen_rates",
    "unlearn_methods",
    "bgd_base",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_COLUMNS",
    "FINDINGS",
    "TESTS",
    "INTERFERENCE_CELLS",
    "Estimate",
    "Runs",
    "parse_seeds",
    "concat_runs",
    "ci_column",
    "likelihood_race",
    "load_runs",
    "summarise",
    "item_units",
    "ItemIndex",
    "paired_delta",
    "unit_note",
    "interval_words",
    "sequences_per_step",
    "step_costs",
    "step_cost_table",
    "format_ci",
    "wide_ci",
    "leaderboard",
    "table2",
    "simultaneous_vs_single",
    "interference_table",
    "interference_matrix",
    "scope_table",
    "paired_image_level",
    "paper_table1_long",
    "paper_table2_long",
    "side_by_side",
    "PATTERNS",
    "protocol_patterns",
    "event_scorers",
    "finding_tests",
    "findings",
    "findings_markdown",
    # exposed before without being listed here
    "metric_order",
    "method_order",
    "IMAGE_DIRECTIONS",
    "REPRODUCED",
    "CONTRADICTED",
    "MIXED",
    "INCONCLUSIVE",
    "CANNOT_TEST",
    "BOUND_TOL",
    "at_bound",
    "decide",
    "decided",
    "combine_verdicts",
]
