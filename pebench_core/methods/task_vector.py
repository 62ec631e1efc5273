"""Task-vector negation: fine-tune towards the forget set, then subtract.

One method, one file (design: Unlearning methods): its loss, its entry in the registry, its own
settings and its chapter's teaching notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..losses import LossInputs, LossOutput, as_float, forget_nll
from ..ranges import POSITIVE
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, setting


@dataclass(frozen=True)
class Settings:
    """Task-vector negation's own hyper-parameter (``unlearn.task_vector.*``): the finish reads it."""

    scale: float = setting(1.0, POSITIVE, "the α in θ_ft − α·τ")


def task_vector_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """The first half of task-vector negation: **descent** on the forget answers, ``NLL_f``,
    which trains the task vector ``τ`` (the LoRA adapter); the loop then negates it
    (``Method.finish = "negate"``). ``retain_weight``/``beta`` are ignored."""
    nll_f = forget_nll(inp, "task_vector").mean()
    return LossOutput(loss=nll_f, parts={"forget_loss": as_float(nll_f), "forget_nll": as_float(nll_f), "loss": as_float(nll_f)})


def negate(model: torch.nn.Module, settings: Settings) -> None:
    """Task-vector negation: ``θ_ft − α·τ``. The adapter's update is ``τ = (alpha/r)·B·A``, so
    multiplying every ``B`` by ``−α`` (``unlearn.task_vector.scale``) turns it into ``−α·τ`` exactly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(-settings.scale)


NOTES = MethodNotes(
    look_for=(
        "Task-vector negation is two methods in sequence. Training is plain *descent*: the adapter learns the "
        r"forget answers even better, and that adapter is the task vector $\tau$; then the finish step negates "
        r"it, scaled by $\alpha$ (`unlearn.task_vector.scale`), by multiplying every LoRA $B$ by $-\alpha$. So the "
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
            f"Run `{CHAPTER_COMMAND} /tmp/tv-a4.ipynb -p method task_vector -y 'overrides: [unlearn.task_vector.scale=4, "
            "unlearn.lr_factors=1]'` and the same with `unlearn.task_vector.scale=1` into `/tmp/tv-a1.ipynb`. "
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
)


METHOD = Method(
    "task_vector",
    loss=task_vector_loss,
    title="Bonus: task-vector negation",
    summary="Fine-tune an adapter further on the forget set, then subtract it",
    formula=r"\theta_\mathrm{unlearned} = \theta_\mathrm{ft} - \alpha\,\tau,\quad"
    r"\tau = \arg\min_{\Delta}\ \mathrm{NLL}_f(\theta_\mathrm{ft} + \Delta)",
    citation="ilharco2023editing",
    about="**Task-vector negation** {cite}`ilharco2023editing` never climbs a loss. It fine-tunes a fresh "
    "adapter *further* on the forget set, which points the weights towards what is to be forgotten (the "
    r"task vector $\tau$), and then subtracts it, scaled by $\alpha$: $\theta_\mathrm{ft} - \alpha\tau$. "
    "With LoRA the subtraction is exact: the adapter's update $BA$ is negated by negating $B$. The "
    "trajectory's checks score the negated adapter at every step. The fine-tuned model already knows "
    "the forget set well, so the further fine-tuning has little left to learn, and the vector it "
    "finds may be short: that is the method's known weakness on memorised data.",
    finish=negate,
    settings=Settings,
    notes=NOTES,
)
