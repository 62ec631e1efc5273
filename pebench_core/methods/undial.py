"""UNDIAL: self-distillation towards the reference with the true token's logit lowered.

One method, one file (design: Unlearning methods): its loss, its entry in the registry, its own
settings and its chapter's teaching notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..losses import LossInputs, LossOutput, as_float, forget_nll, given, per_sequence
from ..ranges import NON_NEGATIVE
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, setting


@dataclass(frozen=True)
class Settings:
    """UNDIAL's own hyper-parameter (``unlearn.undial.*``): the loop reads it to build the target."""

    strength: float = setting(10.0, NON_NEGATIVE, "how far the true token's logit is lowered, s (its paper: 3-30)")


def undial_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """UNDIAL (Dong et al., 2025): self-distillation towards the reference with the true
    token's logit lowered::

        mean_i mean_{t ∈ y_i} KL(softmax(z_ref,t − s·e_{y_t}) ‖ p_θ,t)   =  mean(forget_adjusted_kl)

    (``s`` is ``unlearn.undial.strength``, applied by the loop when it builds the target with
    :func:`adjusted_logits` from the reference pass). The target is fixed, so the loss is bounded below by 0 and its
    gradient fades as θ reaches it: unlike gradient ascent, nothing is pushed without end.
    As in its paper, no retain term: distilling the reference on every other token is what
    keeps the rest of the distribution. ``retain_weight``/``beta`` are ignored.
    """
    inp.require("undial", "forget_adjusted_kl")
    kl = per_sequence(given(inp.forget_adjusted_kl, "undial", "forget_adjusted_kl"), "forget_adjusted_kl").mean()
    parts = {"forget_loss": as_float(kl), "loss": as_float(kl)}
    if inp.forget_logp_sum is not None and inp.forget_n_tokens is not None:
        parts["forget_nll"] = as_float(forget_nll(inp, "undial").mean())
    return LossOutput(loss=kl, parts=parts)


NOTES = MethodNotes(
    look_for=(
        "UNDIAL never pushes without end: at every answer token it distils the model towards a fixed target, the "
        r"reference's distribution with the true token's logit lowered by $s$ (`unlearn.undial.strength`). The "
        "loss is bounded below by 0, reached when the model matches the target, and its gradient fades on the "
        "way. At step 0 the model is the reference, so the trajectory's forget loss starts at the KL between "
        "target and reference and should fall and level off, not plunge. The target keeps the reference's "
        "ranking of every other token, so in the side-by-side table a forgotten answer should turn into the "
        "reference's runner-up rather than gibberish. The catch is "
        "confidence: if the reference is very sure of a token, lowering its logit by $s$ may leave it the "
        "target's first choice, and greedy decoding still says it, so efficacy can stay low on well-memorised "
        "names. There is no retain term: compare retain, real and world-fact with GA's chapter.\n\n"
        "UNDIAL is not in the paper's Table 1, so there is no published number here; the leaderboard chapter "
        "sets it beside the paper's five on this run."
    ),
    exercises=(
        Exercise(
            "Does the target still say the answer?",
            r"The target at one token is $\mathrm{softmax}(z - s\,e_y)$, where $z$ are the reference's logits and "
            r"$y$ the true token, of reference probability $p_y$. Derive the target's probability $p'_y$ of the "
            "true token and its probabilities of the other tokens. When is the true token no longer the target's "
            r"most likely one? Evaluate $p'_y$ for a memorised token, $p_y = 1 - \varepsilon$ with small "
            r"$\varepsilon$.",
            r"$p'_y = \frac{p_y e^{-s}}{p_y e^{-s} + 1 - p_y}$ and, for $v \ne y$, $p'_v = \frac{p_v}{p_y e^{-s} + "
            r"1 - p_y}$: the other tokens keep their ratios. The true token stops being the argmax exactly when "
            r"$z_y - s < \max_{v \ne y} z_v$, i.e. when $s$ exceeds its logit gap over the runner-up. For "
            r"$p_y = 1 - \varepsilon$, $p'_y \approx \frac{e^{-s}}{e^{-s} + \varepsilon}$, which stays near 1 "
            r"unless $e^{-s} \ll \varepsilon$, i.e. $s \gg \ln(1/\varepsilon)$. The surer the reference, the "
            "larger the strength needed: a bounded, gentle target can leave a well-memorised name in place.",
            "think",
        ),
        Exercise(
            "The strength dial",
            f"UNDIAL's authors use strengths between 3 and 30; this book's default is 10. Run `{CHAPTER_COMMAND} "
            "/tmp/undial-s3.ipynb -p method undial -y 'overrides: [unlearn.undial.strength=3]'` and the same with "
            "`unlearn.undial.strength=30` into `/tmp/undial-s30.ipynb`. Compare the trajectory's starting and final "
            "forget loss, efficacy, retain, real and the side-by-side answers.",
            r"A larger $s$ puts the target further from the reference, so the forget loss starts higher. At "
            r"$s = 3$ most confident tokens remain the target's argmax (by the logit-gap rule), so expect low "
            r"efficacy and retain, real and world-fact close to finetune. At $s = 30$ the true token's target "
            "probability is essentially zero, so expect more forgetting, with answers that drift to the "
            "reference's alternatives. Because the target stays fixed and the loss bounded, expect even the strong "
            "setting to damage retain far less than GA does; the learning-rate grid may keep different rates for "
            "the two.",
            "run",
        ),
        Exercise(
            "Strength zero, and no retain set",
            r"Set $s = 0$. What are the loss and its gradient at the first step, and what does AdamW then do for "
            r"the whole run? For $s > 0$, write the gradient with respect to the model's logits at one forget "
            "token, and explain what limits how far UNDIAL moves the shared weights although it never sees a retain "
            "item.",
            r"With $s = 0$ the target is the reference and the adapter starts at zero, so the model *is* the "
            r"reference: KL $= 0$ and its gradient is 0. AdamW's moments stay 0, its update is $0/(\sqrt{0} + "
            r"\epsilon) = 0$, weight decay is off, so nothing moves and the result is finetune's. For $s > 0$ the "
            r"gradient of $\mathrm{KL}(p'\,\|\,p_\theta)$ in the logits is $p_\theta - p'$: it moves mass from the "
            "true token to the others in the reference's proportions, and vanishes when the model reaches the "
            r"target. The total change is bounded by the distance from reference to target, set by $s$, not by "
            "the number of steps.",
            "think",
        ),
    ),
)


METHOD = Method(
    "undial",
    loss=undial_loss,
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
    needs_adjusted_kl=True,
    settings=Settings,
    notes=NOTES,
)
