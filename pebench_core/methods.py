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
import inspect
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from .errors import TARGETS, ConfigError, check_entry

if TYPE_CHECKING:
    from .losses import LossInputs, LossOutput

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
LORA_PLACES = ("language_model", "mlp_at_depth")  # where a method's adapter may go (Method.lora_on)


@dataclass(frozen=True)
class Method:
    """One unlearning method.

    ``loss`` is the pure objective, or the name of one in :mod:`pebench_core.losses` (the
    built-ins, so that this table imports no torch); :attr:`fn` is the function either way.
    The ``needs_*`` flags say which model passes the training loop must run:
    ``needs_forget`` (θ on true forget answers), ``needs_ref_forget`` (reference on them),
    ``needs_refusal`` (θ on refusal answers), ``needs_ref_refusal`` (reference on them),
    ``needs_retain`` (θ NLL on retain answers), ``needs_kl`` (θ and reference logits on retain
    answers → ``retain_kl``), ``needs_adjusted_kl`` (θ's and the reference's next-token
    distributions on the forget answers → ``forget_adjusted_kl``; UNDIAL), ``needs_concepts``
    (concept labels, and batches balanced by concept; BGD), ``needs_hidden`` (θ's output of
    the decoder layer at ``unlearn.rmu_depth`` on the forget answers, and on the retain answers
    the reference's too → ``forget_rmu_mse``, ``retain_rmu_mse``; RMU),
    ``needs_dual_masked_kl`` (θ's and the reference's next-token distributions on the refusal
    answers, with the true answer's tokens masked → ``refusal_dual_masked_kl``; SIU), ``needs_grad_norm`` (the loop
    passes ``grad_norm``, a function from a scalar term to the norm of its gradient over the
    trained parameters; BGD); ``stateful``: the loss returns a state (``LossOutput.state``)
    that the loop hands back the next step. Retain inputs are needed only when
    ``retain_weight != 0``: use :meth:`required_inputs`.
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
    needs_adjusted_kl: bool = False
    needs_hidden: bool = False
    needs_dual_masked_kl: bool = False
    needs_concepts: bool = False
    needs_grad_norm: bool = False
    stateful: bool = False
    # Where the adapter goes: "language_model" (its attention and MLP projections, and the
    # projector with unlearn.lora_projector), or "mlp_at_depth" (the MLPs of the decoder layer
    # at unlearn.rmu_depth and the two below it, as RMU's authors update; no projector).
    lora_on: str = "language_model"
    # What is done to the trained adapter before it is evaluated or stored: the name of a
    # function in pebench_core.unlearn.FINISHES (task vectors: "negate"), or a user's own
    # fn(model, unlearn_cfg); the trajectory's checks see the finished adapter too.
    finish: str | Callable[..., None] | None = None

    @property
    def fn(self) -> Callable[..., LossOutput]:
        """The loss function itself."""
        if callable(self.loss):
            return self.loss
        from . import losses

        return getattr(losses, self.loss)

    def passes(self) -> dict[str, Any]:
        """The flags that decide what the training loop computes (part of an unlearning run's
        key, with the loss's code; the title and prose are not)."""
        flags: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("needs_") or f.name == "stateful"
        }
        if self.finish is not None:
            flags["finish"] = self.finish if isinstance(self.finish, str) else getattr(self.finish, "__qualname__", "finish")
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

    def settings(self, unlearn: Any) -> dict[str, Any]:
        """The keyword arguments the loss gets from an :class:`~pebench_core.config.UnlearnConfig`:
        ``retain_weight`` and ``beta`` (every loss takes them), then each other name in
        :attr:`hparams` that the loss takes (e.g. SimNPO's ``gamma``). A setting the loop
        applies instead (UNDIAL's strength builds its target, the negation scale its finish) is
        in :attr:`hparams`, so results record it, but a loss that does not take it is not given it."""
        takes = inspect.signature(self.fn).parameters
        anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values())
        names = ("retain_weight", "beta", *(h for h in self.hparams if h not in ("retain_weight", "beta")))
        return {h: getattr(unlearn, h) for h in names if h in ("retain_weight", "beta") or anything or h in takes}

    def __call__(
        self,
        inputs: LossInputs,
        *,
        retain_weight: float = 1.0,
        beta: float = 0.1,
        state: Any = None,
        **hparams: Any,
    ) -> LossOutput:
        return self.fn(inputs, retain_weight=retain_weight, beta=beta, state=state, **hparams)


_NLLR = r"\lambda\,\mathrm{NLL}_r"
_BGD_FORGET = r"\frac{1}{K}\sum_{c} w_c\,\big(-\mathrm{NLL}_f(c)\big)"
_BGD_WEIGHTS = (
    r"\quad w_c = \mathrm{clip}\!\Big(\frac{\bar g}{g_c},\ \tfrac{1}{\rho},\ \rho\Big),\ "
    r"g_c = \big\lVert\nabla_\theta \mathrm{NLL}_f(c)\big\rVert,\ \bar g = \tfrac{1}{K}\textstyle\sum_c g_c"
)
_BGD_ABOUT = (
    "**BGD** is the paper's mitigation for forgetting people and events at once; its formula is not "
    "published, and this is our reconstruction: every step draws the two concepts in equal numbers, "
    "measures the norm of each concept's forget gradient, and weights the two forget terms so that "
    r"their gradients are equal, each weight clipped to $[1/\rho, \rho]$ so that a concept whose "
    "gradient has all but vanished is never amplified by orders of magnitude. The retain term is the "
    "base method's, in full. Chapter 5 studies it."
)
_BGD: dict[str, Any] = dict(
    citation="xu2025pebench",
    about=_BGD_ABOUT,
    targets=("both",),
    hparams=("retain_weight", "bgd_max_weight"),
    chapter=False,
    needs_concepts=True,
    needs_grad_norm=True,
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
    "undial": Method(
        "undial",
        loss="undial_loss",
        title="Bonus: self-distillation with adjusted logits (UNDIAL)",
        summary="Self-distillation towards the reference with the true token's logit lowered",
        formula=r"\mathcal{L} = \mathbb{E}_{D_f}\,\frac{1}{|y|}\sum_{t}\mathrm{KL}\!\Big(\mathrm{softmax}"
        r"\big(z^{\mathrm{ref}}_t - s\,e_{y_t}\big)\,\Big\|\,p_\theta(\cdot \mid y_{<t})\Big)",
        citation="dong2025undial",
        about="**UNDIAL** {cite}`dong2025undial` does not push the true answer down without end: at every "
        "answer token it takes the reference model's next-token logits, lowers the true token's logit by a "
        "strength $s$, and distils the model towards that fixed target. The other tokens keep the reference's "
        "ranking, the loss is bounded below by zero, and its gradient fades as the model reaches the target, "
        "which is what its authors mean by robust. As in its paper there is no retain term.",
        hparams=("undial_strength",),
        needs_adjusted_kl=True,
    ),
    "siu": Method(
        "siu",
        loss="siu_loss",
        title="Bonus: SIU-style dual masked KL (SIU)",
        summary="Learn a refusal on the forget images; a KL with the concept's tokens masked twice keeps the rest",
        formula=r"\mathcal{L} = \mathrm{NLL}(y_\mathrm{refusal} \mid D_f) + \lambda\,\mathbb{E}_{D_f}\frac{1}{|T_i|}"
        r"\sum_{t \in T_i}\mathrm{KL}\big(\tilde p_\mathrm{ref,t}\,\|\,\tilde p_{\theta,t}\big)",
        citation="li2024single",
        about="**SIU** {cite}`li2024single` is the sixth method of PEBench v1 {cite}`xu2025pebench`. Its "
        "published description gives the idea but not every detail, so this is a reconstruction: it fine-tunes "
        "the forget images towards a refusal (as PO does) and regularises with a *dual masked* KL to the "
        "reference on those same answers. The forget concept's tokens (those of the true answer) are masked "
        r"twice: out of the vocabulary of both distributions ($\tilde p$, renormalised over the rest), and out "
        r"of the positions $T_i$ that predict one of them. So the KL keeps everything the model says *around* "
        "the concept and leaves the concept itself free to go. Like SIU it trains on the forget images alone.",
        hparams=("retain_weight",),
        needs_forget=False,
        needs_refusal=True,
        needs_dual_masked_kl=True,
    ),
    "rmu": Method(
        "rmu",
        loss="rmu_loss",
        title="Bonus: representation misdirection (RMU)",
        summary="Steer a middle layer's activations on forget inputs towards a fixed random vector, keep them on retain",
        formula=r"\mathcal{L} = \mathbb{E}_{D_f}\big\lVert h^{(\ell)}_\theta(x) - c\,u\big\rVert^2 + "
        r"\lambda\,\mathbb{E}_{D_r}\big\lVert h^{(\ell)}_\theta(x) - h^{(\ell)}_\mathrm{ref}(x)\big\rVert^2",
        citation="li2024wmdp",
        about="**RMU** {cite}`li2024wmdp` works on what the model *computes*, not on what it says. It picks one "
        r"decoder layer $\ell$ in the middle of the language model, and on forget inputs pushes that layer's "
        r"activations towards a fixed random direction $u$ scaled by $c$, noise the later layers cannot read; "
        "on retain inputs it holds them where the reference model had them. Only the MLPs of that layer and the "
        "two below it are adapted. Here the activations are those at the answer positions, and $c$ is "
        "`unlearn.rmu_steer` times their mean norm in the reference (the paper fixes $c$ per model).",
        hparams=("retain_weight", "rmu_depth", "rmu_steer"),
        needs_hidden=True,
        lora_on="mlp_at_depth",
    ),
    "task_vector": Method(
        "task_vector",
        loss="task_vector_loss",
        title="Bonus: task-vector negation",
        summary="Fine-tune an adapter further on the forget set, then subtract it",
        formula=r"\theta_\mathrm{unlearned} = \theta_\mathrm{ft} - \alpha\,\tau,\quad"
        r"\tau = \arg\min_{\Delta}\ \mathrm{NLL}_f(\theta_\mathrm{ft} + \Delta)",
        citation="ilharco2023editing",
        about="**Task-vector negation** {cite}`ilharco2023editing` never climbs a loss. It fine-tunes a fresh "
        "adapter *further* on the forget set, which points the weights towards what is to be forgotten (the "
        r"task vector $\tau$), and then subtracts it, scaled by $\alpha$: $\theta_\mathrm{ft} - \alpha\tau$. "
        "With LoRA the subtraction is exact: the adapter's update $BA$ is negated by negating $B$. The "
        "trajectory's checks score the negated adapter at every step. The fine-tuned model already knows "
        "the forget set well, so the further fine-tuning has little left to learn, and the vector it "
        "finds may be short: that is the method's known weakness on memorised data.",
        hparams=("negation_scale",),
        finish="negate",
    ),
    "gd+bgd": Method(
        "gd+bgd",
        loss="gd_bgd_loss",
        title="GD with balanced concepts (GD+BGD)",
        summary="GD with balanced concepts (our BGD reconstruction): the concepts' forget gradients equalised, weights bounded",
        formula=r"\mathcal{L} = " + _BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c \mathrm{NLL}_r(c)," + _BGD_WEIGHTS,
        balances="gd",
        needs_retain=True,
        **_BGD,
    ),
    "kl+bgd": Method(
        "kl+bgd",
        loss="kl_bgd_loss",
        title="KL with balanced concepts (KL+BGD)",
        summary="KL with balanced concepts (our BGD reconstruction): the concepts' forget gradients equalised, weights bounded",
        formula=r"\mathcal{L} = " + _BGD_FORGET + r" + \lambda\,\frac{1}{K_r}\sum_c"
        r" \mathbb{E}_{D_r(c)}\!\left[\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)\right]," + _BGD_WEIGHTS,
        balances="kl",
        needs_kl=True,
        **_BGD,
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
