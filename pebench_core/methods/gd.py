"""Gradient difference (GD): ascend on the forget answers, descend on the retain answers.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

from ..losses import LossInputs, LossOutput, as_float, forget_nll, with_retain
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, NLLR


def gd_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Gradient difference: ``−NLL_f + λ·NLL_r``."""
    nll_f = forget_nll(inp, "gd").mean()
    return with_retain("gd", -nll_f, inp, retain_weight, {"forget_nll": as_float(nll_f)})


NOTES = MethodNotes(
    look_for=(
        r"GD is gradient ascent with a brake: $-\mathrm{NLL}_f + \lambda\,\mathrm{NLL}_r$. The forget term is "
        r"still unbounded below and the retain term is bounded below by 0, so for any $\lambda$ the sum has no "
        "minimum: the retain term can slow the damage, never end the ascent. In the trajectory the forget loss "
        "should fall as GA's does; if the retain loss climbs too, the brake is losing. The retain set asks the "
        "target's own question on the retain images, so it protects the retain column directly, while scope, real "
        "and world-fact are never trained on: compare those, and the retained rows of the side-by-side table, "
        "with GA's chapter.\n\n"
        "Against the paper: Table 1 gives GD a P-eff of 98.9 and a P-ret of 21.5, against GA's 3.9: the retain "
        "term is the difference. Compare person efficacy and retain directly (name matches, paper in per cent), "
        "and whether the gap to GA has the same sign here; the event columns (E-eff 0.58, E-ret 0.88) are "
        "G-Eval scores: compare places between the bounds. A tiny model, LoRA and 40 steps may strike another "
        "balance."
    ),
    exercises=(
        Exercise(
            "Can the retain weight stop the ascent?",
            r"With $\mathcal{L} = -\mathrm{NLL}_f + \lambda\,\mathrm{NLL}_r$, is there a $\lambda \ge 0$ for which "
            r"$\mathcal{L}$ has a finite minimum? Write $\nabla_\theta\mathcal{L}$ and say what the retain term can "
            "and cannot do, in particular near the start of the run, when the fine-tuned model already fits the "
            "retain answers well.",
            r"No. $\mathrm{NLL}_r \ge 0$, so $\lambda\,\mathrm{NLL}_r$ is bounded below, while "
            r"$-\mathrm{NLL}_f \to -\infty$; the sum is unbounded below for every finite $\lambda$. The gradient "
            r"is $-\nabla\mathrm{NLL}_f + \lambda\nabla\mathrm{NLL}_r$. At the start $\nabla\mathrm{NLL}_r$ is "
            "small, because the retain answers are near their minimum, so the first steps are almost pure GA; the "
            "retain term pushes back only once the ascent has made retain answers worse. Directions that change "
            "forget answers without touching retain ones go unopposed, shared directions are contested: GD can "
            "slow the drift of what is kept, not forbid it.",
            "think",
        ),
        Exercise(
            "Turning the retain weight",
            f"Run GD at one fixed rate with a heavy and with no retain term: `{CHAPTER_COMMAND} /tmp/gd-l3.ipynb -p method gd "
            "-y 'overrides: [unlearn.retain_weight=3, unlearn.lr_factors=1]'`, and the same with "
            "`unlearn.retain_weight=0` into `/tmp/gd-l0.ipynb`. Compare efficacy, retain, real and world-fact, and "
            "the retain-loss curve of the trajectory. What should the second run resemble, and why?",
            r"With $\lambda = 0$ the loss is exactly $-\mathrm{NLL}_f$, GA's, and the loop even skips the retain "
            "pass, so that run should look like GA at the profile's rate. With a weight of 3, expect the retain "
            "loss to stay lower and retain to end closer to finetune, perhaps at some cost in efficacy or in how "
            "fast it rises. Real and world-fact are not in the retain set, so they gain only as far as holding the "
            "retain answers also holds the shared weights; expect a smaller and less reliable gain there.",
            "run",
        ),
        Exercise(
            "What the retain set covers",
            "For target `person` the retain set is the person question on retain images; for `event`, the event "
            "question. For each of the six metrics (efficacy, generality, retain, scope, real, world-fact), say "
            "whether GD's retain term trains on the same kind of question and images. Which columns should GD "
            "improve over GA most reliably, and which may it not improve at all?",
            "Efficacy and generality are the forget term's business. Retain asks the target's question about the "
            "other people or events: the very kind of item the retain term trains on, so it is where GD should "
            "beat GA most clearly. Scope asks the *other* concept's question on the forget images, real asks about "
            "the pre-training world's people or scenes, and world-fact is POPE's yes/no questions; none is in the "
            "retain set, so GD protects them only indirectly. Expect its gains there to be smaller, or absent "
            "(in the paper, P-real is 76.9 for GD against 71.6 for GA).",
            "think",
        ),
    ),
)


METHOD = Method(
    "gd",
    loss=gd_loss,
    title="Gradient difference (GD)",
    summary="Gradient difference: ascend on forget, descend on retain",
    formula=r"\mathcal{L} = -\mathrm{NLL}_f + " + NLLR,
    citation="maini2024tofu",
    about="**Gradient difference** {cite}`maini2024tofu` adds the usual fine-tuning loss on the retain set to "
    "gradient ascent: push the forget answers down, keep the retain answers up.",
    needs_retain=True,
    notes=NOTES,
)
