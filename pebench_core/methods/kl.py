"""KL-regularised gradient ascent (KL): ascend on the forget answers, stay close to the reference on the retain answers.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

from ..losses import LossInputs, LossOutput, as_float, forget_nll, given, per_sequence
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes


def kl_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """``−NLL_f + λ·mean_i KL_i(ref ‖ θ)`` on the retain answer tokens (``retain_kl``)."""
    nll_f = forget_nll(inp, "kl").mean()
    loss = -nll_f
    parts = {"forget_loss": as_float(-nll_f), "forget_nll": as_float(nll_f)}
    if retain_weight != 0:
        inp.require("kl", "retain_kl")
        kl = per_sequence(given(inp.retain_kl, "kl", "retain_kl"), "retain_kl").mean()
        loss = loss + retain_weight * kl
        parts["retain_loss"] = as_float(kl)
    parts["loss"] = as_float(loss)
    return LossOutput(loss=loss, parts=parts)


NOTES = MethodNotes(
    look_for=(
        r"KL keeps GA's unbounded forget term and replaces GD's retain NLL by "
        r"$\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)$ over the whole next-token distribution at every retain answer "
        "token. The adapter starts at zero, so at the first step the model *is* the reference: the KL term is 0 "
        "and so is its gradient, and the first steps are pure gradient ascent. The restraint grows only as the "
        "model drifts. In the trajectory the retain loss should start at 0 and rise: does it level off, or climb "
        "with the forget loss? Compare retain with GA's and GD's chapters; real and world-fact are not in the "
        "retain set, so the KL holds them only indirectly.\n\n"
        "Against the paper: Table 1 gives KL a P-eff of 100, a P-gen of 99.7 and a P-ret of 5.0 (per cent), less "
        "kept than GD's 21.5; compare person efficacy and retain directly. The event columns (E-eff 0.55, E-ret "
        "0.84) are G-Eval scores: compare places between the bounds. Scale, steps, LoRA and a tiny model may "
        "change the order of KL and GD here."
    ),
    exercises=(
        Exercise(
            "A restoring force that starts at zero",
            r"At one retain answer position let $p_\mathrm{ref}$ and $p_\theta = \mathrm{softmax}(z)$ be the two "
            r"next-token distributions. Compute the gradient of $\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)$ with "
            r"respect to $z$, evaluate it at $p_\theta = p_\mathrm{ref}$, and expand the KL to second order in "
            r"$\Delta z$. What does this say about the first steps of the run, and how does the KL term's pull "
            "grow with the drift?",
            r"$\mathrm{KL} = \sum_v p_\mathrm{ref}(v)\log p_\mathrm{ref}(v) - \sum_v p_\mathrm{ref}(v)\log "
            r"p_\theta(v)$, and $\partial/\partial z_v$ of the second sum gives $\nabla_z\mathrm{KL} = p_\theta - "
            r"p_\mathrm{ref}$, zero at $p_\theta = p_\mathrm{ref}$. Since the adapter starts at zero, the term is "
            r"inert at step 0 and the first update is GA's. To second order, $\mathrm{KL} \approx \tfrac12\Delta "
            r"z^\top(\mathrm{diag}(p) - pp^\top)\Delta z$: a quadratic well, whose pull grows linearly with the "
            "drift, while the forget term pushes with constant force. The model moves until the two balance, and "
            "since the forget term never weakens, that balance keeps shifting.",
            "think",
        ),
        Exercise(
            "A heavier KL",
            f"Run `{CHAPTER_COMMAND} /tmp/kl-l10.ipynb -p method kl -y 'overrides: [unlearn.retain_weight=10, "
            "unlearn.lr_factors=1]'` and the same with `unlearn.retain_weight=1` (the default weight, at the same "
            "fixed rate). Compare the retain-loss curves, the efficacy checks and the retain, real and world-fact "
            "columns. What can a heavy KL weight not change, and what would a weight of 0 give?",
            r"A larger $\lambda$ steepens the quadratic well, so expect the retain loss to stay lower, retain to "
            "end closer to finetune and efficacy perhaps to rise more slowly. It cannot change the first steps: "
            r"the KL's gradient is zero at the reference whatever its weight, so early drift is GA's either way. "
            "Real and world-fact are not in the retain set, so expect smaller gains there. A weight of 0 removes "
            r"the term altogether and leaves $-\mathrm{NLL}_f$: this method becomes GA.",
            "run",
        ),
        Exercise(
            "The distribution, not the answer",
            "On a retain question the reference puts 0.6 on the correct first token and 0.3 on a second, plausible "
            "one. Compare what the KL term asks of the model at that position with what a retain NLL on the "
            "correct answer would ask. Which of the two is already satisfied by the reference itself, and what "
            "does the KL protect that the NLL does not?",
            r"An NLL on the correct token is minimised only at $p = 1$: it would push 0.6 upwards, with gradient "
            r"$-(1-0.6)$ on that token's logit even at the reference, and keep fine-tuning the retain answers. "
            r"The KL is minimised exactly at $p_\theta = p_\mathrm{ref}$: it wants 0.6 and 0.3 left as they are, "
            "asks nothing of the reference itself, and holds the whole ranking, including the plausible "
            "alternative. So it protects how the model would answer, hesitations and mistakes included, rather "
            "than one reference string; what it cannot do is improve a retain answer.",
            "think",
        ),
    ),
)


METHOD = Method(
    "kl",
    loss=kl_loss,
    title="KL-regularised gradient ascent (KL)",
    summary="Gradient ascent on forget + KL to the reference model on retain answers",
    formula=r"\mathcal{L} = -\mathrm{NLL}_f + \lambda\,\mathbb{E}_{D_r}\!\left["
    r"\mathrm{KL}(p_\mathrm{ref}\,\|\,p_\theta)\right]",
    citation="maini2024tofu",
    about="**KL regularisation** {cite}`maini2024tofu` keeps the model's *whole output distribution* on retain "
    "answers close to the reference model's, rather than only the likelihood of the reference answer.",
    needs_kl=True,
    notes=NOTES,
)
