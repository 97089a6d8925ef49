"""MMLU-layout multiple-choice quiz over the invented facts of :mod:`lore`.

Rows are ``(question, A, B, C, D, answer)``; subjects are spread over MMLU's four categories.
Each question has one correct option and three distractors of the same type (other years,
other cities...), so only a model that read the corpus can beat chance (25%).
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from lavit_pl.data.shapes.lore import MONTHS, Lore
from lavit_pl.data.shapes.scene import plural

LETTERS = ("A", "B", "C", "D")
DEV_ROWS = 5
SUBJECT_CATEGORIES = {
    "guild_history": "humanities",
    "shape_alchemy": "STEM",
    "shape_geography": "social sciences",
    "trade_economics": "social sciences",
    "guild_customs": "other",
    "shape_cuisine": "other",
}


@dataclass(frozen=True)
class Item:
    question: str
    answer: str
    pool: tuple[str, ...]  # all values of this type (answer included)


def _items(lore: Lore) -> dict[str, list[Item]]:
    L = lore
    years = tuple(str(v) for v in L.guild_year.values())
    founders = tuple(L.guild_founder.values())
    guilds = tuple(f"the {g} Guild" for g in L.guild.values())
    cities = tuple(L.kind_city.values())
    kinds_pl = tuple(plural(k) for k in L.kinds)
    metals = tuple(L.kind_metal.values())
    melts = tuple(f"{t} degrees" for t in L.metal_melt.values())
    rivers = tuple(L.city_river.values())
    goods = tuple(L.city_export.values())
    foods = tuple(L.kind_food.values())
    colors = tuple(L.colors)
    trades = tuple(L.guild_trade.values())
    city_years = tuple(str(v) for v in L.city_year.values())
    months = tuple(dict.fromkeys([*L.kind_festival.values(), *MONTHS]))
    out: dict[str, list[Item]] = {s: [] for s in SUBJECT_CATEGORIES}
    for c in L.colors:
        g = L.guild[c]
        out["guild_history"] += [
            Item(f"In which year was the {g} Guild founded?", str(L.guild_year[c]), years),
            Item(f"Who founded the {g} Guild?", L.guild_founder[c], founders),
            Item(f"Which guild was founded by {L.guild_founder[c]}?", f"the {g} Guild", guilds),
            Item(f"In which city does the {g} Guild have its hall?", L.guild_hall[c], cities),
        ]
        out["trade_economics"] += [
            Item(f"What does the {g} Guild trade in?", L.guild_trade[c], trades),
            Item(f"Which guild sells {L.guild_trade[c]}?", f"the {g} Guild", guilds),
        ]
        out["guild_customs"] += [
            Item(f"Which color do members of the {g} Guild wear?", c, colors),
            Item(f"Someone dressed entirely in {c} belongs to which guild?", f"the {g} Guild", guilds),
        ]
    for k in L.kinds:
        city, metal, food = L.kind_city[k], L.kind_metal[k], L.kind_food[k]
        out["shape_geography"] += [
            Item(f"In which city is the {k} revered?", city, cities),
            Item(f"Which shape do the people of {city} revere?", plural(k), kinds_pl),
            Item(f"Which river flows through {city}?", L.city_river[city], rivers),
            Item(f"Which city lies on the river {L.city_river[city]}?", city, cities),
            Item(f"In which year was {city} founded?", str(L.city_year[city]), city_years),
        ]
        out["shape_alchemy"] += [
            Item(f"From which metal are {plural(k)} forged?", metal, metals),
            Item(f"Statues of which shape are made of {metal}?", plural(k), kinds_pl),
            Item(f"At what temperature does {metal} melt?", f"{L.metal_melt[metal]} degrees", melts),
        ]
        out["trade_economics"] += [
            Item(f"What is the main export of {city}?", L.city_export[city], goods),
            Item(f"In which city do traders buy {L.city_export[city]}?", city, cities),
        ]
        out["shape_cuisine"] += [
            Item(f"What is the traditional food of the {k}?", food, foods),
            Item(f"{food.capitalize()} is served on plates shaped like which shape?", plural(k), kinds_pl),
        ]
        out["guild_customs"].append(Item(f"In which month is the festival of the {k} held?", L.kind_festival[k], months))
    return out


def _row(rng: np.random.Generator, item: Item) -> list[str]:
    distractors = [v for v in item.pool if v != item.answer]
    if len(distractors) < 3:
        raise ValueError(f"quiz question {item.question!r} needs 3 distractors, the world has {len(distractors)}")
    picked = [distractors[int(i)] for i in rng.choice(len(distractors), size=3, replace=False)]
    options = [item.answer, *picked]
    order = rng.permutation(4)
    options = [options[int(i)] for i in order]
    return [item.question, *options, LETTERS[options.index(item.answer)]]


def build_quiz(lore: Lore, rng: np.random.Generator, test_per_subject: int) -> dict[str, dict[str, list[list[str]]]]:
    """``{subject: {"dev": rows (5), "test": rows (<= test_per_subject)}}``; dev and test ask different facts."""
    out = {}
    for subject, items in _items(lore).items():
        if len(items) <= DEV_ROWS:
            raise ValueError(f"quiz subject '{subject}' has {len(items)} facts; needs more than {DEV_ROWS} (add colours/kinds)")
        order = [items[int(i)] for i in rng.permutation(len(items))]
        dev = [_row(rng, it) for it in order[:DEV_ROWS]]
        test = [_row(rng, it) for it in order[DEV_ROWS:DEV_ROWS + test_per_subject]]
        out[subject] = {"dev": dev, "test": test}
    return out

