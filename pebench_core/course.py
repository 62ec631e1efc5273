"""What a course needs of each method chapter: what to look for, and exercises with solutions.

One entry per method that has a chapter (:func:`pebench_core.methods.chapter_methods`); a
test checks that every such method has its own. A method registered in user code may add
its own with :func:`register_notes`; a chapter without notes simply has no exercise section.

The text is MyST markdown ({cite} roles and $math$ allowed). Exercises name settings and
commands that exist (``pebench run --set ...``, the chapter's papermill parameters), so a
student can run them; a solution says what to expect and why, not a number the run must
reproduce (the numbers come from the executed chapter).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Exercise",
    "MethodNotes",
    "NOTES",
    "register_notes",
    "notes_for",
    "look_for_markdown",
    "exercises_markdown",
]


@dataclass(frozen=True)
class Exercise:
    """One exercise: a short ``title``, the ``question`` and its ``solution`` (MyST markdown);
    ``kind`` is ``"think"`` (pen and paper, from the chapter's formula and figures) or
    ``"run"`` (re-run the chapter or ``pebench run`` with other settings)."""

    title: str
    question: str
    solution: str
    kind: str = "think"


@dataclass(frozen=True)
class MethodNotes:
    """A method chapter's teaching text: ``look_for`` (what to watch in this method's figures
    and tables, and why), and its exercises."""

    look_for: str
    exercises: tuple[Exercise, ...]


NOTES: dict[str, MethodNotes] = {}


def register_notes(method: str, notes: MethodNotes) -> None:
    """Add (or replace) the teaching notes of ``method``."""
    NOTES[method] = notes


def notes_for(method: str) -> MethodNotes | None:
    """The notes of ``method``, or ``None`` when it has none."""
    return NOTES.get(method)


_KIND_LABEL = {"think": "pen and paper", "run": "run it"}


def look_for_markdown(method: str) -> str:
    """The chapter's "what to look for" text for ``method``, or a sentence saying it has none."""
    notes = notes_for(method)
    if notes is None:
        return f"`{method}` has no teaching notes (add them with `pebench_core.course.register_notes`)."
    return notes.look_for


def exercises_markdown(method: str) -> str:
    """``method``'s exercises as MyST ``exercise`` directives, each followed by its ``solution``
    (folded: hidden until the reader opens it). Labels are ``ex-<method>-<k>``, unique across
    the book because each method has one chapter. Empty when the method has no notes."""
    notes = notes_for(method)
    if notes is None:
        return ""
    blocks = []
    for k, ex in enumerate(notes.exercises, start=1):
        if ex.kind not in _KIND_LABEL:
            raise ValueError(f"exercise {ex.title!r} of {method!r}: kind {ex.kind!r}; allowed: {sorted(_KIND_LABEL)}")
        label = f"ex-{method}-{k}"
        # four backticks: a question or solution may itself hold a fenced command
        blocks.append(
            f"````{{exercise}} {ex.title} ({_KIND_LABEL[ex.kind]})\n:label: {label}\n\n{ex.question}\n````\n\n"
            f"````{{solution}} {label}\n:class: dropdown\n\n{ex.solution}\n````"
        )
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------
# The notes of every method with a chapter (pebench_core.methods.chapter_methods).
# Commands use the chapter's papermill parameters (method, overrides) and settings that exist
# in pebench_core.config, within their ranges. `unlearn.lr_factors=1` turns the learning-rate
# grid off, so that two runs that differ in one setting also share their rate.

_PM = "papermill notebooks/04_method.ipynb"

register_notes(
    "ga",
    MethodNotes(
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
                f"Re-run this chapter with three times the steps: `{_PM} /tmp/ga-120.ipynb -p method ga "
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
    ),
)

register_notes(
    "gd",
    MethodNotes(
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
                f"Run GD at one fixed rate with a heavy and with no retain term: `{_PM} /tmp/gd-l3.ipynb -p method gd "
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
    ),
)

register_notes(
    "kl",
    MethodNotes(
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
                f"Run `{_PM} /tmp/kl-l10.ipynb -p method kl -y 'overrides: [unlearn.retain_weight=10, "
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
    ),
)

register_notes(
    "po",
    MethodNotes(
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
                f"Run `{_PM} /tmp/po-l0.ipynb -p method po -y 'overrides: [unlearn.retain_weight=0, "
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
                f"Give PO a longer budget: `{_PM} /tmp/po-100.ipynb -p method po -y 'overrides: [unlearn.steps=100]'`. "
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
    ),
)

register_notes(
    "dpo",
    MethodNotes(
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
                f"Re-run with `{_PM} /tmp/dpo-b1.ipynb -p method dpo -y 'overrides: [unlearn.beta=1.0]'` and with "
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
    ),
)

register_notes(
    "npo",
    MethodNotes(
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
                f"Run NPO at one fixed rate with a large and a small temperature: `{_PM} /tmp/npo-b1.ipynb -p method "
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
    ),
)

register_notes(
    "simnpo",
    MethodNotes(
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
                f"Run `{_PM} /tmp/simnpo-b2.ipynb -p method simnpo -y 'overrides: [unlearn.beta=2.0, "
                "unlearn.lr_factors=1]'`, then add `unlearn.gamma=2` into `/tmp/simnpo-b2g2.ipynb`. For each, find the "
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
    ),
)

register_notes(
    "undial",
    MethodNotes(
        look_for=(
            "UNDIAL never pushes without end: at every answer token it distils the model towards a fixed target, the "
            r"reference's distribution with the true token's logit lowered by $s$ (`unlearn.undial_strength`). The "
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
                f"UNDIAL's authors use strengths between 3 and 30; this book's default is 10. Run `{_PM} "
                "/tmp/undial-s3.ipynb -p method undial -y 'overrides: [unlearn.undial_strength=3]'` and the same with "
                "`unlearn.undial_strength=30` into `/tmp/undial-s30.ipynb`. Compare the trajectory's starting and final "
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
    ),
)

register_notes(
    "siu",
    MethodNotes(
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
                f"Run `{_PM} /tmp/siu-l0.ipynb -p method siu -y 'overrides: [unlearn.retain_weight=0, "
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
    ),
)

register_notes(
    "rmu",
    MethodNotes(
        look_for=(
            "RMU acts on activations, not on answers. At the decoder layer at `unlearn.rmu_depth` it pulls the "
            r"activations on forget answers towards a fixed vector $c\,u$ ($c$ is `unlearn.rmu_steer` times their "
            "mean norm in the reference), and holds those on retain answers where the reference had them; only the "
            "MLPs of that layer and the two below it are adapted, not attention, not the projector. Both terms are "
            "squared distances, bounded below by 0: in the trajectory, the forget loss starts at the distance from "
            "the reference's activations to the control vector and falls, the retain loss starts at 0. What RMU "
            "aims for is noise on forget images only: broken answers there and intact retained rows in the "
            "side-by-side table; in the likelihood race both answers may become unlikely, since nothing teaches "
            "the refusal. The tiny model has two decoder layers, and "
            r"$\mathrm{round}(0.5 \times 1) = 0$ in Python, so the default depth steers the first layer's output "
            "with its MLP alone; a real checkpoint's middle is much deeper.\n\n"
            "RMU is not in the paper's Table 1, so there is no published number here; the leaderboard chapter sets it "
            "beside the paper's five on this run."
        ),
        exercises=(
            Exercise(
                "Which layer, which MLPs",
                r"The loop steers layer $k = \mathrm{round}(d\,(L-1))$ for `unlearn.rmu_depth` $= d$ and $L$ decoder "
                r"layers, and adapts the MLPs of layers $\max(0, k-2)$ to $k$. Python's `round` sends halves to the "
                r"even integer. Work out $k$ and the adapted MLPs for the tiny model ($L = 2$) at $d = 0, 0.5, 0.75, 1$, "
                r"and for a 32-layer model at $d = 0.5$. What is special about $d = 1$?",
                r"Tiny, $L - 1 = 1$: $d = 0 \to k = 0$; $d = 0.5 \to \mathrm{round}(0.5) = 0$ (half to even); "
                r"$d = 0.75 \to 1$; $d = 1 \to 1$. With $k = 0$ only layer 0's MLP is adapted; with $k = 1$, the MLPs "
                r"of layers 0 and 1. For 32 layers, $\mathrm{round}(15.5) = 16$, so layer 16 is steered and the MLPs "
                r"of layers 14 to 16 adapted. At $d = 1$ the steered layer is the last: no later layers are left to "
                "fail to read the noise, and the control vector goes straight into the final norm and the output head.",
                "think",
            ),
            Exercise(
                "Steering the last layer",
                f"Run `{_PM} /tmp/rmu-d1.ipynb -p method rmu -y 'overrides: [unlearn.rmu_depth=1.0]'`. The last "
                "decoder layer's output goes through an RMS norm into the output head. Predict what the forget answers "
                "look like when that output is pulled towards one fixed vector at every forget answer position, and "
                "how tightly the retain term now holds the retain answers. Then compare with this chapter.",
                r"An RMS norm divides by the vector's scale, so at the last layer the size $c$ hardly matters and the "
                r"direction $u$ decides: every forget answer position is pushed towards the *same* next-token "
                "distribution, so expect forget answers to collapse into one repeated token pattern, with high "
                "efficacy. The retain term now constrains the very vectors the head reads at retain answer positions, "
                "so expect retain close to finetune, as long as the adapted MLPs can separate the two kinds of input. "
                "RMU's idea of noise that later layers cannot use no longer applies: there are no later layers.",
                "run",
            ),
            Exercise(
                "How hard to steer",
                f"Run `{_PM} /tmp/rmu-c8.ipynb -p method rmu -y 'overrides: [unlearn.rmu_steer=8]'` (the default is "
                r"2). How does the forget loss at step 0 depend on $c$? Predict the effect of a four times longer "
                "control vector on the trajectory, efficacy, retain and the side-by-side answers, then check.",
                r"Per position the forget term is the mean over the $H$ coordinates of $(h - c\,u)^2$, i.e. "
                r"$(\lVert h\rVert^2 - 2c\,h\cdot u + c^2)/H$ with $\lVert u\rVert = 1$: for a large $c$ it grows like "
                r"$c^2$, so expect a much higher starting forget loss. A longer control vector dominates the residual "
                "stream more completely, drowning what the later layer adds, so forget answers should break more "
                "thoroughly. But the adapted MLPs must move activations much further, and the same MLPs serve retain "
                "inputs, so expect the retain loss to rise more and retain to suffer somewhat.",
                "run",
            ),
        ),
    ),
)

register_notes(
    "task_vector",
    MethodNotes(
        look_for=(
            "Task-vector negation is two methods in sequence. Training is plain *descent*: the adapter learns the "
            r"forget answers even better, and that adapter is the task vector $\tau$; then the finish step negates "
            r"it, scaled by $\alpha$ (`unlearn.negation_scale`), by multiplying every LoRA $B$ by $-\alpha$. So the "
            "trajectory reads upside down: its forget loss is the NLL of the *un-negated* adapter and should fall "
            "towards 0, while the efficacy checks score the negated adapter, the one the method hands over. The "
            "printed source shows both the loss and the negation. The fine-tuned model already knows the forget set, "
            "so descent has little left to learn; if the forget loss barely moves, expect efficacy to stay near "
            "finetune's, and the likelihood race to show how far negation really moved the true answer. The retain "
            "set is never used: any damage to retain, real and world-fact comes from the negated vector alone, and "
            r"grows with $\alpha$."
            "\n\n"
            "Task-vector negation is not in the paper's Table 1, so there is no published number here; the "
            "leaderboard chapter sets it beside the paper's five on this run."
        ),
        exercises=(
            Exercise(
                "To first order, negation is one step of ascent",
                r"Let $g(\theta) = \nabla\mathrm{NLL}_f(\theta)$ and let training reach $\theta_\mathrm{ft} + \tau$. "
                r"Expand $\mathrm{NLL}_f(\theta_\mathrm{ft} - \alpha\tau)$ to first order. With plain gradient "
                r"descent, $\tau \approx -\eta\sum_t g(\theta_t)$: what does the expansion become, and what does it "
                r"depend on? What happens if $\theta_\mathrm{ft}$ sits at a minimum of $\mathrm{NLL}_f$?",
                r"$\mathrm{NLL}_f(\theta_\mathrm{ft} - \alpha\tau) \approx \mathrm{NLL}_f(\theta_\mathrm{ft}) - \alpha\,"
                r"g(\theta_\mathrm{ft})\cdot\tau$, and with $\tau \approx -\eta\sum_t g(\theta_t)$ the change is "
                r"$+\alpha\eta\sum_t g(\theta_\mathrm{ft})\cdot g(\theta_t)$: a rise when the gradients along the run "
                r"agree with the first, proportional to $\alpha$ and to how much descent could still gain. AdamW "
                r"rescales the steps, so $\tau$ need not be short, but the first-order effect still scales with "
                r"$g(\theta_\mathrm{ft})$. At a minimum $g = 0$: only curvature is left, and negating $\tau$ raises "
                "the NLL no more specifically than any step of that length would.",
                "think",
            ),
            Exercise(
                "Scaling the negation",
                f"Run `{_PM} /tmp/tv-a4.ipynb -p method task_vector -y 'overrides: [unlearn.negation_scale=4, "
                "unlearn.lr_factors=1]'` and the same with `unlearn.negation_scale=1` into `/tmp/tv-a1.ipynb`. "
                "Before comparing, predict which parts of the two trajectories must agree and which may not. Then "
                "compare the efficacy checks, the six metrics and the side-by-side answers.",
                r"$\alpha$ enters only when the adapter is negated, for each efficacy check (then undone) and at the "
                "end, so training is the same in both runs: same batches, same fixed rate, same adapter "
                "initialisation. The forget-loss curves should therefore "
                "agree, up to floating-point noise, and only the efficacy checks and the final metrics differ. A "
                r"larger $\alpha$ moves the weights four times further along $-\tau$: expect more forgetting, and "
                "more damage to retain, real and world-fact, since nothing constrains that direction on anything else. "
                "The model is not linear in its weights, so expect the damage to grow faster than the scale.",
                "run",
            ),
            Exercise(
                "Reading the trajectory upside down",
                "In this chapter's trajectory the loss is measured on the un-negated adapter and the efficacy checks on "
                "the negated one. What would you conclude if (a) the forget loss barely moved from its first value, "
                "(b) it fell clearly but efficacy stayed at finetune's level? Which other section of the chapter "
                "tells the two situations apart, and how?",
                "(a) The fine-tuned model already fits the forget answers, so the adapter learned almost nothing: "
                r"$\tau$ carries little about them and negating it changes little; efficacy stays near finetune. (b) The "
                "adapter did learn, perhaps only sharpening answers that were already right, and negating it undoes "
                "the sharpening while the true name stays the model's first choice; efficacy reads what greedy "
                "decoding writes, so it stays low. The likelihood race tells them apart: in (a) the true answer's NLL "
                "hardly moves from finetune's, in (b) it rises, but not enough to lose the first token.",
                "think",
            ),
        ),
    ),
)
