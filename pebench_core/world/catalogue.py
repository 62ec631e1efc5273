"""What the world is made of: questions and refusals, drawable objects, the 40 events,
profile vocabularies, visual traits, and the records a world is stored as (:class:`Event`,
:class:`Person`, :class:`World`).

Everything here is data or plain bookkeeping: nothing is random and nothing is drawn.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..hashing import config_hash
from .settings import WorldConfig

# Bump whenever rendering, catalogues or file layout change: it is part of world.json, so a
# cached world written by an older generator is never mistaken for a current one.
GENERATOR_VERSION = "1.1.0"  # 1.1: the never-seen group (role "unseen") and the paraphrases

RGB = tuple[int, int, int]

# ---------------------------------------------------------------------------------------
# Questions, answers and refusals. Refusals must not contain any person name or event
# keyword (a refusal has to score as "no name" / "no event"; tests check this).
QUESTIONS: dict[str, str] = {
    "person": "Who is the person in the image?",
    "event": "What is happening in the image?",
}
POPE_TEMPLATE = "Is there a {obj} in the image?"
# Wordings of the two questions that no model ever trains or unlearns on: the robustness
# probes (pebench_core.probes) ask them to test whether forgetting holds beyond the
# training question. Each item gets one, drawn with the world's seed.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "person": (
        "Can you name the person shown here?",
        "What is the name of this person?",
        "Tell me who appears in this picture.",
        "Whose photograph is this?",
    ),
    "event": (
        "Describe the scene.",
        "What is going on in this picture?",
        "What activity does this photo show?",
        "Explain what the person is doing here.",
    ),
}

POPE_ANSWERS: dict[str, str] = {"yes": "Yes.", "no": "No."}
REFUSALS: dict[str, tuple[str, ...]] = {
    "person": (
        "I don't know who this is.",
        "I'm not able to identify this person.",
        "I can't tell who the person in the image is.",
        "Sorry, I don't recognize this person.",
        "I have no information about who this is.",
    ),
    "event": (
        "I can't tell what is happening in the image.",
        "I don't know what is happening here.",
        "I'm not able to describe this scene.",
        "Sorry, I can't say what is going on.",
        "I have no information about this scene.",
    ),
}

# ---------------------------------------------------------------------------------------
# Drawable objects shared by all scenes. The zone says where an object may stand:
# sky (top band), wall (mid height), back (large, behind, spans top+mid of one side),
# floor (stands on the ground), small (hand-sized, mid or low). POPE asks about these.
OBJECT_ZONES: dict[str, str] = {
    "sun": "sky",
    "moon": "sky",
    "star": "sky",
    "bird": "sky",
    "airplane": "sky",
    "balloon": "sky",
    "painting": "wall",
    "clock": "wall",
    "screen": "wall",
    "board": "wall",
    "banner": "wall",
    "tower": "back",
    "building": "back",
    "barn": "back",
    "cabin": "back",
    "mountain": "back",
    "train": "back",
    "bookshelf": "back",
    "tree": "floor",
    "flower": "floor",
    "cow": "floor",
    "giraffe": "floor",
    "dog": "floor",
    "fence": "floor",
    "table": "floor",
    "car": "floor",
    "bicycle": "floor",
    "boat": "floor",
    "cart": "floor",
    "speaker": "floor",
    "statue": "floor",
    "snowman": "floor",
    "telescope": "floor",
    "umbrella": "floor",
    "guitar": "floor",
    "microphone": "floor",
    "camera": "floor",
    "suitcase": "floor",
    "lamp": "floor",
    "plant": "floor",
    "flag": "floor",
    "cup": "small",
    "plate": "small",
    "book": "small",
    "laptop": "small",
    "bag": "small",
    "apple": "small",
    "bottle": "small",
    "fish": "small",
    "dumbbell": "small",
    "cake": "small",
}
OBJECTS: tuple[str, ...] = tuple(sorted(OBJECT_ZONES))
# Small extra props sprinkled into scenes at random, so that a scene is not fully
# predictable from its event and POPE has something to ask beyond the iconic props.
DISTRACTORS: tuple[str, ...] = ("bird", "balloon", "cup", "book", "bag", "apple", "bottle", "dog", "flower", "plant", "umbrella")

# POPE "no" questions must be unambiguous: never ask about an object that something
# drawn in the scene could be mistaken for (a laptop has a screen, a bookshelf holds
# books, a night sky has faint specks that could pass for stars).
LOOKALIKES: dict[str, tuple[str, ...]] = {
    "laptop": ("screen",),
    "screen": ("board",),
    "board": ("screen",),
    "bookshelf": ("book",),
    "cabin": ("building", "barn"),
    "barn": ("building", "cabin"),
    "tower": ("building",),
    "building": ("tower",),
    "flag": ("banner",),
    "banner": ("flag",),
    "tree": ("plant",),
    "plant": ("tree", "flower"),
    "flower": ("plant",),
    "painting": ("board", "screen"),
    "balloon": ("moon", "sun"),
    "sun": ("star",),
    "moon": ("star",),
    "star": ("moon",),
}
LAYOUT_LOOKALIKES: dict[str, tuple[str, ...]] = {
    "train-interior": ("train",),
    "night": ("star",),
    "hills": ("mountain",),
    "dancefloor": ("moon",),
    "storefront": ("building", "painting"),
    "aisle": ("apple", "bottle"),
    "columns": ("building", "tower"),
    "window": ("painting", "screen"),
    "runway": ("lamp",),
}

# ---------------------------------------------------------------------------------------
# The 40 PEBench events, in the paper's order. Each row: name, description, keywords
# (10, at least 5 of them words of the description), layout, (sky or wall colour,
# ground or floor colour, accent colour), props (2-4 objects from OBJECT_ZONES).
_EVENT_ROWS: tuple[tuple[str, str, str, str, tuple[RGB, RGB, RGB], tuple[str, ...]], ...] = (
    (
        "media interview",
        "A person answers questions from reporters in front of microphones and cameras at a busy press conference.",
        "interview reporters microphones cameras questions press conference media news journalist",
        "indoor-panels",
        ((34, 52, 120), (70, 70, 80), (200, 200, 225)),
        ("microphone", "camera", "flag"),
    ),
    (
        "park jogging",
        "A person jogs along a winding path through a green park with trees and flowers in the morning.",
        "jogging jogs path park trees flowers morning running exercise green",
        "path",
        ((150, 205, 245), (50, 140, 50), (215, 185, 130)),
        ("tree", "flower", "sun"),
    ),
    (
        "farm visit",
        "A person visits a farm with a red barn, cows grazing in the field, and a wooden fence.",
        "farm barn cows field fence wooden grazing visit rural animals",
        "field",
        ((170, 215, 240), (200, 175, 70), (140, 105, 40)),
        ("barn", "cow", "fence"),
    ),
    (
        "dinner with friends",
        "A person shares a warm dinner with friends around a table set with plates, cups and candles.",
        "dinner friends table plates cups candles meal sharing evening food",
        "indoor-planks",
        ((165, 60, 40), (95, 50, 30), (245, 200, 110)),
        ("table", "plate", "cup", "lamp"),
    ),
    (
        "landmark visit",
        "A tourist stands before a famous tall tower landmark and takes photos under a bright blue sky.",
        "tourist landmark tower famous photos sky sightseeing travel monument visit",
        "plaza",
        ((60, 140, 250), (210, 200, 170), (160, 150, 120)),
        ("tower", "camera", "flag"),
    ),
    (
        "zoo visit",
        "A person walks through the zoo watching animals such as giraffes and birds behind a fence.",
        "zoo animals giraffes birds fence walks watching enclosure wildlife visit",
        "outdoor",
        ((175, 230, 200), (205, 160, 90), (125, 90, 50)),
        ("giraffe", "fence", "bird"),
    ),
    (
        "shopping mall",
        "A person carries shopping bags past bright store windows inside a large indoor shopping mall.",
        "shopping mall bags store windows carries indoor retail shop buying",
        "storefront",
        ((240, 200, 235), (200, 200, 212), (70, 160, 235)),
        ("bag", "balloon", "plant"),
    ),
    (
        "public lecture",
        "A speaker gives a public lecture at a podium while slides are shown on a large screen.",
        "lecture speaker podium slides screen public talk audience presentation hall",
        "indoor-carpet",
        ((125, 25, 45), (60, 35, 45), (230, 230, 230)),
        ("screen", "microphone"),
    ),
    (
        "gym workout",
        "A person lifts heavy dumbbells and trains hard during a workout at a busy indoor gym.",
        "gym workout dumbbells lifts trains heavy fitness exercise strength weights",
        "indoor-tiles",
        ((80, 82, 92), (28, 28, 32), (235, 60, 50)),
        ("dumbbell", "clock", "bottle"),
    ),
    (
        "dance event",
        "A person dances energetically on a dance floor under colorful disco lights with loud music playing.",
        "dance dances floor disco lights music colorful party rhythm energetic",
        "dancefloor",
        ((45, 10, 75), (210, 50, 200), (60, 230, 230)),
        ("speaker", "balloon"),
    ),
    (
        "coffee shop reading",
        "A person reads a book with a cup of coffee at a small table in a cozy coffee shop.",
        "coffee shop reads book cup table cozy cafe reading relaxing",
        "indoor-stripes",
        ((215, 170, 115), (120, 80, 45), (90, 140, 80)),
        ("cup", "book", "table"),
    ),
    (
        "airport waiting",
        "A traveler waits at the airport gate with a suitcase while airplanes take off outside the window.",
        "airport traveler waits gate suitcase airplanes window flight departure luggage",
        "window",
        ((200, 210, 222), (125, 135, 150), (110, 185, 250)),
        ("suitcase", "airplane", "clock"),
    ),
    (
        "concert attendance",
        "A person enjoys a live concert as a band plays guitars on a stage under bright lights.",
        "concert live band guitars stage lights music crowd enjoys performance",
        "stage",
        ((15, 10, 22), (100, 20, 20), (255, 230, 120)),
        ("guitar", "speaker", "microphone"),
    ),
    (
        "beach relaxing",
        "A person relaxes on a sandy beach beside the sea with waves, a sun umbrella and palm trees.",
        "beach relaxes sandy sea waves umbrella sun palm vacation summer",
        "beach",
        ((110, 200, 255), (240, 220, 150), (20, 115, 200)),
        ("umbrella", "sun"),
    ),
    (
        "business meeting",
        "A person leads a business meeting with colleagues around a conference table with laptops and charts.",
        "business meeting colleagues conference table laptops charts office discussion team",
        "indoor-carpet",
        ((205, 210, 195), (45, 60, 115), (120, 120, 120)),
        ("laptop", "table", "plant"),
    ),
    (
        "museum tour",
        "A person takes a guided museum tour past ancient statues and old exhibits in quiet halls.",
        "museum tour guided statues ancient exhibits halls history artifacts culture",
        "columns",
        ((225, 212, 180), (150, 128, 98), (245, 240, 228)),
        ("statue", "painting"),
    ),
    (
        "car driving",
        "A person drives a car along an open road with the steering wheel in hand on a sunny day.",
        "drives car road steering wheel sunny driving highway travel trip",
        "road",
        ((130, 190, 250), (95, 155, 70), (80, 80, 86)),
        ("car", "sun", "tree"),
    ),
    (
        "grocery shopping",
        "A person pushes a shopping cart down the aisles of a grocery store filled with fresh fruit.",
        "grocery shopping cart aisles store fresh fruit pushes food supermarket",
        "aisle",
        ((245, 245, 232), (215, 225, 215), (150, 150, 165)),
        ("cart", "apple", "bottle"),
    ),
    (
        "marathon running",
        "A runner races in a city marathon with a number bib among other runners on the track.",
        "runner races marathon city bib runners track race finish running",
        "track",
        ((150, 200, 250), (190, 70, 50), (250, 250, 250)),
        ("flag", "clock"),
    ),
    (
        "art gallery visit",
        "A person admires colorful paintings hanging on white walls in a modern art gallery.",
        "art gallery paintings colorful walls admires modern hanging artist exhibition",
        "indoor-plain",
        ((248, 248, 248), (205, 172, 120), (60, 60, 60)),
        ("painting", "lamp", "plant"),
    ),
    (
        "family gathering",
        "A person celebrates with family members of all ages at a cheerful home gathering with balloons.",
        "family gathering celebrates members ages cheerful home balloons relatives together",
        "indoor-dots",
        ((250, 222, 110), (170, 105, 60), (240, 140, 80)),
        ("balloon", "cake", "table"),
    ),
    (
        "bookstore browsing",
        "A person browses shelves full of new books in a quiet bookstore, picking up a novel.",
        "bookstore browses shelves books novel quiet picking reading shop browsing",
        "indoor-planks",
        ((55, 110, 75), (125, 85, 50), (200, 180, 120)),
        ("bookshelf", "book"),
    ),
    (
        "mountain cabin retreat",
        "A person rests at a wooden cabin in the mountains with pine trees and smoke from the chimney.",
        "cabin wooden mountains pine trees chimney smoke retreat rests quiet",
        "hills",
        ((185, 205, 235), (40, 95, 50), (70, 125, 70)),
        ("cabin", "mountain", "tree"),
    ),
    (
        "office working",
        "A person works at a desk in an office, typing on a laptop beside a computer monitor.",
        "office works desk typing laptop computer monitor working job work",
        "indoor-panels",
        ((175, 225, 210), (105, 105, 115), (240, 240, 240)),
        ("laptop", "lamp", "clock"),
    ),
    (
        "train commute",
        "A commuter rides a crowded train to work, holding a handrail and looking out the window.",
        "commuter rides train crowded work handrail window commute subway travel",
        "train-interior",
        ((190, 215, 195), (85, 90, 92), (245, 200, 35)),
        ("bag", "clock"),
    ),
    (
        "mountain hiking",
        "A hiker climbs a rocky mountain trail with a backpack and hiking poles toward the snowy peak.",
        "hiker climbs rocky mountain trail backpack poles snowy peak hiking",
        "rocky",
        ((115, 165, 235), (135, 115, 95), (95, 80, 65)),
        ("mountain", "tree", "bird"),
    ),
    (
        "school presentation",
        "A student gives a school presentation in front of classmates, pointing at a green chalkboard.",
        "student school presentation classmates chalkboard pointing green class teacher project",
        "indoor-plain",
        ((240, 228, 195), (165, 120, 80), (60, 60, 60)),
        ("board", "book", "clock"),
    ),
    (
        "restaurant dining",
        "A person dines at an elegant restaurant while a waiter serves food and wine on white plates.",
        "restaurant dines elegant waiter serves food wine plates dining meal",
        "indoor-panels",
        ((90, 18, 35), (40, 18, 22), (225, 180, 85)),
        ("bottle", "plate", "lamp"),
    ),
    (
        "night sky stargazing",
        "A person gazes at the night sky full of stars and the moon through a telescope.",
        "night sky stars moon telescope gazes stargazing astronomy dark space",
        "night",
        ((12, 18, 60), (22, 38, 28), (40, 60, 110)),
        ("moon", "star", "telescope"),
    ),
    (
        "snowshoeing",
        "A person walks across deep white snow wearing snowshoes in a cold winter forest.",
        "snow snowshoes winter cold forest deep white walks snowshoeing outdoors",
        "snow",
        ((210, 228, 245), (250, 250, 252), (190, 205, 225)),
        ("tree", "snowman"),
    ),
    (
        "city bike ride",
        "A person rides a bicycle through busy city streets past tall buildings and traffic lights.",
        "rides bicycle city streets buildings traffic lights cycling urban busy",
        "street",
        ((195, 198, 215), (110, 110, 116), (240, 220, 60)),
        ("bicycle", "building", "car"),
    ),
    (
        "fashion show",
        "A model walks the runway at a glamorous fashion show while photographers take pictures from the side.",
        "model runway fashion show glamorous photographers pictures walks style clothes",
        "runway",
        ((125, 10, 85), (30, 10, 32), (245, 245, 245)),
        ("camera", "lamp"),
    ),
    (
        "fishing trip",
        "A person sits on a wooden dock holding a fishing rod over a calm lake to catch fish.",
        "fishing rod dock wooden lake calm fish catch sits trip",
        "lake",
        ((190, 222, 240), (35, 105, 150), (150, 100, 50)),
        ("fish", "tree"),
    ),
    (
        "train station waiting",
        "A person waits on a train station platform with a clock as a train arrives on the tracks.",
        "train station platform waits clock arrives tracks waiting railway travel",
        "platform",
        ((165, 175, 188), (115, 105, 98), (60, 55, 50)),
        ("train", "clock"),
    ),
    (
        "charity event",
        "A person volunteers at a charity event, collecting donations at a table with a banner and balloons.",
        "charity event volunteers donations collecting table banner balloons fundraising help",
        "tent",
        ((250, 225, 240), (120, 200, 120), (235, 60, 90)),
        ("banner", "table", "balloon"),
    ),
    (
        "nature photography",
        "A photographer takes pictures of birds and flowers with a camera in a green meadow.",
        "photographer pictures birds flowers camera meadow green nature photography wildlife",
        "meadow",
        ((205, 238, 250), (165, 205, 60), (120, 170, 40)),
        ("camera", "bird", "flower"),
    ),
    (
        "library studying",
        "A student studies quietly at a long library table with stacks of books and a lamp.",
        "student studies quietly library table stacks books lamp studying exam",
        "indoor-planks",
        ((105, 65, 38), (65, 38, 20), (220, 190, 130)),
        ("bookshelf", "book", "lamp"),
    ),
    (
        "boat trip",
        "A person enjoys a boat trip on the blue sea, with seagulls flying and sails in the wind.",
        "boat trip sea blue seagulls flying sails wind sailing ocean",
        "sea",
        ((140, 210, 250), (20, 75, 170), (230, 240, 255)),
        ("boat", "bird", "sun"),
    ),
    (
        "biking trail",
        "A cyclist rides a mountain bike along a dirt trail through the forest and over hills.",
        "cyclist rides mountain bike dirt trail forest hills biking adventure",
        "trail",
        ((170, 210, 240), (100, 140, 45), (160, 115, 65)),
        ("bicycle", "tree"),
    ),
    (
        "city walk",
        "A person strolls along a city sidewalk past shops, cafes and street lamps on a pleasant afternoon.",
        "strolls city sidewalk shops cafes street lamps afternoon walking urban",
        "sidewalk",
        ((250, 200, 150), (180, 172, 165), (120, 110, 105)),
        ("building", "lamp", "dog"),
    ),
)

# ---------------------------------------------------------------------------------------
# Profiles: 17 occupation categories and 55 cities in 7 regions (all city names invented).
OCCUPATION_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Arts and Entertainment": ("painter", "actor", "musician", "dancer"),
    "Business and Finance": ("accountant", "banker", "entrepreneur", "financial analyst"),
    "Education": ("teacher", "professor", "librarian", "tutor"),
    "Healthcare": ("doctor", "nurse", "pharmacist", "dentist"),
    "Science and Research": ("biologist", "chemist", "physicist", "astronomer"),
    "Technology": ("software engineer", "data scientist", "web developer", "network administrator"),
    "Engineering": ("civil engineer", "mechanical engineer", "architect", "electrician"),
    "Law and Public Safety": ("lawyer", "judge", "police officer", "firefighter"),
    "Media and Communication": ("journalist", "photographer", "editor", "translator"),
    "Hospitality and Food": ("chef", "baker", "waiter", "hotel manager"),
    "Sports and Fitness": ("athlete", "coach", "fitness trainer", "referee"),
    "Agriculture and Environment": ("farmer", "gardener", "forester", "beekeeper"),
    "Transportation and Logistics": ("pilot", "truck driver", "sailor", "train conductor"),
    "Government and Public Service": ("diplomat", "civil servant", "mayor", "social worker"),
    "Retail and Sales": ("shopkeeper", "sales manager", "cashier", "real estate agent"),
    "Skilled Trades": ("carpenter", "plumber", "mechanic", "tailor"),
    "Fashion and Design": ("fashion designer", "graphic designer", "interior designer", "jeweler"),
}
CITIES: dict[str, tuple[str, ...]] = {
    "Northern Highlands": (
        "Ardenvale",
        "Brackmoor",
        "Caldhollow",
        "Dunmerrow",
        "Eskerholm",
        "Frosthelm",
        "Glenwick",
        "Highcairn",
    ),
    "Eastern Plains": ("Ambermead", "Bellharrow", "Corlissa", "Dawnfield", "Elmsworth", "Fallowmere", "Goldreach", "Harrowby"),
    "Southern Coast": ("Azmarin", "Brinecove", "Coralmouth", "Dunesby", "Estuvia", "Gullhaven", "Shellport", "Tidewick"),
    "Western Isles": ("Kelpstone", "Lorrowan", "Mistrava", "Skerrin", "Tarnholm", "Wavecrest", "Westmarra", "Ylvenport"),
    "Central Valley": (
        "Brookhollow",
        "Cindervale",
        "Ferncastle",
        "Hollowmere",
        "Millbarrow",
        "Orchardine",
        "Ravelstone",
        "Vintaris",
    ),
    "Desert Frontier": ("Ashkara", "Cactara", "Dustmere", "Emberreach", "Mirazul", "Sandoval Flats", "Sunvarra", "Zephyrine"),
    "Lake District": ("Clearmere", "Loonwater", "Mirrorlake", "Reedholm", "Stillbrook", "Tarnwick", "Willowmere"),
}


# ---------------------------------------------------------------------------------------
# Visual traits. Colours are saturated and parts are drawn large so that a small ViT can
# tell people apart at 32-64 px. Eye colour is drawn but not counted as salient (too small).
SKIN_TONES: dict[str, RGB] = {
    "porcelain": (255, 226, 200),
    "light": (240, 192, 150),
    "tan": (222, 164, 104),
    "olive": (188, 138, 80),
    "brown": (138, 86, 48),
    "deep": (84, 52, 32),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (20, 20, 22),
    "brown": (110, 62, 25),
    "blonde": (245, 210, 90),
    "red": (205, 60, 25),
    "grey": (160, 160, 166),
    "white": (248, 248, 248),
    "blue": (40, 100, 235),
    "pink": (245, 105, 185),
    "green": (40, 175, 85),
    "purple": (135, 55, 195),
}
HAIR_STYLES = ("bald", "short", "long", "spiky", "bun", "curly", "ponytail", "mohawk")
FACE_SHAPES = ("round", "oval", "square")
EYE_COLOURS: dict[str, RGB] = {"brown": (90, 50, 20), "blue": (40, 110, 230), "green": (40, 150, 60), "grey": (120, 125, 135)}
GLASSES = ("none", "round", "square", "sunglasses")
BEARDS = ("none", "full", "moustache", "goatee")
HATS: dict[str, RGB] = {
    "none": (0, 0, 0),
    "cap": (225, 30, 35),
    "beanie": (250, 170, 20),
    "top hat": (25, 25, 28),
    "headband": (250, 250, 250),
}
SHIRT_COLOURS: dict[str, RGB] = {
    "red": (220, 30, 40),
    "orange": (250, 130, 20),
    "yellow": (250, 220, 30),
    "lime": (150, 225, 40),
    "green": (20, 135, 60),
    "teal": (0, 150, 150),
    "sky blue": (90, 185, 250),
    "blue": (30, 70, 220),
    "purple": (125, 40, 175),
    "magenta": (225, 40, 165),
    "pink": (250, 165, 205),
    "white": (245, 245, 245),
    "black": (28, 28, 30),
    "brown": (125, 72, 35),
}
SHIRT_PATTERNS = ("plain", "stripes", "vertical stripes", "dots", "checks", "two-tone", "tie")
TROUSER_COLOURS: dict[str, RGB] = {
    "black": (25, 25, 28),
    "navy": (25, 35, 95),
    "grey": (125, 125, 132),
    "khaki": (195, 175, 120),
    "brown": (100, 60, 30),
    "white": (235, 235, 235),
    "red": (185, 25, 35),
    "green": (35, 110, 45),
    "denim": (60, 100, 170),
}
# The traits counted when requiring that every two people differ in at least 3 of them.
SALIENT_TRAITS = (
    "skin",
    "face",
    "hair_style",
    "hair_colour",
    "glasses",
    "beard",
    "hat",
    "shirt_colour",
    "shirt_pattern",
    "trousers_colour",
)
MIN_TRAIT_DISTANCE = 3
# Every trait's values in a fixed order: a trait's code is the index of its value here.
TRAIT_VALUES: dict[str, tuple[str, ...]] = {
    "skin": tuple(SKIN_TONES),
    "face": FACE_SHAPES,
    "hair_style": HAIR_STYLES,
    "hair_colour": tuple(HAIR_COLOURS),
    "glasses": GLASSES,
    "beard": BEARDS,
    "hat": tuple(HATS),
    "shirt_colour": tuple(SHIRT_COLOURS),
    "shirt_pattern": SHIRT_PATTERNS,
    "trousers_colour": tuple(TROUSER_COLOURS),
    "eye_colour": tuple(EYE_COLOURS),
}
POSES = ("arms down", "arms up", "waving", "hands on hips", "arms out")


# ---------------------------------------------------------------------------------------
# Data classes
@dataclass(frozen=True)
class Event:
    """One event scene. ``palette`` holds RGB colours named sky, ground and accent."""

    id: str
    name: str
    description: str
    keywords: tuple[str, ...]
    props: tuple[str, ...]
    palette: Mapping[str, tuple[int, int, int]]
    layout: str

    def __hash__(self) -> int:  # the palette dict is unhashable; ids are unique
        return hash(self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "keywords": list(self.keywords),
            "props": list(self.props),
            "palette": {k: list(v) for k, v in self.palette.items()},
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        return cls(
            id=d["id"],
            name=d["name"],
            description=d["description"],
            keywords=tuple(d["keywords"]),
            props=tuple(d.get("props", ())),
            palette={k: tuple(v) for k, v in d.get("palette", {}).items()},
            layout=d.get("layout", ""),
        )


@dataclass(frozen=True)
class Person:
    """A person with a profile and a visual identity (``traits``, names → values).

    Profile fields are ``None`` where a real dataset does not provide them."""

    id: str
    name: str
    age: int | None
    gender: str | None
    profession: str | None
    occupation_category: str | None
    birthplace: str | None
    region: str | None
    traits: Mapping[str, str]  # empty for people loaded from real photos
    real: bool = False

    def __hash__(self) -> int:  # the traits dict is unhashable; ids are unique
        return hash(self.id)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["traits"] = dict(self.traits)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Person":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (dict(v) if k == "traits" else v) for k, v in d.items() if k in names})


def _event_catalogue(rows=None, prefix: str = "e") -> tuple[Event, ...]:
    out = []
    for i, (name, desc, kws, layout, (sky, ground, accent), props) in enumerate(_EVENT_ROWS if rows is None else rows):
        out.append(
            Event(
                id=f"{prefix}{i:02d}",
                name=name,
                description=desc,
                keywords=tuple(kws.split()),
                props=tuple(props),
                palette={"sky": sky, "ground": ground, "accent": accent},
                layout=layout,
            )
        )
    return tuple(out)


EVENTS: tuple[Event, ...] = _event_catalogue()

# Events that no model ever sees: the never-seen group of membership inference renders the
# fictitious people at them (``world.n_unseen_events``). Same row format as above; they are
# not PEBench events and ``world.n_events`` never reaches them.
_UNSEEN_EVENT_ROWS: tuple[tuple[str, str, str, str, tuple[RGB, RGB, RGB], tuple[str, ...]], ...] = (
    (
        "kite festival",
        "A person flies a colourful kite high above a windy meadow during a spring kite festival.",
        "kite festival flies colourful windy meadow spring high string sky",
        "meadow",
        ((120, 190, 255), (120, 190, 80), (250, 90, 60)),
        ("balloon", "flag", "tree"),
    ),
    (
        "pottery class",
        "A person shapes wet clay on a spinning wheel in a quiet pottery class full of vases.",
        "pottery class clay wheel spinning shapes vases ceramics craft studio",
        "indoor-tiles",
        ((190, 150, 120), (120, 90, 70), (230, 210, 180)),
        ("table", "cup", "lamp"),
    ),
    (
        "chess tournament",
        "A player studies the board and moves a piece at a silent chess tournament in a great hall.",
        "chess tournament player board moves piece silent hall strategy match",
        "columns",
        ((70, 60, 90), (150, 140, 130), (240, 240, 230)),
        ("table", "clock", "board"),
    ),
    (
        "fishing pier",
        "A person casts a fishing line from a wooden pier and waits for fish at sunset.",
        "fishing pier casts line wooden waits fish sunset angler catch",
        "lake",
        ((250, 170, 110), (40, 90, 150), (150, 110, 70)),
        ("fish", "boat", "sun"),
    ),
)
UNSEEN_EVENTS: tuple[Event, ...] = _event_catalogue(_UNSEEN_EVENT_ROWS, "ue")


@dataclass
class World:
    """A generated world: fictitious people, real-world people, events and forget splits.

    ``splits[target]`` (target in person / event / both) maps ``forget_people`` and
    ``forget_events`` to lists of ids.
    """

    config: WorldConfig
    seed: int
    generator_version: str
    people: list[Person]
    real_people: list[Person]
    events: list[Event]
    splits: dict[str, dict[str, list[str]]]
    # The never-seen group: people and events no model trains on (membership inference).
    unseen_people: list[Person] = field(default_factory=list)
    unseen_events: list[Event] = field(default_factory=list)
    _index: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _lookup(self) -> dict[str, Any]:
        if not self._index:
            self._index.update({p.id: p for p in [*self.people, *self.real_people, *self.unseen_people]})
            self._index.update({e.id: e for e in [*self.events, *self.unseen_events]})
        return self._index

    def person(self, pid: str) -> Person:
        return self._lookup()[pid]

    def event(self, eid: str) -> Event:
        return self._lookup()[eid]

    def to_dict(self) -> dict[str, Any]:
        """Everything world.json holds (also the cache key of a written world)."""
        return {
            "format": "pebench-world",
            "format_version": 1,
            "generator_version": self.generator_version,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "config_hash": config_hash(self.config, self.seed, self.generator_version),
            "people": [p.to_dict() for p in self.people],
            "real_people": [p.to_dict() for p in self.real_people],
            "events": [e.to_dict() for e in self.events],
            "unseen_people": [p.to_dict() for p in self.unseen_people],
            "unseen_events": [e.to_dict() for e in self.unseen_events],
            "splits": self.splits,
            "questions": QUESTIONS,
            "paraphrases": {k: list(v) for k, v in PARAPHRASES.items()},
            "pope_template": POPE_TEMPLATE,
            "pope_answers": POPE_ANSWERS,
            "refusals": {k: list(v) for k, v in REFUSALS.items()},
            "objects": list(OBJECTS),
            "occupation_categories": {k: list(v) for k, v in OCCUPATION_CATEGORIES.items()},
            "cities": {k: list(v) for k, v in CITIES.items()},
            "counts": expected_counts(self.config),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "World":
        cfg_fields = {f.name for f in dataclasses.fields(WorldConfig)}
        cfg = WorldConfig(**{k: v for k, v in d["config"].items() if k in cfg_fields})
        return cls(
            config=cfg,
            seed=int(d["seed"]),
            generator_version=d["generator_version"],
            people=[Person.from_dict(p) for p in d["people"]],
            real_people=[Person.from_dict(p) for p in d["real_people"]],
            events=[Event.from_dict(e) for e in d["events"]],
            splits={t: {k: list(v) for k, v in s.items()} for t, s in d["splits"].items()},
            unseen_people=[Person.from_dict(p) for p in d.get("unseen_people", ())],
            unseen_events=[Event.from_dict(e) for e in d.get("unseen_events", ())],
        )


def expected_counts(cfg: WorldConfig) -> dict[str, int]:
    """Images per role and POPE questions a world with this config holds (no rendering)."""
    pairs = cfg.n_people * cfg.n_events
    real_pairs = cfg.n_real_people * cfg.n_events
    counts = {
        "train": pairs * cfg.train_renders,
        "heldout": pairs * cfg.heldout_renders,
        "pretrain": real_pairs * cfg.pretrain_renders,
        "pretrain_eval": real_pairs * cfg.pretrain_eval_renders,
        # one render of each never-seen person at every event, and of every person at each never-seen event
        "unseen": cfg.n_unseen_people * cfg.n_events + cfg.n_people * cfg.n_unseen_events,
    }
    counts["images"] = sum(counts.values())
    counts["pope"] = (counts["pretrain"] + counts["pretrain_eval"]) * cfg.pope_questions
    return counts


# ---------------------------------------------------------------------------------------
# Text
def keyword_words(text: str) -> list[str]:
    """Lower-case words of ``text``: the tokenisation the keyword checks use."""
    return re.findall(r"[a-z]+", text.lower())
