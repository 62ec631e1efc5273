"""Gradient ascent (GA): climb the loss on the forget answers.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

from ..losses import LossInputs, LossOutput, as_float, forget_nll
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes


def ga_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Gradient ascent: ``−NLL_f``. ``retain_weight``/``beta`` are ignored."""
    nll_f = forget_nll(inp, "ga").mean()
    loss = -nll_f
    return LossOutput(loss=loss, parts={"forget_loss": as_float(loss), "forget_nll": as_float(nll_f), "loss": as_float(loss)})


NOTES = MethodNotes(
    look_for=(
        r"GA's loss, $-\mathrm{NLL}_f$, has no floor: the true answers can always be made less likely, and the "
        r"gradient with respect to each answer's NLL is the same constant at every step, so nothing in the "
        "objective ever says *stop*. AdamW and the clip at gradient norm 1 bound the length of each step, not its "
        "direction. How far it gets within the budget is set by the learning rate: at a rate high enough to "
        "forget, the forget loss falls without levelling off and the cost shows in the retain, real and "
        "world-fact columns and, most plainly, in the side-by-side answers, where retained people and events "
        "come back as wrong names, repeated tokens or gibberish; at a gentle rate GA may forget little and break "
        "nothing. The paragraph below says which of the two this run's tuned rate gave, and what the paper's "
        "fixed rate gave.\n\n"
        "Against the paper: Table 1 gives GA a P-eff of 100 and a P-ret of 3.9 (per cent; 1.00 and 0.039 on "
        "this book's scale). Person columns are name matches here too, so compare them directly; the event "
        "columns (E-eff 0.51, E-ret 0.62) are G-Eval scores, so compare only where GA lands between finetune and "
        "goal. A tiny model trained from scratch, a few forget people and 40 LoRA steps may collapse sooner or "
        "later than the paper's LLaVA-class model."
    ),
    exercises=(
        Exercise(
            "The gradient that never fades",
            r"GA minimises $\mathcal{L} = -\frac{1}{B}\sum_i \mathrm{NLL}_i$ with "
            r"$\mathrm{NLL}_i = -\frac{1}{|y_i|}\sum_t \log p_\theta(y_{i,t})$. Compute "
            r"$\partial\mathcal{L}/\partial\mathrm{NLL}_i$ and the gradient with respect to the logit $z$ of a "
            "true answer token. How do they change as that token becomes unlikely? Is the loss bounded below, and "
            "what does your answer predict for the trajectory's forget-loss curve?",
            r"$\partial\mathcal{L}/\partial\mathrm{NLL}_i = -1/B$, whatever $\mathrm{NLL}_i$ is: every answer is "
            r"pushed as hard at the last step as at the first. For a token with probability $p$, "
            r"$\partial\log p/\partial z = 1-p$, so descending $\mathcal{L}$ lowers $z$ at a rate "
            r"$(1-p)/(B|y_i|)$, which *grows* towards $1/(B|y_i|)$ as $p \to 0$. Since $-\log p \to \infty$, "
            r"$\inf \mathcal{L} = -\infty$: there is no minimum to converge to. The forget loss should therefore "
            "fall until the budget ends, and once the forget answers are gone the push keeps moving the shared "
            "weights, which is where retain, real and world-fact are lost.",
            "think",
        ),
        Exercise(
            "A longer budget",
            f"Re-run this chapter with three times the steps: `{CHAPTER_COMMAND} /tmp/ga-120.ipynb -p method ga "
            "-y 'overrides: [unlearn.steps=120]'`. Before you look, predict what happens to efficacy, retain, real "
            "and world-fact, to the trajectory and to the side-by-side answers. Then check, and look at which "
            "learning rate the grid kept at each budget.",
            "If efficacy is already near its top after 40 steps (read this chapter's table), there is little left "
            "to gain; the extra steps "
            "keep pushing (the loss has no minimum), so expect the forget loss to fall further, retain, real and "
            "world-fact to fall or stay collapsed, and more retained answers to degrade in the side-by-side table. "
            r"The grid keeps the rate with the best validation $(\text{efficacy}+\text{retain})/2$, so with a longer "
            "budget it may keep a lower rate to limit the damage: you are comparing the best GA at each budget. "
            "Add `unlearn.lr_factors=1` to compare at one fixed rate.",
            "run",
        ),
        Exercise(
            "Why efficacy alone would crown GA",
            "Person efficacy counts forget images whose answer no longer contains the right name. Show that a "
            "model that answers every question with noise scores the maximum on efficacy and generality. Which of "
            "the chapter's columns expose it, and how does the learning-rate rule of this chapter keep such a "
            "model from being chosen?",
            "Noise contains no name, so every forget answer counts as forgotten: efficacy and generality are 1, "
            "exactly as for the goal model. What separates the two is what should be kept: retain (names of the "
            "other people), scope (the other concept on the same images), real and world-fact all fall for a "
            r"broken model. The grid scores each rate by $(\text{efficacy}+\text{retain})/2$ on validation items: "
            "a model broken everywhere gets about $(1+0)/2$, no better than finetune's $(0+1)/2$, and ties go to "
            "the lower rate, so forgetting by collapse is not rewarded.",
            "think",
        ),
    ),
)


METHOD = Method(
    "ga",
    loss=ga_loss,
    title="Gradient ascent (GA)",
    summary="Gradient ascent on the forget answers",
    formula=r"\mathcal{L} = -\mathrm{NLL}_f",
    citation="jang2023knowledge",
    about="**Gradient ascent** {cite}`jang2023knowledge` simply climbs the loss it used to descend: it makes "
    "the true answers on the forget images as unlikely as it can. Nothing holds the rest of the model in "
    "place, so it is expected to forget fast and to damage what it should keep.",
    notes=NOTES,
)
