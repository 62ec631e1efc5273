"""What a course needs of each method chapter: its "what to look for" text and its exercises,
rendered for the chapter from the notes on the method's registry entry
(:attr:`pebench_core.methods.Method.notes`).

Every method with a chapter (:func:`pebench_core.methods.chapter_methods`) brings its own notes
(a test checks); a method registered in user code without notes simply has no exercise section.
The text is MyST markdown ({cite} roles and $math$ allowed).
"""

from __future__ import annotations

from .errors import ConfigError
from .methods import Exercise, MethodNotes, get

__all__ = ["Exercise", "MethodNotes", "notes_for", "look_for_markdown", "exercises_markdown"]

_KIND_LABEL = {"think": "pen and paper", "run": "run it"}


def notes_for(method: str) -> MethodNotes | None:
    """The notes of ``method``, or ``None`` when it has none (or is not registered)."""
    try:
        return get(method).notes
    except ConfigError:
        return None


def look_for_markdown(method: str) -> str:
    """The chapter's "what to look for" text for ``method``, or a sentence saying it has none."""
    notes = notes_for(method)
    if notes is None:
        return f"`{method}` has no teaching notes (give its registry entry `notes=MethodNotes(...)`)."
    return notes.look_for


def exercises_markdown(method: str) -> str:
    """``method``'s exercises as MyST ``exercise`` directives, each followed by its ``solution``
    (folded: hidden until the reader opens it). Labels are ``ex-<method>-<k>``, unique across
    the book because each method has one chapter. Empty when the method has no notes."""
    notes = notes_for(method)
    if notes is None:
        return ""
    blocks = []
    for k, ex in enumerate(notes.exercises, start=1):
        if ex.kind not in _KIND_LABEL:
            raise ValueError(f"exercise {ex.title!r} of {method!r}: kind {ex.kind!r}; allowed: {sorted(_KIND_LABEL)}")
        label = f"ex-{method}-{k}"
        # four backticks: a question or solution may itself hold a fenced command
        blocks.append(
            f"````{{exercise}} {ex.title} ({_KIND_LABEL[ex.kind]})\n:label: {label}\n\n{ex.question}\n````\n\n"
            f"````{{solution}} {label}\n:class: dropdown\n\n{ex.solution}\n````"
        )
    return "\n\n".join(blocks)
