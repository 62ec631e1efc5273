"""Preference optimisation towards a refusal (PO): learn to refuse on the forget images, keep the retain answers.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

from ..losses import LossInputs, LossOutput, as_float, given, sequence_nll, with_retain
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, NLLR


def po_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """Preference optimisation toward a refusal: ``NLL(refusal | D_f) + λ·NLL_r``."""
    inp.require("po", "refusal_logp_sum", "refusal_n_tokens")
    nll_refusal = sequence_nll(
        given(inp.refusal_logp_sum, "po", "refusal_logp_sum"),
        given(inp.refusal_n_tokens, "po", "refusal_n_tokens"),
        "refusal_logp_sum",
    ).mean()
    return with_retain("po", nll_refusal, inp, retain_weight, {"refusal_nll": as_float(nll_refusal)})


NOTES = MethodNotes(
    look_for=(
        r"PO never pushes the true answer down. Its loss, $\mathrm{NLL}(y_\mathrm{refusal}\mid D_f) + "
        r"\lambda\,\mathrm{NLL}_r$, is plain fine-tuning, bounded below by 0, and forgetting here means "
        "*refusing*: the true answer loses only the probability the refusal takes from it. So the section to "
        "read is the likelihood race: the refusal's NLL should fall, the true answer's rise less, and efficacy "
        "turns on the share of questions where the refusal's first token wins. In the side-by-side table, check "
        "the retained rows for refusals that leaked (a refusal counts as no name, so leaking lowers retain). A "
        "refusal is not not-knowing: the name can stay the second choice, as the robustness chapter probes.\n\n"
        "Against the paper: Table 1 gives PO a P-eff of 100 and a P-ret of 4.1 (per cent), so its refusal spread "
        "far beyond the forget people, yet its E-eff is 0.21 against finetune's 0.18 and its E-scope 98.9, the "
        "least interference. Compare person efficacy and retain directly, and for events only the place between "
        "the bounds (G-Eval there, keywords here). A tiny model, LoRA and 40 steps may move the finish line."
    ),
    exercises=(
        Exercise(
            "How a refusal lowers the true answer",
            "PO's loss contains no term in the true answer. Using only the fact that the next-token distribution "
            "sums to one, bound the true answer's likelihood by the probability of the refusal's first token (when "
            "the two first tokens differ). Then compute the gradient of the refusal's NLL with respect to the logit "
            "of a refusal token: does PO's push fade, and when?",
            r"At the first answer position $p_\theta(y_1) + p_\theta(r_1) \le 1$, so $p_\theta(y \mid x) \le "
            r"p_\theta(y_1) \le 1 - p_\theta(r_1)$: raising the refusal's first token caps the true answer. Greedy "
            r"decoding turns as soon as $p_\theta(r_1) > p_\theta(y_1)$, and the rest of the refusal, being "
            r"trained, follows. For a refusal token of probability $p_r$, $\partial\,(-\log p_r)/\partial z_r = "
            r"-(1-p_r)$, which fades to 0 as $p_r \to 1$: PO stops by itself, unlike GA. Nothing requires the true "
            "answer to become unlikely, only less likely than the refusal, so the knowledge can remain just below "
            "the surface.",
            "think",
        ),
        Exercise(
            "PO without its retain term",
            f"Run `{CHAPTER_COMMAND} /tmp/po-l0.ipynb -p method po -y 'overrides: [unlearn.retain_weight=0, "
            "unlearn.lr_factors=1]'` and compare with a run at the default weight and the same fixed rate "
            "(`unlearn.retain_weight=1, unlearn.lr_factors=1`). Look at retain, at the retained rows of the "
            "side-by-side table and at efficacy. What do you expect, and why does the question matter more than "
            "the image?",
            'Every forget item asks the same question as every retain item of its concept (for people, "Who is '
            'the person in the image?"); only the image differs. Without the retain term nothing tells the model '
            "to refuse *these* images and not others, and the cheapest way to lower the refusal's NLL is to refuse "
            "the question. Expect efficacy as high or higher, but refusals on retained people or events too, so "
            "retain falls, possibly far. The retain term is what forces the adapter to read the image.",
            "run",
        ),
        Exercise(
            "Finishing the race",
            f"Give PO a longer budget: `{CHAPTER_COMMAND} /tmp/po-100.ipynb -p method po -y 'overrides: [unlearn.steps=100]'`. "
            "Compare the likelihood-race table with this chapter's: the two NLLs, the share where the refusal's "
            "first token wins and the share where the whole refusal is likelier. Also compare efficacy, generality "
            "and retain. Where do you expect the extra steps to go?",
            "If the refusal's NLL has not reached its floor after 40 steps (read this chapter's trajectory), expect "
            "it to keep falling and the "
            "refusal's first token to win on more forget questions, with efficacy and generality rising as it does "
            "(generality follows if the refusal is tied to the forget identities, not the exact renders). The true "
            "answer's NLL rises only as fast as its first-token mass is taken. Retain may fall if refusals leak "
            "further; the retain term resists that. The grid may keep another rate at this budget: read the kept "
            "rate before comparing.",
            "run",
        ),
    ),
)


METHOD = Method(
    "po",
    loss=po_loss,
    title="Preference optimisation towards refusal (PO)",
    summary="Preference optimisation: learn a refusal on the forget images, keep retain",
    formula=r"\mathcal{L} = \mathrm{NLL}(y_\mathrm{refusal} \mid D_f) + " + NLLR,
    citation="maini2024tofu",
    about="**Preference optimisation** {cite}`maini2024tofu` does not push anything down: it teaches the model "
    'to answer forget questions with a refusal ("I don\'t know who this is."), while fine-tuning on the retain set.',
    needs_forget=False,
    needs_refusal=True,
    needs_retain=True,
    notes=NOTES,
)
