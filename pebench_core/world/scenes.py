"""Scene planning: which props a render shows and where they stand.

:func:`plan_scene` is shared by :func:`~pebench_core.world.drawing.render` and
:func:`objects_in`, so the objects POPE asks about are exactly the objects drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigError
from .catalogue import DISTRACTORS, OBJECT_ZONES, Event, World

# The six cells of a scene, and the rows an object of each zone may take, best first.
_ROWS = ("top", "mid", "bottom")
_ZONE_ROWS = {"sky": ("top",), "wall": ("mid", "top"), "floor": ("bottom", "mid"), "small": ("mid", "bottom")}


@dataclass(frozen=True)
class PlacedProp:
    """One prop of a planned scene: its cell (side and row), jitter and size."""

    name: str
    side: int  # 0 left, 1 right
    row: str  # top / mid / bottom / back
    dx: float  # horizontal jitter, fraction of image
    dy: float
    scale: float


def plan_scene(event: Event, render_seed: int) -> tuple[list[PlacedProp], random.Random]:
    """Place the event's props (always all of them) and 0-2 distractors in six cells
    (left/right × top/mid/bottom); a "back" prop takes the top and mid cells of a side.

    Also returns the ``random.Random(render_seed)`` stream it drew from: :func:`render`
    goes on drawing the background and the person from it, in that order."""
    rng = random.Random(render_seed)
    free = {(s, r) for s in (0, 1) for r in _ROWS}
    start = rng.randrange(2)  # which side the first prop goes to: mirrors the scene
    placed: list[PlacedProp] = []

    def put(name: str, i: int, scale: float) -> bool:
        zone = OBJECT_ZONES[name]
        sides = ((start + i) % 2, (start + i + 1) % 2)
        if zone == "back":
            for s in sides:
                if (s, "top") in free and (s, "mid") in free:
                    free.difference_update({(s, "top"), (s, "mid")})
                    placed.append(PlacedProp(name, s, "back", rng.uniform(-0.03, 0.03), 0.0, scale))
                    return True
            return False
        for row in _ZONE_ROWS[zone]:
            for s in sides:
                if (s, row) in free:
                    free.discard((s, row))
                    placed.append(PlacedProp(name, s, row, rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), scale))
                    return True
        return False

    for i, name in enumerate(event.props):
        put(name, i, rng.uniform(0.9, 1.1))
    n_extra = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
    pool = [d for d in DISTRACTORS if d not in event.props]
    for j in range(n_extra):
        name = pool.pop(rng.randrange(len(pool)))
        put(name, len(event.props) + j, rng.uniform(0.6, 0.75))
    return placed, rng


def objects_in(world: World | None, event: Event | str, render_seed: int) -> tuple[str, ...]:
    """Names of the objects drawn in the render of ``event`` with ``render_seed`` (sorted).

    The person does not change which objects are drawn, so no person is needed."""
    if isinstance(event, str):
        if world is None:
            raise ConfigError("objects_in needs a world to look up an event id")
        event = world.event(event)
    placed, _ = plan_scene(event, render_seed)
    return tuple(sorted({p.name for p in placed}))
