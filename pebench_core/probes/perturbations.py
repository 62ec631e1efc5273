"""Image perturbations: does forgetting hold on blurred, cropped, recoloured, noisy or JPEG
images? :data:`PERTURBATIONS` are pure functions of (image, strength, seed), tested by hand;
the probe asks the training question on each perturbed forget image (``perturb_<kind>``).
"""

from __future__ import annotations

import io
import random
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from ..errors import ConfigError
from ..world import QUESTIONS
from .context import Ask, Context, Planned
from .registry import Probe


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


def metrics(r) -> tuple[str, ...]:
    return tuple(f"perturb_{k}" for k in r.perturbations)


def perturb_asks(ctx: Context, concept: str) -> list[Planned]:
    cfg, ds, q = ctx.cfg, ctx.ds, QUESTIONS[concept]
    forget = ctx.sets.forget[concept]
    out = []
    for kind in cfg.robust.perturbations:
        asks = [
            Ask(
                (i.id, q, kind),
                lambda i=i, kind=kind: perturb(ds.image(i), kind, cfg.robust.strength, f"{cfg.seed}:{i.id}"),
                q,
            )
            for i in forget
        ]
        out.append(Planned(concept, f"perturb_{kind}", True, forget, asks))
    return out


PROBE = Probe(
    "perturb",
    "Image perturbations",
    "Does forgetting hold on blurred, cropped, recoloured, noisy or JPEG images?",
    metrics,
    asks=perturb_asks,
)
