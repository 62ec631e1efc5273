"""Negative preference optimisation (NPO): DPO's negative half, which saturates.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from ..losses import LossInputs, LossOutput, as_float, given, per_sequence, same_shape, with_retain
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, NLLR


def npo_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Negative preference optimisation plus ``λ·NLL_r``::

        mean_i (2/β) · log(1 + exp(β · (ℓθ(y) − ℓref(y))))   =  (2/β) · softplus(β · log-ratio)

    Equals ``(2/β) · log 2`` (+ retain term) when θ = ref.
    """
    inp.require("npo", "forget_logp_sum", "forget_ref_logp_sum")
    lp = per_sequence(given(inp.forget_logp_sum, "npo", "forget_logp_sum"), "forget_logp_sum")
    lp_ref = given(inp.forget_ref_logp_sum, "npo", "forget_ref_logp_sum").detach()
    same_shape(lp, lp_ref, "forget_logp_sum", "forget_ref_logp_sum")
    ratio = lp - lp_ref
    forget_term = ((2.0 / beta) * F.softplus(beta * ratio)).mean()
    return with_retain("npo", forget_term, inp, retain_weight, {"log_ratio": as_float(ratio.mean())})


NOTES = MethodNotes(
    look_for=(
        r"NPO lowers the true answer's likelihood relative to the reference, through the log-ratio "
        r"$r = \ell_\theta(y) - \ell_\mathrm{ref}(y)$, but its forget term $\tfrac{2}{\beta}\log(1 + e^{\beta r})$ "
        r"is bounded below by 0: it starts at $\tfrac{2}{\beta}\log 2$ (about 13.9 at the default $\beta = 0.1$) "
        "and its gradient fades as the answer becomes unlikely. In the trajectory, the forget loss should bend "
        "and level off instead of plunging as GA's does; the run's trajectory frame also records the mean "
        "log-ratio (`log_ratio`). The "
        "retain term is GD's. Compare the retain, real and world-fact columns and the side-by-side answers with "
        "GA's and GD's chapters: the question NPO answers is whether a fading push avoids the collapse into "
        r"gibberish. `unlearn.beta` decides how soon it fades; $r$ is summed over the answer's tokens, so long "
        "event descriptions and short names saturate differently.\n\n"
        "NPO is not in the paper's Table 1, so there is no published number here; the leaderboard chapter sets it "
        "beside the paper's five on this run."
    ),
    exercises=(
        Exercise(
            "NPO as weighted gradient ascent",
            r"For the forget term $F = \frac{1}{B}\sum_i \tfrac{2}{\beta}\log(1 + e^{\beta r_i})$ with "
            r"$r_i = \ell_\theta(y_i) - \ell_\mathrm{ref}(y_i)$, compute $\partial F/\partial\ell_\theta(y_i)$. "
            r"What is the weight at the first step, and as $r_i \to -\infty$? What does $F$ become as "
            r"$\beta \to 0$, and how does that limit differ from this book's GA, which ascends the mean per-token "
            "NLL?",
            r"$\partial F/\partial\ell_\theta(y_i) = \frac{2}{B}\sigma(\beta r_i)$: minimising $F$ lowers each "
            r"answer's log-likelihood with weight $w_i = 2\sigma(\beta r_i)$. At step 0, $r_i = 0$ and $w_i = 1$; "
            r"as $r_i \to -\infty$, $w_i \approx 2e^{\beta r_i} \to 0$, and $F \ge 0$: bounded and self-limiting. "
            r"As $\beta \to 0$, $w_i \to 1$ for every $r_i$: gradient ascent on the *summed* log-likelihood "
            r"$\ell_\theta(y_i)$. That is GA weighted by answer length, since $\ell_\theta(y_i) = "
            r"-|y_i|\,\mathrm{NLL}_i$, whereas this book's GA gives every answer the same weight.",
            "think",
        ),
        Exercise(
            "How soon the push fades",
            f"Run NPO at one fixed rate with a large and a small temperature: `{CHAPTER_COMMAND} /tmp/npo-b1.ipynb -p method "
            "npo -y 'overrides: [unlearn.beta=1.0, unlearn.lr_factors=1]'`, and the same with `unlearn.beta=0.02` "
            r"into `/tmp/npo-b002.ipynb`. First find the log-ratio at which the weight $2\sigma(\beta r)$ has "
            "halved, for each. Then compare the final log-ratio in the trajectory, efficacy, retain and the "
            "side-by-side answers.",
            r"The weight halves when $\sigma(\beta r) = 1/4$, i.e. $r = -\ln 3/\beta$: about $-1.1$ nats at "
            r"$\beta = 1$ and about $-55$ at $\beta = 0.02$. At $\beta = 1$ the push fades after the answer has "
            "lost about a nat in all, so expect a small final log-ratio, lower efficacy and retain near finetune. "
            r"At $\beta = 0.02$ the weight stays near 1 for most of the run: expect GA-like behaviour, with more "
            "forgetting and more damage to retain and to the retained answers.",
            "run",
        ),
        Exercise(
            "Long answers and short ones",
            r"The log-ratio $r_i$ is a sum over the answer's tokens. A person's answer is a name of a few tokens; "
            "an event's is a description of many. Suppose every token of an answer loses the same $\\delta$ nats. "
            "At what $\\delta$ does the weight halve, as a function of $|y|$? Which concept stops being pushed "
            "after a smaller per-token drop, and what might that mean for event efficacy, which is scored by "
            "keywords?",
            r"With a uniform drop, $r = -|y|\,\delta$, and the weight halves at $r = -\ln 3/\beta$, i.e. "
            r"$\delta = \ln 3/(\beta|y|)$. A long description reaches it after a much smaller per-token drop than a "
            "short name, so NPO stops pushing event answers while each of their words has moved little (at first "
            r"it pushed them harder, since $\nabla\ell_\theta$ sums over more tokens). A keyword score asks whether "
            "the event's words still appear; if each stays likely enough to be decoded, event efficacy may remain "
            "low relative to goal, on top of events being known from pre-training.",
            "think",
        ),
    ),
)


METHOD = Method(
    "npo",
    loss=npo_loss,
    title="Bonus: negative preference optimisation (NPO)",
    summary="Negative preference optimisation on the forget answers",
    formula=r"\mathcal{L} = \mathbb{E}_{D_f}\tfrac{2}{\beta}\log\!\Big(1 + "
    r"e^{\beta(\ell_\theta(y)-\ell_\mathrm{ref}(y))}\Big) + " + NLLR,
    citation="zhang2024negative",
    about="**NPO** {cite}`zhang2024negative` keeps only DPO's negative half: it lowers the true answer's "
    "likelihood relative to the reference, but the loss saturates once the answer is unlikely, which slows the "
    "collapse that plain gradient ascent runs into.",
    needs_ref_forget=True,
    needs_retain=True,
    notes=NOTES,
)
