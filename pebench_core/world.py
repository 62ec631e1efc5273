"""The embedded synthetic PEBench world (DESIGN §3): people, events, rendering, on-disk writing.

PEBench (Xu et al., arXiv 2503.12545) photographs 200 fictitious people in 40 event scenes.
We cannot ship those images, so this module *draws* a world with the same structure using
Pillow only: every person is a unique combination of large, saturated, drawable traits
(hair, glasses, hat, shirt colour and pattern …) and every event is a scene with its own
palette, layout and iconic props. Everything is derived from one integer seed, so the
same seed and :class:`~pebench_core.config.WorldConfig` give byte-identical files.

Public API::

    generate_world(cfg, seed) -> World
    render(world, person, event, render_seed, size=None) -> PIL.Image.Image
    objects_in(world, event, render_seed) -> tuple[str, ...]   # props drawn, for POPE
    write_world(world, out_dir, progress=True, workers=None) -> Path
    read_world(out_dir) -> World

The on-disk layout written by :func:`write_world` is read back by
:func:`pebench_core.data.load_dataset`.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .config import ConfigError, WorldConfig, config_hash, forget_count

# Bump whenever rendering, catalogues or file layout change: it is part of world.json, so a
# cached world written by an older generator is never mistaken for a current one.
GENERATOR_VERSION = "1.0.0"

RGB = tuple[int, int, int]

# ---------------------------------------------------------------------------------------
# Questions, answers and refusals. Refusals must not contain any person name or event
# keyword (a refusal has to score as "no name" / "no event"; tests check this).
QUESTIONS: dict[str, str] = {
    "person": "Who is the person in the image?",
    "event": "What is happening in the image?",
}
POPE_TEMPLATE = "Is there a {obj} in the image?"
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
    "sun": "sky", "moon": "sky", "star": "sky", "bird": "sky", "airplane": "sky", "balloon": "sky",
    "painting": "wall", "clock": "wall", "screen": "wall", "board": "wall", "banner": "wall",
    "tower": "back", "building": "back", "barn": "back", "cabin": "back", "mountain": "back",
    "train": "back", "bookshelf": "back",
    "tree": "floor", "flower": "floor", "cow": "floor", "giraffe": "floor", "dog": "floor",
    "fence": "floor", "table": "floor", "car": "floor", "bicycle": "floor", "boat": "floor",
    "cart": "floor", "speaker": "floor", "statue": "floor", "snowman": "floor",
    "telescope": "floor", "umbrella": "floor", "guitar": "floor", "microphone": "floor",
    "camera": "floor", "suitcase": "floor", "lamp": "floor", "plant": "floor", "flag": "floor",
    "cup": "small", "plate": "small", "book": "small", "laptop": "small", "bag": "small",
    "apple": "small", "bottle": "small", "fish": "small", "dumbbell": "small", "cake": "small",
}
OBJECTS: tuple[str, ...] = tuple(sorted(OBJECT_ZONES))
# Small extra props sprinkled into scenes at random, so that a scene is not fully
# predictable from its event and POPE has something to ask beyond the iconic props.
DISTRACTORS: tuple[str, ...] = ("bird", "balloon", "cup", "book", "bag", "apple", "bottle",
                                "dog", "flower", "plant", "umbrella")

# POPE "no" questions must be unambiguous: never ask about an object that something
# drawn in the scene could be mistaken for (a laptop has a screen, a bookshelf holds
# books, a night sky has faint specks that could pass for stars).
LOOKALIKES: dict[str, tuple[str, ...]] = {
    "laptop": ("screen",), "screen": ("board",), "board": ("screen",), "bookshelf": ("book",),
    "cabin": ("building", "barn"), "barn": ("building", "cabin"), "tower": ("building",),
    "building": ("tower",), "flag": ("banner",), "banner": ("flag",), "tree": ("plant",),
    "plant": ("tree", "flower"), "flower": ("plant",), "painting": ("board", "screen"),
    "balloon": ("moon", "sun"), "sun": ("star",), "moon": ("star",), "star": ("moon",),
}
LAYOUT_LOOKALIKES: dict[str, tuple[str, ...]] = {
    "train-interior": ("train",), "night": ("star",), "hills": ("mountain",),
    "dancefloor": ("moon",), "storefront": ("building", "painting"), "aisle": ("apple", "bottle"),
    "columns": ("building", "tower"), "window": ("painting", "screen"), "runway": ("lamp",),
}

# ---------------------------------------------------------------------------------------
# The 40 PEBench events, in the paper's order. Each row: name, description, keywords
# (10, at least 5 of them words of the description), layout, (sky or wall colour,
# ground or floor colour, accent colour), props (2-4 objects from OBJECT_ZONES).
_EVENT_ROWS: tuple[tuple[str, str, str, str, tuple[RGB, RGB, RGB], tuple[str, ...]], ...] = (
    ("media interview",
     "A person answers questions from reporters in front of microphones and cameras at a busy press conference.",
     "interview reporters microphones cameras questions press conference media news journalist",
     "indoor-panels", ((34, 52, 120), (70, 70, 80), (200, 200, 225)), ("microphone", "camera", "flag")),
    ("park jogging",
     "A person jogs along a winding path through a green park with trees and flowers in the morning.",
     "jogging jogs path park trees flowers morning running exercise green",
     "path", ((150, 205, 245), (50, 140, 50), (215, 185, 130)), ("tree", "flower", "sun")),
    ("farm visit",
     "A person visits a farm with a red barn, cows grazing in the field, and a wooden fence.",
     "farm barn cows field fence wooden grazing visit rural animals",
     "field", ((170, 215, 240), (200, 175, 70), (140, 105, 40)), ("barn", "cow", "fence")),
    ("dinner with friends",
     "A person shares a warm dinner with friends around a table set with plates, cups and candles.",
     "dinner friends table plates cups candles meal sharing evening food",
     "indoor-planks", ((165, 60, 40), (95, 50, 30), (245, 200, 110)), ("table", "plate", "cup", "lamp")),
    ("landmark visit",
     "A tourist stands before a famous tall tower landmark and takes photos under a bright blue sky.",
     "tourist landmark tower famous photos sky sightseeing travel monument visit",
     "plaza", ((60, 140, 250), (210, 200, 170), (160, 150, 120)), ("tower", "camera", "flag")),
    ("zoo visit",
     "A person walks through the zoo watching animals such as giraffes and birds behind a fence.",
     "zoo animals giraffes birds fence walks watching enclosure wildlife visit",
     "outdoor", ((175, 230, 200), (205, 160, 90), (125, 90, 50)), ("giraffe", "fence", "bird")),
    ("shopping mall",
     "A person carries shopping bags past bright store windows inside a large indoor shopping mall.",
     "shopping mall bags store windows carries indoor retail shop buying",
     "storefront", ((240, 200, 235), (200, 200, 212), (70, 160, 235)), ("bag", "balloon", "plant")),
    ("public lecture",
     "A speaker gives a public lecture at a podium while slides are shown on a large screen.",
     "lecture speaker podium slides screen public talk audience presentation hall",
     "indoor-carpet", ((125, 25, 45), (60, 35, 45), (230, 230, 230)), ("screen", "microphone")),
    ("gym workout",
     "A person lifts heavy dumbbells and trains hard during a workout at a busy indoor gym.",
     "gym workout dumbbells lifts trains heavy fitness exercise strength weights",
     "indoor-tiles", ((80, 82, 92), (28, 28, 32), (235, 60, 50)), ("dumbbell", "clock", "bottle")),
    ("dance event",
     "A person dances energetically on a dance floor under colorful disco lights with loud music playing.",
     "dance dances floor disco lights music colorful party rhythm energetic",
     "dancefloor", ((45, 10, 75), (210, 50, 200), (60, 230, 230)), ("speaker", "balloon")),
    ("coffee shop reading",
     "A person reads a book with a cup of coffee at a small table in a cozy coffee shop.",
     "coffee shop reads book cup table cozy cafe reading relaxing",
     "indoor-stripes", ((215, 170, 115), (120, 80, 45), (90, 140, 80)), ("cup", "book", "table")),
    ("airport waiting",
     "A traveler waits at the airport gate with a suitcase while airplanes take off outside the window.",
     "airport traveler waits gate suitcase airplanes window flight departure luggage",
     "window", ((200, 210, 222), (125, 135, 150), (110, 185, 250)), ("suitcase", "airplane", "clock")),
    ("concert attendance",
     "A person enjoys a live concert as a band plays guitars on a stage under bright lights.",
     "concert live band guitars stage lights music crowd enjoys performance",
     "stage", ((15, 10, 22), (100, 20, 20), (255, 230, 120)), ("guitar", "speaker", "microphone")),
    ("beach relaxing",
     "A person relaxes on a sandy beach beside the sea with waves, a sun umbrella and palm trees.",
     "beach relaxes sandy sea waves umbrella sun palm vacation summer",
     "beach", ((110, 200, 255), (240, 220, 150), (20, 115, 200)), ("umbrella", "sun")),
    ("business meeting",
     "A person leads a business meeting with colleagues around a conference table with laptops and charts.",
     "business meeting colleagues conference table laptops charts office discussion team",
     "indoor-carpet", ((205, 210, 195), (45, 60, 115), (120, 120, 120)), ("laptop", "table", "plant")),
    ("museum tour",
     "A person takes a guided museum tour past ancient statues and old exhibits in quiet halls.",
     "museum tour guided statues ancient exhibits halls history artifacts culture",
     "columns", ((225, 212, 180), (150, 128, 98), (245, 240, 228)), ("statue", "painting")),
    ("car driving",
     "A person drives a car along an open road with the steering wheel in hand on a sunny day.",
     "drives car road steering wheel sunny driving highway travel trip",
     "road", ((130, 190, 250), (95, 155, 70), (80, 80, 86)), ("car", "sun", "tree")),
    ("grocery shopping",
     "A person pushes a shopping cart down the aisles of a grocery store filled with fresh fruit.",
     "grocery shopping cart aisles store fresh fruit pushes food supermarket",
     "aisle", ((245, 245, 232), (215, 225, 215), (150, 150, 165)), ("cart", "apple", "bottle")),
    ("marathon running",
     "A runner races in a city marathon with a number bib among other runners on the track.",
     "runner races marathon city bib runners track race finish running",
     "track", ((150, 200, 250), (190, 70, 50), (250, 250, 250)), ("flag", "clock")),
    ("art gallery visit",
     "A person admires colorful paintings hanging on white walls in a modern art gallery.",
     "art gallery paintings colorful walls admires modern hanging artist exhibition",
     "indoor-plain", ((248, 248, 248), (205, 172, 120), (60, 60, 60)), ("painting", "lamp", "plant")),
    ("family gathering",
     "A person celebrates with family members of all ages at a cheerful home gathering with balloons.",
     "family gathering celebrates members ages cheerful home balloons relatives together",
     "indoor-dots", ((250, 222, 110), (170, 105, 60), (240, 140, 80)), ("balloon", "cake", "table")),
    ("bookstore browsing",
     "A person browses shelves full of new books in a quiet bookstore, picking up a novel.",
     "bookstore browses shelves books novel quiet picking reading shop browsing",
     "indoor-planks", ((55, 110, 75), (125, 85, 50), (200, 180, 120)), ("bookshelf", "book")),
    ("mountain cabin retreat",
     "A person rests at a wooden cabin in the mountains with pine trees and smoke from the chimney.",
     "cabin wooden mountains pine trees chimney smoke retreat rests quiet",
     "hills", ((185, 205, 235), (40, 95, 50), (70, 125, 70)), ("cabin", "mountain", "tree")),
    ("office working",
     "A person works at a desk in an office, typing on a laptop beside a computer monitor.",
     "office works desk typing laptop computer monitor working job work",
     "indoor-panels", ((175, 225, 210), (105, 105, 115), (240, 240, 240)), ("laptop", "lamp", "clock")),
    ("train commute",
     "A commuter rides a crowded train to work, holding a handrail and looking out the window.",
     "commuter rides train crowded work handrail window commute subway travel",
     "train-interior", ((190, 215, 195), (85, 90, 92), (245, 200, 35)), ("bag", "clock")),
    ("mountain hiking",
     "A hiker climbs a rocky mountain trail with a backpack and hiking poles toward the snowy peak.",
     "hiker climbs rocky mountain trail backpack poles snowy peak hiking",
     "rocky", ((115, 165, 235), (135, 115, 95), (95, 80, 65)), ("mountain", "tree", "bird")),
    ("school presentation",
     "A student gives a school presentation in front of classmates, pointing at a green chalkboard.",
     "student school presentation classmates chalkboard pointing green class teacher project",
     "indoor-plain", ((240, 228, 195), (165, 120, 80), (60, 60, 60)), ("board", "book", "clock")),
    ("restaurant dining",
     "A person dines at an elegant restaurant while a waiter serves food and wine on white plates.",
     "restaurant dines elegant waiter serves food wine plates dining meal",
     "indoor-panels", ((90, 18, 35), (40, 18, 22), (225, 180, 85)), ("bottle", "plate", "lamp")),
    ("night sky stargazing",
     "A person gazes at the night sky full of stars and the moon through a telescope.",
     "night sky stars moon telescope gazes stargazing astronomy dark space",
     "night", ((12, 18, 60), (22, 38, 28), (40, 60, 110)), ("moon", "star", "telescope")),
    ("snowshoeing",
     "A person walks across deep white snow wearing snowshoes in a cold winter forest.",
     "snow snowshoes winter cold forest deep white walks snowshoeing outdoors",
     "snow", ((210, 228, 245), (250, 250, 252), (190, 205, 225)), ("tree", "snowman")),
    ("city bike ride",
     "A person rides a bicycle through busy city streets past tall buildings and traffic lights.",
     "rides bicycle city streets buildings traffic lights cycling urban busy",
     "street", ((195, 198, 215), (110, 110, 116), (240, 220, 60)), ("bicycle", "building", "car")),
    ("fashion show",
     "A model walks the runway at a glamorous fashion show while photographers take pictures from the side.",
     "model runway fashion show glamorous photographers pictures walks style clothes",
     "runway", ((125, 10, 85), (30, 10, 32), (245, 245, 245)), ("camera", "lamp")),
    ("fishing trip",
     "A person sits on a wooden dock holding a fishing rod over a calm lake to catch fish.",
     "fishing rod dock wooden lake calm fish catch sits trip",
     "lake", ((190, 222, 240), (35, 105, 150), (150, 100, 50)), ("fish", "tree")),
    ("train station waiting",
     "A person waits on a train station platform with a clock as a train arrives on the tracks.",
     "train station platform waits clock arrives tracks waiting railway travel",
     "platform", ((165, 175, 188), (115, 105, 98), (60, 55, 50)), ("train", "clock")),
    ("charity event",
     "A person volunteers at a charity event, collecting donations at a table with a banner and balloons.",
     "charity event volunteers donations collecting table banner balloons fundraising help",
     "tent", ((250, 225, 240), (120, 200, 120), (235, 60, 90)), ("banner", "table", "balloon")),
    ("nature photography",
     "A photographer takes pictures of birds and flowers with a camera in a green meadow.",
     "photographer pictures birds flowers camera meadow green nature photography wildlife",
     "meadow", ((205, 238, 250), (165, 205, 60), (120, 170, 40)), ("camera", "bird", "flower")),
    ("library studying",
     "A student studies quietly at a long library table with stacks of books and a lamp.",
     "student studies quietly library table stacks books lamp studying exam",
     "indoor-planks", ((105, 65, 38), (65, 38, 20), (220, 190, 130)), ("bookshelf", "book", "lamp")),
    ("boat trip",
     "A person enjoys a boat trip on the blue sea, with seagulls flying and sails in the wind.",
     "boat trip sea blue seagulls flying sails wind sailing ocean",
     "sea", ((140, 210, 250), (20, 75, 170), (230, 240, 255)), ("boat", "bird", "sun")),
    ("biking trail",
     "A cyclist rides a mountain bike along a dirt trail through the forest and over hills.",
     "cyclist rides mountain bike dirt trail forest hills biking adventure",
     "trail", ((170, 210, 240), (100, 140, 45), (160, 115, 65)), ("bicycle", "tree")),
    ("city walk",
     "A person strolls along a city sidewalk past shops, cafes and street lamps on a pleasant afternoon.",
     "strolls city sidewalk shops cafes street lamps afternoon walking urban",
     "sidewalk", ((250, 200, 150), (180, 172, 165), (120, 110, 105)), ("building", "lamp", "dog")),
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
    "Northern Highlands": ("Ardenvale", "Brackmoor", "Caldhollow", "Dunmerrow", "Eskerholm",
                           "Frosthelm", "Glenwick", "Highcairn"),
    "Eastern Plains": ("Ambermead", "Bellharrow", "Corlissa", "Dawnfield", "Elmsworth",
                       "Fallowmere", "Goldreach", "Harrowby"),
    "Southern Coast": ("Azmarin", "Brinecove", "Coralmouth", "Dunesby", "Estuvia",
                       "Gullhaven", "Shellport", "Tidewick"),
    "Western Isles": ("Kelpstone", "Lorrowan", "Mistrava", "Skerrin", "Tarnholm",
                      "Wavecrest", "Westmarra", "Ylvenport"),
    "Central Valley": ("Brookhollow", "Cindervale", "Ferncastle", "Hollowmere", "Millbarrow",
                       "Orchardine", "Ravelstone", "Vintaris"),
    "Desert Frontier": ("Ashkara", "Cactara", "Dustmere", "Emberreach", "Mirazul",
                        "Sandoval Flats", "Sunvarra", "Zephyrine"),
    "Lake District": ("Clearmere", "Loonwater", "Mirrorlake", "Reedholm", "Stillbrook",
                      "Tarnwick", "Willowmere"),
}

# Name parts. Fictitious people get invented surnames built from two syllables, which
# keeps them clear of famous real names; "real-world" people (the pre-training world)
# use a separate, disjoint pool so the two groups never share a name part.
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "female": ("Aveline", "Brisa", "Calista", "Delphine", "Elowen", "Fenna", "Giselle", "Halina",
               "Ilsa", "Jorunn", "Kaelin", "Liora", "Maelis", "Nerys", "Odalys", "Perrin",
               "Quilla", "Rosalind", "Seren", "Talia", "Ulrika", "Verity", "Wrenna", "Xanthe",
               "Yselda", "Zinnia", "Amarantha", "Brielle", "Corisande", "Dagny", "Esmae", "Flavia"),
    "male": ("Aldric", "Bastian", "Corvin", "Dashiell", "Eamon", "Fabian", "Gideon", "Hollis",
             "Ignatius", "Jareth", "Kestrel", "Lucan", "Marius", "Niall", "Oberon", "Percival",
             "Quentin", "Rafferty", "Soren", "Tobias", "Ulric", "Valen", "Wystan", "Xavier",
             "Yorick", "Zebulon", "Anselm", "Barnaby", "Cassius", "Dorian", "Evander", "Florian"),
}
SURNAME_HEADS = ("Ash", "Bram", "Cald", "Dorn", "Elm", "Fenn", "Garr", "Hald", "Ivel", "Jorr",
                 "Kess", "Lorr", "Marr", "Norr", "Orrin", "Pell", "Quell", "Ross", "Sell", "Tamm",
                 "Ulm", "Verr", "Wynn", "Yarr", "Zell")
SURNAME_TAILS = ("wick", "ford", "mere", "dale", "holt", "brook", "stead", "more", "vane",
                 "ley", "ton", "ric", "den", "worth")
REAL_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "female": ("Marta", "Ingrid", "Noemi", "Oriana", "Paloma", "Renata", "Svea", "Tamsin",
               "Vanya", "Wilhelmina", "Adela", "Beatrix", "Clementine", "Dorothea", "Eulalie"),
    "male": ("Anton", "Benedikt", "Cornelius", "Desmond", "Emil", "Fitzgerald", "Gunnar",
             "Horatio", "Ivo", "Jasper", "Konrad", "Leopold", "Magnus", "Nikodem", "Osric"),
}
REAL_SURNAMES = ("Quillon", "Brantley", "Castellane", "Drummore", "Everly", "Fairbairn",
                 "Grimaldo", "Hathersage", "Ingleby", "Jessamy", "Kilbride", "Lindqvist",
                 "Montague", "Nettleship", "Ottaway", "Pemberly", "Ravensworth", "Sinclaire",
                 "Thistlewood", "Underhill", "Valcourt", "Whitlock", "Yardley", "Zabrowski")

# ---------------------------------------------------------------------------------------
# Visual traits. Colours are saturated and parts are drawn large so that a small ViT can
# tell people apart at 32-64 px. Eye colour is drawn but not counted as salient (too small).
SKIN_TONES: dict[str, RGB] = {
    "porcelain": (255, 226, 200), "light": (240, 192, 150), "tan": (222, 164, 104),
    "olive": (188, 138, 80), "brown": (138, 86, 48), "deep": (84, 52, 32),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (20, 20, 22), "brown": (110, 62, 25), "blonde": (245, 210, 90), "red": (205, 60, 25),
    "grey": (160, 160, 166), "white": (248, 248, 248), "blue": (40, 100, 235),
    "pink": (245, 105, 185), "green": (40, 175, 85), "purple": (135, 55, 195),
}
HAIR_STYLES = ("bald", "short", "long", "spiky", "bun", "curly", "ponytail", "mohawk")
FACE_SHAPES = ("round", "oval", "square")
EYE_COLOURS: dict[str, RGB] = {"brown": (90, 50, 20), "blue": (40, 110, 230),
                               "green": (40, 150, 60), "grey": (120, 125, 135)}
GLASSES = ("none", "round", "square", "sunglasses")
BEARDS = ("none", "full", "moustache", "goatee")
HATS: dict[str, RGB] = {"none": (0, 0, 0), "cap": (225, 30, 35), "beanie": (250, 170, 20),
                        "top hat": (25, 25, 28), "headband": (250, 250, 250)}
SHIRT_COLOURS: dict[str, RGB] = {
    "red": (220, 30, 40), "orange": (250, 130, 20), "yellow": (250, 220, 30),
    "lime": (150, 225, 40), "green": (20, 135, 60), "teal": (0, 150, 150),
    "sky blue": (90, 185, 250), "blue": (30, 70, 220), "purple": (125, 40, 175),
    "magenta": (225, 40, 165), "pink": (250, 165, 205), "white": (245, 245, 245),
    "black": (28, 28, 30), "brown": (125, 72, 35),
}
SHIRT_PATTERNS = ("plain", "stripes", "vertical stripes", "dots", "checks", "two-tone", "tie")
TROUSER_COLOURS: dict[str, RGB] = {
    "black": (25, 25, 28), "navy": (25, 35, 95), "grey": (125, 125, 132), "khaki": (195, 175, 120),
    "brown": (100, 60, 30), "white": (235, 235, 235), "red": (185, 25, 35),
    "green": (35, 110, 45), "denim": (60, 100, 170),
}
# The traits counted when requiring that every two people differ in at least 3 of them.
SALIENT_TRAITS = ("skin", "face", "hair_style", "hair_colour", "glasses", "beard", "hat",
                  "shirt_colour", "shirt_pattern", "trousers_colour")
MIN_TRAIT_DISTANCE = 3
_TRAIT_VALUES: dict[str, tuple[str, ...]] = {
    "skin": tuple(SKIN_TONES), "face": FACE_SHAPES, "hair_style": HAIR_STYLES,
    "hair_colour": tuple(HAIR_COLOURS), "glasses": GLASSES, "beard": BEARDS, "hat": tuple(HATS),
    "shirt_colour": tuple(SHIRT_COLOURS), "shirt_pattern": SHIRT_PATTERNS,
    "trousers_colour": tuple(TROUSER_COLOURS), "eye_colour": tuple(EYE_COLOURS),
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
        return {"id": self.id, "name": self.name, "description": self.description,
                "keywords": list(self.keywords), "props": list(self.props),
                "palette": {k: list(v) for k, v in self.palette.items()}, "layout": self.layout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        return cls(id=d["id"], name=d["name"], description=d["description"],
                   keywords=tuple(d["keywords"]), props=tuple(d.get("props", ())),
                   palette={k: tuple(v) for k, v in d.get("palette", {}).items()},
                   layout=d.get("layout", ""))


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


def _event_catalogue() -> tuple[Event, ...]:
    out = []
    for i, (name, desc, kws, layout, (sky, ground, accent), props) in enumerate(_EVENT_ROWS):
        out.append(Event(id=f"e{i:02d}", name=name, description=desc, keywords=tuple(kws.split()),
                         props=tuple(props), palette={"sky": sky, "ground": ground, "accent": accent},
                         layout=layout))
    return tuple(out)


EVENTS: tuple[Event, ...] = _event_catalogue()


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
    _index: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _lookup(self) -> dict[str, Any]:
        if not self._index:
            self._index.update({p.id: p for p in [*self.people, *self.real_people]})
            self._index.update({e.id: e for e in self.events})
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
            "splits": self.splits,
            "questions": QUESTIONS,
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
        return cls(config=cfg, seed=int(d["seed"]), generator_version=d["generator_version"],
                   people=[Person.from_dict(p) for p in d["people"]],
                   real_people=[Person.from_dict(p) for p in d["real_people"]],
                   events=[Event.from_dict(e) for e in d["events"]],
                   splits={t: {k: list(v) for k, v in s.items()} for t, s in d["splits"].items()})


def expected_counts(cfg: WorldConfig) -> dict[str, int]:
    """Images per role and POPE questions a world with this config holds (no rendering)."""
    pairs = cfg.n_people * cfg.n_events
    real_pairs = cfg.n_real_people * cfg.n_events
    counts = {
        "train": pairs * cfg.train_renders,
        "heldout": pairs * cfg.heldout_renders,
        "pretrain": real_pairs * cfg.pretrain_renders,
        "pretrain_eval": real_pairs * cfg.pretrain_eval_renders,
    }
    counts["images"] = sum(counts.values())
    counts["pope"] = (counts["pretrain"] + counts["pretrain_eval"]) * cfg.pope_questions
    return counts


# ---------------------------------------------------------------------------------------
# World generation
def _trait_codes(traits: Mapping[str, str]) -> list[int]:
    return [_TRAIT_VALUES[t].index(traits[t]) for t in SALIENT_TRAITS]


def trait_distance(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    """Number of salient traits in which two people differ."""
    return sum(a[t] != b[t] for t in SALIENT_TRAITS)


def _random_traits(rng: random.Random, gender: str) -> dict[str, str]:
    t = {name: rng.choice(values) for name, values in _TRAIT_VALUES.items()}
    # Beards only on men, and only sometimes: realism, and it keeps the trait informative.
    t["beard"] = rng.choice(BEARDS) if gender == "male" else "none"
    return t


def _pick_traits(rng: random.Random, gender: str, taken: np.ndarray, n_candidates: int = 48) -> dict[str, str]:
    """Greedy max-min: of ``n_candidates`` random trait sets keep the one farthest (in
    salient-trait Hamming distance) from everyone already drawn. This spreads identities
    out far beyond the required minimum, which is what makes them learnable."""
    cands = [_random_traits(rng, gender) for _ in range(n_candidates)]
    if len(taken) == 0:
        return cands[0]
    codes = np.array([_trait_codes(c) for c in cands])  # (C, T)
    dist = (codes[:, None, :] != taken[None, :, :]).sum(-1).min(1)  # (C,)
    return cands[int(np.argmax(dist))]  # argmax takes the first best: deterministic


def _make_people(rng: random.Random, n: int, prefix: str, real: bool, names_taken: set[str],
                 taken: list[list[int]], first_names: Mapping[str, tuple[str, ...]],
                 surname: Any) -> list[Person]:
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
        people.append(Person(id=f"{prefix}{i:0{width}d}", name=name, age=rng.randint(21, 74),
                             gender=gender, profession=rng.choice(OCCUPATION_CATEGORIES[category]),
                             occupation_category=category, birthplace=city, region=region,
                             traits=traits, real=real))
    return people


def make_splits(person_ids: list[str], event_ids: list[str], share: float,
                rng: random.Random) -> dict[str, dict[str, list[str]]]:
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
    people = _make_people(rng, cfg.n_people, "p", False, names, codes, FIRST_NAMES,
                          lambda r: r.choice(SURNAME_HEADS) + r.choice(SURNAME_TAILS))
    real = _make_people(rng, cfg.n_real_people, "r", True, names, codes, REAL_FIRST_NAMES,
                        lambda r: r.choice(REAL_SURNAMES))
    events = list(EVENTS[: cfg.n_events])
    splits = make_splits([p.id for p in people], [e.id for e in events], cfg.forget_share, rng)
    return World(config=cfg, seed=seed, generator_version=GENERATOR_VERSION, people=people,
                 real_people=real, events=events, splits=splits)


# ---------------------------------------------------------------------------------------
# Scene planning: where each prop goes. Shared by render() and objects_in(), so the
# objects POPE asks about are exactly the objects drawn.
_ROWS = ("top", "mid", "bottom")
_ZONE_ROWS = {"sky": ("top",), "wall": ("mid", "top"), "floor": ("bottom", "mid"),
              "small": ("mid", "bottom")}


@dataclass(frozen=True)
class _Placed:
    name: str
    side: int  # 0 left, 1 right
    row: str  # top / mid / bottom / back
    dx: float  # horizontal jitter, fraction of image
    dy: float
    scale: float


def _plan(event: Event, render_seed: int) -> tuple[list[_Placed], random.Random]:
    """Place the event's props (always all of them) and 0-2 distractors in six cells
    (left/right × top/mid/bottom); a "back" prop takes the top and mid cells of a side."""
    rng = random.Random(render_seed)
    free = {(s, r) for s in (0, 1) for r in _ROWS}
    start = rng.randrange(2)  # which side the first prop goes to: mirrors the scene
    placed: list[_Placed] = []

    def put(name: str, i: int, scale: float) -> bool:
        zone = OBJECT_ZONES[name]
        sides = ((start + i) % 2, (start + i + 1) % 2)
        if zone == "back":
            for s in sides:
                if (s, "top") in free and (s, "mid") in free:
                    free.difference_update({(s, "top"), (s, "mid")})
                    placed.append(_Placed(name, s, "back", rng.uniform(-0.03, 0.03), 0.0, scale))
                    return True
            return False
        for row in _ZONE_ROWS[zone]:
            for s in sides:
                if (s, row) in free:
                    free.discard((s, row))
                    placed.append(_Placed(name, s, row, rng.uniform(-0.04, 0.04),
                                          rng.uniform(-0.03, 0.03), scale))
                    return True
        return False

    for i, name in enumerate(event.props):
        put(name, i, rng.uniform(0.9, 1.1))
    n_extra = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
    pool = [d for d in DISTRACTORS if d not in event.props]
    for j in range(n_extra):
        name = pool.pop(rng.randrange(len(pool)))
        put(name, len(event.props) + j, rng.uniform(0.6, 0.75))
    return placed, rng


def objects_in(world: World | None, event: Event | str, render_seed: int) -> tuple[str, ...]:
    """Names of the objects drawn in the render of ``event`` with ``render_seed`` (sorted).

    The person does not change which objects are drawn, so no person is needed."""
    if isinstance(event, str):
        if world is None:
            raise ConfigError("objects_in needs a world to look up an event id")
        event = world.event(event)
    placed, _ = _plan(event, render_seed)
    return tuple(sorted({p.name for p in placed}))


# ---------------------------------------------------------------------------------------
# Drawing helpers. Coordinates are pixels of the (possibly supersampled) canvas.
def _shade(c: Iterable[int], f: float) -> RGB:
    return tuple(max(0, min(255, int(round(v * f)))) for v in c)  # type: ignore[return-value]


def _mix(a: Iterable[int], b: Iterable[int], t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _draw_background(d: ImageDraw.ImageDraw, S: int, event: Event, rng: random.Random) -> float:
    """Paint the scene behind everything; returns the horizon height (fraction of S)."""
    sky, ground, acc = (tuple(event.palette[k]) for k in ("sky", "ground", "accent"))
    lay = event.layout
    indoor = lay.startswith("indoor") or lay in ("storefront", "window", "columns", "aisle",
                                                  "train-interior", "stage", "runway", "dancefloor")
    h = (0.64 if indoor else 0.58) + rng.uniform(-0.03, 0.03)
    H = int(h * S)
    d.rectangle([0, 0, S, H], fill=sky)
    d.rectangle([0, H, S, S], fill=ground)
    w = max(1, S // 64)  # a line width that stays visible at every size

    if lay == "indoor-panels":  # vertical wall panels and a skirting board
        for x in range(0, S, S // 6):
            d.rectangle([x + S // 40, S // 12, x + S // 6 - S // 40, H - S // 12], outline=_shade(sky, 1.35), width=w)
        d.rectangle([0, H - S // 30, S, H], fill=acc)
    elif lay == "indoor-planks":  # wooden floor boards, wainscot
        for y in range(H, S, max(2, S // 14)):
            d.line([0, y, S, y], fill=_shade(ground, 0.75), width=w)
        d.rectangle([0, int(H - 0.12 * S), S, H], fill=_shade(sky, 0.8))
        d.line([0, int(H - 0.12 * S), S, int(H - 0.12 * S)], fill=acc, width=w)
    elif lay == "indoor-carpet":  # plain carpet with a border and a picture rail
        d.rectangle([0, H, S, H + S // 24], fill=_shade(ground, 1.4))
        d.line([0, S // 5, S, S // 5], fill=_shade(sky, 1.3), width=w)
    elif lay == "indoor-tiles":  # gym: rubber tiles, a red stripe on the wall
        step = max(2, S // 8)
        for x in range(0, S, step):
            d.line([x, H, x, S], fill=_shade(ground, 1.8), width=w)
        d.rectangle([0, int(0.35 * S), S, int(0.41 * S)], fill=acc)
    elif lay == "indoor-stripes":  # cafe: striped wallpaper
        step = max(4, S // 10)
        for x in range(0, S, step):
            d.rectangle([x, 0, x + step // 3, H], fill=_mix(sky, acc, 0.45))
    elif lay == "indoor-dots":  # home: dotted wallpaper
        step = max(4, S // 8)
        r = max(1, S // 64)
        for y in range(step // 2, H, step):
            for x in range((y // step % 2) * step // 2, S, step):
                d.ellipse([x - r, y - r, x + r, y + r], fill=acc)
    elif lay == "indoor-plain":
        d.line([0, H, S, H], fill=acc, width=w)
    elif lay == "storefront":  # shop windows in bright colours
        cols = [acc, (250, 200, 60), (120, 210, 120)]
        for k, x in enumerate(range(0, S, S // 3)):
            d.rectangle([x + S // 30, S // 8, x + S // 3 - S // 30, int(H * 0.8)], fill=cols[k % 3],
                        outline=(255, 255, 255), width=w)
    elif lay == "window":  # big window showing the sky
        d.rectangle([S // 12, S // 10, S - S // 12, int(H * 0.78)], fill=acc, outline=(240, 240, 245), width=2 * w)
        d.line([S // 2, S // 10, S // 2, int(H * 0.78)], fill=(240, 240, 245), width=2 * w)
    elif lay == "columns":  # museum: pale columns
        for x in (S // 10, S // 2 - S // 14, S - S // 10 - S // 7):
            d.rectangle([x, S // 12, x + S // 7, H], fill=acc, outline=_shade(acc, 0.8), width=w)
    elif lay == "aisle":  # supermarket shelves full of coloured produce
        for y in (int(0.18 * S), int(0.36 * S), int(0.54 * S)):
            d.rectangle([0, y, S, y + max(1, S // 40)], fill=acc)
            for k, x in enumerate(range(S // 40, S, max(3, S // 16))):
                c = ((230, 60, 50), (250, 180, 40), (90, 190, 70), (240, 120, 170))[(k + y) % 4]
                d.rectangle([x, y - S // 16, x + S // 24, y], fill=c)
    elif lay == "train-interior":  # a row of windows and yellow poles
        for x in range(S // 16, S, S // 4):
            d.rounded_rectangle([x, S // 8, x + S // 5, int(0.4 * S)], radius=S // 40,
                                fill=(150, 200, 240), outline=(230, 230, 230), width=w)
        for x in (S // 5, 4 * S // 5):
            d.rectangle([x - w, 0, x + w, H], fill=acc)
    elif lay == "stage":  # dark stage with spotlight beams
        for k, x in enumerate((S // 6, S // 2, 5 * S // 6)):
            beam = _mix(sky, acc, 0.55)
            d.polygon([(x - S // 40, 0), (x + S // 40, 0), (x + S // 7, H), (x - S // 7, H)], fill=beam)
        d.rectangle([0, H, S, H + S // 30], fill=acc)
    elif lay == "runway":  # a white catwalk running to the back
        d.polygon([(int(0.4 * S), H), (int(0.6 * S), H), (int(0.85 * S), S), (int(0.15 * S), S)], fill=acc)
        for x in range(S // 8, S, S // 4):
            d.ellipse([x - S // 50, S // 6 - S // 50, x + S // 50, S // 6 + S // 50], fill=(255, 255, 220))
    elif lay == "dancefloor":  # coloured checkerboard floor
        step = max(2, S // 8)
        for yi, y in enumerate(range(H, S, step)):
            for xi, x in enumerate(range(0, S, step)):
                if (xi + yi) % 2:
                    d.rectangle([x, y, x + step, y + step], fill=acc)
        r = S // 14
        d.ellipse([S // 2 - r, S // 14 - r // 2, S // 2 + r, S // 14 + r + r // 2], fill=(210, 210, 225))
    elif lay in ("path", "trail"):  # a winding path into the distance
        d.polygon([(int(0.45 * S), H), (int(0.55 * S), H), (int(0.75 * S), S), (int(0.25 * S), S)], fill=acc)
        if lay == "trail":
            for x0, r in ((0.2, 0.35), (0.8, 0.3)):
                d.ellipse([int((x0 - r) * S), int(H - 0.12 * S), int((x0 + r) * S), int(H + 0.12 * S)],
                          fill=_shade(ground, 0.85))
    elif lay == "field":  # crop rows
        for y in range(H + S // 20, S, max(2, S // 12)):
            d.line([0, y, S, y], fill=acc, width=w)
    elif lay == "plaza":  # paving stones
        step = max(3, S // 8)
        for y in range(H, S, step):
            d.line([0, y, S, y], fill=acc, width=w)
        for x in range(0, S, step):
            d.line([x, H, x, S], fill=acc, width=w)
    elif lay == "outdoor":  # dirt with a low hedge on the horizon
        d.rectangle([0, H - S // 20, S, H], fill=(70, 140, 70))
        d.line([0, H + S // 8, S, H + S // 8], fill=acc, width=w)
    elif lay == "beach":  # sea band with wave crests above the sand
        sea = int(H + 0.1 * S)
        d.rectangle([0, H - S // 20, S, sea], fill=acc)
        for y in (H, H + S // 20):
            for x in range(0, S, S // 8):
                d.arc([x, y - S // 40, x + S // 8, y + S // 40], 180, 360, fill=(240, 250, 255), width=w)
    elif lay == "sea":  # open water with wave crests everywhere
        d.rectangle([0, H, S, S], fill=ground)
        for y in range(H + S // 20, S, S // 10):
            for x in range((y // 7) % (S // 6), S, S // 6):
                d.arc([x, y - S // 40, x + S // 10, y + S // 40], 180, 360, fill=acc, width=w)
    elif lay == "lake":  # far shore, water, wooden dock in front
        d.rectangle([0, H - S // 25, S, H], fill=(60, 120, 60))
        dock = int(0.84 * S)
        d.rectangle([0, dock, S, S], fill=acc)
        for x in range(0, S, max(3, S // 10)):
            d.line([x, dock, x, S], fill=_shade(acc, 0.7), width=w)
    elif lay == "road":  # grass verge, grey road with a dashed centre line
        top = int(H + 0.08 * S)
        d.rectangle([0, top, S, S], fill=acc)
        y = (top + S) // 2
        for x in range(0, S, S // 6):
            d.rectangle([x, y - w, x + S // 12, y + w], fill=(250, 250, 250))
    elif lay == "track":  # running track with white lane lines
        top = int(H + 0.05 * S)
        d.rectangle([0, H, S, top], fill=(90, 160, 70))
        for y in range(top, S, max(3, S // 10)):
            d.line([0, y, S, y], fill=acc, width=w)
    elif lay == "hills":  # rolling hills
        for x0, r, f in ((0.15, 0.45, 0.8), (0.85, 0.4, 0.9)):
            d.ellipse([int((x0 - r) * S), int(H - 0.15 * S), int((x0 + r) * S), int(H + 0.2 * S)],
                      fill=_shade(acc, f))
        d.rectangle([0, H, S, S], fill=ground)
    elif lay == "rocky":  # grey rocks scattered on the ground
        for k in range(5):
            x, y = rng.uniform(0.05, 0.95) * S, rng.uniform(h + 0.08, 0.95) * S
            r = S // 22
            d.ellipse([x - r * 1.5, y - r, x + r * 1.5, y + r], fill=acc)
    elif lay == "night":  # dark sky, silhouetted ground with a faint glow on the horizon
        d.rectangle([0, H - S // 14, S, H], fill=acc)
        for k in range(10):  # tiny faint specks, not the drawable "star" object
            x, y = rng.uniform(0, 1) * S, rng.uniform(0.02, h - 0.1) * S
            d.point((x, y), fill=(120, 130, 170))
    elif lay == "snow":  # white ground and falling snowflakes
        for k in range(14):
            x, y = rng.uniform(0, 1) * S, rng.uniform(0, 1) * S
            r = max(1, S // 90)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))
        d.line([0, H, S, H], fill=acc, width=w)
    elif lay == "street":  # asphalt with zebra crossing and a kerb
        kerb = int(H + 0.05 * S)
        d.rectangle([0, H, S, kerb], fill=(170, 170, 170))
        for x in range(S // 12, S, S // 8):
            d.rectangle([x, int(0.8 * S), x + S // 16, int(0.92 * S)], fill=(245, 245, 245))
        d.rectangle([S // 2 - w, kerb, S // 2 + w, int(0.75 * S)], fill=acc)
    elif lay == "platform":  # platform edge and rails with sleepers
        edge = int(H + 0.12 * S)
        d.rectangle([0, edge - S // 40, S, edge], fill=(245, 210, 30))
        d.rectangle([0, edge, S, edge + S // 10], fill=(80, 70, 60))
        for x in range(0, S, S // 10):
            d.rectangle([x, edge + S // 60, x + S // 30, edge + S // 10 - S // 60], fill=(130, 100, 70))
        for y in (edge + S // 40, edge + S // 14):
            d.line([0, y, S, y], fill=(190, 190, 200), width=w)
    elif lay == "tent":  # a striped awning across the top
        step = max(4, S // 8)
        for k, x in enumerate(range(0, S, step)):
            d.rectangle([x, 0, x + step, S // 8], fill=acc if k % 2 else (255, 255, 255))
    elif lay == "meadow":  # long grass
        for k in range(18):
            x, y = rng.uniform(0, 1) * S, rng.uniform(h + 0.05, 1.0) * S
            d.line([x, y, x + S // 60, y - S // 20], fill=acc, width=w)
    elif lay == "sidewalk":  # paving slabs and a kerb
        kerb = int(0.8 * S)
        for x in range(0, S, S // 5):
            d.line([x, H, x - S // 20, kerb], fill=acc, width=w)
        d.rectangle([0, kerb, S, S], fill=(95, 95, 100))
    return h


def _draw_prop(d: ImageDraw.ImageDraw, name: str, cx: float, by: float, s: float) -> None:
    """Draw object ``name`` with its bottom centre at (cx, by) and height about ``s``."""
    u = s / 10.0  # one "unit": a tenth of the prop height

    def R(x0: float, y0: float, x1: float, y1: float, fill: RGB, **kw: Any) -> None:
        d.rectangle([cx + x0 * u, by - y1 * u, cx + x1 * u, by - y0 * u], fill=fill, **kw)

    def E(x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        d.ellipse([cx + x0 * u, by - y1 * u, cx + x1 * u, by - y0 * u], fill=fill)

    def P(pts: list[tuple[float, float]], fill: RGB) -> None:
        d.polygon([(cx + x * u, by - y * u) for x, y in pts], fill=fill)

    def L(x0: float, y0: float, x1: float, y1: float, fill: RGB, w: float = 0.8) -> None:
        d.line([cx + x0 * u, by - y0 * u, cx + x1 * u, by - y1 * u], fill=fill, width=max(1, int(w * u)))

    if name == "sun":
        E(-4, 2, 4, 10, (255, 210, 30))
        for a in range(0, 360, 45):
            c, s_ = math.cos(math.radians(a)), math.sin(math.radians(a))
            L(c * 4.5, 6 + s_ * 4.5, c * 6, 6 + s_ * 6, (255, 190, 20), 0.7)
    elif name == "moon":
        E(-4, 2, 4, 10, (250, 245, 200))
        E(-1.5, 3.5, 5.5, 10.5, (12, 18, 60))  # night-sky bite makes a crescent
    elif name == "star":
        for k, (ox, oy) in enumerate(((-3, 6), (3, 9), (1, 3), (-5, 1.5))):
            r = 2.2 if k == 0 else 1.4
            P([(ox + r * math.cos(math.radians(90 + 144 * i)), oy + r * math.sin(math.radians(90 + 144 * i)))
               for i in range(5)], (255, 245, 150))
            E(ox - r * 0.5, oy - r * 0.5, ox + r * 0.5, oy + r * 0.5, (255, 245, 150))
    elif name == "bird":
        L(-4, 6, 0, 4, (30, 30, 40), 0.9)
        L(0, 4, 4, 6, (30, 30, 40), 0.9)
        E(-0.8, 3.3, 0.8, 4.8, (30, 30, 40))
    elif name == "airplane":
        R(-5, 4, 5, 6, (245, 245, 250))
        P([(-1, 6), (1, 6), (-2, 10), (-3, 10)], (220, 50, 50))
        P([(-1, 4), (1, 4), (-2, 1), (-3, 1)], (200, 200, 210))
        P([(-5, 6), (-4, 6), (-5.5, 8.5)], (220, 50, 50))
    elif name == "balloon":
        L(0, 0, 0, 5, (80, 80, 80), 0.4)
        E(-2.5, 5, 2.5, 11, (240, 40, 80))
        E(1.5, 3, 5.5, 8.5, (60, 140, 250))
    elif name == "painting":
        R(-5, 1, 5, 9, (150, 100, 30))
        R(-4, 2, 4, 8, (120, 200, 240))
        P([(-4, 2), (-1, 6), (2, 2)], (60, 150, 60))
        E(1, 5, 3, 7, (250, 200, 40))
    elif name == "clock":
        E(-4, 1, 4, 9, (40, 40, 45))
        E(-3.3, 1.7, 3.3, 8.3, (250, 250, 250))
        L(0, 5, 0, 7.5, (20, 20, 20), 0.6)
        L(0, 5, 2, 5, (20, 20, 20), 0.6)
    elif name == "screen":
        R(-6, 1, 6, 10, (240, 240, 245), outline=(40, 40, 50), width=max(1, int(0.5 * u)))
        for k, hgt in enumerate((3, 6, 4.5)):
            R(-4 + 3 * k, 2, -2.5 + 3 * k, 2 + hgt, ((40, 110, 230), (240, 120, 30), (40, 170, 80))[k])
    elif name == "board":
        R(-6, 1, 6, 9, (20, 95, 55), outline=(140, 90, 40), width=max(1, int(0.6 * u)))
        L(-4, 6, 1, 6, (240, 240, 240), 0.4)
        L(-4, 4, 3, 4, (240, 240, 240), 0.4)
    elif name == "banner":
        R(-6, 4, 6, 9, (240, 60, 90))
        R(-4.5, 5.7, 4.5, 7.3, (255, 255, 255))
        L(-6, 0, -6, 9, (90, 90, 90), 0.5)
        L(6, 0, 6, 9, (90, 90, 90), 0.5)
    elif name == "tower":
        P([(-3, 0), (3, 0), (0.8, 10), (-0.8, 10)], (120, 110, 100))
        R(-2, 4, 2, 5, (90, 80, 70))
        R(-0.5, 10, 0.5, 11.5, (90, 80, 70))
    elif name == "building":
        R(-3.5, 0, 3.5, 10, (140, 150, 170))
        for yy in range(1, 10, 2):
            for xx in (-2.5, -0.5, 1.5):
                R(xx, yy, xx + 1, yy + 1, (250, 235, 140))
    elif name == "barn":
        R(-4.5, 0, 4.5, 5.5, (200, 35, 30))
        P([(-5, 5.5), (5, 5.5), (0, 9)], (120, 30, 25))
        R(-1.5, 0, 1.5, 3.5, (250, 250, 250))
    elif name == "cabin":
        R(-4.5, 0, 4.5, 5, (140, 85, 40))
        for yy in (1, 2, 3, 4):
            L(-4.5, yy, 4.5, yy, (100, 60, 25), 0.3)
        P([(-5.5, 5), (5.5, 5), (0, 9)], (80, 45, 20))
        R(2, 6.5, 3.2, 9.5, (100, 100, 100))
        E(2.3, 9.5, 4.5, 11, (210, 210, 210))  # chimney smoke
    elif name == "mountain":
        P([(-6, 0), (6, 0), (0, 10)], (115, 110, 125))
        P([(-1.8, 7), (1.8, 7), (0, 10)], (250, 250, 255))
    elif name == "train":
        R(-6, 1, 6, 8, (30, 120, 200))
        R(-6, 5.5, 6, 7, (240, 240, 240))
        for xx in (-4.5, -1, 2.5):
            R(xx, 3.5, xx + 2, 5.5, (200, 230, 250))
        E(-5, 0, -3, 2, (30, 30, 30))
        E(3, 0, 5, 2, (30, 30, 30))
    elif name == "bookshelf":
        R(-4.5, 0, 4.5, 11, (110, 65, 30))
        for yy in (1, 4.5, 8):
            for k, xx in enumerate((-3.8, -2.5, -1.2, 0.1, 1.4, 2.7)):
                R(xx, yy, xx + 1.1, yy + 2.6, ((210, 40, 40), (40, 90, 200), (240, 200, 40), (40, 150, 70))[(k + int(yy)) % 4])
    elif name == "tree":
        R(-0.8, 0, 0.8, 4, (110, 70, 30))
        E(-3.5, 3, 3.5, 10, (30, 130, 45))
    elif name == "flower":
        L(0, 0, 0, 5, (40, 140, 40), 0.6)
        for ox, oy in ((-1.2, 6), (1.2, 6), (0, 7.2), (0, 4.8)):
            E(ox - 1.1, oy - 1.1, ox + 1.1, oy + 1.1, (240, 70, 150))
        E(-0.7, 5.3, 0.7, 6.7, (255, 220, 40))
    elif name == "cow":
        R(-4, 2.5, 3, 6, (250, 250, 250))
        E(-2.5, 3.5, -0.5, 5.5, (30, 30, 30))
        E(0.5, 4, 2.5, 5.8, (30, 30, 30))
        R(2.5, 4.5, 5, 7, (250, 250, 250))
        R(4.2, 4.5, 5.2, 5.6, (250, 170, 170))
        for xx in (-3.5, -2, 1, 2.3):
            R(xx, 0, xx + 0.8, 2.5, (60, 60, 60))
    elif name == "giraffe":
        R(-3, 3, 1.5, 5.5, (240, 185, 60))
        P([(0.2, 5), (1.5, 5), (3.6, 10), (2.6, 10)], (240, 185, 60))
        R(2.3, 9.5, 4.5, 11, (240, 185, 60))
        for xx, yy in ((-2, 3.7), (0, 4.2), (2.2, 7.5)):
            E(xx - 0.5, yy - 0.5, xx + 0.5, yy + 0.5, (140, 80, 30))
        for xx in (-2.8, -1.5, 0, 1):
            R(xx, 0, xx + 0.5, 3, (200, 150, 50))
    elif name == "dog":
        R(-3, 1.5, 2, 4, (170, 110, 50))
        E(1.2, 3, 4, 6, (170, 110, 50))
        E(2.8, 4.5, 3.6, 5.3, (20, 20, 20))
        for xx in (-2.7, 1):
            R(xx, 0, xx + 0.8, 1.7, (140, 90, 40))
        L(-3, 3.5, -4.5, 5, (170, 110, 50), 0.6)
    elif name == "fence":
        for xx in (-5, -2.5, 0, 2.5, 5):
            P([(xx - 0.8, 0), (xx + 0.8, 0), (xx + 0.8, 5.5), (xx, 6.5), (xx - 0.8, 5.5)], (235, 225, 200))
        R(-5.5, 1.5, 5.5, 2.3, (200, 185, 150))
        R(-5.5, 4, 5.5, 4.8, (200, 185, 150))
    elif name == "table":
        R(-5, 3.5, 5, 4.5, (150, 95, 45))
        R(-4.5, 0, -3.7, 3.5, (120, 75, 35))
        R(3.7, 0, 4.5, 3.5, (120, 75, 35))
    elif name == "car":
        R(-5.5, 1, 5.5, 4, (220, 40, 40))
        P([(-3, 4), (3, 4), (2, 6.5), (-2, 6.5)], (220, 40, 40))
        P([(-2.3, 4.2), (2.3, 4.2), (1.6, 6), (-1.6, 6)], (190, 225, 250))
        E(-4.5, 0, -2, 2.5, (25, 25, 25))
        E(2, 0, 4.5, 2.5, (25, 25, 25))
    elif name == "bicycle":
        for xx in (-3, 3):
            d.ellipse([cx + (xx - 2.4) * u, by - 4.8 * u, cx + (xx + 2.4) * u, by], outline=(30, 30, 30),
                      width=max(1, int(0.6 * u)))
        L(-3, 2.4, 0, 2.4, (30, 120, 220), 0.7)
        L(0, 2.4, 3, 2.4, (30, 120, 220), 0.7)
        L(-3, 2.4, -1, 5.5, (30, 120, 220), 0.7)
        L(0, 2.4, 2, 5.5, (30, 120, 220), 0.7)
        L(-1, 5.5, 2, 5.5, (30, 120, 220), 0.7)
    elif name == "boat":
        P([(-5.5, 3), (5.5, 3), (4, 0.5), (-4, 0.5)], (200, 60, 40))
        L(0, 3, 0, 11, (90, 60, 30), 0.5)
        P([(0.3, 4), (0.3, 10.5), (4.5, 4)], (250, 250, 250))
    elif name == "cart":
        P([(-4, 3), (4.5, 3), (5, 7), (-4.5, 7)], (180, 185, 195))
        for yy in (4, 5, 6):
            L(-4, yy, 4.5, yy, (120, 125, 135), 0.3)
        L(-4.5, 7, -5.5, 8.5, (60, 60, 60), 0.6)
        E(-3.5, 0, -2, 1.5, (30, 30, 30))
        E(2.5, 0, 4, 1.5, (30, 30, 30))
    elif name == "speaker":
        R(-3, 0, 3, 9, (35, 35, 40))
        E(-2, 1, 2, 5, (90, 90, 100))
        E(-1.2, 6, 1.2, 8.2, (90, 90, 100))
    elif name == "statue":
        R(-2.5, 0, 2.5, 2.5, (180, 175, 165))
        R(-1.2, 2.5, 1.2, 7.5, (235, 230, 220))
        E(-1.3, 7.3, 1.3, 9.8, (235, 230, 220))
        L(1.2, 6.5, 2.5, 9.5, (235, 230, 220), 0.7)
    elif name == "snowman":
        E(-3, 0, 3, 5, (252, 252, 255))
        E(-2.1, 4.2, 2.1, 8.2, (252, 252, 255))
        R(-1.6, 8, 1.6, 10.5, (30, 30, 30))
        P([(0, 6.3), (0, 5.8), (1.8, 6)], (250, 130, 20))
    elif name == "telescope":
        L(0, 4, -2.5, 0, (60, 60, 60), 0.5)
        L(0, 4, 2.5, 0, (60, 60, 60), 0.5)
        P([(-3, 4.5), (-2.3, 3.4), (4, 8.3), (3.3, 9.4)], (210, 210, 220))
    elif name == "umbrella":
        L(0, 0, 0, 8, (90, 90, 90), 0.5)
        d.pieslice([cx - 5.5 * u, by - 11 * u, cx + 5.5 * u, by - 5 * u], 180, 360, fill=(250, 80, 60))
        d.pieslice([cx - 2 * u, by - 11 * u, cx + 2 * u, by - 5 * u], 180, 360, fill=(255, 240, 80))
    elif name == "guitar":
        E(-2.5, 0, 2.5, 4, (200, 110, 40))
        E(-2, 3, 2, 6, (200, 110, 40))
        E(-0.7, 2.3, 0.7, 3.7, (40, 25, 10))
        R(-0.4, 5.5, 0.4, 10, (80, 50, 20))
    elif name == "microphone":
        L(0, 0, 0, 7, (60, 60, 60), 0.5)
        L(-2, 0, 2, 0, (60, 60, 60), 0.7)
        E(-1, 6.5, 1, 9, (150, 150, 160))
    elif name == "camera":
        L(0, 0, -2, 0, (50, 50, 50), 0.4)
        L(0, 5, -2, 0, (50, 50, 50), 0.4)
        L(0, 5, 2, 0, (50, 50, 50), 0.4)
        R(-3, 5, 3, 9, (35, 35, 40))
        E(-1.5, 5.5, 1.5, 8.5, (100, 160, 220))
        R(1, 9, 2.5, 9.8, (35, 35, 40))
    elif name == "suitcase":
        R(-3, 0, 3, 6.5, (240, 140, 30))
        R(-1, 6.5, 1, 7.5, (60, 60, 60), outline=(60, 60, 60))
        L(-1.5, 0.5, -1.5, 6, (200, 110, 20), 0.4)
        L(1.5, 0.5, 1.5, 6, (200, 110, 20), 0.4)
    elif name == "lamp":
        L(0, 0, 0, 7.5, (50, 50, 50), 0.5)
        L(-1.5, 0, 1.5, 0, (50, 50, 50), 0.7)
        P([(-2.5, 7), (2.5, 7), (1.5, 10), (-1.5, 10)], (255, 230, 120))
    elif name == "plant":
        P([(-2, 0), (2, 0), (2.5, 3), (-2.5, 3)], (190, 90, 50))
        for xx, yy in ((-1.5, 5), (1.5, 5), (0, 6.5)):
            E(xx - 1.6, yy - 2, xx + 1.6, yy + 2, (40, 160, 60))
    elif name == "flag":
        L(-3, 0, -3, 10, (90, 90, 90), 0.5)
        R(-3, 6, 3, 10, (40, 80, 210))
        R(-3, 7.4, 3, 8.6, (250, 250, 250))
    elif name == "cup":
        P([(-2, 0), (2, 0), (2.5, 4.5), (-2.5, 4.5)], (250, 250, 250))
        d.arc([cx + 1.5 * u, by - 3.8 * u, cx + 4 * u, by - 1.2 * u], 270, 90, fill=(250, 250, 250),
              width=max(1, int(0.6 * u)))
        R(-2.1, 3.5, 2.1, 4.3, (120, 70, 30))
    elif name == "plate":
        E(-4, 0, 4, 2, (250, 250, 250))
        E(-1.8, 0.5, 1.8, 1.6, (200, 100, 60))
    elif name == "book":
        R(-3, 0, 3, 4.5, (40, 90, 200))
        R(-2.6, 0.3, 2.6, 1, (250, 250, 240))
        R(-0.4, 0, 0.4, 4.5, (20, 50, 140))
    elif name == "laptop":
        P([(-4, 0), (4, 0), (4.5, 1), (-4.5, 1)], (150, 150, 160))
        R(-3.3, 1, 3.3, 6, (70, 70, 80))
        R(-2.8, 1.6, 2.8, 5.4, (140, 200, 250))
    elif name == "bag":
        R(-3, 0, 3, 5, (230, 50, 120))
        d.arc([cx - 1.8 * u, by - 7 * u, cx + 1.8 * u, by - 3.5 * u], 180, 360, fill=(120, 30, 70),
              width=max(1, int(0.6 * u)))
    elif name == "apple":
        E(-2, 0, 2, 4, (220, 30, 30))
        L(0, 4, 0.5, 5.2, (90, 60, 20), 0.4)
        E(0.5, 4.2, 2, 5.2, (50, 160, 50))
    elif name == "bottle":
        R(-1.5, 0, 1.5, 5, (30, 120, 60))
        R(-0.6, 5, 0.6, 7.5, (30, 120, 60))
        R(-1.5, 1.5, 1.5, 3.2, (245, 235, 200))
    elif name == "fish":
        E(-3, 0.5, 2, 3.5, (250, 150, 40))
        P([(1.5, 2), (3.5, 0.3), (3.5, 3.7)], (250, 150, 40))
        E(-2.2, 2, -1.4, 2.8, (20, 20, 20))
    elif name == "dumbbell":
        R(-3, 1.6, 3, 2.4, (150, 150, 155))
        R(-4.5, 0, -2.5, 4, (40, 40, 45))
        R(2.5, 0, 4.5, 4, (40, 40, 45))
    elif name == "cake":
        R(-3, 0, 3, 3, (250, 200, 220))
        R(-3, 2.3, 3, 3, (240, 90, 140))
        for xx in (-1.5, 0, 1.5):
            R(xx - 0.2, 3, xx + 0.2, 4.5, (250, 250, 120))
    else:  # pragma: no cover - every catalogue object has a drawing (tested)
        raise ConfigError(f"no drawing for object {name!r}")


def _draw_person(d: ImageDraw.ImageDraw, traits: Mapping[str, str], cx: float, fy: float, H: float,
                 pose: str, stance: str) -> None:
    """Draw a person with feet at (cx, fy) and height H. Head and shirt are oversized on
    purpose: they carry most of the identity and must survive downsampling to 32 px."""
    u = H / 100.0
    top = fy - H
    skin = SKIN_TONES[traits["skin"]]
    hair = HAIR_COLOURS[traits["hair_colour"]]
    shirt = SHIRT_COLOURS[traits["shirt_colour"]]
    trousers = TROUSER_COLOURS[traits["trousers_colour"]]
    lum = 0.299 * shirt[0] + 0.587 * shirt[1] + 0.114 * shirt[2]
    pattern_c: RGB = (20, 20, 25) if lum > 150 else (250, 250, 250)

    def X(v: float) -> float:
        return cx + v * u

    def Y(v: float) -> float:
        return top + v * u

    def line(x0: float, y0: float, x1: float, y1: float, fill: RGB, w: float) -> None:
        d.line([X(x0), Y(y0), X(x1), Y(y1)], fill=fill, width=max(1, int(round(w * u))))

    # Legs (trousers) and shoes.
    spread = 9 if stance == "walking" else 0
    for sgn in (-1, 1):
        x_hip = sgn * 7
        x_foot = sgn * (7 + spread)
        line(x_hip, 60, x_foot, 94, trousers, 12)
        d.ellipse([X(x_foot - 6), Y(92), X(x_foot + 6), Y(100)], fill=(30, 25, 25))
    # Arms (sleeves in the shirt colour) with hands; drawn before the torso so the
    # shoulders look attached.
    arm_w = 8
    hands = {
        "arms down": ((-21, 60), (21, 60)),
        "arms up": ((-25, 6), (25, 6)),
        "waving": ((-21, 60), (26, 8)),
        "hands on hips": ((-15, 54), (15, 54)),
        "arms out": ((-38, 36), (38, 36)),
    }[pose]
    for sgn, (hx, hy) in zip((-1, 1), hands):
        sx, sy = sgn * 14, 32
        if pose == "hands on hips":
            ex, ey = sgn * 28, 44
            line(sx, sy, ex, ey, shirt, arm_w)
            line(ex, ey, hx, hy, shirt, arm_w)
        else:
            line(sx, sy, hx, hy, shirt, arm_w)
        d.ellipse([X(hx - 4), Y(hy - 4), X(hx + 4), Y(hy + 4)], fill=skin)
    # Torso with the shirt pattern, clipped to the torso rectangle by construction.
    x0, x1, y0, y1 = -16, 16, 27, 63
    d.rounded_rectangle([X(x0), Y(y0), X(x1), Y(y1)], radius=max(1, int(5 * u)), fill=shirt)
    pat = traits["shirt_pattern"]
    if pat == "stripes":
        for yy in range(31, 62, 8):
            d.rectangle([X(x0), Y(yy), X(x1), Y(yy + 3.5)], fill=pattern_c)
    elif pat == "vertical stripes":
        for xx in range(-13, 15, 8):
            d.rectangle([X(xx), Y(y0 + 2), X(xx + 3.5), Y(y1)], fill=pattern_c)
    elif pat == "dots":
        for yy in range(33, 62, 9):
            for xx in range(-11, 13, 9):
                d.ellipse([X(xx - 2.5), Y(yy - 2.5), X(xx + 2.5), Y(yy + 2.5)], fill=pattern_c)
    elif pat == "checks":
        for i, yy in enumerate(range(y0, y1, 8)):
            for j, xx in enumerate(range(x0, x1, 8)):
                if (i + j) % 2 == 0:
                    d.rectangle([X(xx), Y(yy), X(min(xx + 8, x1)), Y(min(yy + 8, y1))], fill=pattern_c)
    elif pat == "two-tone":
        d.rectangle([X(0), Y(y0 + 1), X(x1), Y(y1)], fill=pattern_c)
    elif pat == "tie":
        d.polygon([(X(-3), Y(y0)), (X(3), Y(y0)), (X(4), Y(52)), (X(0), Y(57)), (X(-4), Y(52))], fill=pattern_c)
    # Neck and head.
    d.rectangle([X(-4), Y(22), X(4), Y(29)], fill=skin)
    face = traits["face"]
    rx, ry, hy = {"round": (13, 13), "oval": (11, 14.5), "square": (13, 13)}[face] + (14,)
    style = traits["hair_style"]
    hat = traits["hat"]
    # Hair behind the head.
    if style == "long":
        d.rectangle([X(-rx - 2), Y(hy - 4), X(rx + 2), Y(hy + 16)], fill=hair)
    elif style == "curly":
        d.ellipse([X(-rx - 6), Y(hy - ry - 7), X(rx + 6), Y(hy + ry - 2)], fill=hair)
    elif style == "ponytail":
        d.ellipse([X(rx - 3), Y(hy - 2), X(rx + 7), Y(hy + 14)], fill=hair)
    head_box = [X(-rx), Y(hy - ry), X(rx), Y(hy + ry)]
    if face == "square":
        d.rounded_rectangle(head_box, radius=max(1, int(4 * u)), fill=skin)
    else:
        d.ellipse(head_box, fill=skin)
    # Hair on top of the head.
    if style in ("short", "long", "curly", "ponytail", "bun", "spiky"):
        d.chord([X(-rx - 1), Y(hy - ry - 1), X(rx + 1), Y(hy + ry * 0.5)], 180, 360, fill=hair)
    if style == "bun":
        d.ellipse([X(-6), Y(hy - ry - 11), X(6), Y(hy - ry + 1)], fill=hair)
    elif style == "spiky":
        for k in range(-2, 3):
            b = k * 5
            d.polygon([(X(b - 3.5), Y(hy - ry + 3)), (X(b + 3.5), Y(hy - ry + 3)), (X(b), Y(hy - ry - 8))], fill=hair)
    elif style == "mohawk":
        d.rectangle([X(-3.5), Y(hy - ry - 8), X(3.5), Y(hy - 2)], fill=hair)
    # Eyes, glasses, mouth, beard.
    ey = hy + 1
    for sgn in (-1, 1):
        d.ellipse([X(sgn * 5 - 2.8), Y(ey - 2.8), X(sgn * 5 + 2.8), Y(ey + 2.8)], fill=(250, 250, 250))
        d.ellipse([X(sgn * 5 - 1.8), Y(ey - 1.8), X(sgn * 5 + 1.8), Y(ey + 1.8)],
                  fill=EYE_COLOURS[traits["eye_colour"]])
    g = traits["glasses"]
    gw = max(1, int(round(1.6 * u)))
    if g == "round":
        for sgn in (-1, 1):
            d.ellipse([X(sgn * 5 - 4.5), Y(ey - 4.5), X(sgn * 5 + 4.5), Y(ey + 4.5)], outline=(15, 15, 15), width=gw)
    elif g == "square":
        for sgn in (-1, 1):
            d.rectangle([X(sgn * 5 - 4.5), Y(ey - 4), X(sgn * 5 + 4.5), Y(ey + 4)], outline=(15, 15, 15), width=gw)
    elif g == "sunglasses":
        d.rectangle([X(-10.5), Y(ey - 3.5), X(10.5), Y(ey + 3.5)], fill=(10, 10, 12))
    if g != "none":
        line(-0.5, ey, 0.5, ey, (15, 15, 15), 1.6)
    beard_c = hair if traits["hair_colour"] not in ("white",) else (225, 225, 225)
    b = traits["beard"]
    if b == "full":
        d.chord([X(-rx), Y(hy - ry + 6), X(rx), Y(hy + ry + 3)], 0, 180, fill=beard_c)
    elif b == "moustache":
        d.rectangle([X(-6), Y(hy + 6), X(6), Y(hy + 8.5)], fill=beard_c)
    elif b == "goatee":
        d.rectangle([X(-3.5), Y(hy + 9), X(3.5), Y(hy + ry + 2)], fill=beard_c)
    if b != "full":
        line(-3.5, hy + 9.5 if b != "moustache" else hy + 10.5, 3.5, hy + 9.5 if b != "moustache" else hy + 10.5,
             (150, 50, 50), 1.3)
    # Hat last: it sits on top of everything.
    hc = HATS[hat]
    if hat == "cap":
        d.chord([X(-rx - 1), Y(hy - ry - 3), X(rx + 1), Y(hy + 1)], 180, 360, fill=hc)
        d.rectangle([X(0), Y(hy - 3), X(rx + 8), Y(hy - 0.5)], fill=hc)
    elif hat == "beanie":
        d.chord([X(-rx - 1.5), Y(hy - ry - 5), X(rx + 1.5), Y(hy + 3)], 180, 360, fill=hc)
        d.rectangle([X(-rx - 1.5), Y(hy - 4), X(rx + 1.5), Y(hy - 0.5)], fill=_shade(hc, 0.8))
    elif hat == "top hat":
        d.rectangle([X(-rx - 4), Y(hy - ry + 1), X(rx + 4), Y(hy - ry + 4)], fill=hc)
        d.rectangle([X(-rx + 3), Y(hy - ry - 14), X(rx - 3), Y(hy - ry + 2)], fill=hc)
    elif hat == "headband":
        d.rectangle([X(-rx), Y(hy - 7), X(rx), Y(hy - 3.5)], fill=hc)


def render(world: World | None, person: Person | str, event: Event | str, render_seed: int,
           size: int | None = None) -> Image.Image:
    """Render ``person`` in ``event`` as an RGB ``size`` × ``size`` image.

    Everything that varies between renders of the same pair comes from ``render_seed``:
    prop positions and mirroring, extra distractor props, the person's position, height,
    pose and stance, the lighting (brightness and colour cast) and pixel noise.
    Small images are drawn at twice the size and downsampled, which anti-aliases them.
    """
    if isinstance(person, str) or isinstance(event, str):
        if world is None:
            raise ConfigError("render needs a world to look up person / event ids")
        person = world.person(person) if isinstance(person, str) else person
        event = world.event(event) if isinstance(event, str) else event
    if size is None:
        if world is None:
            raise ConfigError("render needs a size when no world is given")
        size = world.config.image_size
    ss = 2 if size <= 128 else 1
    S = size * ss
    placed, rng = _plan(event, render_seed)
    img = Image.new("RGB", (S, S))
    d = ImageDraw.Draw(img)
    horizon = _draw_background(d, S, event, rng)

    # Props: back ones first (they stand behind), then the rest.
    col_x = (0.16, 0.84)
    for p in sorted(placed, key=lambda p: p.row != "back"):
        x = (col_x[p.side] + p.dx) * S
        if p.row == "back":
            by, s = (horizon + 0.02) * S, 0.42 * S * p.scale
        elif p.row == "top":
            by, s = (0.3 + p.dy) * S, 0.2 * S * p.scale
        elif p.row == "mid":
            by, s = (0.55 + p.dy) * S, 0.22 * S * p.scale
        else:
            by, s = (0.95 + p.dy) * S, 0.3 * S * p.scale
        if OBJECT_ZONES[p.name] == "floor" and p.row == "mid":
            # A floor object in the mid row stands further back, on the horizon line.
            by, s = (horizon + 0.05 + p.dy / 2) * S, s * 0.8
        _draw_prop(d, p.name, x, by, s)

    # The person: large, roughly in the middle, with a random pose.
    H = rng.uniform(0.5, 0.6) * S
    fy = rng.uniform(0.93, 0.98) * S
    cx = (0.5 + rng.uniform(-0.07, 0.07)) * S
    pose = rng.choice(POSES)
    stance = rng.choice(("standing", "walking"))
    d.ellipse([cx - 0.2 * H, fy - 0.03 * H, cx + 0.2 * H, fy + 0.03 * H],
              fill=_shade(event.palette["ground"], 0.7))  # shadow
    _draw_person(d, person.traits, cx, fy, H, pose, stance)

    if ss > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    # Lighting (brightness and a slight colour cast) as a lookup table, then pixel noise
    # added with an offset; both run in Pillow's C code. Noise lives on a grid of at most
    # 64×64 cells so that large renders still compress well as PNG.
    nrng = np.random.default_rng(render_seed)
    light = nrng.uniform(0.8, 1.15) * nrng.uniform(0.94, 1.06, size=3)
    ramp = np.arange(256, dtype=np.float64)
    lut = np.concatenate([np.clip(np.rint(ramp * f), 0, 255) for f in light]).astype(np.uint8)
    img = img.point(lut.tolist())
    g = min(size, 64)
    noise = np.clip(np.rint(nrng.normal(0.0, 5.0, size=(g, g, 3))) + 128, 0, 255).astype(np.uint8)
    noise_img = Image.fromarray(noise, "RGB")
    if g < size:
        noise_img = noise_img.resize((size, size), Image.Resampling.NEAREST)
    return ImageChops.add(img, noise_img, scale=1.0, offset=-128)


# ---------------------------------------------------------------------------------------
# Writing a world to disk
def _dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, fixed separators, so files are byte-identical."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Job:
    id: str
    person: str
    event: str
    role: str
    render_seed: int

    @property
    def path(self) -> str:
        return f"images/{self.id}.png"


def plan_images(world: World) -> list[_Job]:
    """Every image of the world in a fixed order, with a unique render seed each.

    Seeds come from one seeded stream and are never reused, so a held-out render can
    never coincide with a training render."""
    cfg = world.config
    rng = random.Random(f"pebench-renders:{world.seed}")
    used: set[int] = set()
    jobs: list[_Job] = []
    groups = (("train", world.people, cfg.train_renders), ("heldout", world.people, cfg.heldout_renders),
              ("pretrain", world.real_people, cfg.pretrain_renders),
              ("pretrain_eval", world.real_people, cfg.pretrain_eval_renders))
    for role, people, k in groups:
        for p in people:
            for e in world.events:
                for j in range(k):
                    s = rng.getrandbits(31)
                    while s in used:
                        s = rng.getrandbits(31)
                    used.add(s)
                    jobs.append(_Job(f"{role}-{p.id}-{e.id}-{j}", p.id, e.id, role, s))
    return jobs


def _pope_rows(world: World, jobs: list[_Job], objects: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Half "yes" questions (objects drawn) and half "no" (objects absent), per pretrain image."""
    rng = random.Random(f"pebench-pope:{world.seed}")
    n = world.config.pope_questions
    rows = []
    for job in jobs:
        if job.role not in ("pretrain", "pretrain_eval") or n == 0:
            continue
        present = list(objects[job.id])
        unsafe = set(present) | set(LAYOUT_LOOKALIKES.get(world.event(job.event).layout, ()))
        unsafe.update(o for p in present for o in LOOKALIKES.get(p, ()))
        absent = [o for o in OBJECTS if o not in unsafe]
        yes = rng.sample(present, min(n // 2, len(present)))
        while len(yes) < n // 2:  # fewer objects than questions: repeat some
            yes.append(rng.choice(present))
        no = rng.sample(absent, n // 2)
        qs = [(o, "yes") for o in yes] + [(o, "no") for o in no]
        rng.shuffle(qs)
        for q, (obj, ans) in enumerate(qs):
            rows.append({"id": f"{job.id}-q{q}", "image": job.id, "object": obj, "answer": ans,
                         "question": POPE_TEMPLATE.format(obj=obj)})
    return rows


# Worker state for the optional process pool (set by the initializer, one per process).
_WORKER: dict[str, Any] = {}


def _init_worker(world_dict: dict[str, Any], root: str) -> None:
    _WORKER["world"] = World.from_dict(world_dict)
    _WORKER["root"] = root


def _render_job(job: _Job) -> None:
    world: World = _WORKER["world"]
    img = render(world, world.person(job.person), world.event(job.event), job.render_seed)
    _save_png(img, Path(_WORKER["root"]) / job.path)


def _save_png(img: Image.Image, path: Path) -> None:
    # Fixed settings and no metadata: Pillow writes no timestamps, so bytes are stable.
    img.save(path, format="PNG", compress_level=6, optimize=False)


def _world_complete(out: Path, world_json: str) -> bool | None:
    """True: ``out`` holds this exact world; False: a different one; None: no world at all."""
    wj = out / "world.json"
    if not wj.is_file():
        return None
    try:
        same = wj.read_text(encoding="utf-8") == world_json
    except OSError:
        return False
    if not same:
        return False
    man = out / "manifest.jsonl"
    if not man.is_file() or not (out / "pope.jsonl").is_file():
        return False
    try:
        with man.open(encoding="utf-8") as f:
            return all((out / json.loads(line)["path"]).is_file() for line in f if line.strip())
    except (OSError, ValueError, KeyError):
        return False


def _remove_stale_temps(out: Path) -> None:
    """Delete temp folders of earlier writes of ``out`` whose process is gone (killed
    hard, so its own clean-up never ran). Folders of live processes are left alone."""
    for p in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        m = re.match(r"\.tmp-(\d+)-", p.name[len(out.name) + 1:])
        if not m or not p.is_dir():
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except OSError:  # exists but not ours (EPERM): treat as alive
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def _auto_workers(n_images: int, size: int) -> int:
    # Process start-up (~1 s) only pays off for big worlds; small ones render in-process.
    if n_images * size * size < 5_000 * 128 * 128:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def write_world(world: World, out_dir: str | Path, progress: bool = True, workers: int | None = None) -> Path:
    """Write ``world`` to ``out_dir`` atomically and return the folder.

    Layout: ``world.json`` (people, real people, events with descriptions and keywords,
    splits, seed, generator version, config), ``manifest.jsonl`` (one row per image: id,
    path, person, event, role, render_seed, objects), ``pope.jsonl`` (POPE questions on
    pretrain / pretrain_eval images) and ``images/<id>.png``.

    Everything is written into a temporary sibling folder which is renamed to ``out_dir``
    at the end, so ``out_dir`` either holds a complete world or does not exist. If it
    already holds this very world it is returned as is (cache); a different world there
    is a :class:`ConfigError`.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir).expanduser().absolute()
    wd = world.to_dict()
    world_json = _dumps(wd) + "\n"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"cannot write the world to {out}: it exists and is not a folder; choose another --out")
    if out.is_dir():
        state = _world_complete(out, world_json)
        if state is True:
            return out
        if state is False or any(out.iterdir()):
            raise ConfigError(
                f"{out} already holds a different or incomplete world (or other files); "
                f"choose another --out or delete that folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the world should not be
    except OSError as exc:
        raise ConfigError(f"cannot write the world to {out}: {exc.strerror or exc}") from None

    try:
        (tmp / "images").mkdir()
        jobs = plan_images(world)
        objects = {j.id: objects_in(world, world.event(j.event), j.render_seed) for j in jobs}
        n_workers = workers if workers is not None else _auto_workers(len(jobs), world.config.image_size)
        bar = tqdm(total=len(jobs), desc=f"world {out.name}", unit="img", disable=not progress)
        if n_workers <= 1:
            _init_worker(wd, str(tmp))
            try:
                for job in jobs:
                    _render_job(job)
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            import multiprocessing as mp

            # fork is cheap and needs no importable __main__; but a process that has torch
            # (and its thread pools) loaded is safer with spawn.
            method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
            ctx = mp.get_context(method)
            with ctx.Pool(n_workers, initializer=_init_worker, initargs=(wd, str(tmp))) as pool:
                for _ in pool.imap_unordered(_render_job, jobs, chunksize=32):
                    bar.update()
        bar.close()
        with (tmp / "manifest.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for j in jobs:
                f.write(_dumps({"id": j.id, "path": j.path, "person": j.person, "event": j.event,
                                "role": j.role, "render_seed": j.render_seed,
                                "objects": list(objects[j.id])}) + "\n")
        with (tmp / "pope.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for row in _pope_rows(world, jobs, objects):
                f.write(_dumps(row) + "\n")
        # world.json last: its presence marks a finished folder.
        (tmp / "world.json").write_text(world_json, encoding="utf-8")
        try:
            os.rename(tmp, out)  # atomic; also replaces an empty folder
        except OSError:
            # Somebody else finished the same world first: theirs is as good as ours.
            if out.is_dir() and _world_complete(out, world_json) is True:
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, PermissionError):
            raise ConfigError(f"cannot write the world to {out}: {exc.strerror or exc}") from None
        raise
    return out


def read_world(out_dir: str | Path) -> World:
    """The :class:`World` stored in a folder written by :func:`write_world`."""
    wj = Path(out_dir) / "world.json"
    try:
        return World.from_dict(json.loads(wj.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{wj} is missing: not a world folder written by `pebench world`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{wj} is malformed: {exc}") from None


def world_digest(out_dir: str | Path) -> str:
    """SHA-256 over every file of a written world (names and bytes): equal digests mean
    byte-identical worlds."""
    root = Path(out_dir)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def keyword_words(text: str) -> list[str]:
    """Lower-case words of ``text``: the tokenisation the keyword checks use."""
    return re.findall(r"[a-z]+", text.lower())
