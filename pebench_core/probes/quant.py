"""Quantisation: does forgetting hold after int8 weight quantisation or bf16 rounding?

Efficacy and retain of each concept on copies of the probed model whose weights are rounded as
an int8 (weight-only, per output channel) or a bf16 checkpoint would hold them: a forgotten
name that only a small weight change hid can come back when the weights are rounded.
"""

from __future__ import annotations

import copy

import torch

from .. import metrics as M
from ..evaluate import CONCEPTS_OF
from ..world import QUESTIONS
from .context import Context, Planned, answer_plan, plain
from .registry import Probe


def rounded_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose floating-point weights are rounded to bfloat16 and stored back in their own
    dtype: what a bf16 checkpoint of the model would hold, computed as before."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in [*out.parameters(), *out.buffers()]:
            if p.is_floating_point():
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
    return out


def int8_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose every ``nn.Linear`` weight is quantised to int8 and back, per output
    channel and symmetric (scale = the row's largest magnitude / 127, zero point 0, round
    half to even, as ``torch.quantize_per_channel`` does), computed in the weight's own
    dtype: what an int8 checkpoint of the model holds (weight-only int8, as GPTQ, AWQ and
    LLM.int8 store weights).

    Not torch's dynamic quantisation: that also quantises the activations with one scale per
    tensor, so an item's answer depends on the other items (and the padding) in its batch:
    measured on the tiny world, the quant probe's metrics moved with the evaluation batch size (sums
    6.391, 6.395, 6.378 at 32, 64, 128), which a metric must not do.
    """
    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight.float()
                scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
                # by hand: torch's quantized-tensor constructors are deprecated (they move to torchao)
                q = torch.round(w / scale[:, None]).clamp_(-127, 127) * scale[:, None]
                m.weight.copy_(q.to(m.weight.dtype))
    return out


def metrics(r) -> tuple[str, ...]:
    return ("int8_efficacy", "int8_retain", "bf16_efficacy", "bf16_retain")


def quant_probe(ctx: Context) -> list[M.MetricResult]:
    out = []
    for name, make in (("int8", int8_weights), ("bf16", rounded_bf16)):
        low = ctx.bundle.with_model(make(ctx.bundle.model))
        plan = []
        for concept in CONCEPTS_OF[ctx.sets.target]:
            q = QUESTIONS[concept]
            for what, eff, items in (("efficacy", True, ctx.sets.forget[concept]), ("retain", False, ctx.sets.retain[concept])):
                plan.append(Planned(concept, f"{name}_{what}", eff, items, plain(ctx.ds, items, q)))
        out += answer_plan(ctx, low, plan)
        del low
    return out


PROBE = Probe(
    "quant",
    "Quantisation",
    "Does forgetting hold after int8 quantisation or bf16 rounding?",
    metrics,
    run=quant_probe,
)
