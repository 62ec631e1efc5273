"""Explorers: ipywidgets controls that choose among views computed once.

A control (a menu, a row of buttons, a slider) picks which child of an ipywidgets ``Stack``
is shown, and ``jslink`` ties the control's ``index`` to the stack's ``selected_index`` in
the front end, not in Python. So the same control works in a live notebook and in the
static book: papermill stores the widget state with the executed chapter, the book serves
the widget manager's JavaScript from its own ``_static`` (``book/_ext/pebench_pages.py``),
and the manager replays the state and the links with no kernel and no network. What a
control can show is therefore computed here, once: a figure becomes a PNG, a table its
HTML, and the page weight is what the views weigh (the world browser stores 64-pixel WebP
thumbnails, about a kilobyte each).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import pandas as pd
from ipywidgets.widgets.widget_string import HTMLStyle
from matplotlib.figure import Figure

from .data import Dataset, Item
from .errors import ConfigError
from .world import QUESTIONS

__all__ = ["CONTROLS", "Explorer", "chooser", "page_state", "view", "world_browser"]

# The controls a chooser can use, by name: a menu for long lists, buttons for a few options,
# a slider for an ordered setting (a learning rate, a step count).
CONTROLS = {"menu": W.Dropdown, "buttons": W.ToggleButtons, "slider": W.SelectionSlider}

# Which render a panel of the world browser shows, best first: the image a model trains on,
# else its held-out twin, else (real people, the never-seen group) the image of its own role.
ROLE_ORDER = ("train", "heldout", "pretrain", "pretrain_eval", "unseen")

# One layout for every view: thousands of panels would otherwise each store their own
# (a layout's state is about a kilobyte of defaults). Created on first use, in the kernel
# that displays them.
_SHARED: dict[str, Any] = {}


def _shared(name: str, make) -> Any:
    if name not in _SHARED or getattr(_SHARED[name], "comm", None) is None:
        _SHARED[name] = make()
    return _SHARED[name]


@dataclass
class Explorer:
    """A displayed explorer: its ``box`` (what a notebook shows), the ``controls`` a reader
    uses, the ``stacks`` they switch and the ``keys`` (labels) of the views, in control order.
    ``links`` keeps the front-end links alive with the explorer."""

    box: W.Box
    controls: tuple[W.Widget, ...]
    stacks: tuple[W.Stack, ...]
    keys: tuple[str, ...]
    links: list = field(default_factory=list, repr=False)

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def shown(self, *choice: int) -> W.Widget:
        """The view the explorer shows when its controls hold the indices ``choice``, resolved
        the way the front end resolves it (for tests and for a reader in Python)."""
        node: W.Widget = self.stacks[0]
        for k, index in enumerate(choice):
            node = node.children[index]
            if k + 1 < len(choice):
                node = next(c for c in node.children if isinstance(c, W.Stack))
        return node


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=fig.dpi)  # as the notebook shows a figure
    plt.close(fig)  # shown in the explorer only, not once more under it
    return buf.getvalue()


def view(content: Any) -> W.Widget:
    """One view: a matplotlib figure (shown at the size it was drawn), a DataFrame or Styler
    (its HTML table), a string of HTML, or a widget as it is."""
    if isinstance(content, W.Widget):
        return content
    if isinstance(content, Figure):
        # an <img> with the PNG inline, like a figure of the page itself (an Image widget would
        # show it through a blob: URL, which a page-checker cannot tell from a request)
        title = content._suptitle.get_text() if content._suptitle is not None else ""
        png = base64.b64encode(_png(content)).decode()
        content = f"<img class='pb-figure' alt='{html.escape(title or 'figure')}' src='data:image/png;base64,{png}'>"
    if isinstance(content, pd.DataFrame):
        plain = isinstance(content.index, pd.RangeIndex)  # row numbers say nothing: left out
        content = content.to_html(float_format=lambda x: f"{x:.3g}", na_rep="–", border=0, index=not plain)
    elif hasattr(content, "to_html"):  # a pandas Styler
        content = content.to_html()
    if isinstance(content, str):
        return W.HTML(value=content, layout=_shared("html", W.Layout), style=_shared("html_style", HTMLStyle))
    allowed = "a matplotlib Figure, a DataFrame or Styler, an HTML string, an ipywidget"
    raise ConfigError(f"explorers.view: cannot show a {type(content).__name__}; allowed: {allowed}")


def _control(kind: str, label: str, options: Sequence[str]) -> W.Widget:
    if kind not in CONTROLS:
        raise ConfigError(f"explorers: unknown control {kind!r}; allowed: {', '.join(CONTROLS)}")
    width = "auto" if kind == "buttons" else ("36em" if kind == "slider" else "30em")
    extra = {"style": {"description_width": "initial"}, "layout": W.Layout(width=width)}
    return CONTROLS[kind](options=list(options), index=0, description=label, **extra)


def chooser(label: str, views: Mapping[str, Any], control: str = "menu", intro: str = "") -> Explorer:
    """A control labelled ``label`` over ``views`` (label -> figure, table, HTML or widget,
    in order), the first one shown. ``control``: one of :data:`CONTROLS`; ``intro``: a line of
    HTML above the control."""
    if not views:
        raise ConfigError(f"explorers.chooser({label!r}): no views to choose from")
    keys = [str(k) for k in views]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"explorers.chooser({label!r}): two views share a label; labels must be unique")
    ctl = _control(control, label, keys)
    stack = W.Stack([view(v) for v in views.values()], selected_index=0)
    links = [W.jslink((ctl, "index"), (stack, "selected_index"))]
    parts = ([W.HTML(intro)] if intro else []) + [ctl, stack]
    return Explorer(W.VBox(parts), (ctl,), (stack,), tuple(keys), links)


# ----------------------------------------------------------------------------- the world browser


def _thumbnail(img, size: int) -> str:
    buf = io.BytesIO()
    # WebP at 64 px is a kilobyte, a PNG eight: 1,200 panels fit a light page
    img.convert("RGB").resize((size, size)).save(buf, format="WEBP", quality=70, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def _panel_item(person: str, event: str, by_pair: dict[tuple[str, str], list[Item]]) -> Item | None:
    found = by_pair.get((person, event), [])
    return min(found, key=lambda i: (ROLE_ORDER.index(i.role) if i.role in ROLE_ORDER else 99, i.id), default=None)


def _person_html(ds: Dataset, pid: str) -> str:
    p = ds.person(pid)
    profile = ", ".join(str(x) for x in (p.age, p.profession, p.birthplace and f"from {p.birthplace}") if x)
    return f"<p class='pb-who'><b>{html.escape(p.name)}</b>{html.escape(f' ({profile})' if profile else '')}</p>"


def _panel_html(ds: Dataset, item: Item, size: int) -> str:
    p, e = ds.person(item.person), ds.event(item.event)
    rows = [
        (QUESTIONS["person"], f"{p.name}."),
        (QUESTIONS["event"], item.description or e.description),
        ("Objects in the scene", ", ".join(item.objects) or "none listed"),
        ("Image", f"{item.id} (role {item.role})"),
    ]
    facts = "".join(f"<dt>{html.escape(q)}</dt><dd>{html.escape(a)}</dd>" for q, a in rows)
    alt = html.escape(f"{p.name} at {e.name}")
    return f"<div class='pb-panel'><img alt='{alt}' src='{_thumbnail(ds.image(item), size)}'><dl>{facts}</dl></div>"


# The panels' look, stated once in the browser rather than in each of its thousand panels.
STYLE = """<style>
.pb-panel{display:flex;gap:1.2em;flex-wrap:wrap;align-items:flex-start}
.pb-panel img{width:192px;height:192px;max-width:none;image-rendering:pixelated;border:1px solid #ccc}
.pb-panel dl{margin:0;max-width:34em}.pb-panel dt{font-weight:600;margin-top:.35em}.pb-panel dd{margin:0 0 0 1em}
.pb-who{margin:.2em 0 .6em 0}
</style>"""


NO_IMAGE = (
    "<p class='pb-none'>No image of this person at this event (real-world people appear only in the "
    "pre-training images, the never-seen people only at never-seen events).</p>"
)


def world_browser(
    ds: Dataset,
    people: Sequence[str] | None = None,
    events: Sequence[str] | None = None,
    size: int = 64,
    max_panels: int = 1500,
) -> Explorer:
    """A person menu and an event menu over ``ds``, showing the pair's image and its answers.

    ``people`` and ``events`` (ids) default to every person (fictitious, real, never-seen)
    and every event; at most ``max_panels`` images are stored (people are cut, in menu
    order, to fit). ``size``: the stored thumbnail's side in pixels (shown at 192 px). The
    person menu switches an outer stack (one child per person); the event menu is linked to
    every person's inner stack, so the two menus choose independently with no kernel."""
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
    chosen: list[tuple[str, list[Item | None]]] = []
    stored = 0
    for pid in person_ids:
        row = [_panel_item(pid, eid, by_pair) for eid in event_ids]
        n = sum(it is not None for it in row)
        if n and chosen and stored + n > max_panels:
            break
        if n:
            chosen.append((pid, row))
            stored += n
    if not chosen:
        raise ConfigError("world_browser: none of the chosen people appears at any of the chosen events")

    none = view(NO_IMAGE)  # one model, shown wherever a pair has no image
    inner = [W.Stack([view(_panel_html(ds, it, size)) if it else none for it in row], selected_index=0) for _, row in chosen]
    outer = W.Stack([W.VBox([view(_person_html(ds, pid)), st]) for (pid, _), st in zip(chosen, inner)], selected_index=0)
    person = _control("menu", "person", [ds.person(pid).name for pid, _ in chosen])
    event = _control("menu", "event", [ds.event(e).name for e in event_ids])
    links = [W.jslink((person, "index"), (outer, "selected_index"))]
    links += [W.jslink((event, "index"), (st, "selected_index")) for st in inner]
    left_out = len(person_ids) - len(chosen)
    note = (
        [view(f"<p><em>{left_out} more people are left out to keep the page light (max_panels={max_panels}).</em></p>")]
        if left_out
        else []
    )
    box = W.VBox([view(STYLE), W.HBox([person, event], layout=W.Layout(flex_flow="row wrap")), outer, *note])
    keys = tuple(f"{pid}|{eid}" for pid, row in chosen for eid, it in zip(event_ids, row) if it is not None)
    return Explorer(box, (person, event), (outer,), keys, links)


# ----------------------------------------------------------------------------- the stored state

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# A progress bar (a stage's tqdm drawn in a kernel) is frozen on a static page: its view goes.
PROGRESS_MODELS = frozenset({"FloatProgressModel", "IntProgressModel"})


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value[len("IPY_MODEL_") :]] if value.startswith("IPY_MODEL_") else []
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def _closure(state: dict, roots: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in state]
    while todo:
        mid = todo.pop()
        if mid not in seen:
            seen.add(mid)
            todo += [r for r in _refs(state[mid].get("state", {})) if r in state and r not in seen]
    return seen


def _defaults() -> dict[str, dict[str, Any]]:
    """Every widget class's synced defaults as JSON, by model name."""
    out: dict[str, dict[str, Any]] = {}
    todo: list[type] = [W.Widget]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        traits = cls.class_traits(sync=True)
        name = traits.get("_model_name")
        if name is None:
            continue
        found = {}
        for key, trait in traits.items():
            try:
                found[key] = json.loads(json.dumps(trait.default()))
            except (TypeError, ValueError):
                continue  # a default with no JSON form (an instance) is never dropped
        out.setdefault(name.default(), found)
    return out


def page_state(nb: dict) -> int:
    """Keep what a static page needs of an executed notebook's widgets, in place; the bytes saved.

    The explorers' views stay with the models they reach and the links between those models;
    progress bars' views go, with every model only they reach. Each kept model stores only what
    differs from its class's default (the widget manager fills in the rest, and takes a model's
    class from the record's ``model_name``), which halves the state of a thousand small panels."""
    meta = nb.get("metadata", {})
    state = meta.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    before = len(json.dumps(meta.get("widgets", {})))
    kept_views = set()
    for cell in nb.get("cells", []):
        outputs = []
        for out in cell.get("outputs", []):
            view_id = out.get("data", {}).get(WIDGET_VIEW, {}).get("model_id")
            if view_id is not None:
                reach = _closure(state, [view_id])
                if view_id not in state or any(state[m].get("model_name") in PROGRESS_MODELS for m in reach):
                    continue
                kept_views.add(view_id)
            outputs.append(out)
        if "outputs" in cell:
            cell["outputs"] = outputs
    keep = _closure(state, sorted(kept_views))
    links = [
        m
        for m, s in state.items()
        if s.get("model_name") in ("LinkModel", "DirectionalLinkModel") and set(_refs(s.get("state", {}))) <= keep
    ]
    keep |= _closure(state, links)
    if not keep:
        meta.pop("widgets", None)
        return before
    defaults = _defaults()
    slim = {}
    for mid in sorted(keep):
        record = dict(state[mid])
        base = defaults.get(record.get("model_name"), {})
        record["state"] = {k: v for k, v in record.get("state", {}).items() if k not in base or base[k] != v}
        slim[mid] = record
    meta["widgets"] = {WIDGET_STATE: {**meta["widgets"][WIDGET_STATE], "state": slim}}
    return before - len(json.dumps(meta["widgets"]))
