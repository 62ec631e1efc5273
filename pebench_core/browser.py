"""A world browser that needs no kernel: pick a person and an event, see their image.

The web book is static, so a widget whose callback runs in Python shows only its first
state there. This browser renders every (person, event) panel once, in Python, into one
HTML fragment, and switching between them is a line of JavaScript on the two menus: it
works in the built book (offline too: the images are inlined), in a live notebook and in
an exported HTML file alike. The page weight is bounded by ``max_panels``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from dataclasses import dataclass
from typing import Sequence

from .data import Dataset, Item

__all__ = ["WorldBrowser", "world_browser"]

# Which render a panel shows, best first: the image a model trains on, else its held-out
# twin, else (real people, the never-seen group) the image of its own role.
ROLE_ORDER = ("train", "heldout", "pretrain", "pretrain_eval", "unseen")

_SWITCH = (
    "var b=this.closest('.pb-browser'),k=b.querySelector('.pb-person').value+'|'+b.querySelector('.pb-event').value,"
    "hit=false;b.querySelectorAll('.pb-panel').forEach(function(d){var on=d.dataset.key===k;d.hidden=!on;hit=hit||on;});"
    "b.querySelector('.pb-none').hidden=hit;"
)

_STYLE = """<style>
.pb-browser{font-family:inherit;margin:.5em 0 1em 0}
.pb-browser select{margin:0 1em .6em .3em;font-size:.95em;max-width:18em}
.pb-panel{display:flex;gap:1.2em;align-items:flex-start;flex-wrap:wrap}
.pb-panel[hidden],.pb-none[hidden]{display:none}
.pb-panel img{width:192px;height:192px;image-rendering:pixelated;border:1px solid #ccc}
.pb-panel dl{margin:0;max-width:34em}.pb-panel dt{font-weight:600;margin-top:.35em}.pb-panel dd{margin:0 0 0 1em}
</style>"""


@dataclass(frozen=True)
class WorldBrowser:
    """The browser's HTML (``html``), and what it holds: ``keys`` are its panels'
    ``person|event`` keys, in menu order."""

    html: str
    keys: tuple[str, ...]

    def _repr_html_(self) -> str:
        return self.html


def _data_uri(img, size: int) -> str:
    buf = io.BytesIO()
    img.convert("RGB").resize((size, size)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _panel_item(ds: Dataset, person: str, event: str, by_pair: dict[tuple[str, str], list[Item]]) -> Item | None:
    found = by_pair.get((person, event), [])
    return min(found, key=lambda i: (ROLE_ORDER.index(i.role) if i.role in ROLE_ORDER else 99, i.id), default=None)


def _facts(ds: Dataset, item: Item) -> str:
    from .world import QUESTIONS

    p, e = ds.person(item.person), ds.event(item.event)
    profile = ", ".join(str(x) for x in (p.age, p.profession, p.birthplace and f"from {p.birthplace}") if x)
    rows = [
        (QUESTIONS["person"], f"{p.name}." + (f" ({profile})" if profile else "")),
        (QUESTIONS["event"], item.description or e.description),
        ("Objects in the scene", ", ".join(item.objects) or "none listed"),
        ("Image", f"{item.id} (role {item.role})"),
    ]
    return "<dl>" + "".join(f"<dt>{html.escape(q)}</dt><dd>{html.escape(a)}</dd>" for q, a in rows) + "</dl>"


def world_browser(
    ds: Dataset,
    people: Sequence[str] | None = None,
    events: Sequence[str] | None = None,
    size: int = 64,
    max_panels: int = 1500,
) -> WorldBrowser:
    """A kernel-free browser of ``ds``: a person menu, an event menu and the image of the pair.

    ``people`` and ``events`` (ids) default to every person (fictitious, real, never-seen)
    and every event; the panels are the pairs that have an image, at most ``max_panels`` of
    them (the people are cut, in menu order, to fit). ``size`` is the stored image side in
    pixels (shown at 192 px).
    """
    from .errors import ConfigError

    all_people = [*ds.people, *ds.real_people, *ds.unseen_people]
    all_events = [*ds.events, *ds.unseen_events]
    person_ids = list(people) if people is not None else [p.id for p in all_people]
    event_ids = list(events) if events is not None else [e.id for e in all_events]
    for name, ids, known in (("people", person_ids, all_people), ("events", event_ids, all_events)):
        unknown = sorted(set(ids) - {x.id for x in known})
        if unknown:
            raise ConfigError(f"world_browser: unknown {name} {unknown[:5]}; allowed: ids of the dataset's {name}")
    if not person_ids or not event_ids:
        raise ConfigError("world_browser: needs at least one person and one event")
    if not 8 <= size <= 512:
        raise ConfigError(f"world_browser: size must be between 8 and 512 pixels, got {size}")

    by_pair: dict[tuple[str, str], list[Item]] = {}
    for it in ds.items:
        by_pair.setdefault((it.person, it.event), []).append(it)
    panels: list[tuple[str, Item]] = []
    kept: list[str] = []
    for pid in person_ids:
        mine = [(f"{pid}|{eid}", it) for eid in event_ids if (it := _panel_item(ds, pid, eid, by_pair)) is not None]
        if kept and len(panels) + len(mine) > max_panels:
            break
        panels += mine
        kept.append(pid)
    if not panels:
        raise ConfigError("world_browser: none of the chosen people appears at any of the chosen events")

    uid = "pb-" + hashlib.sha256(repr((str(ds.root), kept, event_ids, size)).encode()).hexdigest()[:10]
    first_p, first_e = panels[0][0].split("|")
    opts_p = "".join(
        f'<option value="{html.escape(p)}"{" selected" if p == first_p else ""}>{html.escape(ds.person(p).name)}</option>'
        for p in kept
    )
    opts_e = "".join(
        f'<option value="{html.escape(e)}"{" selected" if e == first_e else ""}>{html.escape(ds.event(e).name)}</option>'
        for e in event_ids
    )
    body = "".join(
        f'<div class="pb-panel" data-key="{html.escape(key)}"{"" if n == 0 else " hidden"}>'
        f'<img alt="{html.escape(ds.person(it.person).name)} at {html.escape(ds.event(it.event).name)}" '
        f'src="{_data_uri(ds.image(it), size)}">{_facts(ds, it)}</div>'
        for n, (key, it) in enumerate(panels)
    )
    left_out = len(person_ids) - len(kept)
    note = f"<p><em>{left_out} more people are left out to keep the page light (max_panels={max_panels}).</em></p>"
    out = (
        f'{_STYLE}<div class="pb-browser" id="{uid}">'
        f'<label>person<select class="pb-person" onchange="{_SWITCH}">{opts_p}</select></label>'
        f'<label>event<select class="pb-event" onchange="{_SWITCH}">{opts_e}</select></label>'
        f'<p class="pb-none" hidden>No image of this person at this event (real-world people appear only in '
        f"the pre-training images, the never-seen people only at never-seen events).</p>{body}"
        f"{note if left_out else ''}</div>"
    )
    return WorldBrowser(out, tuple(k for k, _ in panels))
