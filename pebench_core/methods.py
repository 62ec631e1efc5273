"""The unlearning methods, one registry entry each (design: Unlearning methods).

A method is one :class:`Method`: its pure loss (a function of :mod:`pebench_core.losses`, or
a user's own), its title, a one-line summary, the chapter's paragraph about it, its LaTeX
formula, its citation key, the model passes its loss needs, the targets it applies to and the
``unlearn.*`` hyper-parameters it reads. Everything that lists methods reads :data:`METHODS`:
configuration validation, the pipeline's per-target choice, the book's chapter list and
titles, the analysis tables and chapter 4's prose. This module imports no torch, so a
command line is checked in a fraction of a second.

To add a method: implement the loss (``fn(inputs, *, retain_weight, beta, state) ->
LossOutput``), **register** it, **configure** it by name::

    from pebench_core.methods import Method, register
    register(Method("mine", loss=my_loss, title="My method", summary="...", formula=r"..."))
    # pebench run --set unlearn.methods=mine ; papermill 04_method.ipynb -p method mine

A command line or a chapter imports the modules named in the environment variable
``PEBENCH_PLUGINS`` (comma-separated) before it reads the registry, which is how a method
registered in user code reaches ``pebench run`` and ``pebench book``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from .config import TARGETS, ConfigError

if TYPE_CHECKING:
    from .losses import BGDState, LossInputs, LossOutput

__all__ = [
    "Method",
    "METHODS",
    "BUILT_IN",
    "register",
    "get",
    "names",
    "default_methods",
    "chapter_methods",
    "single_concept",
    "balanced",
    "runs_on",
    "load_plugins",
]

PLUGINS_VARIABLE = "PEBENCH_PLUGINS"


@dataclass(frozen=True)
class Method:
    """One unlearning method.

    ``loss`` is the pure objective, or the name of one in :mod:`pebench_core.losses` (the
    built-ins, so that this table imports no torch); :attr:`fn` is the function either way.
    The ``needs_*`` flags say which model passes the training loop must run:
    ``needs_forget`` (θ on true forget answers), ``needs_ref_forget`` (reference on them),
    ``needs_refusal`` (θ on refusal answers), ``needs_ref_refusal`` (reference on them),
    ``needs_retain`` (θ NLL on retain answers), ``needs_kl`` (θ and reference logits on retain
    answers → ``retain_kl``), ``needs_concepts`` (concept labels; BGD); ``stateful``: it
    carries a :class:`~pebench_core.losses.BGDState` between steps. Retain inputs are needed
    only when ``retain_weight != 0``: use :meth:`required_inputs`.
    """

    name: str
    loss: Callable[..., Any] | str
    title: str
    summary: str
    formula: str  # LaTeX, without surrounding $
    about: str = ""  # the chapter's paragraph (MyST markdown; {cite} roles allowed)
    citation: str = ""  # bibliography key(s) of the method's source; empty for our own
    targets: tuple[str, ...] = TARGETS  # the unlearning targets it runs on
    hparams: tuple[str, ...] = ()  # the unlearn.* settings its loss reads (besides lr, steps, ...)
    balances: str | None = None  # a BGD variant: the method whose forget term it balances
    chapter: bool = True  # a chapter of its own (04_<name>); BGD variants are chapter 5's
    default: bool = True  # in the profiles' default unlearn.methods
    needs_forget: bool = True
    needs_ref_forget: bool = False
    needs_refusal: bool = False
    needs_ref_refusal: bool = False
    needs_retain: bool = False
    needs_kl: bool = False
    needs_concepts: bool = False
    stateful: bool = False

    @property
    def fn(self) -> Callable[..., LossOutput]:
        """The loss function itself."""
        if callable(self.loss):
            return self.loss
        from . import losses

        return getattr(losses, self.loss)

    def passes(self) -> dict[str, bool]:
        """The flags that decide what the training loop computes (part of an unlearning run's
        key, with the loss's code; the title and prose are not)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("needs_") or f.name == "stateful"}

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

    def settings(self, unlearn: Any) -> dict[str, Any]:
        """The keyword arguments the loss gets from an :class:`~pebench_core.config.UnlearnConfig`:
        ``retain_weight`` and ``beta`` (every loss takes them), then each other name in
        :attr:`hparams` (e.g. SimNPO's ``gamma``)."""
        names = ("retain_weight", "beta", *(h for h in self.hparams if h not in ("retain_weight", "beta")))
        return {h: getattr(unlearn, h) for h in names}

    def __call__(
        self,
        inputs: LossInputs,
        *,
        retain_weight: float = 1.0,
        beta: float = 0.1,
        state: BGDState | None = None,
        **hparams: Any,
    ) -> LossOutput:
        return self.fn(inputs, retain_weight=retain_weight, beta=beta, state=state, **hparams)


_NLLR = r"\lambda\,\mathrm{NLL}_r"
_BGD_FORGET = r"\frac{1}{K}\sum_{c}\frac{-\mathrm{NLL}_f(c)}{m_c+\epsilon}"
_BGD_RUNNING = r"\quad m_c \leftarrow \mu\,m_c + (1-\mu)\,\lvert\mathrm{NLL}_f(c)\rvert"
_BGD_ABOUT = (
    "**BGD** is the paper's mitigation for forgetting people and events at once; its formula is not "
    "published, and this is our reconstruction: each concept's forget term is divided by a running "
    "mean of its own magnitude, so that neither concept dominates the step. Chapter 5 studies it."
)

METHODS: dict[str, Method] = {
    "ga": Method(
        "ga",
        loss="ga_loss",
        title="Gradient ascent (GA)",
        summary="Gradient ascent on the forget answers",
        formula=r"\mathcal{L} = -\mathrm{NLL}_f",
        citation="jang2023knowledge",
        about="**Gradient ascent** {cite}`jang2023knowledge` simply climbs the loss it used to descend: it makes "
        "the true answers on the forget images as unlikely as it can. Nothing holds the rest of the model in "
        "place, so it is expected to forget fast and to damage what it should keep.",
    ),
    "gd": Method(
        "gd",
        loss="gd_loss",
        title="Gradient difference (GD)",
        summary="Gradient difference: ascend on forget, descend on retain",
        formula=r"\mathcal{L} = -\mathrm{NLL}_f + " + _NLLR,
        citation="maini2024tofu",
        about="**Gradient difference** {cite}`maini2024tofu` adds the usual fine-tuning loss on the retain set to "
        "gradient ascent: push the forget answers down, keep the retain answers up.",
        hparams=("retain_weight",),
        needs_retain=True,
    ),
    "kl": Method(
        "kl",
        loss="kl_loss",
        title="KL-regularised gradient ascent (KL)",
        summary="Gradient ascent on forget + KL to the reference model on retain answers",
        formula=r"\mathcal{L} = -\mathrm{NLL}_f + \lambda\,\mathbb{E}_{D_r}\!\left["
        r"\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)\right]",
        citation="maini2024tofu",
        about="**KL regularisation** {cite}`maini2024tofu` keeps the model's *whole output distribution* on retain "
        "answers close to the reference model's, rather than only the likelihood of the reference answer.",
        hparams=("retain_weight",),
        needs_kl=True,
    ),
    "po": Method(
        "po",
        loss="po_loss",
        title="Preference optimisation towards refusal (PO)",
        summary="Preference optimisation: learn a refusal on the forget images, keep retain",
        formula=r"\mathcal{L} = \mathrm{NLL}(y_\mathrm{refusal} \mid D_f) + " + _NLLR,
        citation="maini2024tofu",
        about="**Preference optimisation** {cite}`maini2024tofu` does not push anything down: it teaches the model "
        'to answer forget questions with a refusal ("I don\'t know who this is."), while fine-tuning on the retain set.',
        hparams=("retain_weight",),
        needs_forget=False,
        needs_refusal=True,
        needs_retain=True,
    ),
    "dpo": Method(
        "dpo",
        loss="dpo_loss",
        title="Direct preference optimisation (DPO)",
        summary="DPO with the refusal preferred over the true answer",
        formula=r"\mathcal{L} = -\mathbb{E}_{D_f}\log\sigma\!\Big(\beta\big[(\ell_\theta(y_w)-\ell_\mathrm{ref}(y_w))"
        r" - (\ell_\theta(y_l)-\ell_\mathrm{ref}(y_l))\big]\Big) + " + _NLLR,
        citation="rafailov2023direct",
        about="**DPO** {cite}`rafailov2023direct` treats the refusal as the preferred answer $y_w$ and the true "
        "answer as the rejected one $y_l$, and raises the margin between them relative to the reference model.",
        hparams=("retain_weight", "beta"),
        needs_ref_forget=True,
        needs_refusal=True,
        needs_ref_refusal=True,
        needs_retain=True,
    ),
    "npo": Method(
        "npo",
        loss="npo_loss",
        title="Bonus: negative preference optimisation (NPO)",
        summary="Negative preference optimisation on the forget answers",
        formula=r"\mathcal{L} = \mathbb{E}_{D_f}\tfrac{2}{\beta}\log\!\Big(1 + "
        r"e^{\beta(\ell_\theta(y)-\ell_\mathrm{ref}(y))}\Big) + " + _NLLR,
        citation="zhang2024negative",
        about="**NPO** {cite}`zhang2024negative` keeps only DPO's negative half: it lowers the true answer's "
        "likelihood relative to the reference, but the loss saturates once the answer is unlikely, which slows the "
        "collapse that plain gradient ascent runs into.",
        hparams=("retain_weight", "beta"),
        needs_ref_forget=True,
        needs_retain=True,
    ),
    "simnpo": Method(
        "simnpo",
        loss="simnpo_loss",
        title="Bonus: simple negative preference optimisation (SimNPO)",
        summary="Reference-free, length-normalised NPO with a reward margin",
        formula=r"\mathcal{L} = -\mathbb{E}_{D_f}\tfrac{2}{\beta}\log\sigma\!\Big(-\tfrac{\beta}{|y|}\,\ell_\theta(y)"
        r" - \gamma\Big) + " + _NLLR,
        citation="fan2025simplicity",
        about="**SimNPO** {cite}`fan2025simplicity` drops NPO's reference model: the loss looks at the answer's "
        r"likelihood per token, $\ell_\theta(y)/|y|$, against a margin $\gamma$. NPO's reference makes answers "
        "the fine-tuned model knew very well the slowest to forget; without it every forget answer is pushed "
        "alike, and the weight still fades once an answer is unlikely. It needs no reference pass at all.",
        hparams=("retain_weight", "beta", "gamma"),
        needs_retain=True,
    ),
    "gd+bgd": Method(
        "gd+bgd",
        loss="gd_bgd_loss",
        title="GD with balanced concepts (GD+BGD)",
        summary="GD with balanced concepts (our BGD reconstruction): per-concept forget terms normalised by running magnitude",
        formula=r"\mathcal{L} = " + _BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c \mathrm{NLL}_r(c)," + _BGD_RUNNING,
        citation="xu2025pebench",
        about=_BGD_ABOUT,
        targets=("both",),
        hparams=("retain_weight",),
        balances="gd",
        chapter=False,
        needs_retain=True,
        needs_concepts=True,
        stateful=True,
    ),
    "kl+bgd": Method(
        "kl+bgd",
        loss="kl_bgd_loss",
        title="KL with balanced concepts (KL+BGD)",
        summary="KL with balanced concepts (our BGD reconstruction): per-concept forget terms normalised by running magnitude",
        formula=r"\mathcal{L} = " + _BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c"
        r" \mathbb{E}_{D_r(c)}\!\left[\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)\right]," + _BGD_RUNNING,
        citation="xu2025pebench",
        about=_BGD_ABOUT,
        targets=("both",),
        hparams=("retain_weight",),
        balances="kl",
        chapter=False,
        needs_kl=True,
        needs_concepts=True,
        stateful=True,
    ),
}

BUILT_IN = tuple(METHODS)  # the methods this package ships (the profiles' default run)
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


def register(method: Method, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace=True`` to redefine a name already there)."""
    if not isinstance(method, Method):
        raise ConfigError(f"register() takes a pebench_core.methods.Method, got {type(method).__name__}")
    if not method.name or any(c in method.name for c in ", /="):
        raise ConfigError(f"a method name must be non-empty without commas, slashes, spaces or '=', got {method.name!r}")
    if method.name in METHODS and not replace:
        raise ConfigError(f"method {method.name!r} is registered already; pass replace=True to redefine it")
    unknown = [t for t in method.targets if t not in TARGETS]
    if unknown or not method.targets:
        raise ConfigError(f"method {method.name!r}: targets must be among {', '.join(TARGETS)}, got {method.targets!r}")
    if method.balances is not None and method.balances not in METHODS:
        raise ConfigError(f"method {method.name!r} balances {method.balances!r}, which is not a registered method")
    from .config import UnlearnConfig

    known = {f.name for f in fields(UnlearnConfig)}
    unknown_h = [h for h in method.hparams if h not in known]
    if unknown_h:
        raise ConfigError(
            f"method {method.name!r} reads {', '.join(unknown_h)}, which {'is' if len(unknown_h) == 1 else 'are'} "
            "not unlearn.* settings; add the field to UnlearnConfig (with its range) first"
        )
    if not callable(method.loss):
        raise ConfigError(f"method {method.name!r}: loss must be a function, got {type(method.loss).__name__}")
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


def default_methods() -> tuple[str, ...]:
    """The profiles' default ``unlearn.methods``: every built-in method meant for the default run."""
    return tuple(n for n in BUILT_IN if METHODS[n].default)


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
