"""The method registry (design: Unlearning methods): what a method is, and the one list of them.

A method is one :class:`Method` entry, written in one module with everything it owns: its
pure loss, its title, formula and citation, the inputs its loss reads, the targets it runs
on, its own hyper-parameters (a small frozen dataclass, :attr:`Method.settings`, each field
declared with :func:`setting`: a default, the range validation holds it to, what it means)
and its teaching notes (:class:`MethodNotes`). Everything that lists methods reads
:data:`METHODS`: configuration validation, the pipeline's per-target choice, the book's chapter
list and titles, the analysis tables and the chapters' prose.

A method's settings are set like every other, ``unlearn.<method>.<field>``, from a command
line (``pebench run --set unlearn.simnpo.gamma=1``), a YAML profile (``unlearn: {simnpo:
{gamma: 1}}``) or a chapter's ``overrides``; :func:`settings_of` gives a run its values, and
only the method's own settings are in the key of its runs.

A command line or a chapter imports the modules named in the environment variable
``PEBENCH_PLUGINS`` (comma-separated) before it reads the registry, which is how a method
registered in user code reaches ``pebench run`` and ``pebench book``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import typing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from ..errors import TARGETS, ConfigError, check_entry
from ..inputs import INPUTS
from ..ranges import Range

if TYPE_CHECKING:
    from ..losses import LossInputs, LossOutput

__all__ = [
    "NLLR",
    "CHAPTER_COMMAND",
    "Exercise",
    "MethodNotes",
    "Method",
    "setting",
    "METHODS",
    "register",
    "get",
    "names",
    "settings_of",
    "settings_record",
    "settings_table",
    "settings_keys",
    "load_plugins",
    "chapter_methods",
    "single_concept",
    "balanced",
    "runs_on",
]

PLUGINS_VARIABLE = "PEBENCH_PLUGINS"
LORA_PLACES = ("language_model", "mlp_at_depth")  # where a method's adapter may go (Method.lora_on)
COMMON = ("retain_weight", "beta")  # the unlearn.* settings every loss is given (the calling convention)
NLLR = r"\lambda\,\mathrm{NLL}_r"  # the retain term most formulas end with
# What a method's exercises run: its chapter, with the papermill parameters method and overrides.
# `unlearn.lr_factors=1` turns the learning-rate grid off, so two runs that differ in one setting share their rate.
CHAPTER_COMMAND = "papermill notebooks/04_method.ipynb"


@dataclass(frozen=True)
class Exercise:
    """One exercise: a short ``title``, the ``question`` and its ``solution`` (MyST markdown);
    ``kind`` is ``"think"`` (pen and paper, from the chapter's formula and figures) or
    ``"run"`` (re-run the chapter or ``pebench run`` with other settings)."""

    title: str
    question: str
    solution: str
    kind: str = "think"


@dataclass(frozen=True)
class MethodNotes:
    """A method chapter's teaching text: ``look_for`` (what to watch in this method's figures
    and tables, and why), and its exercises. Exercises name settings and commands that exist,
    so a student can run them; a solution says what to expect and why, not a number the run
    must reproduce (the numbers come from the executed chapter)."""

    look_for: str
    exercises: tuple[Exercise, ...]


def setting(default: float | int | bool, allowed: Range | None = None, doc: str = "") -> Any:
    """A field of a method's settings dataclass: its ``default``, the :class:`~pebench_core.ranges.Range`
    a number must lie in (validated with every other setting, before any work), and what it means::

        @dataclass(frozen=True)
        class Settings:
            gamma: float = setting(0.0, NON_NEGATIVE, "the reward margin γ")
    """
    return dataclasses.field(default=default, metadata={"range": allowed, "doc": doc})


@dataclass(frozen=True)
class Method:
    """One unlearning method.

    ``loss`` is the pure objective (``fn(inputs, *, retain_weight, beta, state, **settings) ->
    LossOutput``). The ``needs_*`` flags say which inputs the training loop computes for it
    (:meth:`required_inputs`; where each comes from: :data:`pebench_core.inputs.INPUTS`):
    ``needs_forget`` (θ on true forget answers), ``needs_ref_forget`` (reference on them),
    ``needs_refusal`` (θ on refusal answers), ``needs_ref_refusal`` (reference on them),
    ``needs_retain`` (θ NLL on retain answers), ``needs_kl`` (θ and reference logits on retain
    answers → ``retain_kl``), ``needs_adjusted_kl`` (θ's and the adjusted reference's next-token
    distributions on the forget answers → ``forget_adjusted_kl``), ``needs_concepts`` (concept
    labels, and batches balanced by concept), ``needs_hidden`` (one decoder layer's output →
    ``forget_rmu_mse``, ``retain_rmu_mse``), ``needs_dual_masked_kl`` (→
    ``refusal_dual_masked_kl``), ``needs_grad_norm`` (the loop passes ``grad_norm``, a function
    from a scalar term to the norm of its gradient over the trained parameters); ``stateful``:
    the loss returns a state (``LossOutput.state``) that the loop hands back the next step.

    ``settings`` is the method's own hyper-parameters, a frozen dataclass whose fields are made
    with :func:`setting` (``None``: it has none); ``settings_name`` the name they are set under,
    ``unlearn.<settings_name>.<field>`` (default: the method's name; the two BGD variants share
    ``bgd``). The loss is given each field it takes as a keyword argument; an input the loop
    computes may read some (:attr:`pebench_core.inputs.Input.settings`), and so may ``finish``.
    """

    name: str
    loss: Callable[..., Any]
    title: str
    summary: str
    formula: str  # LaTeX, without surrounding $
    about: str = ""  # the chapter's paragraph (MyST markdown; {cite} roles allowed)
    citation: str = ""  # bibliography key(s) of the method's source; empty for our own
    targets: tuple[str, ...] = TARGETS  # the unlearning targets it runs on
    settings: type | None = None  # its own hyper-parameters (a frozen dataclass of setting() fields)
    settings_name: str = ""  # set as unlearn.<settings_name>.<field>; empty: the method's name
    notes: MethodNotes | None = None  # its chapter's "what to look for" and exercises
    balances: str | None = None  # a BGD variant: the method whose forget term it balances
    chapter: bool = True  # a chapter of its own (04_<name>); BGD variants are chapter 5's
    default: bool = True  # in the profiles' default unlearn.methods
    needs_forget: bool = True
    needs_ref_forget: bool = False
    needs_refusal: bool = False
    needs_ref_refusal: bool = False
    needs_retain: bool = False
    needs_kl: bool = False
    needs_adjusted_kl: bool = False
    needs_hidden: bool = False
    needs_dual_masked_kl: bool = False
    needs_concepts: bool = False
    needs_grad_norm: bool = False
    stateful: bool = False
    # Where the adapter goes: "language_model" (its attention and MLP projections, and the
    # projector with unlearn.lora_projector), or "mlp_at_depth" (the MLPs of the decoder layer
    # at the settings' `depth` and the two below it, as RMU's authors update; no projector).
    lora_on: str = "language_model"
    # What is done to the trained adapter before it is evaluated or stored, fn(model, settings)
    # (task vectors negate it); the trajectory's checks see the finished adapter too.
    finish: Callable[[Any, Any], None] | None = None

    @property
    def fn(self) -> Callable[..., LossOutput]:
        """The loss function itself."""
        return self.loss

    @property
    def settings_key(self) -> str:
        """The name its settings are set under: ``unlearn.<settings_key>.<field>``."""
        return self.settings_name or self.name

    def passes(self) -> dict[str, Any]:
        """The flags that decide what the training loop computes (part of an unlearning run's
        key, with the loss's code; the title and prose are not)."""
        flags: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("needs_") or f.name == "stateful"
        }
        flags["lora_on"] = self.lora_on
        return flags

    def required_inputs(self, retain_weight: float = 1.0) -> tuple[str, ...]:
        """The :class:`~pebench_core.losses.LossInputs` field names this method reads for a given ``λ``."""
        req: list[str] = []
        if self.needs_forget:
            req += ["forget_logp_sum", "forget_n_tokens"]
        if self.needs_ref_forget:
            req += ["forget_ref_logp_sum"]
        if self.needs_refusal:
            req += ["refusal_logp_sum", "refusal_n_tokens"]
        if self.needs_ref_refusal:
            req += ["refusal_ref_logp_sum"]
        if self.needs_adjusted_kl:
            req += ["forget_adjusted_kl"]
        if self.needs_hidden:
            req += ["forget_rmu_mse"] + (["retain_rmu_mse"] if retain_weight != 0 else [])
        if self.needs_dual_masked_kl and retain_weight != 0:
            req += ["refusal_dual_masked_kl"]
        if self.needs_concepts:
            req += ["forget_concepts"]
        if retain_weight != 0:
            if self.needs_retain:
                req += ["retain_logp_sum", "retain_n_tokens"]
            if self.needs_kl:
                req += ["retain_kl"]
            if self.needs_concepts and (self.needs_retain or self.needs_kl):
                req += ["retain_concepts"]
        return tuple(req)

    def loss_kwargs(self, unlearn: Any) -> dict[str, Any]:
        """The keyword arguments the loss gets from an :class:`~pebench_core.config.UnlearnConfig`:
        ``retain_weight`` and ``beta`` (every loss takes them), then each field of its settings
        that the loss takes. A setting the loop or the finish applies instead (UNDIAL's strength
        builds its target, the task vector's scale its negation) is recorded with the run but
        not given to a loss that does not take it."""
        takes = inspect.signature(self.fn).parameters
        anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values())
        own = settings_of(self.name, unlearn)
        kwargs = {h: getattr(unlearn, h) for h in COMMON}
        if own is not None:
            kwargs.update({f.name: getattr(own, f.name) for f in fields(own) if anything or f.name in takes})
        return kwargs

    def __call__(
        self,
        inputs: LossInputs,
        *,
        retain_weight: float = 1.0,
        beta: float = 0.1,
        state: Any = None,
        **settings: Any,
    ) -> LossOutput:
        return self.fn(inputs, retain_weight=retain_weight, beta=beta, state=state, **settings)


METHODS: dict[str, Method] = {}
_LOADED: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in ``PEBENCH_PLUGINS`` (once each): where a user's methods
    register themselves for a command line or a chapter."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        if module in _LOADED:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # a user's module: any failure is theirs to read, in one line
            raise ConfigError(
                f"{PLUGINS_VARIABLE} names {module!r}, which cannot be imported: {type(exc).__name__}: {exc}"
            ) from None
        _LOADED.add(module)


def _check_settings(method: Method) -> None:
    """A method's settings: a frozen dataclass of numbers and switches, each with a default and
    (a number) a range; one settings name, one class; every setting its inputs read."""
    where = f"method {method.name!r}"
    key = method.settings_key
    if not key or any(c in key for c in ", /=."):
        raise ConfigError(f"{where}: settings_name must be non-empty without commas, dots, slashes, spaces or '=', got {key!r}")
    cls = method.settings
    if cls is not None:
        params = getattr(cls, "__dataclass_params__", None)
        if not isinstance(cls, type) or not dataclasses.is_dataclass(cls) or not (params and params.frozen):
            raise ConfigError(f"{where}: settings must be a frozen dataclass (@dataclass(frozen=True)), got {cls!r}")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            typ = hints[f.name]
            if typ not in (int, float, bool):
                raise ConfigError(f"{where}: setting {f.name!r} must be an int, a float or a bool, got {typ!r}")
            if f.default is dataclasses.MISSING:
                raise ConfigError(f"{where}: setting {f.name!r} needs a default (declare it with setting(default, range, doc))")
            if typ is not bool and not isinstance(f.metadata.get("range"), Range):
                raise ConfigError(f"{where}: setting {f.name!r} needs a range (declare it with setting(default, range, doc))")
            check_value(f"unlearn.{key}.{f.name}", f.default, typ, f.metadata.get("range"))
    for other in METHODS.values():
        if other.name != method.name and other.settings_key == key and other.settings is not cls:
            raise ConfigError(
                f"{where}: settings name {key!r} is taken by method {other.name!r}, with another settings class; "
                "two methods share a settings name only with one class"
            )
    own = {f.name for f in fields(cls)} if cls is not None else set()
    read = {s for i in method.required_inputs(1.0) for s in INPUTS[i].settings}
    if method.lora_on == "mlp_at_depth":
        read.add("depth")
    missing = sorted(read - own)
    if missing:
        raise ConfigError(
            f"{where}: the inputs it needs read the setting(s) {', '.join(missing)}, which its settings do not hold; "
            "add them to its settings dataclass"
        )


def check_value(where: str, value: Any, typ: type, allowed: Range | None) -> None:
    """One setting's value against its type and range (a ConfigError naming ``where``)."""
    if typ is bool:
        ok = isinstance(value, bool)
        if not ok:
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return
    if typ is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if typ is float and not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if allowed is not None and not allowed.allows(value):
        raise ConfigError(f"{where} must be {allowed.describe()}, got {value}")


def register(method: Method, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace=True`` to redefine a name already there)."""
    check_entry(method, Method, "method", METHODS, replace)
    unknown = [t for t in method.targets if t not in TARGETS]
    if unknown or not method.targets:
        raise ConfigError(f"method {method.name!r}: targets must be among {', '.join(TARGETS)}, got {method.targets!r}")
    if method.balances is not None and method.balances not in METHODS:
        raise ConfigError(f"method {method.name!r} balances {method.balances!r}, which is not a registered method")
    if method.lora_on not in LORA_PLACES:
        raise ConfigError(f"method {method.name!r}: lora_on must be one of {', '.join(LORA_PLACES)}, got {method.lora_on!r}")
    if not callable(method.loss):
        raise ConfigError(f"method {method.name!r}: loss must be a function, got {type(method.loss).__name__}")
    if method.finish is not None and not callable(method.finish):
        raise ConfigError(f"method {method.name!r}: finish must be a function fn(model, settings), got {method.finish!r}")
    if method.notes is not None and not isinstance(method.notes, MethodNotes):
        raise ConfigError(f"method {method.name!r}: notes must be a MethodNotes, got {type(method.notes).__name__}")
    _check_settings(method)
    METHODS[method.name] = method
    return method


def names() -> tuple[str, ...]:
    """Every registered method, in registry order (plugins loaded first)."""
    load_plugins()
    return tuple(METHODS)


def get(name: str) -> Method:
    """The registered method ``name``; an unknown one is a ConfigError listing the allowed names."""
    load_plugins()
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown unlearning method {name!r}; allowed: {', '.join(METHODS)}") from None


def settings_keys() -> dict[str, type]:
    """Every settings name a registered method is configured under → its settings class."""
    return {m.settings_key: m.settings for m in (get(n) for n in names()) if m.settings is not None}


def settings_of(method: str, unlearn: Any) -> Any:
    """The settings a run of ``method`` uses (its dataclass: defaults, then what
    ``unlearn.<settings_name>.*`` sets), or ``None`` for a method without settings."""
    spec = get(method)
    if spec.settings is None:
        return None
    given = dict((getattr(unlearn, "settings", None) or {}).get(spec.settings_key, {}))
    return spec.settings(**given)


def settings_record(method: str, unlearn: Any) -> dict[str, Any]:
    """The settings of a run of ``method`` by their command-line names (``simnpo.gamma``): what a
    run records beside its learning rate and budget."""
    own = settings_of(method, unlearn)
    key = get(method).settings_key
    return {f"{key}.{f.name}": getattr(own, f.name) for f in fields(own)} if own is not None else {}


def settings_table(method: str, unlearn: Any) -> list[dict[str, Any]]:
    """One row per setting of ``method``'s own: its command-line name, the value a run uses,
    the default, what is allowed and what it means (a chapter shows them; empty: none)."""
    own = settings_of(method, unlearn)
    if own is None:
        return []
    key = get(method).settings_key
    rows = []
    for f in fields(own):
        allowed = f.metadata.get("range")
        rows.append({
            "setting": f"unlearn.{key}.{f.name}",
            "value": getattr(own, f.name),
            "default": f.default,
            "allowed": allowed.describe() if isinstance(allowed, Range) else "true or false",
            "meaning": f.metadata.get("doc", ""),
        })  # fmt: skip
    return rows


def chapter_methods() -> list[Method]:
    """The methods with a chapter of their own, in registry order."""
    return [m for m in (get(n) for n in names()) if m.chapter]


def single_concept() -> tuple[str, ...]:
    """The methods that forget with one objective (not a BGD balancing of another)."""
    return tuple(n for n in names() if METHODS[n].balances is None)


def balanced() -> dict[str, str]:
    """BGD variant → the method it balances."""
    return {n: m.balances for n in names() if (m := METHODS[n]).balances is not None}


def runs_on(name: str, target: str) -> bool:
    """Whether method ``name`` applies to ``target`` (BGD balances two concepts: ``both`` only)."""
    return target in get(name).targets
