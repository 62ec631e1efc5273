"""The course material: every method chapter has its own notes and exercises, and the
kernel-free world browser holds one panel per pair and rejects bad choices clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pebench_core import course
from pebench_core.browser import world_browser
from pebench_core.config import ConfigError
from pebench_core.data import load_dataset
from pebench_core.methods import chapter_methods


def test_every_method_chapter_has_its_own_notes():
    methods = [m.name for m in chapter_methods()]
    assert methods, "no method chapters registered"
    missing = [m for m in methods if course.notes_for(m) is None]
    assert not missing, f"method chapters without teaching notes: {missing}"
    looks = [course.look_for_markdown(m) for m in methods]
    assert len(set(looks)) == len(looks), "two methods share their 'what to look for' text"
    titles = [ex.title for m in methods for ex in course.notes_for(m).exercises]
    assert len(set(titles)) == len(titles), "an exercise title is used by two methods"
    for m in methods:
        assert len(course.notes_for(m).exercises) >= 2, m


def test_exercises_markdown_is_one_folded_solution_per_exercise():
    notes = course.notes_for("ga")
    md = course.exercises_markdown("ga")
    labels = re.findall(r":label: (\S+)", md)
    assert labels == [f"ex-ga-{k}" for k in range(1, len(notes.exercises) + 1)]
    solutions = re.findall(r"````\{solution\} (\S+)\n:class: dropdown", md)
    assert solutions == labels
    assert md.count("````{exercise}") == len(notes.exercises)
    assert notes.exercises[0].question in md and notes.exercises[0].solution in md


def test_a_method_without_notes_has_no_exercises_and_says_so():
    assert course.exercises_markdown("no-such-method") == ""
    assert "no teaching notes" in course.look_for_markdown("no-such-method")


def test_an_exercise_of_an_unknown_kind_is_refused():
    from pebench_core.methods import METHODS, Method, register

    bad = course.MethodNotes("x", (course.Exercise("t", "q", "s", kind="essay"),))
    register(Method("_test_bad_kind", loss=lambda inp, **_: None, title="t", summary="s", formula="f", notes=bad))
    try:
        with pytest.raises(ValueError, match="kind 'essay'.*allowed"):
            course.exercises_markdown("_test_bad_kind")
    finally:
        METHODS.pop("_test_bad_kind")


def test_world_browser_has_a_panel_per_pair_and_switches_in_the_page(smoke_world_dir: Path):
    ds = load_dataset(smoke_world_dir)
    people = [p.id for p in ds.people[:2]]
    events = [e.id for e in ds.events]
    wb = world_browser(ds, people=people, events=events, size=16)
    pairs = {(it.person, it.event) for it in ds.items if it.person in people and it.event in events}
    assert set(wb.keys) == {f"{p}|{e}" for p, e in pairs}
    html = wb._repr_html_()
    assert html.count('class="pb-panel"') == len(wb.keys)
    # only the first panel is shown; the menus' onchange switches panels without a kernel
    assert html.count('class="pb-panel" data-key') == len(wb.keys)
    assert len(re.findall(r'data-key="[^"]+" hidden', html)) == len(wb.keys) - 1
    assert html.count("onchange=") == 2 and "data:image/png;base64," in html
    assert str(smoke_world_dir) not in html


def test_world_browser_errors_name_the_parameter(smoke_world_dir: Path):
    ds = load_dataset(smoke_world_dir)
    with pytest.raises(ConfigError, match="unknown people"):
        world_browser(ds, people=["nobody"])
    with pytest.raises(ConfigError, match="size must be between 8 and 512"):
        world_browser(ds, size=4)
    with pytest.raises(ConfigError, match="at least one person"):
        world_browser(ds, people=[])
