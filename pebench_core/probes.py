"""The robustness probes as a table, and the image perturbations (design: Is it really forgotten?).

:data:`PROBES` lists every probe chapter 7 runs: its name (what ``robust.probes`` takes), title,
question and the metrics it writes (:func:`probe_metrics`); :data:`PERTURBATIONS` the image
perturbations of the ``perturb`` probe, pure functions of (image, strength, seed) tested by
hand. :mod:`pebench_core.robustness` runs them on a model. This module imports no torch, so a
command line's settings are checked before anything heavy is loaded (as :mod:`pebench_core.methods`).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .config import ConfigError, RunConfig

__all__ = ["PROBES", "Probe", "probe_names", "probe_metrics", "PERTURBATIONS", "perturb"]


# ---------------------------------------------------------------------------------------
# Image perturbations: pure functions of (image, strength in (0, 1], seed)
def _blur(img: Image.Image, s: float, rng: random.Random) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=s * img.width / 16))  # 1/16 of the width at full strength


def _crop(img: Image.Image, s: float, rng: random.Random) -> Image.Image:
    keep = 1.0 - 0.5 * s  # full strength keeps half of each side, at a random place
    w, h = img.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)


def _colour(img: Image.Image, s: float, rng: random.Random) -> Image.Image:
    out = img
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        factor = 1.0 + s * rng.uniform(-0.6, 0.6)  # each by up to ±60 % at full strength
        out = enhance(out).enhance(factor)
    return out


def _noise(img: Image.Image, s: float, rng: random.Random) -> Image.Image:
    a = np.asarray(img, dtype=np.float64)
    gen = np.random.default_rng(rng.getrandbits(63))
    noisy = a + gen.normal(0.0, 64.0 * s, size=a.shape)  # σ = 64 grey levels at full strength
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, s: float, rng: random.Random) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=max(5, round(95 - 90 * s)))  # quality 95 → 5
    buf.seek(0)
    return Image.open(buf).convert("RGB")


PERTURBATIONS: dict[str, Callable[[Image.Image, float, random.Random], Image.Image]] = {
    "blur": _blur,
    "crop": _crop,
    "colour": _colour,
    "noise": _noise,
    "jpeg": _jpeg,
}


def perturb(image: Image.Image, kind: str, strength: float, seed: int | str = 0) -> Image.Image:
    """``image`` perturbed by ``kind`` at ``strength`` (0 exclusive to 1), the same for the same
    seed (a crop's place and a jitter's factors are drawn from it). The size is kept."""
    if kind not in PERTURBATIONS:
        raise ConfigError(f"robust.perturbations: unknown perturbation {kind!r}; allowed: {', '.join(PERTURBATIONS)}")
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"robust.strength must be > 0 and <= 1, got {strength}")
    return PERTURBATIONS[kind](image.convert("RGB"), float(strength), random.Random(f"perturb:{kind}:{seed}"))


# ---------------------------------------------------------------------------------------
# The registry: one row per probe
@dataclass(frozen=True)
class Probe:
    """One probe: its name (what ``robust.probes`` lists), a title, the question it asks, and
    the name of the function of :mod:`pebench_core.robustness` that runs it (``None``: it runs
    inside the shared generation call). A name, not the function, so this table imports no torch."""

    name: str
    title: str
    question: str
    run: str | None


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe(
            "relearn", "Relearning", "Does a few steps of fine-tuning on some forget images bring the rest back?", "relearn_probe"
        ),
        Probe("paraphrase", "Paraphrased questions", "Does forgetting hold for a question worded differently?", None),
        Probe(
            "perturb", "Image perturbations", "Does forgetting hold on blurred, cropped, recoloured, noisy or JPEG images?", None
        ),
        Probe("mia", "Membership inference", "Can the answer's likelihood tell forget items from never-seen ones?", "mia_probe"),
        Probe("quant", "Quantisation", "Does forgetting hold after int8 quantisation or bf16 rounding?", "quant_probe"),
        Probe(
            "probe",
            "Linear probes",
            "Can a linear probe still tell the forget people (events) apart inside the model?",
            "linear_probe",
        ),
    )
}


def probe_names() -> tuple[str, ...]:
    """Every registered probe, in the book's order (the default of ``robust.probes``)."""
    return tuple(PROBES)


def probe_metrics(name: str, cfg: RunConfig) -> tuple[str, ...]:
    """The metric names ``name`` writes under ``cfg``."""
    r = cfg.robust
    table = {
        "relearn": tuple(f"relearn@{k}" for k in r.relearn_steps),
        "paraphrase": ("paraphrase_efficacy", "paraphrase_retain"),
        "perturb": tuple(f"perturb_{k}" for k in r.perturbations),
        "mia": ("mia_loss", "mia_mink"),
        "quant": ("int8_efficacy", "int8_retain", "bf16_efficacy", "bf16_retain"),
        "probe": ("probe_tower", "probe_projector", "probe_lm"),
    }
    if name not in table:
        raise ConfigError(f"robust.probes: unknown probe {name!r}; allowed: {', '.join(PROBES)}")
    return table[name]
