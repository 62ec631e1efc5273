"""The embedded synthetic PEBench world (design: The world): people, events, rendering, on-disk writing.

PEBench (Xu et al., arXiv 2503.12545) photographs 200 fictitious people in 40 event scenes.
We cannot ship those images, so this package *draws* a world with the same structure using
Pillow only: every person is a unique combination of large, saturated, drawable traits
(hair, glasses, hat, shirt colour and pattern …) and every event is a scene with its own
palette, layout and iconic props. Everything is derived from one integer seed, so the
same seed and :class:`~pebench_core.config.WorldConfig` give byte-identical files.

The rooms, each importing only from the ones above it:

* :mod:`~pebench_core.world.catalogue` — the fixed vocabulary: questions and refusals,
  drawable objects and their zones, the 40 events, professions and cities, visual traits,
  and the records :class:`Event`, :class:`Person`, :class:`World`;
* :mod:`~pebench_core.world.people` — names, trait sampling, people, forget splits and
  :func:`generate_world`;
* :mod:`~pebench_core.world.scenes` — where a render's props stand (:func:`objects_in`
  tells POPE what was drawn);
* :mod:`~pebench_core.world.props` — one drawing function per object, in the name →
  function table :data:`PROPS`;
* :mod:`~pebench_core.world.drawing` — backgrounds, the person, and :func:`render`;
* :mod:`~pebench_core.world.io` — the image plan, POPE questions, atomic
  :func:`write_world`, :func:`read_world` and :func:`world_digest`.

Public API::

    generate_world(cfg, seed) -> World
    render(world, person, event, render_seed, size=None) -> PIL.Image.Image
    objects_in(world, event, render_seed) -> tuple[str, ...]   # props drawn, for POPE
    write_world(world, out_dir, progress=True, workers=None) -> Path
    read_world(out_dir) -> World

The on-disk layout written by :func:`write_world` is read back by
:func:`pebench_core.data.load_dataset`.
"""

from .catalogue import (
    BEARDS,
    CITIES,
    DISTRACTORS,
    EVENTS,
    EYE_COLOURS,
    FACE_SHAPES,
    GENERATOR_VERSION,
    GLASSES,
    HAIR_COLOURS,
    HAIR_STYLES,
    HATS,
    LAYOUT_LOOKALIKES,
    LOOKALIKES,
    MIN_TRAIT_DISTANCE,
    OBJECT_ZONES,
    OBJECTS,
    OCCUPATION_CATEGORIES,
    PARAPHRASES,
    POPE_ANSWERS,
    POPE_TEMPLATE,
    POSES,
    QUESTIONS,
    REFUSALS,
    RGB,
    SALIENT_TRAITS,
    SHIRT_COLOURS,
    SHIRT_PATTERNS,
    SKIN_TONES,
    TRAIT_VALUES,
    TROUSER_COLOURS,
    UNSEEN_EVENTS,
    Event,
    Person,
    World,
    expected_counts,
    keyword_words,
)
from .drawing import render
from .io import plan_images, read_world, world_digest, write_world
from .people import (
    FIRST_NAMES,
    REAL_FIRST_NAMES,
    REAL_SURNAMES,
    SURNAME_HEADS,
    SURNAME_TAILS,
    generate_world,
    make_splits,
    random_traits,
    trait_distance,
)
from .props import PROPS, draw_prop
from .scenes import objects_in

__all__ = [
    # catalogue
    "GENERATOR_VERSION",
    "RGB",
    "QUESTIONS",
    "POPE_TEMPLATE",
    "POPE_ANSWERS",
    "REFUSALS",
    "OBJECT_ZONES",
    "OBJECTS",
    "DISTRACTORS",
    "LOOKALIKES",
    "LAYOUT_LOOKALIKES",
    "EVENTS",
    "OCCUPATION_CATEGORIES",
    "CITIES",
    "SKIN_TONES",
    "HAIR_COLOURS",
    "HAIR_STYLES",
    "FACE_SHAPES",
    "EYE_COLOURS",
    "GLASSES",
    "BEARDS",
    "HATS",
    "SHIRT_COLOURS",
    "SHIRT_PATTERNS",
    "TROUSER_COLOURS",
    "UNSEEN_EVENTS",
    "PARAPHRASES",
    "SALIENT_TRAITS",
    "MIN_TRAIT_DISTANCE",
    "TRAIT_VALUES",
    "POSES",
    "Event",
    "Person",
    "World",
    "expected_counts",
    "keyword_words",
    # people
    "FIRST_NAMES",
    "SURNAME_HEADS",
    "SURNAME_TAILS",
    "REAL_FIRST_NAMES",
    "REAL_SURNAMES",
    "trait_distance",
    "random_traits",
    "make_splits",
    "generate_world",
    # scenes, props, drawing
    "objects_in",
    "PROPS",
    "draw_prop",
    "render",
    # io
    "plan_images",
    "write_world",
    "read_world",
    "world_digest",
]
