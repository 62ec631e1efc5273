"""Who lives in the world: names, visual traits, profiles, the forget splits, and
:func:`generate_world`, which draws all of them from one seed.

Every random draw comes from one ``random.Random`` stream in a fixed order, so the same
seed and :class:`~pebench_core.config.WorldConfig` always give the same people.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError
from .catalogue import (
    BEARDS,
    CITIES,
    EVENTS,
    GENERATOR_VERSION,
    OCCUPATION_CATEGORIES,
    SALIENT_TRAITS,
    TRAIT_VALUES,
    UNSEEN_EVENTS,
    Person,
    World,
)
from .settings import WorldConfig, forget_count

# ---------------------------------------------------------------------------------------
# Name parts. Fictitious people get invented surnames built from two syllables, which
# keeps them clear of famous real names; "real-world" people (the pre-training world)
# use a separate, disjoint pool so the two groups never share a name part.
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "female": (
        "Aveline",
        "Brisa",
        "Calista",
        "Delphine",
        "Elowen",
        "Fenna",
        "Giselle",
        "Halina",
        "Ilsa",
        "Jorunn",
        "Kaelin",
        "Liora",
        "Maelis",
        "Nerys",
        "Odalys",
        "Perrin",
        "Quilla",
        "Rosalind",
        "Seren",
        "Talia",
        "Ulrika",
        "Verity",
        "Wrenna",
        "Xanthe",
        "Yselda",
        "Zinnia",
        "Amarantha",
        "Brielle",
        "Corisande",
        "Dagny",
        "Esmae",
        "Flavia",
    ),
    "male": (
        "Aldric",
        "Bastian",
        "Corvin",
        "Dashiell",
        "Eamon",
        "Fabian",
        "Gideon",
        "Hollis",
        "Ignatius",
        "Jareth",
        "Kestrel",
        "Lucan",
        "Marius",
        "Niall",
        "Oberon",
        "Percival",
        "Quentin",
        "Rafferty",
        "Soren",
        "Tobias",
        "Ulric",
        "Valen",
        "Wystan",
        "Xavier",
        "Yorick",
        "Zebulon",
        "Anselm",
        "Barnaby",
        "Cassius",
        "Dorian",
        "Evander",
        "Florian",
    ),
}
SURNAME_HEADS = (
    "Ash",
    "Bram",
    "Cald",
    "Dorn",
    "Elm",
    "Fenn",
    "Garr",
    "Hald",
    "Ivel",
    "Jorr",
    "Kess",
    "Lorr",
    "Marr",
    "Norr",
    "Orrin",
    "Pell",
    "Quell",
    "Ross",
    "Sell",
    "Tamm",
    "Ulm",
    "Verr",
    "Wynn",
    "Yarr",
    "Zell",
)
SURNAME_TAILS = ("wick", "ford", "mere", "dale", "holt", "brook", "stead", "more", "vane", "ley", "ton", "ric", "den", "worth")
REAL_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "female": (
        "Marta",
        "Ingrid",
        "Noemi",
        "Oriana",
        "Paloma",
        "Renata",
        "Svea",
        "Tamsin",
        "Vanya",
        "Wilhelmina",
        "Adela",
        "Beatrix",
        "Clementine",
        "Dorothea",
        "Eulalie",
    ),
    "male": (
        "Anton",
        "Benedikt",
        "Cornelius",
        "Desmond",
        "Emil",
        "Fitzgerald",
        "Gunnar",
        "Horatio",
        "Ivo",
        "Jasper",
        "Konrad",
        "Leopold",
        "Magnus",
        "Nikodem",
        "Osric",
    ),
}
REAL_SURNAMES = (
    "Quillon",
    "Brantley",
    "Castellane",
    "Drummore",
    "Everly",
    "Fairbairn",
    "Grimaldo",
    "Hathersage",
    "Ingleby",
    "Jessamy",
    "Kilbride",
    "Lindqvist",
    "Montague",
    "Nettleship",
    "Ottaway",
    "Pemberly",
    "Ravensworth",
    "Sinclaire",
    "Thistlewood",
    "Underhill",
    "Valcourt",
    "Whitlock",
    "Yardley",
    "Zabrowski",
)


# ---------------------------------------------------------------------------------------
# Traits, people and splits
def _trait_codes(traits: Mapping[str, str]) -> list[int]:
    return [TRAIT_VALUES[t].index(traits[t]) for t in SALIENT_TRAITS]


def trait_distance(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    """Number of salient traits in which two people differ."""
    return sum(a[t] != b[t] for t in SALIENT_TRAITS)


def random_traits(rng: random.Random, gender: str) -> dict[str, str]:
    """One random trait set: each trait drawn from :data:`TRAIT_VALUES` in its order, then
    the beard drawn again (``"none"`` unless ``gender`` is male). No distance check."""
    t = {name: rng.choice(values) for name, values in TRAIT_VALUES.items()}
    # Beards only on men, and only sometimes: realism, and it keeps the trait informative.
    t["beard"] = rng.choice(BEARDS) if gender == "male" else "none"
    return t


def _pick_traits(rng: random.Random, gender: str, taken: np.ndarray, n_candidates: int = 48) -> dict[str, str]:
    """Greedy max-min: of ``n_candidates`` random trait sets keep the one farthest (in
    salient-trait Hamming distance) from everyone already drawn. This spreads identities
    out far beyond the required minimum, which is what makes them learnable."""
    cands = [random_traits(rng, gender) for _ in range(n_candidates)]
    if len(taken) == 0:
        return cands[0]
    codes = np.array([_trait_codes(c) for c in cands])  # (C, T)
    dist = (codes[:, None, :] != taken[None, :, :]).sum(-1).min(1)  # (C,)
    return cands[int(np.argmax(dist))]  # argmax takes the first best: deterministic


def _make_people(
    rng: random.Random,
    n: int,
    prefix: str,
    real: bool,
    names_taken: set[str],
    taken: list[list[int]],
    first_names: Mapping[str, tuple[str, ...]],
    surname: Any,
) -> list[Person]:
    cities = [(city, region) for region, cs in CITIES.items() for city in cs]
    categories = list(OCCUPATION_CATEGORIES)
    width = 3 if prefix == "p" else 2
    people = []
    for i in range(n):
        gender = rng.choice(("female", "male"))
        for _ in range(10_000):
            name = f"{rng.choice(first_names[gender])} {surname(rng)}"
            if name not in names_taken:
                break
        else:  # pragma: no cover - pools hold far more names than any allowed world
            raise ConfigError(f"ran out of unique names after {len(names_taken)} people")
        names_taken.add(name)
        traits = _pick_traits(rng, gender, np.array(taken, dtype=np.int64).reshape(len(taken), len(SALIENT_TRAITS)))
        taken.append(_trait_codes(traits))
        category = rng.choice(categories)
        city, region = rng.choice(cities)
        people.append(
            Person(
                id=f"{prefix}{i:0{width}d}",
                name=name,
                age=rng.randint(21, 74),
                gender=gender,
                profession=rng.choice(OCCUPATION_CATEGORIES[category]),
                occupation_category=category,
                birthplace=city,
                region=region,
                traits=traits,
                real=real,
            )
        )
    return people


def make_splits(person_ids: list[str], event_ids: list[str], share: float, rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """The forget sets of the three targets: ``forget_count(n, share)`` people and events
    drawn with ``rng``; target "both" forgets the same people and the same events at once."""
    if not 0.0 < share < 1.0:
        raise ConfigError(f"forget_share must be strictly between 0 and 1, got {share}")
    people = sorted(rng.sample(list(person_ids), forget_count(len(person_ids), share)))
    events = sorted(rng.sample(list(event_ids), forget_count(len(event_ids), share)))
    return {
        "person": {"forget_people": people, "forget_events": []},
        "event": {"forget_people": [], "forget_events": events},
        "both": {"forget_people": list(people), "forget_events": list(events)},
    }


def generate_world(cfg: WorldConfig, seed: int) -> World:
    """Generate the world for ``cfg`` from ``seed`` (pure function of both)."""
    if not isinstance(cfg, WorldConfig):
        raise ConfigError(f"generate_world expects a WorldConfig, got {type(cfg).__name__}")
    if not 1 <= cfg.n_events <= len(EVENTS):
        raise ConfigError(f"world.n_events must be between 1 and {len(EVENTS)}, got {cfg.n_events}")
    rng = random.Random(f"pebench-world:{seed}")
    names: set[str] = set()
    codes: list[list[int]] = []
    people = _make_people(
        rng, cfg.n_people, "p", False, names, codes, FIRST_NAMES, lambda r: r.choice(SURNAME_HEADS) + r.choice(SURNAME_TAILS)
    )
    real = _make_people(rng, cfg.n_real_people, "r", True, names, codes, REAL_FIRST_NAMES, lambda r: r.choice(REAL_SURNAMES))
    events = list(EVENTS[: cfg.n_events])
    splits = make_splits([p.id for p in people], [e.id for e in events], cfg.forget_share, rng)
    # The never-seen group comes last, from a stream of its own: adding it (or changing its
    # size) leaves every other person, event and split exactly as it was.
    unseen_rng = random.Random(f"pebench-unseen:{seed}")
    unseen = _make_people(
        unseen_rng, cfg.n_unseen_people, "u", False, names, codes, FIRST_NAMES,
        lambda r: r.choice(SURNAME_HEADS) + r.choice(SURNAME_TAILS),
    )  # fmt: skip
    return World(
        config=cfg,
        seed=seed,
        generator_version=GENERATOR_VERSION,
        people=people,
        real_people=real,
        events=events,
        splits=splits,
        unseen_people=unseen,
        unseen_events=list(UNSEEN_EVENTS[: cfg.n_unseen_events]),
    )
