"""Drawing a render: the event's background, the props where :func:`plan_scene` put them,
the person, then lighting and pixel noise (:func:`render`).

Coordinates are pixels of the canvas, which for small images is supersampled (drawn at
twice the size and downsampled). Everything random comes from ``render_seed``.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from ..errors import ConfigError
from .catalogue import (
    EYE_COLOURS,
    HAIR_COLOURS,
    HATS,
    OBJECT_ZONES,
    POSES,
    RGB,
    SHIRT_COLOURS,
    SKIN_TONES,
    TROUSER_COLOURS,
    Event,
    Person,
    World,
)
from .props import draw_prop
from .scenes import plan_scene


# ---------------------------------------------------------------------------------------
# Colour helpers
def _shade(c: Iterable[int], f: float) -> RGB:
    return tuple(max(0, min(255, int(round(v * f)))) for v in c)  # type: ignore[return-value]


def _mix(a: Iterable[int], b: Iterable[int], t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# Backgrounds: one look per event layout
def _draw_background(d: ImageDraw.ImageDraw, S: int, event: Event, rng: random.Random) -> float:
    """Paint the scene behind everything; returns the horizon height (fraction of S)."""
    sky, ground, acc = (tuple(event.palette[k]) for k in ("sky", "ground", "accent"))
    lay = event.layout
    indoor = lay.startswith("indoor") or lay in (
        "storefront",
        "window",
        "columns",
        "aisle",
        "train-interior",
        "stage",
        "runway",
        "dancefloor",
    )
    h = (0.64 if indoor else 0.58) + rng.uniform(-0.03, 0.03)
    H = int(h * S)
    d.rectangle([0, 0, S, H], fill=sky)
    d.rectangle([0, H, S, S], fill=ground)
    w = max(1, S // 64)  # a line width that stays visible at every size

    if lay == "indoor-panels":  # vertical wall panels and a skirting board
        for x in range(0, S, S // 6):
            d.rectangle([x + S // 40, S // 12, x + S // 6 - S // 40, H - S // 12], outline=_shade(sky, 1.35), width=w)
        d.rectangle([0, H - S // 30, S, H], fill=acc)
    elif lay == "indoor-planks":  # wooden floor boards, wainscot
        for y in range(H, S, max(2, S // 14)):
            d.line([0, y, S, y], fill=_shade(ground, 0.75), width=w)
        d.rectangle([0, int(H - 0.12 * S), S, H], fill=_shade(sky, 0.8))
        d.line([0, int(H - 0.12 * S), S, int(H - 0.12 * S)], fill=acc, width=w)
    elif lay == "indoor-carpet":  # plain carpet with a border and a picture rail
        d.rectangle([0, H, S, H + S // 24], fill=_shade(ground, 1.4))
        d.line([0, S // 5, S, S // 5], fill=_shade(sky, 1.3), width=w)
    elif lay == "indoor-tiles":  # gym: rubber tiles, a red stripe on the wall
        step = max(2, S // 8)
        for x in range(0, S, step):
            d.line([x, H, x, S], fill=_shade(ground, 1.8), width=w)
        d.rectangle([0, int(0.35 * S), S, int(0.41 * S)], fill=acc)
    elif lay == "indoor-stripes":  # cafe: striped wallpaper
        step = max(4, S // 10)
        for x in range(0, S, step):
            d.rectangle([x, 0, x + step // 3, H], fill=_mix(sky, acc, 0.45))
    elif lay == "indoor-dots":  # home: dotted wallpaper
        step = max(4, S // 8)
        r = max(1, S // 64)
        for y in range(step // 2, H, step):
            for x in range((y // step % 2) * step // 2, S, step):
                d.ellipse([x - r, y - r, x + r, y + r], fill=acc)
    elif lay == "indoor-plain":
        d.line([0, H, S, H], fill=acc, width=w)
    elif lay == "storefront":  # shop windows in bright colours
        cols = [acc, (250, 200, 60), (120, 210, 120)]
        for k, x in enumerate(range(0, S, S // 3)):
            d.rectangle(
                [x + S // 30, S // 8, x + S // 3 - S // 30, int(H * 0.8)], fill=cols[k % 3], outline=(255, 255, 255), width=w
            )
    elif lay == "window":  # big window showing the sky
        d.rectangle([S // 12, S // 10, S - S // 12, int(H * 0.78)], fill=acc, outline=(240, 240, 245), width=2 * w)
        d.line([S // 2, S // 10, S // 2, int(H * 0.78)], fill=(240, 240, 245), width=2 * w)
    elif lay == "columns":  # museum: pale columns
        for x in (S // 10, S // 2 - S // 14, S - S // 10 - S // 7):
            d.rectangle([x, S // 12, x + S // 7, H], fill=acc, outline=_shade(acc, 0.8), width=w)
    elif lay == "aisle":  # supermarket shelves full of coloured produce
        for y in (int(0.18 * S), int(0.36 * S), int(0.54 * S)):
            d.rectangle([0, y, S, y + max(1, S // 40)], fill=acc)
            for k, x in enumerate(range(S // 40, S, max(3, S // 16))):
                c = ((230, 60, 50), (250, 180, 40), (90, 190, 70), (240, 120, 170))[(k + y) % 4]
                d.rectangle([x, y - S // 16, x + S // 24, y], fill=c)
    elif lay == "train-interior":  # a row of windows and yellow poles
        for x in range(S // 16, S, S // 4):
            d.rounded_rectangle(
                [x, S // 8, x + S // 5, int(0.4 * S)], radius=S // 40, fill=(150, 200, 240), outline=(230, 230, 230), width=w
            )
        for x in (S // 5, 4 * S // 5):
            d.rectangle([x - w, 0, x + w, H], fill=acc)
    elif lay == "stage":  # dark stage with spotlight beams
        for k, x in enumerate((S // 6, S // 2, 5 * S // 6)):
            beam = _mix(sky, acc, 0.55)
            d.polygon([(x - S // 40, 0), (x + S // 40, 0), (x + S // 7, H), (x - S // 7, H)], fill=beam)
        d.rectangle([0, H, S, H + S // 30], fill=acc)
    elif lay == "runway":  # a white catwalk running to the back
        d.polygon([(int(0.4 * S), H), (int(0.6 * S), H), (int(0.85 * S), S), (int(0.15 * S), S)], fill=acc)
        for x in range(S // 8, S, S // 4):
            d.ellipse([x - S // 50, S // 6 - S // 50, x + S // 50, S // 6 + S // 50], fill=(255, 255, 220))
    elif lay == "dancefloor":  # coloured checkerboard floor
        step = max(2, S // 8)
        for yi, y in enumerate(range(H, S, step)):
            for xi, x in enumerate(range(0, S, step)):
                if (xi + yi) % 2:
                    d.rectangle([x, y, x + step, y + step], fill=acc)
        r = S // 14
        d.ellipse([S // 2 - r, S // 14 - r // 2, S // 2 + r, S // 14 + r + r // 2], fill=(210, 210, 225))
    elif lay in ("path", "trail"):  # a winding path into the distance
        d.polygon([(int(0.45 * S), H), (int(0.55 * S), H), (int(0.75 * S), S), (int(0.25 * S), S)], fill=acc)
        if lay == "trail":
            for x0, r in ((0.2, 0.35), (0.8, 0.3)):
                d.ellipse([int((x0 - r) * S), int(H - 0.12 * S), int((x0 + r) * S), int(H + 0.12 * S)], fill=_shade(ground, 0.85))
    elif lay == "field":  # crop rows
        for y in range(H + S // 20, S, max(2, S // 12)):
            d.line([0, y, S, y], fill=acc, width=w)
    elif lay == "plaza":  # paving stones
        step = max(3, S // 8)
        for y in range(H, S, step):
            d.line([0, y, S, y], fill=acc, width=w)
        for x in range(0, S, step):
            d.line([x, H, x, S], fill=acc, width=w)
    elif lay == "outdoor":  # dirt with a low hedge on the horizon
        d.rectangle([0, H - S // 20, S, H], fill=(70, 140, 70))
        d.line([0, H + S // 8, S, H + S // 8], fill=acc, width=w)
    elif lay == "beach":  # sea band with wave crests above the sand
        sea = int(H + 0.1 * S)
        d.rectangle([0, H - S // 20, S, sea], fill=acc)
        for y in (H, H + S // 20):
            for x in range(0, S, S // 8):
                d.arc([x, y - S // 40, x + S // 8, y + S // 40], 180, 360, fill=(240, 250, 255), width=w)
    elif lay == "sea":  # open water with wave crests everywhere
        d.rectangle([0, H, S, S], fill=ground)
        for y in range(H + S // 20, S, S // 10):
            for x in range((y // 7) % (S // 6), S, S // 6):
                d.arc([x, y - S // 40, x + S // 10, y + S // 40], 180, 360, fill=acc, width=w)
    elif lay == "lake":  # far shore, water, wooden dock in front
        d.rectangle([0, H - S // 25, S, H], fill=(60, 120, 60))
        dock = int(0.84 * S)
        d.rectangle([0, dock, S, S], fill=acc)
        for x in range(0, S, max(3, S // 10)):
            d.line([x, dock, x, S], fill=_shade(acc, 0.7), width=w)
    elif lay == "road":  # grass verge, grey road with a dashed centre line
        top = int(H + 0.08 * S)
        d.rectangle([0, top, S, S], fill=acc)
        y = (top + S) // 2
        for x in range(0, S, S // 6):
            d.rectangle([x, y - w, x + S // 12, y + w], fill=(250, 250, 250))
    elif lay == "track":  # running track with white lane lines
        top = int(H + 0.05 * S)
        d.rectangle([0, H, S, top], fill=(90, 160, 70))
        for y in range(top, S, max(3, S // 10)):
            d.line([0, y, S, y], fill=acc, width=w)
    elif lay == "hills":  # rolling hills
        for x0, r, f in ((0.15, 0.45, 0.8), (0.85, 0.4, 0.9)):
            d.ellipse([int((x0 - r) * S), int(H - 0.15 * S), int((x0 + r) * S), int(H + 0.2 * S)], fill=_shade(acc, f))
        d.rectangle([0, H, S, S], fill=ground)
    elif lay == "rocky":  # grey rocks scattered on the ground
        for k in range(5):
            x, y = rng.uniform(0.05, 0.95) * S, rng.uniform(h + 0.08, 0.95) * S
            r = S // 22
            d.ellipse([x - r * 1.5, y - r, x + r * 1.5, y + r], fill=acc)
    elif lay == "night":  # dark sky, silhouetted ground with a faint glow on the horizon
        d.rectangle([0, H - S // 14, S, H], fill=acc)
        for k in range(10):  # tiny faint specks, not the drawable "star" object
            x, y = rng.uniform(0, 1) * S, rng.uniform(0.02, h - 0.1) * S
            d.point((x, y), fill=(120, 130, 170))
    elif lay == "snow":  # white ground and falling snowflakes
        for k in range(14):
            x, y = rng.uniform(0, 1) * S, rng.uniform(0, 1) * S
            r = max(1, S // 90)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))
        d.line([0, H, S, H], fill=acc, width=w)
    elif lay == "street":  # asphalt with zebra crossing and a kerb
        kerb = int(H + 0.05 * S)
        d.rectangle([0, H, S, kerb], fill=(170, 170, 170))
        for x in range(S // 12, S, S // 8):
            d.rectangle([x, int(0.8 * S), x + S // 16, int(0.92 * S)], fill=(245, 245, 245))
        d.rectangle([S // 2 - w, kerb, S // 2 + w, int(0.75 * S)], fill=acc)
    elif lay == "platform":  # platform edge and rails with sleepers
        edge = int(H + 0.12 * S)
        d.rectangle([0, edge - S // 40, S, edge], fill=(245, 210, 30))
        d.rectangle([0, edge, S, edge + S // 10], fill=(80, 70, 60))
        for x in range(0, S, S // 10):
            d.rectangle([x, edge + S // 60, x + S // 30, edge + S // 10 - S // 60], fill=(130, 100, 70))
        for y in (edge + S // 40, edge + S // 14):
            d.line([0, y, S, y], fill=(190, 190, 200), width=w)
    elif lay == "tent":  # a striped awning across the top
        step = max(4, S // 8)
        for k, x in enumerate(range(0, S, step)):
            d.rectangle([x, 0, x + step, S // 8], fill=acc if k % 2 else (255, 255, 255))
    elif lay == "meadow":  # long grass
        for k in range(18):
            x, y = rng.uniform(0, 1) * S, rng.uniform(h + 0.05, 1.0) * S
            d.line([x, y, x + S // 60, y - S // 20], fill=acc, width=w)
    elif lay == "sidewalk":  # paving slabs and a kerb
        kerb = int(0.8 * S)
        for x in range(0, S, S // 5):
            d.line([x, H, x - S // 20, kerb], fill=acc, width=w)
        d.rectangle([0, kerb, S, S], fill=(95, 95, 100))
    return h


# ---------------------------------------------------------------------------------------
# The person
def _draw_person(
    d: ImageDraw.ImageDraw, traits: Mapping[str, str], cx: float, fy: float, H: float, pose: str, stance: str
) -> None:
    """Draw a person with feet at (cx, fy) and height H. Head and shirt are oversized on
    purpose: they carry most of the identity and must survive downsampling to 32 px."""
    u = H / 100.0
    top = fy - H
    skin = SKIN_TONES[traits["skin"]]
    hair = HAIR_COLOURS[traits["hair_colour"]]
    shirt = SHIRT_COLOURS[traits["shirt_colour"]]
    trousers = TROUSER_COLOURS[traits["trousers_colour"]]
    lum = 0.299 * shirt[0] + 0.587 * shirt[1] + 0.114 * shirt[2]
    pattern_c: RGB = (20, 20, 25) if lum > 150 else (250, 250, 250)

    def X(v: float) -> float:
        return cx + v * u

    def Y(v: float) -> float:
        return top + v * u

    def line(x0: float, y0: float, x1: float, y1: float, fill: RGB, w: float) -> None:
        d.line([X(x0), Y(y0), X(x1), Y(y1)], fill=fill, width=max(1, int(round(w * u))))

    # Legs (trousers) and shoes.
    spread = 9 if stance == "walking" else 0
    for sgn in (-1, 1):
        x_hip = sgn * 7
        x_foot = sgn * (7 + spread)
        line(x_hip, 60, x_foot, 94, trousers, 12)
        d.ellipse([X(x_foot - 6), Y(92), X(x_foot + 6), Y(100)], fill=(30, 25, 25))
    # Arms (sleeves in the shirt colour) with hands; drawn before the torso so the
    # shoulders look attached.
    arm_w = 8
    hands = {
        "arms down": ((-21, 60), (21, 60)),
        "arms up": ((-25, 6), (25, 6)),
        "waving": ((-21, 60), (26, 8)),
        "hands on hips": ((-15, 54), (15, 54)),
        "arms out": ((-38, 36), (38, 36)),
    }[pose]
    for sgn, (hx, hy) in zip((-1, 1), hands):
        sx, sy = sgn * 14, 32
        if pose == "hands on hips":
            ex, ey = sgn * 28, 44
            line(sx, sy, ex, ey, shirt, arm_w)
            line(ex, ey, hx, hy, shirt, arm_w)
        else:
            line(sx, sy, hx, hy, shirt, arm_w)
        d.ellipse([X(hx - 4), Y(hy - 4), X(hx + 4), Y(hy + 4)], fill=skin)
    # Torso with the shirt pattern, clipped to the torso rectangle by construction.
    x0, x1, y0, y1 = -16, 16, 27, 63
    d.rounded_rectangle([X(x0), Y(y0), X(x1), Y(y1)], radius=max(1, int(5 * u)), fill=shirt)
    pat = traits["shirt_pattern"]
    if pat == "stripes":
        for yy in range(31, 62, 8):
            d.rectangle([X(x0), Y(yy), X(x1), Y(yy + 3.5)], fill=pattern_c)
    elif pat == "vertical stripes":
        for xx in range(-13, 15, 8):
            d.rectangle([X(xx), Y(y0 + 2), X(xx + 3.5), Y(y1)], fill=pattern_c)
    elif pat == "dots":
        for yy in range(33, 62, 9):
            for xx in range(-11, 13, 9):
                d.ellipse([X(xx - 2.5), Y(yy - 2.5), X(xx + 2.5), Y(yy + 2.5)], fill=pattern_c)
    elif pat == "checks":
        for i, yy in enumerate(range(y0, y1, 8)):
            for j, xx in enumerate(range(x0, x1, 8)):
                if (i + j) % 2 == 0:
                    d.rectangle([X(xx), Y(yy), X(min(xx + 8, x1)), Y(min(yy + 8, y1))], fill=pattern_c)
    elif pat == "two-tone":
        d.rectangle([X(0), Y(y0 + 1), X(x1), Y(y1)], fill=pattern_c)
    elif pat == "tie":
        d.polygon([(X(-3), Y(y0)), (X(3), Y(y0)), (X(4), Y(52)), (X(0), Y(57)), (X(-4), Y(52))], fill=pattern_c)
    # Neck and head.
    d.rectangle([X(-4), Y(22), X(4), Y(29)], fill=skin)
    face = traits["face"]
    rx, ry, hy = {"round": (13, 13), "oval": (11, 14.5), "square": (13, 13)}[face] + (14,)
    style = traits["hair_style"]
    hat = traits["hat"]
    # Hair behind the head.
    if style == "long":
        d.rectangle([X(-rx - 2), Y(hy - 4), X(rx + 2), Y(hy + 16)], fill=hair)
    elif style == "curly":
        d.ellipse([X(-rx - 6), Y(hy - ry - 7), X(rx + 6), Y(hy + ry - 2)], fill=hair)
    elif style == "ponytail":
        d.ellipse([X(rx - 3), Y(hy - 2), X(rx + 7), Y(hy + 14)], fill=hair)
    head_box = [X(-rx), Y(hy - ry), X(rx), Y(hy + ry)]
    if face == "square":
        d.rounded_rectangle(head_box, radius=max(1, int(4 * u)), fill=skin)
    else:
        d.ellipse(head_box, fill=skin)
    # Hair on top of the head.
    if style in ("short", "long", "curly", "ponytail", "bun", "spiky"):
        d.chord([X(-rx - 1), Y(hy - ry - 1), X(rx + 1), Y(hy + ry * 0.5)], 180, 360, fill=hair)
    if style == "bun":
        d.ellipse([X(-6), Y(hy - ry - 11), X(6), Y(hy - ry + 1)], fill=hair)
    elif style == "spiky":
        for k in range(-2, 3):
            b = k * 5
            d.polygon([(X(b - 3.5), Y(hy - ry + 3)), (X(b + 3.5), Y(hy - ry + 3)), (X(b), Y(hy - ry - 8))], fill=hair)
    elif style == "mohawk":
        d.rectangle([X(-3.5), Y(hy - ry - 8), X(3.5), Y(hy - 2)], fill=hair)
    # Eyes, glasses, mouth, beard.
    ey = hy + 1
    for sgn in (-1, 1):
        d.ellipse([X(sgn * 5 - 2.8), Y(ey - 2.8), X(sgn * 5 + 2.8), Y(ey + 2.8)], fill=(250, 250, 250))
        d.ellipse([X(sgn * 5 - 1.8), Y(ey - 1.8), X(sgn * 5 + 1.8), Y(ey + 1.8)], fill=EYE_COLOURS[traits["eye_colour"]])
    g = traits["glasses"]
    gw = max(1, int(round(1.6 * u)))
    if g == "round":
        for sgn in (-1, 1):
            d.ellipse([X(sgn * 5 - 4.5), Y(ey - 4.5), X(sgn * 5 + 4.5), Y(ey + 4.5)], outline=(15, 15, 15), width=gw)
    elif g == "square":
        for sgn in (-1, 1):
            d.rectangle([X(sgn * 5 - 4.5), Y(ey - 4), X(sgn * 5 + 4.5), Y(ey + 4)], outline=(15, 15, 15), width=gw)
    elif g == "sunglasses":
        d.rectangle([X(-10.5), Y(ey - 3.5), X(10.5), Y(ey + 3.5)], fill=(10, 10, 12))
    if g != "none":
        line(-0.5, ey, 0.5, ey, (15, 15, 15), 1.6)
    beard_c = hair if traits["hair_colour"] not in ("white",) else (225, 225, 225)
    b = traits["beard"]
    if b == "full":
        d.chord([X(-rx), Y(hy - ry + 6), X(rx), Y(hy + ry + 3)], 0, 180, fill=beard_c)
    elif b == "moustache":
        d.rectangle([X(-6), Y(hy + 6), X(6), Y(hy + 8.5)], fill=beard_c)
    elif b == "goatee":
        d.rectangle([X(-3.5), Y(hy + 9), X(3.5), Y(hy + ry + 2)], fill=beard_c)
    if b != "full":
        line(
            -3.5,
            hy + 9.5 if b != "moustache" else hy + 10.5,
            3.5,
            hy + 9.5 if b != "moustache" else hy + 10.5,
            (150, 50, 50),
            1.3,
        )
    # Hat last: it sits on top of everything.
    hc = HATS[hat]
    if hat == "cap":
        d.chord([X(-rx - 1), Y(hy - ry - 3), X(rx + 1), Y(hy + 1)], 180, 360, fill=hc)
        d.rectangle([X(0), Y(hy - 3), X(rx + 8), Y(hy - 0.5)], fill=hc)
    elif hat == "beanie":
        d.chord([X(-rx - 1.5), Y(hy - ry - 5), X(rx + 1.5), Y(hy + 3)], 180, 360, fill=hc)
        d.rectangle([X(-rx - 1.5), Y(hy - 4), X(rx + 1.5), Y(hy - 0.5)], fill=_shade(hc, 0.8))
    elif hat == "top hat":
        d.rectangle([X(-rx - 4), Y(hy - ry + 1), X(rx + 4), Y(hy - ry + 4)], fill=hc)
        d.rectangle([X(-rx + 3), Y(hy - ry - 14), X(rx - 3), Y(hy - ry + 2)], fill=hc)
    elif hat == "headband":
        d.rectangle([X(-rx), Y(hy - 7), X(rx), Y(hy - 3.5)], fill=hc)


# ---------------------------------------------------------------------------------------
# The whole render
def render(
    world: World | None, person: Person | str, event: Event | str, render_seed: int, size: int | None = None
) -> Image.Image:
    """Render ``person`` in ``event`` as an RGB ``size`` × ``size`` image.

    Everything that varies between renders of the same pair comes from ``render_seed``:
    prop positions and mirroring, extra distractor props, the person's position, height,
    pose and stance, the lighting (brightness and colour cast) and pixel noise.
    Small images are drawn at twice the size and downsampled, which anti-aliases them.
    """
    if isinstance(person, str) or isinstance(event, str):
        if world is None:
            raise ConfigError("render needs a world to look up person / event ids")
        person = world.person(person) if isinstance(person, str) else person
        event = world.event(event) if isinstance(event, str) else event
    if size is None:
        if world is None:
            raise ConfigError("render needs a size when no world is given")
        size = world.config.image_size
    ss = 2 if size <= 128 else 1
    S = size * ss
    placed, rng = plan_scene(event, render_seed)
    img = Image.new("RGB", (S, S))
    d = ImageDraw.Draw(img)
    horizon = _draw_background(d, S, event, rng)

    # Props: back ones first (they stand behind), then the rest.
    col_x = (0.16, 0.84)
    for p in sorted(placed, key=lambda p: p.row != "back"):
        x = (col_x[p.side] + p.dx) * S
        if p.row == "back":
            by, s = (horizon + 0.02) * S, 0.42 * S * p.scale
        elif p.row == "top":
            by, s = (0.3 + p.dy) * S, 0.2 * S * p.scale
        elif p.row == "mid":
            by, s = (0.55 + p.dy) * S, 0.22 * S * p.scale
        else:
            by, s = (0.95 + p.dy) * S, 0.3 * S * p.scale
        if OBJECT_ZONES[p.name] == "floor" and p.row == "mid":
            # A floor object in the mid row stands further back, on the horizon line.
            by, s = (horizon + 0.05 + p.dy / 2) * S, s * 0.8
        draw_prop(d, p.name, x, by, s)

    # The person: large, roughly in the middle, with a random pose.
    H = rng.uniform(0.5, 0.6) * S
    fy = rng.uniform(0.93, 0.98) * S
    cx = (0.5 + rng.uniform(-0.07, 0.07)) * S
    pose = rng.choice(POSES)
    stance = rng.choice(("standing", "walking"))
    d.ellipse([cx - 0.2 * H, fy - 0.03 * H, cx + 0.2 * H, fy + 0.03 * H], fill=_shade(event.palette["ground"], 0.7))  # shadow
    _draw_person(d, person.traits, cx, fy, H, pose, stance)

    if ss > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    # Lighting (brightness and a slight colour cast) as a lookup table, then pixel noise
    # added with an offset; both run in Pillow's C code. Noise lives on a grid of at most
    # 64×64 cells so that large renders still compress well as PNG.
    nrng = np.random.default_rng(render_seed)
    light = nrng.uniform(0.8, 1.15) * nrng.uniform(0.94, 1.06, size=3)
    ramp = np.arange(256, dtype=np.float64)
    lut = np.concatenate([np.clip(np.rint(ramp * f), 0, 255) for f in light]).astype(np.uint8)
    img = img.point(lut.tolist())
    g = min(size, 64)
    noise = np.clip(np.rint(nrng.normal(0.0, 5.0, size=(g, g, 3))) + 128, 0, 255).astype(np.uint8)
    noise_img = Image.fromarray(noise, "RGB")
    if g < size:
        noise_img = noise_img.resize((size, size), Image.Resampling.NEAREST)
    return ImageChops.add(img, noise_img, scale=1.0, offset=-128)
