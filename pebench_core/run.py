"""The read side of a run: what a chapter holds (design: Results and caching).

Chapters hold a :class:`Run` (one configuration and its run folder) rather than calling the
stage builders themselves: ``run.evaluation("finetune", "person").results``,
``run.unlearned("ga", "event").trajectory``. The handle reads through the builders of
:mod:`pebench_core.stages` (so the keys and the cache are the same), and the folder layout
(file names, the completion marker) stays there and in :mod:`pebench_core.storage`.
:meth:`Run.for_seeds` builds and collects every run of a profile over several seeds for the
analysis chapters, which read them with :mod:`pebench_core.analysis`: this room stands above
both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .analysis import item_units, unit_note
from .analysis.runs import Runs, concat_runs, parse_seeds
from .analysis.stats import UNITS, ItemIndex, summarise
from .config import RunConfig, load_config, notebook_overrides
from .data import Dataset
from .errors import ConfigError
from .stages.evaluation import get_eval
from .stages.keys import ANSWERS_FILE, ITEMS_FILE, RESULTS_FILE, TRAJECTORY_FILE, methods_for, resolve_run_dir, seed_run_dir
from .stages.models import get_model, stage_info
from .stages.robustness import collect_robustness, get_robustness
from .stages.unlearning import collect_fixed_rate, collect_results, get_tuning, get_unlearned, load_unlearned_model, unlearned_dir
from .stages.world import get_world
from .storage import read_marker


def comparison(cfg: RunConfig, method: str, target: str, run_dir=None, progress: bool = True):
    """Result rows of finetune (lower bound), ``method`` and goal (upper bound) on ``target``."""

    folders = [
        get_eval(cfg, "finetune", target, run_dir, progress),
        get_unlearned(cfg, method, target, run_dir, progress),
        get_eval(cfg, "goal", target, run_dir, progress),
    ]
    return pd.concat([tables_of(f).results for f in folders], ignore_index=True)


def answer_likelihoods(cfg: RunConfig, method: str, target: str, run_dir=None):
    """The finetune model's and ``method``'s unlearned model's likelihoods of the true answer
    and of the refusal on ``target``'s forget items, stacked (a ``model`` column tells them
    apart), as their stages stored them (:func:`write_likelihoods`)."""

    folders = [get_eval(cfg, "finetune", target, run_dir, False), get_unlearned(cfg, method, target, run_dir, False)]
    return pd.concat([pd.read_parquet(f / "likelihoods.parquet") for f in folders], ignore_index=True)


def answers_side_by_side(cfg: RunConfig, method: str, target: str, run_dir=None):
    """Every evaluated question with the finetune, ``method`` and goal answers side by side."""
    frames = {
        "finetune": get_eval(cfg, "finetune", target, run_dir, False),
        method: get_unlearned(cfg, method, target, run_dir, False),
        "goal": get_eval(cfg, "goal", target, run_dir, False),
    }
    out = None
    for name, folder in frames.items():
        a = tables_of(folder).answers.rename(columns={"answer": name})
        out = a if out is None else out.merge(a, on=["item_id", "question"], how="outer")
    return out


@dataclass(frozen=True)
class Outcome:
    """An evaluated model of a run: the folder :func:`get_eval` (or :func:`get_unlearned`)
    returned, and its tables, read from disk on each access (they are small, and a caller
    may change the frame it gets without touching anyone else's).

    ``model`` is ``finetune``, ``goal`` or the unlearning method; ``target`` the target it
    was evaluated on.
    """

    folder: Path
    model: str
    target: str

    def _read(self, name: str):

        return pd.read_parquet(self.folder / name)

    @property
    def results(self):
        """The long results rows (one per concept × metric, with provenance)."""
        return self._read(RESULTS_FILE)

    @property
    def items(self):
        """The per-item values behind :attr:`results`."""
        return self._read(ITEMS_FILE)

    @property
    def answers(self):
        """Every evaluated question with the generated answer (``item_id``, ``question``, ``answer``)."""
        return self._read(ANSWERS_FILE)

    @property
    def meta(self) -> dict:
        """The metadata the stage stored with its completion marker (times, counts, status)."""

        return read_marker(self.folder)


@dataclass(frozen=True)
class UnlearningOutcome(Outcome):
    """An unlearning run: its evaluation tables, its trajectory and the run's metadata."""

    @property
    def trajectory(self):
        """The loss terms at every step and, every few steps, the efficacy on a forget subset."""
        return self._read(TRAJECTORY_FILE)

    @property
    def hparams(self) -> dict:
        """The hyper-parameters the run used."""
        return dict(self.meta.get("hparams") or {})

    @property
    def status(self) -> str:
        """``ok``, or why the run stopped early."""
        return str(self.meta.get("status"))


def tables_of(folder: Path) -> Outcome:
    """The tables of an evaluation folder, for the helpers that only have its path."""
    return Outcome(Path(folder), "", "")


class Run:
    """One configuration and its run folder: what a chapter reads its models and tables through.

    ``run_dir`` is resolved once (``""`` and ``None`` mean the default, ``runs/<profile>-s<seed>``).
    Every accessor goes through the ``get_*`` functions of this module, so a stage that is
    missing is built on first access and a built one is loaded; ``progress`` (default: the
    handle's) decides whether a build prints its log and progress bars.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path | None = None, progress: bool = False):
        self.cfg = cfg
        self.dir = resolve_run_dir(cfg, run_dir)
        self.progress = progress
        self._world: Dataset | None = None

    def __repr__(self) -> str:
        return f"Run(profile={str(self.cfg.profile)!r}, seed={self.cfg.seed}, dir={str(self.dir)!r})"

    def _progress(self, progress: bool | None) -> bool:
        return self.progress if progress is None else progress

    # -- the world and the models
    @property
    def world(self) -> Dataset:
        """The run's dataset (:func:`get_world`), written on first use and kept by the handle."""
        if self._world is None:
            self._world = get_world(self.cfg, self.dir, progress=self.progress)
        return self._world

    def model(self, stage: str, target: str | None = None, progress: bool | None = None):
        """The :class:`~pebench_core.models.ModelBundle` of ``stage`` (:func:`get_model`)."""
        return get_model(self.cfg, stage, target, self.dir, progress=self._progress(progress))

    def stage_info(self, stage: str, target: str | None = None) -> dict:
        """What a built model stage stored (:func:`stage_info`): times, training history."""
        return stage_info(self.cfg, stage, target, self.dir)

    def unlearned_model(self, method: str, target: str):
        """The finetune model with ``method``'s adapter for ``target`` on (:func:`load_unlearned_model`)."""
        return load_unlearned_model(self.cfg, method, target, self.dir)

    # -- evaluations and unlearning runs
    def evaluation(self, model: str, target: str, progress: bool | None = None) -> Outcome:
        """``finetune`` or ``goal`` evaluated on ``target`` (:func:`get_eval`)."""
        return Outcome(get_eval(self.cfg, model, target, self.dir, progress=self._progress(progress)), model, target)

    def unlearned(self, method: str, target: str, progress: bool | None = None) -> UnlearningOutcome:
        """``method`` run on ``target`` and evaluated (:func:`get_unlearned`)."""
        folder = get_unlearned(self.cfg, method, target, self.dir, progress=self._progress(progress))
        return UnlearningOutcome(folder, method, target)

    def tuning(self, method: str, target: str, progress: bool | None = None):
        """The learning-rate grid of ``method`` on ``target`` (:func:`get_tuning`): one row per
        rate with its validation efficacy, retain and criterion, and ``kept``; ``None`` when
        the profile does not tune."""

        folder = get_tuning(self.cfg, method, target, self.dir, progress=self._progress(progress))
        return None if folder is None else pd.read_parquet(folder / "grid.parquet")

    def methods_for(self, target: str, methods=None) -> list[str]:
        """The methods run on ``target`` (:func:`methods_for`)."""
        return methods_for(self.cfg, target, methods)

    def comparison(self, method: str, target: str):
        """Result rows of finetune, ``method`` and goal on ``target`` (:func:`comparison`)."""
        return comparison(self.cfg, method, target, self.dir, progress=False)

    def answers_side_by_side(self, method: str, target: str):
        """Every evaluated question with the three models' answers (:func:`answers_side_by_side`)."""
        return answers_side_by_side(self.cfg, method, target, self.dir)

    def answer_likelihoods(self, method: str, target: str):
        """The true answer's and the refusal's likelihoods before and after ``method`` (:func:`answer_likelihoods`)."""
        return answer_likelihoods(self.cfg, method, target, self.dir)

    def collect(self, methods=None, targets=None):
        """Every evaluation gathered into ``<run>/results/``: ``(results, items)`` (:func:`collect_results`)."""
        return collect_results(self.cfg, self.dir, methods, targets)

    def robustness(self, model: str, target: str, progress: bool | None = None) -> Outcome:
        """The probes of ``model`` (finetune, goal or a method) on ``target`` (:func:`get_robustness`)."""
        return Outcome(get_robustness(self.cfg, model, target, self.dir, progress=self._progress(progress)), model, target)

    def collect_robustness(self, methods=None, targets=None):
        """Every model's probes gathered into ``<run>/results/``: ``(results, items)`` (:func:`collect_robustness`)."""
        return collect_robustness(self.cfg, self.dir, methods, targets, progress=self.progress)

    @classmethod
    def units_for_seeds(cls, runs):
        """Who and what every image of every seed's world shows (``seed``, ``item_id``,
        ``person``, ``event``): the ``units`` a cluster bootstrap over these runs reads
        (:func:`pebench_core.analysis.item_units`)."""

        return pd.concat([item_units(cls.of_seed(runs, s).world, seed=s) for s in runs.seeds], ignore_index=True)

    @classmethod
    def robustness_for_seeds(cls, runs):
        """The probes of every seed of what :meth:`for_seeds` returned, concatenated and checked
        as the results are: ``(results, items)``."""

        frames = [(runs.dirs[s], *cls(runs.cfgs[s], runs.dirs[s]).collect_robustness()) for s in runs.seeds]
        return concat_runs(frames)

    def fixed_rate(self):
        """The paper's protocol runs (one rate, untuned) gathered: ``(results, items)`` (:func:`collect_fixed_rate`)."""
        return collect_fixed_rate(self.cfg, self.dir)

    @classmethod
    def fixed_rate_for_seeds(cls, runs):
        """The paper's protocol runs of every seed of what :meth:`for_seeds` returned,
        concatenated and checked as the results are: ``(results, items)``."""

        frames = [(runs.dirs[s], *cls(runs.cfgs[s], runs.dirs[s]).fixed_rate()) for s in runs.seeds]
        frames = [f for f in frames if len(f[1])]
        if not frames:  # the profile runs no method of the paper's protocol
            return pd.DataFrame(), pd.DataFrame()
        return concat_runs(frames)

    @classmethod
    def trajectories_for_seeds(cls, runs):
        """The trajectory of every unlearning run of every seed of what :meth:`for_seeds`
        returned, stacked with ``seed``, ``target`` and ``method`` columns (a run not built is
        left out): what :func:`pebench_core.analysis.step_costs` reads."""

        frames = []
        for s in runs.seeds:
            cfg = runs.cfgs[s]
            for target in cfg.unlearn.targets:
                for method in methods_for(cfg, target):
                    f = unlearned_dir(cfg, method, target, runs.dirs[s]) / TRAJECTORY_FILE
                    if f.is_file():
                        frames.append(pd.read_parquet(f).assign(seed=s, target=target, method=method))
        columns = ["seed", "target", "method", "seconds"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    @classmethod
    def forget_counts(cls, runs) -> dict[int, tuple[int, int]]:
        """Seed → (forget people, forget events) of what :meth:`for_seeds` returned: the units
        every person and event result of that seed rests on."""
        out = {}
        for s in runs.seeds:
            splits = cls.of_seed(runs, s).world.splits
            out[s] = (len(splits["person"]["forget_people"]), len(splits["event"]["forget_events"]))
        return out

    # -- several seeds
    @classmethod
    def for_seeds(
        cls,
        profile: str,
        seed: int = 0,
        seeds: str | Sequence[int] | None = "",
        run_dir: str | Path | None = "",
        overrides: Mapping | list[str] | None = None,
        progress: bool = False,
    ):
        """Build (if missing) and collect every run a chapter needs: for each seed, every target
        and method of the profile via :func:`collect_results`, then the seeds' tables
        concatenated and checked as :func:`pebench_core.analysis.load_runs` does. Returns a
        :class:`pebench_core.analysis.Runs`; see :func:`seed_run_dir` for where each seed lives.

        ``seeds`` empty: the one seed ``seed``, in ``run_dir`` itself. Given (``"0,1,2"``): one
        folder ``<run_dir>/s<seed>`` per seed, except that a single seed whose ``s<seed>``
        folder is absent is read from ``run_dir`` itself (what ``pebench run --out DIR``
        without ``--seeds`` wrote).
        """

        seed_list = parse_seeds(seeds, seed)
        multi = not (seeds is None or (isinstance(seeds, str) and not seeds.strip()))
        cfgs: dict[int, Any] = {}
        dirs: dict[int, Path] = {}
        frames = []
        for s in seed_list:
            cfg = load_config(profile, seed=s, overrides=overrides)
            d = seed_run_dir(cfg, run_dir, multi)
            if multi and run_dir and len(seed_list) == 1 and not d.exists():
                # `pebench run --out DIR` (no --seeds) wrote the one seed straight into DIR
                d = Path(run_dir).expanduser().absolute()
            frames.append((d, *collect_results(cfg, d)))  # the tables it just wrote, not re-read
            cfgs[s], dirs[s] = cfg, d
            if progress:
                print(f"[analysis] seed {s}: {d}")
        results, items = concat_runs(frames)
        return Runs(seed_list, cfgs, dirs, results, items)

    @classmethod
    def of_seed(cls, runs, seed: int | None = None, progress: bool = False) -> "Run":
        """The handle of one seed (default: the first) of what :meth:`for_seeds` returned."""
        s = runs.seeds[0] if seed is None else seed
        return cls(runs.cfgs[s], runs.dirs[s], progress=progress)


# ---------------------------------------------------------------------------------------
# What a result chapter opens with
TABLES = ("results", "robustness")  # what a chapter's summary reads: the evaluations, or the probes


@dataclass
class Chapter:
    """What a result chapter reads, opened by :func:`open_chapter`: every seed's ``runs``
    (:meth:`Run.for_seeds`), the first seed's handle ``run``, the tables its summary reads
    (``results`` and ``items``: the evaluations, or the probes), who and what every image shows
    (``units``), the ``summary`` with intervals over ``ci_unit`` and the unit index ``by_unit``
    that the chapter's paired intervals resample."""

    runs: Any
    run: Run
    results: Any
    items: Any
    units: Any
    summary: Any
    by_unit: Any
    ci_unit: str

    def overview(self) -> str:
        """Two lines for the top of the chapter: the seeds and their folders, and what the
        intervals resample (:func:`pebench_core.analysis.unit_note`)."""

        folders = ", ".join(str(d) for d in self.runs.dirs.values())
        return f"{len(self.runs.seeds)} seed(s): {self.runs.seeds}; run folder(s): {folders}\n{unit_note(self.summary)}"


def open_chapter(
    profile: str,
    seed: int = 0,
    seeds: str | Sequence[int] | None = "",
    run_dir: str | Path | None = "",
    overrides: str | list[str] | tuple[str, ...] | None = (),
    device: str = "auto",
    dtype: str = "auto",
    model_path: str = "",
    data_dir: str = "",
    ci_unit: str = "concept",
    tables: str = "results",
    n_boot: int = 1000,
) -> Chapter:
    """Open a result chapter from its parameters: check them (one clear error before any
    work), build whatever stage is missing once per seed, and summarise ``tables``
    (``results``: every evaluation; ``robustness``: every probe) with intervals that resample
    ``ci_unit`` (``concept``, ``person``, ``event`` or ``item``)."""

    if tables not in TABLES:
        raise ConfigError(f"tables must be one of {', '.join(TABLES)}, got {tables!r}")
    if ci_unit not in UNITS:
        raise ConfigError(f"ci_unit must be one of {', '.join(UNITS)}, got {ci_unit!r}")
    settings = notebook_overrides(device, dtype, model_path, data_dir, overrides)
    runs = Run.for_seeds(profile, seed=seed, seeds=seeds, run_dir=run_dir, overrides=settings)
    results, items = (runs.results, runs.items) if tables == "results" else Run.robustness_for_seeds(runs)
    units = Run.units_for_seeds(runs)
    summary = summarise(results, items, n_boot=n_boot, seed=0, unit=ci_unit, units=units)
    by_unit = ItemIndex(items, unit=ci_unit, units=units)
    return Chapter(runs, Run.of_seed(runs), results, items, units, summary, by_unit, ci_unit)
