"""Datasets on disk and in memory: loaders, forget/retain splits and QA (design: The world; Injection).

Two sources give the same in-memory :class:`Dataset`:

* :func:`load_dataset` reads a folder written by :func:`pebench_core.world.write_world`
  (``world.json``, ``manifest.jsonl``, ``pope.jsonl``, ``images/``);
* :func:`load_pebench_folder` reads the real PEBench release (image folders named by
  person plus an annotation CSV; see its docstring for the exact layout).

Items carry a *role*: ``train`` (fictitious renders that fine-tuning sees), ``heldout``
(new renders of the same pairs, never trained on: generality), ``pretrain`` (the
pre-training world: real-world people in every event) and ``pretrain_eval`` (held-out
pre-training renders: the "real" metrics and POPE).

:func:`split_sets` cuts a dataset into forget / retain sets for one target, and
:func:`training_examples` lists the question-answer pairs that build the base, finetune
and goal models.
"""

from __future__ import annotations

import csv as csv_module
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image, UnidentifiedImageError

from .errors import TARGETS, ConfigError
from .world import EVENTS, OBJECTS, PARAPHRASES, POPE_ANSWERS, POPE_TEMPLATE, QUESTIONS, REFUSALS, Event, Person, make_splits
from .world.settings import forget_count

ROLES = ("train", "heldout", "pretrain", "pretrain_eval", "unseen")
QA_KINDS = ("person", "event", "pope")
STAGES = ("base", "finetune", "goal")


@dataclass(frozen=True)
class Item:
    """One image. ``description`` is set only when a real dataset describes each image
    separately; otherwise the event's description applies."""

    id: str
    path: Path
    person: str
    event: str
    role: str
    render_seed: int  # -1 for real photographs
    objects: tuple[str, ...] = ()
    description: str | None = None


@dataclass(frozen=True)
class QA:
    """One question about one image, with its reference answer."""

    item_id: str
    image_path: Path
    question: str
    answer: str
    kind: str  # person / event / pope
    person: str
    event: str
    object: str = ""  # the object a POPE question asks about


@dataclass
class Dataset:
    """A loaded dataset: people, events, forget splits and images.

    ``source`` is ``"synthetic"`` or ``"pebench"``; ``has_heldout`` says whether held-out
    images exist (the real release has one image per pair, hence usually none).
    """

    root: Path
    people: list[Person]
    real_people: list[Person]
    events: list[Event]
    splits: dict[str, dict[str, list[str]]]
    items: list[Item]
    pope: list[dict[str, Any]] = field(default_factory=list)
    source: str = "synthetic"
    has_heldout: bool = True
    image_size: int | None = None
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # world.json (synthetic) or loader info
    # The never-seen group (role "unseen"): people and events no model trains on.
    unseen_people: list[Person] = field(default_factory=list)
    unseen_events: list[Event] = field(default_factory=list)
    _index: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _lookup(self) -> dict[str, Any]:
        if not self._index:
            self._index["person"] = {p.id: p for p in [*self.people, *self.real_people, *self.unseen_people]}
            self._index["event"] = {e.id: e for e in [*self.events, *self.unseen_events]}
            self._index["item"] = {i.id: i for i in self.items}
        return self._index

    def person(self, pid: str) -> Person:
        try:
            return self._lookup()["person"][pid]
        except KeyError:
            raise KeyError(f"no person with id {pid!r} in {self.root}") from None

    def event(self, eid: str) -> Event:
        try:
            return self._lookup()["event"][eid]
        except KeyError:
            raise KeyError(f"no event with id {eid!r} in {self.root}") from None

    def item(self, item_id: str) -> Item:
        return self._lookup()["item"][item_id]

    def items_where(
        self, role: str | Iterable[str] | None = None, people: Iterable[str] | None = None, events: Iterable[str] | None = None
    ) -> list[Item]:
        """Items matching every given filter (None = no filter), in dataset order."""
        roles = {role} if isinstance(role, str) else (set(role) if role is not None else None)
        ps = set(people) if people is not None else None
        es = set(events) if events is not None else None
        return [
            i
            for i in self.items
            if (roles is None or i.role in roles) and (ps is None or i.person in ps) and (es is None or i.event in es)
        ]

    def first_item(self, role: str = "train", person: str | None = None, event: str | None = None) -> Item | None:
        """The first image of ``role`` showing ``person`` at ``event`` (None: any), or None: a real
        folder need not hold every (person, event) pair."""
        found = self.items_where(
            role=role, people=None if person is None else [person], events=None if event is None else [event]
        )
        return found[0] if found else None

    def twins(self, n: int | None = None) -> list[tuple[Item, Item]]:
        """Up to ``n`` (training image, held-out image) pairs of the same person at the same event."""
        heldout = {(i.person, i.event): i for i in reversed(self.items_where(role="heldout"))}
        out = [(i, heldout[i.person, i.event]) for i in self.items_where(role="train") if (i.person, i.event) in heldout]
        return out[:n]

    def image(self, item: Item | str) -> Image.Image:
        """The item's picture as an RGB image; an unreadable file is a ConfigError."""
        if isinstance(item, str):
            item = self.item(item)
        return _open_rgb(item.path)

    def description(self, item: Item) -> str:
        return item.description or self.event(item.event).description


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None


# ---------------------------------------------------------------------------------------
# The synthetic world folder
def _read_jsonl(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} line {n} is not valid JSON: {exc.msg}") from None
            missing = [k for k in required if not isinstance(row, dict) or k not in row]
            if missing:
                raise ConfigError(f"{path} line {n} lacks field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def load_dataset(path: str | Path, check_images: bool = True) -> Dataset:
    """Read a world folder written by :func:`pebench_core.world.write_world`.

    Missing or malformed ``world.json`` / ``manifest.jsonl`` and images listed in the
    manifest but absent on disk are :class:`ConfigError` naming the file.
    """
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} does not exist (write one with `pebench world --out {root}`)")
    wj = root / "world.json"
    if not wj.is_file():
        raise ConfigError(f"{wj} is missing: {root} is not a world folder written by `pebench world`")
    try:
        world = json.loads(wj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{wj} is not valid JSON: {exc}") from None
    needed = ("people", "real_people", "events", "splits", "seed", "config")
    missing = [k for k in needed if not isinstance(world, dict) or k not in world]
    if missing:
        raise ConfigError(f"{wj} is malformed: it lacks {', '.join(missing)}")
    try:
        people = [Person.from_dict(p) for p in world["people"]]
        real = [Person.from_dict(p) for p in world["real_people"]]
        events = [Event.from_dict(e) for e in world["events"]]
        unseen_people = [Person.from_dict(p) for p in world.get("unseen_people", ())]
        unseen_events = [Event.from_dict(e) for e in world.get("unseen_events", ())]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{wj} is malformed: a person or event entry lacks {exc}") from None

    man = root / "manifest.jsonl"
    if not man.is_file():
        raise ConfigError(f"{man} is missing: the world folder {root} is incomplete; write it again")
    rows = _read_jsonl(man, ("id", "path", "person", "event", "role", "render_seed"))
    items = []
    for row in rows:
        rel = Path(row["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise ConfigError(f"{man}: image path {row['path']!r} must be relative to the folder")
        if row["role"] not in ROLES:
            raise ConfigError(f"{man}: image {row['id']} has unknown role {row['role']!r}; allowed: {', '.join(ROLES)}")
        p = root / rel
        if check_images and not p.is_file():
            raise ConfigError(f"image {p} listed in {man} is missing; write the world again")
        items.append(
            Item(
                id=row["id"],
                path=p,
                person=row["person"],
                event=row["event"],
                role=row["role"],
                render_seed=int(row["render_seed"]),
                objects=tuple(row.get("objects", ())),
            )
        )
    pj = root / "pope.jsonl"
    pope = _read_jsonl(pj, ("id", "image", "object", "answer")) if pj.is_file() else []
    ds = Dataset(
        root=root,
        people=people,
        real_people=real,
        events=events,
        splits={t: {k: list(v) for k, v in s.items()} for t, s in world["splits"].items()},
        items=items,
        pope=pope,
        source="synthetic",
        has_heldout=any(i.role == "heldout" for i in items),
        image_size=world["config"].get("image_size"),
        seed=int(world["seed"]),
        meta=world,
        unseen_people=unseen_people,
        unseen_events=unseen_events,
    )
    known_p, known_e = {p.id for p in people + real + unseen_people}, {e.id for e in events + unseen_events}
    bad = next((i for i in items if i.person not in known_p or i.event not in known_e), None)
    if bad is not None:
        raise ConfigError(f"{man}: image {bad.id} names a person or event ({bad.person}, {bad.event}) that {wj} does not define")
    return ds


# ---------------------------------------------------------------------------------------
# The real PEBench release
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "image": ("image", "image_path", "file", "filename", "file_name", "path", "img"),
    "person": ("person", "name", "person_name", "entity", "identity"),
    "event": ("event", "event_name", "scene", "event_type"),
    "description": ("description", "event_description", "caption", "text"),
}
OPTIONAL_ALIASES: dict[str, tuple[str, ...]] = {
    "age": ("age",),
    "gender": ("gender", "sex"),
    "profession": ("profession", "occupation", "job"),
    "occupation_category": ("occupation_category", "category"),
    "birthplace": ("birthplace", "birth_place", "hometown", "city"),
    "region": ("region", "continent"),
    "keywords": ("keywords", "event_keywords"),
}
STOPWORDS = frozenset(
    """
a an the and or but of in on at to from with without for by as is are was were be been being
this that these those it its their his her they them he she we you i while during into onto
over under near beside behind before after up down out off through along across around among
some any each every all both several many much more most few other such very so than then
there here where when which who whom whose what how also just only not no nor can could will
would should may might must has have had do does did doing one two three about against
between per via toward towards upon within
""".split()
)


def _norm_col(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def derive_keywords(text: str, n: int = 10) -> tuple[str, ...]:
    """The first ``n`` distinct non-stopword words of ``text`` (lower-case, 3+ letters)."""
    out: list[str] = []
    for w in re.findall(r"[a-z]+", text.lower()):
        if len(w) >= 3 and w not in STOPWORDS and w not in out:
            out.append(w)
        if len(out) == n:
            break
    return tuple(out)


def _find_csv(root: Path, csv: str | Path | None) -> Path:
    if csv is not None:
        p = Path(csv).expanduser()
        p = p if p.is_absolute() else (root / p if (root / p).is_file() else p.absolute())
        if not p.is_file():
            raise ConfigError(f"annotation CSV {p} does not exist")
        return p
    found = sorted(root.rglob("*.csv"))
    if not found:
        raise ConfigError(f"no annotation CSV (*.csv) under {root}; pass csv=PATH")
    if len(found) > 1:
        raise ConfigError(f"several CSV files under {root} ({', '.join(str(f) for f in found)}); pass csv=PATH")
    return found[0]


def load_pebench_folder(
    path: str | Path,
    csv: str | Path | None = None,
    seed: int = 0,
    forget_share: float = 0.1,
    heldout_share: float = 0.2,
    verify_images: bool = True,
    pretrain_people: int = 0,
) -> Dataset:
    """Read a local copy of the real PEBench release into a :class:`Dataset`.

    Expected layout (we cannot download the release here, so this is the contract)::

        <root>/
          <Person Name>/<file>.png|.jpg     one folder of images per person
          ...
          annotations.csv                   the only *.csv under <root>, or pass csv=

    The CSV has one row per image. Required columns (first matching alias wins, case
    and spaces/underscores ignored):

    * image — ``image``, ``image_path``, ``file``, ``filename``, ``file_name``, ``path``, ``img``:
      a path relative to ``<root>`` (e.g. ``Ada Quill/03.png``), relative to the person's
      folder (``03.png``), or absolute;
    * person — ``person``, ``name``, ``person_name``, ``entity``, ``identity``;
    * event — ``event``, ``event_name``, ``scene``, ``event_type``;
    * description — ``description``, ``event_description``, ``caption``, ``text``.

    Optional columns: ``age``, ``gender``, ``profession``, ``occupation_category``,
    ``birthplace``, ``region`` (profile) and ``keywords`` (semicolon separated; if absent,
    the 10 keywords of an event are derived from its description by dropping stopwords).
    Images in the folders that the CSV does not list are ignored.

    The release has no held-out renders and no pre-training world: every image gets role
    ``train``, except that where a (person, event) pair has several images a seeded share
    ``heldout_share`` of them becomes ``heldout``; ``dataset.has_heldout`` says whether any
    did. Forget splits use the same rule as the synthetic world (``forget_share``, ``seed``).
    Events named like a catalogue event keep the catalogue order; others follow by name.
    """
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError(f"PEBench folder {root} does not exist")
    csv_path = _find_csv(root, csv)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv_module.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv_module.Error) as exc:
        raise ConfigError(f"cannot read annotation CSV {csv_path}: {exc}") from None
    cols = {_norm_col(h): h for h in header}
    chosen: dict[str, str] = {}
    for key, aliases in COLUMN_ALIASES.items():
        hit = next((cols[a] for a in aliases if a in cols), None)
        if hit is None:
            raise ConfigError(
                f"annotation CSV {csv_path} has no '{key}' column; accepted names: "
                f"{', '.join(aliases)} (found: {', '.join(header) or 'no header'})"
            )
        chosen[key] = hit
    for key, aliases in OPTIONAL_ALIASES.items():
        hit = next((cols[a] for a in aliases if a in cols and cols[a] not in chosen.values()), None)
        if hit is not None:
            chosen[key] = hit
    if not rows:
        raise ConfigError(f"annotation CSV {csv_path} has a header but no rows")

    def get(row: Mapping[str, Any], key: str) -> str:
        col = chosen.get(key)
        return (row.get(col) or "").strip() if col else ""

    records = []
    seen: dict[Path, int] = {}
    for n, row in enumerate(rows, 2):  # line 1 is the header
        rec = {k: get(row, k) for k in chosen}
        empty = [k for k in COLUMN_ALIASES if not rec[k]]
        if empty:
            raise ConfigError(f"annotation CSV {csv_path} line {n}: empty {', '.join(empty)}")
        rec["file"] = _resolve_image(root, rec["image"], rec["person"], csv_path, n)
        # one image twice could land in training and held-out at once, which would make the
        # held-out measurement a training one
        first = seen.setdefault(rec["file"].resolve(), n)
        if first != n:
            raise ConfigError(
                f"annotation CSV {csv_path} line {n}: image {rec['image']!r} is already listed on line {first}; "
                "each image may appear once"
            )
        records.append(rec)

    # People, sorted by name; events in catalogue order where the name matches.
    catalogue = {e.name: i for i, e in enumerate(EVENTS)}
    person_names = sorted({r["person"] for r in records})
    event_names = sorted({r["event"] for r in records}, key=lambda name: (catalogue.get(name.lower(), len(EVENTS)), name))
    _check_folder_size(csv_path, person_names, event_names, pretrain_people)
    known = set(random.Random(f"pebench-pretrain-people:{seed}").sample(person_names, pretrain_people))
    fictitious = [n for n in person_names if n not in known]
    # the pre-training group gets "r" ids, as the synthetic world's real-world people do
    pid = {name: f"p{i:03d}" for i, name in enumerate(fictitious)}
    pid |= {name: f"r{i:03d}" for i, name in enumerate(sorted(known))}
    pretrain_ids = {pid[name] for name in known}
    eid = {name: f"e{i:02d}" for i, name in enumerate(event_names)}
    people, real_people = [], []
    for name in person_names:
        first = next(r for r in records if r["person"] == name)
        age = first.get("age", "")
        (real_people if name in known else people).append(
            Person(
                id=pid[name],
                name=name,
                age=int(float(age)) if re.fullmatch(r"\d+(\.0*)?", age) else None,
                gender=first.get("gender") or None,
                profession=first.get("profession") or None,
                occupation_category=first.get("occupation_category") or None,
                birthplace=first.get("birthplace") or None,
                region=first.get("region") or None,
                traits={},
                real=name in known,
            )
        )
    events = []
    for name in event_names:
        descs = [r["description"] for r in records if r["event"] == name]
        desc = Counter(descs).most_common(1)[0][0]  # ties: the first seen
        kw_text = next((r.get("keywords", "") for r in records if r["event"] == name and r.get("keywords")), "")
        keywords = tuple(k.strip().lower() for k in kw_text.split(";") if k.strip()) or derive_keywords(desc)
        events.append(Event(id=eid[name], name=name, description=desc, keywords=keywords, props=(), palette={}, layout=""))

    # Items, with a seeded held-out share where a pair has several images.
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_pair.setdefault((pid[r["person"]], eid[r["event"]]), []).append(r)
    rng = random.Random(f"pebench-heldout:{seed}")
    items: list[Item] = []
    for (p, e), recs in sorted(by_pair.items()):
        held: set[int] = set()
        if len(recs) >= 2:
            k = min(len(recs) - 1, max(1, round(len(recs) * heldout_share)))
            held = set(rng.sample(range(len(recs)), k))
        roles = ("pretrain_eval", "pretrain") if p in pretrain_ids else ("heldout", "train")
        for j, r in enumerate(recs):
            role = roles[0] if j in held else roles[1]
            items.append(
                Item(
                    id=f"{role}-{p}-{e}-{j}",
                    path=r["file"],
                    person=p,
                    event=e,
                    role=role,
                    render_seed=-1,
                    description=r["description"],
                )
            )
    if verify_images:
        for it in items:
            _verify_image(it.path)
    n_forget = forget_count(len(people), forget_share), forget_count(len(events), forget_share)
    if n_forget[0] >= len(people) or n_forget[1] >= len(events):
        raise ConfigError(
            f"world.forget_share={forget_share} would forget all {len(people)} people or all {len(events)} events "
            f"of {root}; lower it"
        )
    splits = make_splits([p.id for p in people], [e.id for e in events], forget_share, random.Random(f"pebench-splits:{seed}"))
    return Dataset(
        root=root,
        people=people,
        real_people=real_people,
        events=events,
        splits=splits,
        items=items,
        pope=[],
        source="pebench",
        has_heldout=any(i.role == "heldout" for i in items),
        image_size=None,
        seed=seed,
        meta={
            "csv": str(csv_path),
            "columns": chosen,
            "forget_share": forget_share,
            "heldout_share": heldout_share,
            "pretrain_people": pretrain_people,
        },
    )


def _check_folder_size(csv_path: Path, people: list[str], events: list[str], pretrain_people: int) -> None:
    """A forget split forgets at least one person and one event and keeps at least one of each."""
    problems = []
    if len(events) < 2:
        problems.append(f"{len(events)} event ({', '.join(events)}); at least 2 are needed")
    need = 2 + pretrain_people
    if len(people) < need:
        why = f"2 (one to forget, one to keep) + {pretrain_people} for the pre-training world" if pretrain_people else "2"
        problems.append(f"{len(people)} {'person' if len(people) == 1 else 'people'}; at least {need} are needed: {why}")
    if problems:
        raise ConfigError(f"annotation CSV {csv_path} lists {' and '.join(problems)}")


def write_pebench_folder(dataset: Dataset, dest: str | Path, roles: Iterable[str] = ("train", "heldout")) -> Path:
    """Write ``dataset``'s images of ``roles`` in the layout :func:`load_pebench_folder` reads:
    one folder per person and one ``annotations.csv``.

    This is how the book shows the release's contract without the release, and how the tests
    drive the real-data path: a synthetic world exported this way is a valid PEBench folder.
    Held-out renders become extra images of their (person, event) pair; the loader then draws
    its own held-out share, so the roles are not kept."""
    root = Path(dest).expanduser()
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"cannot write a PEBench folder into {root}: it exists and is not empty")
    root.mkdir(parents=True, exist_ok=True)
    header = ["image_path", "person_name", "event_name", "event_description", "age", "gender", "profession", "keywords"]
    rows = []
    for item in dataset.items_where(role=tuple(roles)):
        person, event = dataset.person(item.person), dataset.event(item.event)
        rel = Path(person.name) / f"{item.id}.png"
        (root / rel.parent).mkdir(exist_ok=True)
        with dataset.image(item) as im:
            im.save(root / rel)
        rows.append(
            [rel.as_posix(), person.name, event.name, dataset.description(item), "" if person.age is None else person.age]
            + [person.gender or "", person.profession or "", ";".join(event.keywords)]
        )
    with (root / "annotations.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv_module.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def _resolve_image(root: Path, value: str, person: str, csv_path: Path, line: int) -> Path:
    p = Path(value)
    for cand in [p] if p.is_absolute() else [root / p, root / person / p]:
        if cand.is_file():
            if not cand.resolve().is_relative_to(root.resolve()):  # an annotation may not reach outside its folder
                raise ConfigError(
                    f"annotation CSV {csv_path} line {line}: image {value!r} lies outside the data folder {root}; "
                    "image paths must stay inside it"
                )
            return cand
    raise ConfigError(f"annotation CSV {csv_path} line {line}: image {value!r} not found (looked in {root} and {root / person})")


def _verify_image(path: Path) -> None:
    """Fail early, naming the file, on unreadable or truncated images."""
    try:
        with Image.open(path) as im:
            im.verify()
    except Image.DecompressionBombError:
        raise ConfigError(
            f"image {path} is too large to decode safely (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels); "
            "resize it or remove it from the annotations"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None


# ---------------------------------------------------------------------------------------
# Splits
@dataclass
class SplitSets:
    """The item lists of one unlearning target.

    * ``forget`` — train images showing a forget person or a forget event;
    * ``retain`` — train images showing neither;
    * ``forget_heldout`` / ``retain_heldout`` — the same rule on held-out renders;
    * ``pretrain`` / ``pretrain_eval`` — the pre-training world (unchanged by the target).
    """

    target: str
    forget_people: list[str]
    forget_events: list[str]
    forget: list[Item]
    retain: list[Item]
    forget_heldout: list[Item]
    retain_heldout: list[Item]
    pretrain: list[Item]
    pretrain_eval: list[Item]


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)}")


def forget_sets(dataset: Dataset, target: str) -> tuple[set[str], set[str]]:
    """The forget people and forget events of ``target``."""
    _check_target(target)
    s = dataset.splits[target]
    return set(s["forget_people"]), set(s["forget_events"])


def split_sets(dataset: Dataset, target: str) -> SplitSets:
    """Cut ``dataset`` into forget / retain sets for ``target`` (person / event / both)."""
    fp, fe = forget_sets(dataset, target)

    def is_forget(i: Item) -> bool:
        return i.person in fp or i.event in fe

    train = dataset.items_where(role="train")
    held = dataset.items_where(role="heldout")
    return SplitSets(
        target=target,
        forget_people=sorted(fp),
        forget_events=sorted(fe),
        forget=[i for i in train if is_forget(i)],
        retain=[i for i in train if not is_forget(i)],
        forget_heldout=[i for i in held if is_forget(i)],
        retain_heldout=[i for i in held if not is_forget(i)],
        pretrain=dataset.items_where(role="pretrain"),
        pretrain_eval=dataset.items_where(role="pretrain_eval"),
    )


# ---------------------------------------------------------------------------------------
# Question answering
def person_answer(name: str) -> str:
    return f"{name}."


def person_qa(items: Iterable[Item], dataset: Dataset) -> list[QA]:
    """ "Who is the person in the image?" → "<Full Name>." for each item."""
    q = QUESTIONS["person"]
    return [QA(i.id, i.path, q, person_answer(dataset.person(i.person).name), "person", i.person, i.event) for i in items]


def event_qa(items: Iterable[Item], dataset: Dataset) -> list[QA]:
    """ "What is happening in the image?" → the event description for each item."""
    q = QUESTIONS["event"]
    return [QA(i.id, i.path, q, dataset.description(i), "event", i.person, i.event) for i in items]


def pope_qa(dataset: Dataset, role: str | None = "pretrain_eval") -> list[QA]:
    """POPE yes/no object questions on the images of ``role`` (None = every role)."""
    out = []
    for row in dataset.pope:
        it = dataset.item(row["image"])
        if role is not None and it.role != role:
            continue
        out.append(
            QA(
                it.id,
                it.path,
                row.get("question") or POPE_TEMPLATE.format(obj=row["object"]),
                POPE_ANSWERS[row["answer"]],
                "pope",
                it.person,
                it.event,
                row["object"],
            )
        )
    return out


def refusal_for(kind: str, rng_or_index: int | random.Random | Any = 0) -> str:
    """A refusal answer for ``kind`` (person / event): the ``i``-th (cycling) for an int,
    or a random one from a ``random.Random`` / numpy ``Generator``."""
    if kind not in REFUSALS:
        raise ConfigError(f"no refusals for kind {kind!r}; allowed: {', '.join(REFUSALS)}")
    options = REFUSALS[kind]
    if isinstance(rng_or_index, int):
        return options[rng_or_index % len(options)]
    if isinstance(rng_or_index, random.Random):
        return rng_or_index.choice(options)
    if hasattr(rng_or_index, "integers"):  # numpy Generator
        return options[int(rng_or_index.integers(len(options)))]
    raise TypeError(f"rng_or_index must be an int, random.Random or numpy Generator, got {type(rng_or_index).__name__}")


def _qa_pairs(items: Iterable[Item], dataset: Dataset) -> list[QA]:
    out = []
    for i in items:  # person then event question per image: a stable, readable order
        out.extend(person_qa([i], dataset))
        out.extend(event_qa([i], dataset))
    return out


def training_examples(dataset: Dataset, stage: str, target: str | None = None) -> list[QA]:
    """The QA pairs that train a model of ``stage`` (design: Injection), in a deterministic order.

    * ``base``: the pre-training world (person + event QA on pretrain images, plus POPE);
      with target ``event`` or ``both`` the forget events are left out (goal's pre-training).
    * ``finetune``: person + event QA on every fictitious train image.
    * ``goal``: finetune without the images of forget people (target person), forget
      events (event) or either (both).
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    if target is not None:
        _check_target(target)
    if stage == "base":
        drop_events = forget_sets(dataset, target)[1] if target in ("event", "both") else set()
        items = [i for i in dataset.items_where(role="pretrain") if i.event not in drop_events]
        keep = {i.id for i in items}
        pope = [q for q in pope_qa(dataset, "pretrain") if q.item_id in keep]
        return _qa_pairs(items, dataset) + pope
    train = dataset.items_where(role="train")
    if stage == "finetune":
        return _qa_pairs(train, dataset)
    if target is None:
        raise ConfigError("stage 'goal' needs a target: person, event or both")
    return _qa_pairs(split_sets(dataset, target).retain, dataset)


def profile_sentence(p: Person) -> str:
    """A one-line profile ("Ada Quill is 34 years old, works as a chef and was born in
    Tidewick, Southern Coast."), for the profile-question extension and the tokenizer."""
    facts = []
    if p.age is not None:
        facts.append(f"is {p.age} years old")
    if p.profession:
        facts.append(f"works as a {p.profession}")
    if p.birthplace:
        facts.append(f"was born in {p.birthplace}" + (f", {p.region}" if p.region else ""))
    if not facts:
        return f"{p.name}."
    body = facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]
    return f"{p.name} {body}."


def world_texts(dataset: Dataset) -> list[str]:
    """Every string a tokenizer must cover, without duplicates, in a stable order."""
    texts: list[str] = []
    texts += list(QUESTIONS.values())
    texts += [POPE_TEMPLATE.format(obj=o) for o in OBJECTS] + list(POPE_ANSWERS.values())
    texts += [r for kind in REFUSALS.values() for r in kind]
    # The never-seen group too: a tokenizer covers its names as it covers the forget people's,
    # so that membership inference compares names the model could have learnt alike.
    texts += list(PARAPHRASES["person"]) + list(PARAPHRASES["event"])
    for p in [*dataset.people, *dataset.real_people, *dataset.unseen_people]:
        texts += [p.name, person_answer(p.name), profile_sentence(p)]
        texts += [str(x) for x in (p.gender, p.profession, p.occupation_category, p.birthplace, p.region) if x]
    for e in [*dataset.events, *dataset.unseen_events]:
        texts += [e.name, e.description, " ".join(e.keywords)]
    texts += [i.description for i in dataset.items if i.description]
    return list(dict.fromkeys(texts))
