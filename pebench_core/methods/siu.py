"""SIU-style dual masked KL: learn a refusal, keep everything around the concept.

One method, one file (design: Unlearning methods): its loss, its entry in the registry and its
chapter's teaching notes."""

from __future__ import annotations

from typing import Any

from ..losses import LossInputs, LossOutput, as_float, given, per_sequence, sequence_nll
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes


def siu_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """SIU-style dual masked KL (our reconstruction of PEBench v1's sixth method, after Li et
    al., 2024, whose formula is incomplete in the sources we have)::

        NLL(y_refusal | D_f)  +  λ · mean_i DMK_i

    The cross-entropy teaches the refusal on the forget images, as PO does; the dual masked
    KL (``refusal_dual_masked_kl``, :func:`dual_masked_kl_per_sequence`) holds the rest of the
    model's next-token distributions on those same sequences to the reference's, except for
    the forget concept's own tokens, which are masked out of both the vocabulary and the
    positions. Like SIU it trains on the forget images alone: no retain set."""
    inp.require("siu", "refusal_logp_sum", "refusal_n_tokens")
    nll = sequence_nll(
        given(inp.refusal_logp_sum, "siu", "refusal_logp_sum"),
        given(inp.refusal_n_tokens, "siu", "refusal_n_tokens"),
        "refusal_logp_sum",
    ).mean()
    loss = nll
    parts = {"refusal_nll": as_float(nll), "forget_loss": as_float(nll)}
    if retain_weight != 0:
        inp.require("siu", "refusal_dual_masked_kl")
        kl = per_sequence(given(inp.refusal_dual_masked_kl, "siu", "refusal_dual_masked_kl"), "refusal_dual_masked_kl").mean()
        loss = loss + retain_weight * kl
        parts["retain_loss"] = as_float(kl)
    parts["loss"] = as_float(loss)
    return LossOutput(loss=loss, parts=parts)


NOTES = MethodNotes(
    look_for=(
        "This SIU is our reconstruction: PO's refusal on the forget images, plus a *dual masked* KL to the "
        "reference on those same refusal answers, with the true answer's tokens taken out of both distributions "
        "and out of the positions that predict them. It trains on the forget images alone. In the trajectory, "
        "the forget loss is the refusal's NLL, which should fall, and the retain loss is the masked KL, which "
        "starts at 0 (the model is the reference at step 0) and rises as the refusal is learned: the KL resists "
        "any change in how the model spreads probability over the tokens it keeps, the refusal's own included, so the two "
        "terms trade off. The likelihood race reads as in PO's chapter: forgetting is refusing. With no retain "
        "data, look at the retain column and the retained side-by-side rows for leaked refusals, and compare "
        "with PO's chapter, which has a retain set.\n\n"
        "The book's transcription of the paper's Table 1 reports GA, GD, KL, PO and DPO, with no SIU row, so "
        "there is no published number here; the leaderboard chapter sets it beside the paper's five on this run."
    ),
    exercises=(
        Exercise(
            "What the masks leave free",
            r"At one kept position, let $C$ be the concept's tokens and $\tilde p(v) = p(v)/(1 - p(C))$ for "
            r"$v \notin C$ (both the model's and the reference's). Does the masked KL change if the model moves "
            "probability (a) from concept tokens to the refusal's next token $r$, (b) from concept tokens to all "
            "other tokens in proportion to their probabilities? What exactly is left free, and what is restrained?",
            r"(a) $p_\theta(r)$ rises and $p_\theta(C)$ falls, so $\tilde p_\theta(r)$ rises and every other "
            r"$\tilde p_\theta(v)$ falls: the KL changes, and grows if the reference ranked $r$ lower. (b) Scaling "
            r"every $v \notin C$ by the same factor leaves every $\tilde p_\theta(v)$ unchanged: the KL does not "
            r"move. So the masks free one thing, the total mass on the concept's tokens, and hold the *ratios* "
            "among all others to the reference's. Learning the refusal changes those ratios, so the KL resists it; "
            r"$\lambda$ (`unlearn.retain_weight`) sets how hard.",
            "think",
        ),
        Exercise(
            "SIU without its KL",
            f"Run `{CHAPTER_COMMAND} /tmp/siu-l0.ipynb -p method siu -y 'overrides: [unlearn.retain_weight=0, "
            "unlearn.lr_factors=1]'` and compare with the same at `unlearn.retain_weight=1` (the default, at the "
            "same fixed rate). What is the loss with a weight of 0, and what do you expect for the refusal's NLL, "
            "efficacy, retain and the retained rows of the side-by-side table?",
            r"With $\lambda = 0$ the loss is $\mathrm{NLL}(y_\mathrm{refusal} \mid D_f)$ alone: refusal "
            "fine-tuning on the forget images, with nothing seen from retained people or events. Expect the "
            "refusal's NLL to fall faster and efficacy to be as high or higher, and refusals to leak onto retained "
            "images (the question is the same for every image), so retain falls. With the KL the leak should be "
            "slower, though it regularises only on forget images, so it guards what the model says there, not "
            "directly what it says about anyone else.",
            "run",
        ),
        Exercise(
            "The concept of a name and of an event",
            "The concept tokens are every token id of the true answer (special tokens aside), masked at every "
            "position of the refusal. For target `person` the answer is a name; for `event`, a description "
            "sentence. Which tokens does the mask remove in each case, and what does that predict about how much "
            "the KL constrains, and about how the refusal's own common words are treated?",
            "A name's tokens are specific to it, so for people the mask is narrow: the KL holds almost the whole "
            "vocabulary and frees little beyond the name. A description is made of common words (articles, "
            "prepositions, verbs shared by many scenes), all of which become concept tokens: they leave both "
            "distributions at every position, and any refusal position that predicts one of them is dropped. For "
            "events the KL therefore constrains less, and leaves free common words the refusal itself uses. How "
            "much depends on the tokenizer, which may split names into pieces shared with other words.",
            "think",
        ),
    ),
)


METHOD = Method(
    "siu",
    loss=siu_loss,
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
    needs_forget=False,
    needs_refusal=True,
    needs_dual_masked_kl=True,
    notes=NOTES,
)
