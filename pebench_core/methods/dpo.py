"""Direct preference optimisation (DPO) with the refusal preferred over the true answer.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from ..losses import LossInputs, LossOutput, as_float, given, per_sequence, same_shape, with_retain
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, NLLR


def dpo_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """DPO with ``y_w`` = refusal, ``y_l`` = true answer, plus ``λ·NLL_r``::

        mean_i −log σ(β[(ℓθ(y_w) − ℓref(y_w)) − (ℓθ(y_l) − ℓref(y_l))])

    Equals ``log 2`` (+ retain term) when θ = ref.
    """
    inp.require("dpo", "forget_logp_sum", "forget_ref_logp_sum", "refusal_logp_sum", "refusal_ref_logp_sum")
    lw = per_sequence(given(inp.refusal_logp_sum, "dpo", "refusal_logp_sum"), "refusal_logp_sum")
    lw_ref = given(inp.refusal_ref_logp_sum, "dpo", "refusal_ref_logp_sum").detach()
    ll = per_sequence(given(inp.forget_logp_sum, "dpo", "forget_logp_sum"), "forget_logp_sum")
    ll_ref = given(inp.forget_ref_logp_sum, "dpo", "forget_ref_logp_sum").detach()
    same_shape(lw, lw_ref, "refusal_logp_sum", "refusal_ref_logp_sum")
    same_shape(ll, ll_ref, "forget_logp_sum", "forget_ref_logp_sum")
    same_shape(lw, ll, "refusal_logp_sum", "forget_logp_sum")
    margin = (lw - lw_ref) - (ll - ll_ref)
    forget_term = -F.logsigmoid(beta * margin).mean()
    return with_retain("dpo", forget_term, inp, retain_weight, {"margin": as_float(margin.mean())})


NOTES = MethodNotes(
    look_for=(
        r"DPO's forget term, $-\log\sigma(\beta m)$, looks only at the margin $m$ between the refusal and the true "
        r"answer, each measured against the reference. It starts at $\log 2$ (at step 0 the model is the "
        r"reference, so $m = 0$), is bounded below by 0 and stops pushing once $\beta m$ is a few units, whatever "
        "the answers' absolute likelihoods. The trajectory logs that margin. There are two ways to grow it: raise "
        "the refusal or sink the true answer, and the likelihood race tells which DPO took. If the true answer's "
        "NLL rose while the refusal's barely moved, DPO forgot as gradient ascent does, and the side-by-side "
        "answers show other names or broken text rather than refusals.\n\n"
        "Against the paper: Table 1 gives DPO a P-eff of 100 and a P-ret of 8.6 (per cent); compare our person "
        "efficacy and retain directly. The event columns (E-eff 0.43, E-ret 0.80) are G-Eval scores, so compare "
        "where DPO lands between finetune and goal. Saturation makes DPO sensitive to scale: a tiny model's "
        "reference likelihoods, LoRA and 40 steps set another finish line."
    ),
    exercises=(
        Exercise(
            "When DPO stops pushing",
            r"Write the forget term as $f(m) = -\log\sigma(\beta m)$ with $m = (\ell_\theta(y_w) - "
            r"\ell_\mathrm{ref}(y_w)) - (\ell_\theta(y_l) - \ell_\mathrm{ref}(y_l))$. Compute $\partial "
            r"f/\partial\ell_\theta(y_w)$ and $\partial f/\partial\ell_\theta(y_l)$. How large is the push at "
            r"$m = 0$, and how does it behave for large $\beta m$? What does the loss become as $\beta \to 0$?",
            r"$f'(m) = -\beta\,\sigma(-\beta m)$, so $\partial f/\partial\ell_\theta(y_w) = -\beta\sigma(-\beta m)$ "
            r"(raise the refusal) and $\partial f/\partial\ell_\theta(y_l) = +\beta\sigma(-\beta m)$ (lower the "
            r"true answer), equal in size. At $m = 0$ the weight is $\beta/2$; for large $\beta m$ it is about "
            r"$\beta e^{-\beta m}$, so the push dies once the margin is a few times $1/\beta$: bounded and "
            r"self-limiting. As $\beta \to 0$, $f \approx \log 2 - \beta m/2$, linear in $m$ and unbounded: ascent "
            "on the true answer's summed log-likelihood plus descent on the refusal's, with a constant weight that "
            "Adam's normalisation largely removes.",
            "think",
        ),
        Exercise(
            "What the reference contributes",
            r"Let $D = \ell_\mathrm{ref}(y_l) - \ell_\mathrm{ref}(y_w) > 0$ be how many nats the reference prefers "
            "the true answer to the refusal. The reference terms are constants in the gradient. Express the "
            r"model's own preference $\ell_\theta(y_w) - \ell_\theta(y_l)$ through $m$ and $D$, and say when the "
            "refusal becomes the likelier answer. Why can DPO be satisfied while the model still names the person?",
            r"$m = (\ell_\theta(y_w) - \ell_\theta(y_l)) + D$, so $\ell_\theta(y_w) - \ell_\theta(y_l) = m - D$: the "
            r"refusal overtakes the true answer only once $m > D$. A fine-tuned model that was never taught to "
            r"refuse gives the refusal a tiny likelihood, so $D$ is large. The loss is satisfied once $\beta m$ is "
            r"a few units, i.e. at $m \approx$ a few $/\beta$; if that is below $D$, the gradient has vanished while "
            "the true answer is still preferred. The reference thus sets the starting line, and it is the "
            "whole-refusal share of the likelihood race that shows whether $m$ passed $D$.",
            "think",
        ),
        Exercise(
            "A cooler and a hotter beta",
            f"Re-run with `{CHAPTER_COMMAND} /tmp/dpo-b1.ipynb -p method dpo -y 'overrides: [unlearn.beta=1.0]'` and with "
            "`unlearn.beta=0.02` into `/tmp/dpo-b002.ipynb` (the default is 0.1). Compare the logged margin at the "
            "end, the likelihood race, efficacy and retain. Which run should look most like gradient ascent, and "
            "why does the grid not undo the difference?",
            r"At $\beta = 1$ the loss is satisfied after a margin of a few nats, so expect a smaller final margin, "
            r"less movement of either answer, lower efficacy and retain near finetune. At $\beta = 0.02$ it takes "
            "a margin tens of times larger, so the loss stays nearly linear in the margin through the whole budget: "
            "expect more forgetting and more damage, the GA-like run. Adam and the learning-rate grid compensate "
            r"for the overall scale of the gradient, but not for where the loss saturates, which $\beta$ alone "
            "decides.",
            "run",
        ),
    ),
)


METHOD = Method(
    "dpo",
    loss=dpo_loss,
    title="Direct preference optimisation (DPO)",
    summary="DPO with the refusal preferred over the true answer",
    formula=r"\mathcal{L} = -\mathbb{E}_{D_f}\log\sigma\!\Big(\beta\big[(\ell_\theta(y_w)-\ell_\mathrm{ref}(y_w))"
    r" - (\ell_\theta(y_l)-\ell_\mathrm{ref}(y_l))\big]\Big) + " + NLLR,
    citation="rafailov2023direct",
    about="**DPO** {cite}`rafailov2023direct` treats the refusal as the preferred answer $y_w$ and the true "
    "answer as the rejected one $y_l$, and raises the margin between them relative to the reference model.",
    needs_ref_forget=True,
    needs_refusal=True,
    needs_ref_refusal=True,
    needs_retain=True,
    notes=NOTES,
)
