"""The drawable objects: one small drawing function per object, in a name → function table.

Every function draws on a :class:`Pen`, whose coordinates are *units* (a tenth of the
prop's height) measured from the prop's bottom centre, x to the right and y **up**.
:func:`draw_prop` looks a name up in :data:`PROPS` and draws it; the catalogue's objects
(:data:`~pebench_core.world.catalogue.OBJECT_ZONES`) and this table hold the same names
(tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from PIL import ImageDraw

from ..errors import ConfigError
from .catalogue import RGB


@dataclass(frozen=True)
class Pen:
    """Draws shapes given in prop units onto ``d``: bottom centre (``cx``, ``by``) in canvas
    pixels, ``u`` pixels per unit. y grows upwards in units and downwards in pixels."""

    d: ImageDraw.ImageDraw
    cx: float
    by: float
    u: float

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, **kw: Any) -> None:
        cx, by, u = self.cx, self.by, self.u
        self.d.rectangle([cx + x0 * u, by - y1 * u, cx + x1 * u, by - y0 * u], fill=fill, **kw)

    def oval(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        cx, by, u = self.cx, self.by, self.u
        self.d.ellipse([cx + x0 * u, by - y1 * u, cx + x1 * u, by - y0 * u], fill=fill)

    def poly(self, pts: list[tuple[float, float]], fill: RGB) -> None:
        cx, by, u = self.cx, self.by, self.u
        self.d.polygon([(cx + x * u, by - y * u) for x, y in pts], fill=fill)

    def line(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, w: float = 0.8) -> None:
        cx, by, u = self.cx, self.by, self.u
        self.d.line([cx + x0 * u, by - y0 * u, cx + x1 * u, by - y1 * u], fill=fill, width=max(1, int(w * u)))


PropDrawing = Callable[[Pen], None]
# Object name -> its drawing. Filled by the @_prop decorators below, in catalogue order.
PROPS: dict[str, PropDrawing] = {}


def _prop(name: str) -> Callable[[PropDrawing], PropDrawing]:
    def register(fn: PropDrawing) -> PropDrawing:
        if name in PROPS:  # pragma: no cover - a typo when adding a prop
            raise ValueError(f"prop {name!r} is drawn twice")
        PROPS[name] = fn
        return fn

    return register


def draw_prop(d: ImageDraw.ImageDraw, name: str, cx: float, by: float, s: float) -> None:
    """Draw object ``name`` with its bottom centre at (cx, by) and height about ``s``."""
    try:
        drawing = PROPS[name]
    except KeyError:
        raise ConfigError(f"no drawing for object {name!r}; drawable objects: {', '.join(sorted(PROPS))}") from None
    drawing(Pen(d, cx, by, s / 10.0))  # one "unit": a tenth of the prop height


# ---------------------------------------------------------------------------------------
# The objects. In the sky:
@_prop("sun")
def _sun(pen: Pen) -> None:
    pen.oval(-4, 2, 4, 10, (255, 210, 30))
    for a in range(0, 360, 45):
        c, s_ = math.cos(math.radians(a)), math.sin(math.radians(a))
        pen.line(c * 4.5, 6 + s_ * 4.5, c * 6, 6 + s_ * 6, (255, 190, 20), 0.7)


@_prop("moon")
def _moon(pen: Pen) -> None:
    pen.oval(-4, 2, 4, 10, (250, 245, 200))
    pen.oval(-1.5, 3.5, 5.5, 10.5, (12, 18, 60))  # night-sky bite makes a crescent


@_prop("star")
def _star(pen: Pen) -> None:
    for k, (ox, oy) in enumerate(((-3, 6), (3, 9), (1, 3), (-5, 1.5))):
        r = 2.2 if k == 0 else 1.4
        pen.poly(
            [(ox + r * math.cos(math.radians(90 + 144 * i)), oy + r * math.sin(math.radians(90 + 144 * i))) for i in range(5)],
            (255, 245, 150),
        )
        pen.oval(ox - r * 0.5, oy - r * 0.5, ox + r * 0.5, oy + r * 0.5, (255, 245, 150))


@_prop("bird")
def _bird(pen: Pen) -> None:
    pen.line(-4, 6, 0, 4, (30, 30, 40), 0.9)
    pen.line(0, 4, 4, 6, (30, 30, 40), 0.9)
    pen.oval(-0.8, 3.3, 0.8, 4.8, (30, 30, 40))


@_prop("airplane")
def _airplane(pen: Pen) -> None:
    pen.rect(-5, 4, 5, 6, (245, 245, 250))
    pen.poly([(-1, 6), (1, 6), (-2, 10), (-3, 10)], (220, 50, 50))
    pen.poly([(-1, 4), (1, 4), (-2, 1), (-3, 1)], (200, 200, 210))
    pen.poly([(-5, 6), (-4, 6), (-5.5, 8.5)], (220, 50, 50))


@_prop("balloon")
def _balloon(pen: Pen) -> None:
    pen.line(0, 0, 0, 5, (80, 80, 80), 0.4)
    pen.oval(-2.5, 5, 2.5, 11, (240, 40, 80))
    pen.oval(1.5, 3, 5.5, 8.5, (60, 140, 250))


# On the wall:
@_prop("painting")
def _painting(pen: Pen) -> None:
    pen.rect(-5, 1, 5, 9, (150, 100, 30))
    pen.rect(-4, 2, 4, 8, (120, 200, 240))
    pen.poly([(-4, 2), (-1, 6), (2, 2)], (60, 150, 60))
    pen.oval(1, 5, 3, 7, (250, 200, 40))


@_prop("clock")
def _clock(pen: Pen) -> None:
    pen.oval(-4, 1, 4, 9, (40, 40, 45))
    pen.oval(-3.3, 1.7, 3.3, 8.3, (250, 250, 250))
    pen.line(0, 5, 0, 7.5, (20, 20, 20), 0.6)
    pen.line(0, 5, 2, 5, (20, 20, 20), 0.6)


@_prop("screen")
def _screen(pen: Pen) -> None:
    pen.rect(-6, 1, 6, 10, (240, 240, 245), outline=(40, 40, 50), width=max(1, int(0.5 * pen.u)))
    for k, hgt in enumerate((3, 6, 4.5)):
        pen.rect(-4 + 3 * k, 2, -2.5 + 3 * k, 2 + hgt, ((40, 110, 230), (240, 120, 30), (40, 170, 80))[k])


@_prop("board")
def _board(pen: Pen) -> None:
    pen.rect(-6, 1, 6, 9, (20, 95, 55), outline=(140, 90, 40), width=max(1, int(0.6 * pen.u)))
    pen.line(-4, 6, 1, 6, (240, 240, 240), 0.4)
    pen.line(-4, 4, 3, 4, (240, 240, 240), 0.4)


@_prop("banner")
def _banner(pen: Pen) -> None:
    pen.rect(-6, 4, 6, 9, (240, 60, 90))
    pen.rect(-4.5, 5.7, 4.5, 7.3, (255, 255, 255))
    pen.line(-6, 0, -6, 9, (90, 90, 90), 0.5)
    pen.line(6, 0, 6, 9, (90, 90, 90), 0.5)


# Large, behind (a side's top and mid cells):
@_prop("tower")
def _tower(pen: Pen) -> None:
    pen.poly([(-3, 0), (3, 0), (0.8, 10), (-0.8, 10)], (120, 110, 100))
    pen.rect(-2, 4, 2, 5, (90, 80, 70))
    pen.rect(-0.5, 10, 0.5, 11.5, (90, 80, 70))


@_prop("building")
def _building(pen: Pen) -> None:
    pen.rect(-3.5, 0, 3.5, 10, (140, 150, 170))
    for yy in range(1, 10, 2):
        for xx in (-2.5, -0.5, 1.5):
            pen.rect(xx, yy, xx + 1, yy + 1, (250, 235, 140))


@_prop("barn")
def _barn(pen: Pen) -> None:
    pen.rect(-4.5, 0, 4.5, 5.5, (200, 35, 30))
    pen.poly([(-5, 5.5), (5, 5.5), (0, 9)], (120, 30, 25))
    pen.rect(-1.5, 0, 1.5, 3.5, (250, 250, 250))


@_prop("cabin")
def _cabin(pen: Pen) -> None:
    pen.rect(-4.5, 0, 4.5, 5, (140, 85, 40))
    for yy in (1, 2, 3, 4):
        pen.line(-4.5, yy, 4.5, yy, (100, 60, 25), 0.3)
    pen.poly([(-5.5, 5), (5.5, 5), (0, 9)], (80, 45, 20))
    pen.rect(2, 6.5, 3.2, 9.5, (100, 100, 100))
    pen.oval(2.3, 9.5, 4.5, 11, (210, 210, 210))  # chimney smoke


@_prop("mountain")
def _mountain(pen: Pen) -> None:
    pen.poly([(-6, 0), (6, 0), (0, 10)], (115, 110, 125))
    pen.poly([(-1.8, 7), (1.8, 7), (0, 10)], (250, 250, 255))


@_prop("train")
def _train(pen: Pen) -> None:
    pen.rect(-6, 1, 6, 8, (30, 120, 200))
    pen.rect(-6, 5.5, 6, 7, (240, 240, 240))
    for xx in (-4.5, -1, 2.5):
        pen.rect(xx, 3.5, xx + 2, 5.5, (200, 230, 250))
    pen.oval(-5, 0, -3, 2, (30, 30, 30))
    pen.oval(3, 0, 5, 2, (30, 30, 30))


@_prop("bookshelf")
def _bookshelf(pen: Pen) -> None:
    spines = ((210, 40, 40), (40, 90, 200), (240, 200, 40), (40, 150, 70))
    pen.rect(-4.5, 0, 4.5, 11, (110, 65, 30))
    for yy in (1, 4.5, 8):
        for k, xx in enumerate((-3.8, -2.5, -1.2, 0.1, 1.4, 2.7)):
            pen.rect(xx, yy, xx + 1.1, yy + 2.6, spines[(k + int(yy)) % 4])


# Standing on the ground:
@_prop("tree")
def _tree(pen: Pen) -> None:
    pen.rect(-0.8, 0, 0.8, 4, (110, 70, 30))
    pen.oval(-3.5, 3, 3.5, 10, (30, 130, 45))


@_prop("flower")
def _flower(pen: Pen) -> None:
    pen.line(0, 0, 0, 5, (40, 140, 40), 0.6)
    for ox, oy in ((-1.2, 6), (1.2, 6), (0, 7.2), (0, 4.8)):
        pen.oval(ox - 1.1, oy - 1.1, ox + 1.1, oy + 1.1, (240, 70, 150))
    pen.oval(-0.7, 5.3, 0.7, 6.7, (255, 220, 40))


@_prop("cow")
def _cow(pen: Pen) -> None:
    pen.rect(-4, 2.5, 3, 6, (250, 250, 250))
    pen.oval(-2.5, 3.5, -0.5, 5.5, (30, 30, 30))
    pen.oval(0.5, 4, 2.5, 5.8, (30, 30, 30))
    pen.rect(2.5, 4.5, 5, 7, (250, 250, 250))
    pen.rect(4.2, 4.5, 5.2, 5.6, (250, 170, 170))
    for xx in (-3.5, -2, 1, 2.3):
        pen.rect(xx, 0, xx + 0.8, 2.5, (60, 60, 60))


@_prop("giraffe")
def _giraffe(pen: Pen) -> None:
    pen.rect(-3, 3, 1.5, 5.5, (240, 185, 60))
    pen.poly([(0.2, 5), (1.5, 5), (3.6, 10), (2.6, 10)], (240, 185, 60))
    pen.rect(2.3, 9.5, 4.5, 11, (240, 185, 60))
    for xx, yy in ((-2, 3.7), (0, 4.2), (2.2, 7.5)):
        pen.oval(xx - 0.5, yy - 0.5, xx + 0.5, yy + 0.5, (140, 80, 30))
    for xx in (-2.8, -1.5, 0, 1):
        pen.rect(xx, 0, xx + 0.5, 3, (200, 150, 50))


@_prop("dog")
def _dog(pen: Pen) -> None:
    pen.rect(-3, 1.5, 2, 4, (170, 110, 50))
    pen.oval(1.2, 3, 4, 6, (170, 110, 50))
    pen.oval(2.8, 4.5, 3.6, 5.3, (20, 20, 20))
    for xx in (-2.7, 1):
        pen.rect(xx, 0, xx + 0.8, 1.7, (140, 90, 40))
    pen.line(-3, 3.5, -4.5, 5, (170, 110, 50), 0.6)


@_prop("fence")
def _fence(pen: Pen) -> None:
    for xx in (-5, -2.5, 0, 2.5, 5):
        pen.poly([(xx - 0.8, 0), (xx + 0.8, 0), (xx + 0.8, 5.5), (xx, 6.5), (xx - 0.8, 5.5)], (235, 225, 200))
    pen.rect(-5.5, 1.5, 5.5, 2.3, (200, 185, 150))
    pen.rect(-5.5, 4, 5.5, 4.8, (200, 185, 150))


@_prop("table")
def _table(pen: Pen) -> None:
    pen.rect(-5, 3.5, 5, 4.5, (150, 95, 45))
    pen.rect(-4.5, 0, -3.7, 3.5, (120, 75, 35))
    pen.rect(3.7, 0, 4.5, 3.5, (120, 75, 35))


@_prop("car")
def _car(pen: Pen) -> None:
    pen.rect(-5.5, 1, 5.5, 4, (220, 40, 40))
    pen.poly([(-3, 4), (3, 4), (2, 6.5), (-2, 6.5)], (220, 40, 40))
    pen.poly([(-2.3, 4.2), (2.3, 4.2), (1.6, 6), (-1.6, 6)], (190, 225, 250))
    pen.oval(-4.5, 0, -2, 2.5, (25, 25, 25))
    pen.oval(2, 0, 4.5, 2.5, (25, 25, 25))


@_prop("bicycle")
def _bicycle(pen: Pen) -> None:
    d, cx, by, u = pen.d, pen.cx, pen.by, pen.u
    for xx in (-3, 3):
        d.ellipse([cx + (xx - 2.4) * u, by - 4.8 * u, cx + (xx + 2.4) * u, by], outline=(30, 30, 30), width=max(1, int(0.6 * u)))
    pen.line(-3, 2.4, 0, 2.4, (30, 120, 220), 0.7)
    pen.line(0, 2.4, 3, 2.4, (30, 120, 220), 0.7)
    pen.line(-3, 2.4, -1, 5.5, (30, 120, 220), 0.7)
    pen.line(0, 2.4, 2, 5.5, (30, 120, 220), 0.7)
    pen.line(-1, 5.5, 2, 5.5, (30, 120, 220), 0.7)


@_prop("boat")
def _boat(pen: Pen) -> None:
    pen.poly([(-5.5, 3), (5.5, 3), (4, 0.5), (-4, 0.5)], (200, 60, 40))
    pen.line(0, 3, 0, 11, (90, 60, 30), 0.5)
    pen.poly([(0.3, 4), (0.3, 10.5), (4.5, 4)], (250, 250, 250))


@_prop("cart")
def _cart(pen: Pen) -> None:
    pen.poly([(-4, 3), (4.5, 3), (5, 7), (-4.5, 7)], (180, 185, 195))
    for yy in (4, 5, 6):
        pen.line(-4, yy, 4.5, yy, (120, 125, 135), 0.3)
    pen.line(-4.5, 7, -5.5, 8.5, (60, 60, 60), 0.6)
    pen.oval(-3.5, 0, -2, 1.5, (30, 30, 30))
    pen.oval(2.5, 0, 4, 1.5, (30, 30, 30))


@_prop("speaker")
def _speaker(pen: Pen) -> None:
    pen.rect(-3, 0, 3, 9, (35, 35, 40))
    pen.oval(-2, 1, 2, 5, (90, 90, 100))
    pen.oval(-1.2, 6, 1.2, 8.2, (90, 90, 100))


@_prop("statue")
def _statue(pen: Pen) -> None:
    pen.rect(-2.5, 0, 2.5, 2.5, (180, 175, 165))
    pen.rect(-1.2, 2.5, 1.2, 7.5, (235, 230, 220))
    pen.oval(-1.3, 7.3, 1.3, 9.8, (235, 230, 220))
    pen.line(1.2, 6.5, 2.5, 9.5, (235, 230, 220), 0.7)


@_prop("snowman")
def _snowman(pen: Pen) -> None:
    pen.oval(-3, 0, 3, 5, (252, 252, 255))
    pen.oval(-2.1, 4.2, 2.1, 8.2, (252, 252, 255))
    pen.rect(-1.6, 8, 1.6, 10.5, (30, 30, 30))
    pen.poly([(0, 6.3), (0, 5.8), (1.8, 6)], (250, 130, 20))


@_prop("telescope")
def _telescope(pen: Pen) -> None:
    pen.line(0, 4, -2.5, 0, (60, 60, 60), 0.5)
    pen.line(0, 4, 2.5, 0, (60, 60, 60), 0.5)
    pen.poly([(-3, 4.5), (-2.3, 3.4), (4, 8.3), (3.3, 9.4)], (210, 210, 220))


@_prop("umbrella")
def _umbrella(pen: Pen) -> None:
    d, cx, by, u = pen.d, pen.cx, pen.by, pen.u
    pen.line(0, 0, 0, 8, (90, 90, 90), 0.5)
    d.pieslice([cx - 5.5 * u, by - 11 * u, cx + 5.5 * u, by - 5 * u], 180, 360, fill=(250, 80, 60))
    d.pieslice([cx - 2 * u, by - 11 * u, cx + 2 * u, by - 5 * u], 180, 360, fill=(255, 240, 80))


@_prop("guitar")
def _guitar(pen: Pen) -> None:
    pen.oval(-2.5, 0, 2.5, 4, (200, 110, 40))
    pen.oval(-2, 3, 2, 6, (200, 110, 40))
    pen.oval(-0.7, 2.3, 0.7, 3.7, (40, 25, 10))
    pen.rect(-0.4, 5.5, 0.4, 10, (80, 50, 20))


@_prop("microphone")
def _microphone(pen: Pen) -> None:
    pen.line(0, 0, 0, 7, (60, 60, 60), 0.5)
    pen.line(-2, 0, 2, 0, (60, 60, 60), 0.7)
    pen.oval(-1, 6.5, 1, 9, (150, 150, 160))


@_prop("camera")
def _camera(pen: Pen) -> None:
    pen.line(0, 0, -2, 0, (50, 50, 50), 0.4)
    pen.line(0, 5, -2, 0, (50, 50, 50), 0.4)
    pen.line(0, 5, 2, 0, (50, 50, 50), 0.4)
    pen.rect(-3, 5, 3, 9, (35, 35, 40))
    pen.oval(-1.5, 5.5, 1.5, 8.5, (100, 160, 220))
    pen.rect(1, 9, 2.5, 9.8, (35, 35, 40))


@_prop("suitcase")
def _suitcase(pen: Pen) -> None:
    pen.rect(-3, 0, 3, 6.5, (240, 140, 30))
    pen.rect(-1, 6.5, 1, 7.5, (60, 60, 60), outline=(60, 60, 60))
    pen.line(-1.5, 0.5, -1.5, 6, (200, 110, 20), 0.4)
    pen.line(1.5, 0.5, 1.5, 6, (200, 110, 20), 0.4)


@_prop("lamp")
def _lamp(pen: Pen) -> None:
    pen.line(0, 0, 0, 7.5, (50, 50, 50), 0.5)
    pen.line(-1.5, 0, 1.5, 0, (50, 50, 50), 0.7)
    pen.poly([(-2.5, 7), (2.5, 7), (1.5, 10), (-1.5, 10)], (255, 230, 120))


@_prop("plant")
def _plant(pen: Pen) -> None:
    pen.poly([(-2, 0), (2, 0), (2.5, 3), (-2.5, 3)], (190, 90, 50))
    for xx, yy in ((-1.5, 5), (1.5, 5), (0, 6.5)):
        pen.oval(xx - 1.6, yy - 2, xx + 1.6, yy + 2, (40, 160, 60))


@_prop("flag")
def _flag(pen: Pen) -> None:
    pen.line(-3, 0, -3, 10, (90, 90, 90), 0.5)
    pen.rect(-3, 6, 3, 10, (40, 80, 210))
    pen.rect(-3, 7.4, 3, 8.6, (250, 250, 250))


# Hand-sized:
@_prop("cup")
def _cup(pen: Pen) -> None:
    d, cx, by, u = pen.d, pen.cx, pen.by, pen.u
    pen.poly([(-2, 0), (2, 0), (2.5, 4.5), (-2.5, 4.5)], (250, 250, 250))
    d.arc([cx + 1.5 * u, by - 3.8 * u, cx + 4 * u, by - 1.2 * u], 270, 90, fill=(250, 250, 250), width=max(1, int(0.6 * u)))
    pen.rect(-2.1, 3.5, 2.1, 4.3, (120, 70, 30))


@_prop("plate")
def _plate(pen: Pen) -> None:
    pen.oval(-4, 0, 4, 2, (250, 250, 250))
    pen.oval(-1.8, 0.5, 1.8, 1.6, (200, 100, 60))


@_prop("book")
def _book(pen: Pen) -> None:
    pen.rect(-3, 0, 3, 4.5, (40, 90, 200))
    pen.rect(-2.6, 0.3, 2.6, 1, (250, 250, 240))
    pen.rect(-0.4, 0, 0.4, 4.5, (20, 50, 140))


@_prop("laptop")
def _laptop(pen: Pen) -> None:
    pen.poly([(-4, 0), (4, 0), (4.5, 1), (-4.5, 1)], (150, 150, 160))
    pen.rect(-3.3, 1, 3.3, 6, (70, 70, 80))
    pen.rect(-2.8, 1.6, 2.8, 5.4, (140, 200, 250))


@_prop("bag")
def _bag(pen: Pen) -> None:
    d, cx, by, u = pen.d, pen.cx, pen.by, pen.u
    pen.rect(-3, 0, 3, 5, (230, 50, 120))
    d.arc([cx - 1.8 * u, by - 7 * u, cx + 1.8 * u, by - 3.5 * u], 180, 360, fill=(120, 30, 70), width=max(1, int(0.6 * u)))


@_prop("apple")
def _apple(pen: Pen) -> None:
    pen.oval(-2, 0, 2, 4, (220, 30, 30))
    pen.line(0, 4, 0.5, 5.2, (90, 60, 20), 0.4)
    pen.oval(0.5, 4.2, 2, 5.2, (50, 160, 50))


@_prop("bottle")
def _bottle(pen: Pen) -> None:
    pen.rect(-1.5, 0, 1.5, 5, (30, 120, 60))
    pen.rect(-0.6, 5, 0.6, 7.5, (30, 120, 60))
    pen.rect(-1.5, 1.5, 1.5, 3.2, (245, 235, 200))


@_prop("fish")
def _fish(pen: Pen) -> None:
    pen.oval(-3, 0.5, 2, 3.5, (250, 150, 40))
    pen.poly([(1.5, 2), (3.5, 0.3), (3.5, 3.7)], (250, 150, 40))
    pen.oval(-2.2, 2, -1.4, 2.8, (20, 20, 20))


@_prop("dumbbell")
def _dumbbell(pen: Pen) -> None:
    pen.rect(-3, 1.6, 3, 2.4, (150, 150, 155))
    pen.rect(-4.5, 0, -2.5, 4, (40, 40, 45))
    pen.rect(2.5, 0, 4.5, 4, (40, 40, 45))


@_prop("cake")
def _cake(pen: Pen) -> None:
    pen.rect(-3, 0, 3, 3, (250, 200, 220))
    pen.rect(-3, 2.3, 3, 3, (240, 90, 140))
    for xx in (-1.5, 0, 1.5):
        pen.rect(xx - 0.2, 3, xx + 0.2, 4.5, (250, 250, 120))
