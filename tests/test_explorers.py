"""The ipywidgets explorers: a control linked in the front end to the views it chooses among,
the world browser's two menus resolving to the right pair's image, bad choices refused
clearly, and the stored state a page keeps (explorers in, progress bars out, defaults off)."""

from __future__ import annotations

import json
from pathlib import Path

import ipywidgets as W
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from pebench_core import explorers
from pebench_core.book import tidy_for_the_page
from pebench_core.config import ConfigError
from pebench_core.data import load_dataset


def _links(ex: explorers.Explorer) -> set[tuple[str, str, str, str]]:
    return {(ln.source[0].model_id, ln.source[1], ln.target[0].model_id, ln.target[1]) for ln in ex.links}


def test_a_chooser_links_its_control_to_its_views_in_order():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    table = pd.DataFrame({"answer": ["Ada", None]}, index=["img-1", "img-2"])
    ex = explorers.chooser("method", {"a figure": fig, "a table": table, "html": "<b>bold</b>"})
    (ctl,), (stack,) = ex.controls, ex.stacks
    assert ex.keys == ("a figure", "a table", "html") and list(ctl.options) == list(ex.keys)
    assert _links(ex) == {(ctl.model_id, "index", stack.model_id, "selected_index")}
    assert ex.shown(0).value.startswith("<img class='pb-figure' alt='figure' src='data:image/png;base64,iVBORw0KGgo")  # untitled
    assert "<table" in ex.shown(1).value and "Ada" in ex.shown(1).value and "nan" not in ex.shown(1).value
    assert ex.shown(2).value == "<b>bold</b>"
    assert plt.fignum_exists(fig.number) is False  # shown in the explorer only, not once more below it
    assert isinstance(explorers.chooser("x", {"a": "1", "b": "2"}, control="slider").controls[0], W.SelectionSlider)


def test_a_chooser_refuses_what_it_cannot_show():
    with pytest.raises(ConfigError, match="no views"):
        explorers.chooser("x", {})
    with pytest.raises(ConfigError, match="unknown control 'knob'; allowed: menu, buttons, slider"):
        explorers.chooser("x", {"a": "1"}, control="knob")
    with pytest.raises(ConfigError, match="cannot show a int"):
        explorers.chooser("x", {"a": 3})


def test_the_world_browser_resolves_each_pair_to_its_own_image(smoke_world_dir: Path):
    ds = load_dataset(smoke_world_dir)
    people = [p.id for p in ds.people[:3]] + [ds.real_people[0].id]
    events = [e.id for e in ds.events[:5]]
    ex = explorers.world_browser(ds, people=people, events=events, size=16)
    person, event = ex.controls
    assert list(person.options) == [ds.person(p).name for p in people]
    assert list(event.options) == [ds.event(e).name for e in events]
    pairs = {(it.person, it.event) for it in ds.items if it.person in people and it.event in events}
    assert set(ex.keys) == {f"{p}|{e}" for p, e in pairs}
    # the person menu drives the outer stack, the event menu every person's inner stack
    outer = ex.stacks[0]
    inner = [next(c for c in box.children if isinstance(c, W.Stack)) for box in outer.children]
    assert _links(ex) == {(person.model_id, "index", outer.model_id, "selected_index")} | {
        (event.model_id, "index", st.model_id, "selected_index") for st in inner
    }
    for i, pid in enumerate(people):
        for j, eid in enumerate(events):
            shown = ex.shown(i, j).value
            if (pid, eid) in pairs:
                assert f"{ds.person(pid).name} at {ds.event(eid).name}" in shown and "data:image/webp;base64," in shown
            else:
                assert "No image of this person at this event" in shown
    assert str(smoke_world_dir) not in json.dumps([ex.shown(0, j).value for j in range(len(events))])


def test_the_world_browser_names_a_bad_choice(smoke_world_dir: Path):
    ds = load_dataset(smoke_world_dir)
    with pytest.raises(ConfigError, match="unknown people"):
        explorers.world_browser(ds, people=["nobody"])
    with pytest.raises(ConfigError, match="size must be between 8 and 512"):
        explorers.world_browser(ds, size=4)
    with pytest.raises(ConfigError, match="at least one person"):
        explorers.world_browser(ds, people=[])


def _record(w: W.Widget) -> dict:
    return {
        "model_module": w._model_module,
        "model_module_version": w._model_module_version,
        "model_name": w._model_name,
        "state": json.loads(json.dumps(w.get_state())),
    }


def _view(w: W.Widget) -> dict:
    return {
        "output_type": "display_data",
        "data": {explorers.WIDGET_VIEW: {"model_id": w.model_id}, "text/plain": "x"},
        "metadata": {},
    }


def test_a_page_keeps_its_explorers_and_drops_progress_bars_and_defaults():
    ex = explorers.chooser("pick", {"one": "<p>1</p>", "two": "<p>2</p>"})
    bar = W.HBox([W.HTML("finetune"), W.FloatProgress(value=0.57), W.HTML("57%")])
    models = [ex.box, *ex.box.children, *ex.stacks[0].children, *ex.links, bar, *bar.children]
    models += [m.layout for m in models if hasattr(m, "layout")] + [m.style for m in models if hasattr(m, "style")]
    state = {m.model_id: _record(m) for m in models}
    nb = {
        "metadata": {"widgets": {explorers.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}},
        "cells": [{"cell_type": "code", "metadata": {}, "source": "", "outputs": [_view(bar), _view(ex.box)]}],
    }
    tidy_for_the_page(nb, {}, root=Path("/nowhere"))
    outputs = nb["cells"][0]["outputs"]
    assert [o["data"][explorers.WIDGET_VIEW]["model_id"] for o in outputs] == [ex.box.model_id]
    kept = nb["metadata"]["widgets"][explorers.WIDGET_STATE]["state"]
    gone = {bar.model_id, *(c.model_id for c in bar.children)}
    assert not gone & set(kept), "a progress bar's models stayed on the page"
    assert {ex.box.model_id, ex.stacks[0].model_id, ex.links[0].model_id, ex.controls[0].model_id} <= set(kept)
    html = kept[ex.stacks[0].children[1].model_id]["state"]
    assert html["value"] == "<p>2</p>" and "description" not in html and "_dom_classes" not in html
    assert kept[ex.links[0].model_id]["state"]["source"] == ["IPY_MODEL_" + ex.controls[0].model_id, "index"]


def test_a_page_without_explorers_stores_no_widget_state():
    bar = W.FloatProgress(value=0.5)
    nb = {
        "metadata": {
            "widgets": {explorers.WIDGET_STATE: {"state": {bar.model_id: _record(bar), bar.layout.model_id: _record(bar.layout)}}}
        },
        "cells": [{"cell_type": "code", "metadata": {}, "source": "", "outputs": [_view(bar)]}],
    }
    tidy_for_the_page(nb, {}, root=Path("/nowhere"))
    assert "widgets" not in nb["metadata"] and nb["cells"][0]["outputs"] == []
