"""Simple negative preference optimisation (SimNPO): NPO without a reference, per token, with a margin.

One method, one file (design: Unlearning methods): its loss, its entry in the registry, its own
settings and its chapter's teaching notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F

from ..losses import LossInputs, LossOutput, as_float, forget_nll, with_retain
from ..ranges import NON_NEGATIVE
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, NLLR, setting


@dataclass(frozen=True)
class Settings:
    """SimNPO's own hyper-parameter (``unlearn.simnpo.*``); β is every preference loss's ``unlearn.beta``."""

    gamma: float = setting(0.0, NON_NEGATIVE, "the reward margin γ (its paper's; 0 on TOFU)")


def simnpo_loss(
    inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, gamma: float = 0.0, state: Any = None
) -> LossOutput:
    """SimNPO (Fan et al., 2025): NPO without the reference model, on the length-normalised
    log-likelihood, with a reward margin ``γ``, plus ``λ·NLL_r``::

        mean_i −(2/β) · log σ(−β · ℓθ(y_i)/|y_i| − γ)  =  mean_i (2/β) · softplus(−β·NLL_i + γ)

    (``ℓθ/|y| = −NLL_i``). The gradient weight ``σ(γ − β·NLL_i)`` fades as an answer becomes
    unlikely, as NPO's does, but needs no reference pass and treats short and long answers alike.
    """
    nll = forget_nll(inp, "simnpo")
    forget_term = ((2.0 / beta) * F.softplus(gamma - beta * nll)).mean()
    return with_retain("simnpo", forget_term, inp, retain_weight, {"forget_nll": as_float(nll.mean())})


NOTES = MethodNotes(
    look_for=(
        r"SimNPO drops NPO's reference and works on each answer's per-token NLL: its forget term "
        r"$\tfrac{2}{\beta}\,\mathrm{softplus}(\gamma - \beta\,\mathrm{NLL}_i)$ pushes every answer with weight "
        r"$2\sigma(\gamma - \beta\,\mathrm{NLL}_i)$, which fades once $\beta\,\mathrm{NLL}_i$ exceeds $\gamma$ by "
        r"a few units. At the defaults ($\beta = 0.1$, $\gamma = 0$) that takes a per-token NLL of about ten "
        "nats, far beyond where an answer stops being said, so within a short budget SimNPO may behave much like "
        "GD, whose retain term it shares: compare its trajectory, table and side-by-side answers with GD's "
        "chapter. With no reference, a name the fine-tuned model knew very well is pushed exactly like one it "
        "barely knew, and a long event description like a short name. The trajectory's forget loss starts near "
        r"$\tfrac{2}{\beta}\log 2$ when the answers are well fitted; whether it bends within the budget tells "
        "you whether the fading ever engaged.\n\n"
        "SimNPO is not in the paper's Table 1, so there is no published number here; the leaderboard chapter sets "
        "it beside the paper's five on this run."
    ),
    exercises=(
        Exercise(
            "The limit of a vanishing temperature",
            r"Compute $\partial/\partial\mathrm{NLL}_i$ of the forget term $\frac{1}{B}\sum_i \tfrac{2}{\beta}"
            r"\,\mathrm{softplus}(\gamma - \beta\,\mathrm{NLL}_i)$. Take $\gamma = 0$ and let $\beta \to 0$: "
            "compare the result with the gradient of GD's loss, whose retain term SimNPO shares. What does a "
            r"margin $\gamma > 0$ change in that limit?",
            r"With $\mathrm{softplus}' = \sigma$: $\partial/\partial\mathrm{NLL}_i = -\frac{2}{B}\sigma(\gamma - "
            r"\beta\,\mathrm{NLL}_i)$, so SimNPO is gradient ascent on each answer's mean NLL with weight "
            r"$w_i = 2\sigma(\gamma - \beta\,\mathrm{NLL}_i)$. At $\gamma = 0$, $\beta \to 0$: $w_i \to 1$ and "
            r"the gradient is $-1/B$ per answer, exactly that of $-\mathrm{NLL}_f$; with the same "
            r"$\lambda\,\mathrm{NLL}_r$ the whole gradient is GD's. With $\gamma > 0$ the limit weight is "
            r"$2\sigma(\gamma) > 1$: still constant, so it only scales the forget push against the retain term, "
            "which shifts their balance as a smaller retain weight would.",
            "think",
        ),
        Exercise(
            "Where the weight fades",
            r"Take $\gamma = 0$. For a well-fitted answer ($\mathrm{NLL}_i \approx 0$) the weight "
            r"$2\sigma(-\beta\,\mathrm{NLL}_i)$ is 1. Find the per-token NLL at which it has halved, at the default "
            r"$\beta = 0.1$, and the $\beta$ for which that happens at one nat per token. What do you conclude about "
            "SimNPO at the defaults within 40 steps?",
            r"Half weight: $\sigma(-\beta\,\mathrm{NLL}) = 1/4$, so $\beta\,\mathrm{NLL} = \ln 3 \approx 1.1$ and "
            r"$\mathrm{NLL} = \ln 3/\beta \approx 11$ nats per token at $\beta = 0.1$: a true token of probability "
            r"about $e^{-11}$, far past the point where greedy decoding stops producing it. For the fade to start "
            r"at one nat, $\beta = \ln 3 \approx 1.1$. At the defaults the weight therefore stays near 1 until the "
            "answers are long gone, so SimNPO pushes with a nearly constant force, as GD does, unless the run "
            "drives the per-token NLL into double digits.",
            "think",
        ),
        Exercise(
            "A temperature that bites, and a margin",
            f"Run `{CHAPTER_COMMAND} /tmp/simnpo-b2.ipynb -p method simnpo -y 'overrides: [unlearn.beta=2.0, "
            "unlearn.lr_factors=1]'`, then add `unlearn.simnpo.gamma=2` into `/tmp/simnpo-b2g2.ipynb`. For each, find the "
            "per-token NLL at which the weight has halved from its value at NLL 0, then compare the forget-loss "
            "curves, efficacy, retain and the side-by-side answers with each other and with this chapter.",
            r"At $\beta = 2$, $\gamma = 0$ the weight halves at $\mathrm{NLL} = \ln 3/2 \approx 0.55$ nats per "
            r"token, so expect the forget loss to level off early, efficacy to rise less and retain to stay closer "
            r"to finetune than at the defaults. Adding $\gamma = 2$ starts the weight at $2\sigma(2) \approx 1.76$ "
            r"and halves it only where $\sigma(2 - 2\,\mathrm{NLL}) = \sigma(2)/2$, near 1.1 nats per token: the "
            "push lasts longer, so expect more forgetting and more damage than with the temperature alone.",
            "run",
        ),
    ),
)


METHOD = Method(
    "simnpo",
    loss=simnpo_loss,
    title="Bonus: simple negative preference optimisation (SimNPO)",
    summary="Reference-free, length-normalised NPO with a reward margin",
    formula=r"\mathcal{L} = -\mathbb{E}_{D_f}\tfrac{2}{\beta}\log\sigma\!\Big(-\tfrac{\beta}{|y|}\,\ell_\theta(y)"
    r" - \gamma\Big) + " + NLLR,
    citation="fan2025simplicity",
    about="**SimNPO** {cite}`fan2025simplicity` drops NPO's reference model: the loss looks at the answer's "
    r"likelihood per token, $\ell_\theta(y)/|y|$, against a margin $\gamma$. NPO's reference makes answers "
    "the fine-tuned model knew very well the slowest to forget; without it every forget answer is pushed "
    "alike, and the weight still fades once an answer is unlikely. It needs no reference pass at all.",
    needs_retain=True,
    settings=Settings,
    notes=NOTES,
)
