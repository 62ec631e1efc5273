"""The unlearning methods (design: Unlearning methods): one module per method, each holding its
loss, its registry entry, its own settings and its teaching notes; :mod:`.registry` is the list.

To add a method, write one module (in this package or anywhere on the path): **implement** the
loss, **register** a :class:`Method` entry, **configure** it by name::

    @dataclass(frozen=True)
    class Settings:
        cap: float = setting(2.0, POSITIVE, "the NLL past which an answer is not pushed")

    def capped_ga_loss(inputs, *, retain_weight=1.0, beta=0.1, state=None, cap=2.0): ...

    register(Method("capped-ga", loss=capped_ga_loss, title=..., summary=..., formula=...,
                    settings=Settings, notes=MethodNotes(...)))
    # PEBENCH_PLUGINS=my_module pebench run --set unlearn.methods=ga,capped-ga --set unlearn.capped-ga.cap=3

A command line or a chapter imports the modules named in ``PEBENCH_PLUGINS`` before it reads
the registry. The built-in modules register here, in the order the book presents them.
"""

from __future__ import annotations

from . import bgd, dpo, ga, gd, kl, npo, po, rmu, simnpo, siu, task_vector, undial
from .registry import (
    CHAPTER_COMMAND,
    METHODS,
    NLLR,
    PLUGINS_VARIABLE,
    Exercise,
    Method,
    MethodNotes,
    balanced,
    chapter_methods,
    get,
    load_plugins,
    names,
    register,
    runs_on,
    setting,
    settings_keys,
    settings_of,
    settings_record,
    settings_table,
    single_concept,
)

__all__ = [
    "Method",
    "MethodNotes",
    "Exercise",
    "setting",
    "METHODS",
    "BUILT_IN",
    "NLLR",
    "CHAPTER_COMMAND",
    "PLUGINS_VARIABLE",
    "register",
    "get",
    "names",
    "settings_of",
    "settings_record",
    "settings_table",
    "settings_keys",
    "default_methods",
    "chapter_methods",
    "single_concept",
    "balanced",
    "runs_on",
    "load_plugins",
]

for _module in (ga, gd, kl, po, dpo, npo, simnpo, undial, siu, rmu, task_vector):
    register(_module.METHOD)
for _entry in bgd.METHODS:
    register(_entry)

BUILT_IN = tuple(METHODS)  # the methods this package ships (the profiles' default run)


def default_methods() -> tuple[str, ...]:
    """The profiles' default ``unlearn.methods``: every built-in method meant for the default run."""
    return tuple(n for n in BUILT_IN if METHODS[n].default)
