"""The course material: every method chapter has its own notes and exercises."""

from __future__ import annotations

import re

import pytest

from pebench_core import course
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
