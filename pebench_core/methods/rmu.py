"""Representation misdirection (RMU): steer one layer's activations on forget inputs towards noise.

One method, one file (design: Unlearning methods): its loss, its entry in the registry, its own
settings and its chapter's teaching notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..losses import LossInputs, LossOutput, as_float, forget_nll, given, per_sequence
from ..ranges import POSITIVE, SHARE
from .registry import CHAPTER_COMMAND, Exercise, Method, MethodNotes, setting


@dataclass(frozen=True)
class Settings:
    """RMU's own hyper-parameters (``unlearn.rmu.*``): the loop reads them to pick the layer,
    place the adapter and build the control vector."""

    depth: float = setting(0.5, SHARE, "the decoder layer, as a share of the depth (0 first, 1 last)")
    steer: float = setting(2.0, POSITIVE, "the control vector's length c, in mean activation norms of that layer")


def rmu_loss(inp: LossInputs, *, retain_weight: float = 1.0, beta: float = 0.1, state: Any = None) -> LossOutput:
    """RMU, representation misdirection (Li et al., 2024), on one decoder layer's output::

        mean_i MSE(h_θ(x_i), c·u)  +  λ · mean_j MSE(h_θ(x_j), h_ref(x_j))
        (i over the forget answers, j over the retain answers; per sequence, then over sequences)

    ``u`` is a fixed random unit vector and ``c`` the steering scale; the loop builds them and
    passes the per-sequence MSEs (``forget_rmu_mse``, ``retain_rmu_mse``). The forget term
    drives the layer's activations on forget inputs towards noise the later layers cannot
    read; the retain term holds them where the reference had them everywhere else."""
    inp.require("rmu", "forget_rmu_mse")
    forget = per_sequence(given(inp.forget_rmu_mse, "rmu", "forget_rmu_mse"), "forget_rmu_mse").mean()
    loss = forget
    parts = {"forget_loss": as_float(forget)}
    if inp.forget_logp_sum is not None and inp.forget_n_tokens is not None:
        parts["forget_nll"] = as_float(forget_nll(inp, "rmu").mean())
    if retain_weight != 0:
        inp.require("rmu", "retain_rmu_mse")
        r = per_sequence(given(inp.retain_rmu_mse, "rmu", "retain_rmu_mse"), "retain_rmu_mse").mean()
        loss = loss + retain_weight * r
        parts["retain_loss"] = as_float(r)
    parts["loss"] = as_float(loss)
    return LossOutput(loss=loss, parts=parts)


NOTES = MethodNotes(
    look_for=(
        "RMU acts on activations, not on answers. At the decoder layer at `unlearn.rmu.depth` it pulls the "
        r"activations on forget answers towards a fixed vector $c\,u$ ($c$ is `unlearn.rmu.steer` times their "
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
            r"The loop steers layer $k = \mathrm{round}(d\,(L-1))$ for `unlearn.rmu.depth` $= d$ and $L$ decoder "
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
            f"Run `{CHAPTER_COMMAND} /tmp/rmu-d1.ipynb -p method rmu -y 'overrides: [unlearn.rmu.depth=1.0]'`. The last "
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
            f"Run `{CHAPTER_COMMAND} /tmp/rmu-c8.ipynb -p method rmu -y 'overrides: [unlearn.rmu.steer=8]'` (the default is "
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
)


METHOD = Method(
    "rmu",
    loss=rmu_loss,
    title="Bonus: representation misdirection (RMU)",
    summary="Steer a middle layer's activations on forget inputs towards a fixed random vector, keep them on retain",
    formula=r"\mathcal{L} = \mathbb{E}_{D_f}\big\lVert h^{(\ell)}_\theta(x) - c\,u\big\rVert^2 + "
    r"\lambda\,\mathbb{E}_{D_r}\big\lVert h^{(\ell)}_\theta(x) - h^{(\ell)}_\mathrm{ref}(x)\big\rVert^2",
    citation="li2024wmdp",
    about="**RMU** {cite}`li2024wmdp` works on what the model *computes*, not on what it says. It picks one "
    r"decoder layer $\ell$ in the middle of the language model, and on forget inputs pushes that layer's "
    r"activations towards a fixed random direction $u$ scaled by $c$, noise the later layers cannot read; "
    "on retain inputs it holds them where the reference model had them. Only the MLPs of that layer and the "
    "two below it are adapted. Here the activations are those at the answer positions, and $c$ is "
    "`unlearn.rmu.steer` times their mean norm in the reference (the paper fixes $c$ per model).",
    needs_hidden=True,
    lora_on="mlp_at_depth",
    settings=Settings,
    notes=NOTES,
)
