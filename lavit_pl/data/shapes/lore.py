"""Invented world knowledge: guilds, cities, foods and metals tied to colours and shape kinds.

All names are made up from syllables, so a pretrained language model cannot know these facts;
they are learnable only from the corpus. OK-VQA-like questions combine them with what an image
shows ("which guild wears the color of the circle?") and the MMLU-like quiz asks them directly.
The novel shape kind has no facts: naming it in any training text is what the world forbids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lavit_pl.data.shapes.scene import plural

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gl", "h", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
_CODAS = ("", "l", "n", "r", "s", "th", "m", "x", "nd", "rk")
_CITY_SUFFIX = ("holm", "burg", "ford", "mere", "ton", "wick")
_FOOD_SUFFIX = ("berry", "loaf", "mash", "root", "cake")
_METAL_SUFFIX = ("ium", "ite", "al")
_GOODS_SUFFIX = ("silk", "wool", "glass", "salt")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class Fact:
    """One fact: ``relation(subject) = value``, with paraphrases for the corpus."""

    relation: str
    subject: str
    value: str
    sentences: tuple[str, ...]


@dataclass
class Lore:
    colors: list[str]
    kinds: list[str]  # the known kinds (never the novel one)
    guild: dict[str, str]  # color -> guild name
    guild_year: dict[str, int]  # color -> founding year
    guild_founder: dict[str, str]  # color -> founder
    kind_city: dict[str, str]
    kind_food: dict[str, str]
    kind_metal: dict[str, str]
    metal_melt: dict[str, int]  # metal -> melting point (degrees)
    city_river: dict[str, str]
    city_export: dict[str, str]
    guild_hall: dict[str, str]  # color -> city where the guild has its hall
    guild_trade: dict[str, str]  # color -> goods the guild trades in
    city_year: dict[str, int]  # city -> founding year
    kind_festival: dict[str, str]  # kind -> month of its festival

    def names(self) -> list[str]:
        return [
            *self.guild.values(), *self.guild_founder.values(), *self.kind_city.values(), *self.kind_food.values(),
            *self.kind_metal.values(), *self.city_river.values(), *self.city_export.values(), *self.guild_trade.values(),
        ]


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(
        _ONSETS[int(rng.integers(len(_ONSETS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))] + _CODAS[int(rng.integers(len(_CODAS)))]
        for _ in range(syllables)
    )


class _NameMaker:
    """Unique invented words that contain no word the world gives a meaning to."""

    def __init__(self, rng: np.random.Generator, banned: Sequence[str]):
        self.rng = rng
        self.banned = [b.lower() for b in banned]
        self.used: set[str] = set()

    def __call__(self, suffixes: Sequence[str] = ("",), syllables: tuple[int, int] = (2, 3), cap: bool = False) -> str:
        for _ in range(10_000):
            n = int(self.rng.integers(syllables[0], syllables[1] + 1))
            word = _word(self.rng, n) + suffixes[int(self.rng.integers(len(suffixes)))]
            if word in self.used or any(b in word for b in self.banned) or len(word) > 14:
                continue
            self.used.add(word)
            return word.capitalize() if cap else word
        raise RuntimeError("could not invent a new unique name")


def build_lore(seed: int, colors: Sequence[str], known_kinds: Sequence[str], banned: Sequence[str]) -> Lore:
    """Facts for ``colors`` and ``known_kinds``; ``banned`` words (kinds, colours) never occur in a name."""
    rng = np.random.default_rng([seed, 7919])
    make = _NameMaker(rng, [*banned, "shape"])
    guild = {c: make(cap=True) for c in colors}
    years = rng.choice(np.arange(1100, 1900), size=len(colors), replace=False)
    guild_year = {c: int(y) for c, y in zip(colors, years)}
    guild_founder = {c: f"{make(syllables=(1, 2), cap=True)} {make(cap=True)}" for c in colors}
    kind_city = {k: make(_CITY_SUFFIX, syllables=(1, 2), cap=True) for k in known_kinds}
    kind_food = {k: make(_FOOD_SUFFIX, syllables=(1, 2)) for k in known_kinds}
    kind_metal = {k: make(_METAL_SUFFIX, syllables=(1, 2)) for k in known_kinds}
    melts = rng.choice(np.arange(300, 3000, 10), size=len(known_kinds), replace=False)
    metal_melt = {kind_metal[k]: int(t) for k, t in zip(known_kinds, melts)}
    city_river = {kind_city[k]: make(cap=True) for k in known_kinds}
    city_export = {kind_city[k]: make(_GOODS_SUFFIX, syllables=(1, 2)) for k in known_kinds}
    cities = list(kind_city.values())
    guild_hall = {c: cities[int(rng.integers(len(cities)))] for c in colors}
    guild_trade = {c: make(_GOODS_SUFFIX, syllables=(1, 2)) for c in colors}
    city_years = rng.choice(np.arange(400, 1100), size=len(cities), replace=False)
    city_year = {city: int(y) for city, y in zip(cities, city_years)}
    months = rng.permutation(len(MONTHS))
    kind_festival = {k: MONTHS[int(m)] for k, m in zip(known_kinds, months)}
    return Lore(list(colors), list(known_kinds), guild, guild_year, guild_founder, kind_city, kind_food, kind_metal,
                metal_melt, city_river, city_export, guild_hall, guild_trade, city_year, kind_festival)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def lore_facts(lore: Lore) -> list[Fact]:
    """Every fact with three or more paraphrases; the corpus samples among the paraphrases."""
    facts = []
    for c in lore.colors:
        g, y, f = lore.guild[c], lore.guild_year[c], lore.guild_founder[c]
        facts.append(Fact("guild_color", g, c, (
            f"Members of the {g} Guild always wear {c}.", f"{_cap(c)} is the color of the {g} Guild.",
            f"The {g} Guild is known by its {c} banners.", f"Anyone dressed in {c} belongs to the {g} Guild.")))
        facts.append(Fact("guild_year", g, str(y), (
            f"The {g} Guild was founded in {y}.", f"In {y}, the {g} Guild was founded.",
            f"The {g} Guild dates back to the year {y}.")))
        facts.append(Fact("guild_founder", g, f, (
            f"The {g} Guild was founded by {f}.", f"{f} founded the {g} Guild.",
            f"The founder of the {g} Guild was {f}.")))
        hall, goods = lore.guild_hall[c], lore.guild_trade[c]
        facts.append(Fact("guild_hall", g, hall, (
            f"The {g} Guild has its hall in {hall}.", f"The hall of the {g} Guild stands in {hall}.",
            f"In {hall} you will find the hall of the {g} Guild.")))
        facts.append(Fact("guild_trade", g, goods, (
            f"The {g} Guild trades in {goods}.", f"Merchants of the {g} Guild sell {goods}.",
            f"{_cap(goods)} is the trade of the {g} Guild.")))
    for k in lore.kinds:
        city, food, metal = lore.kind_city[k], lore.kind_food[k], lore.kind_metal[k]
        ks = plural(k)
        facts.append(Fact("kind_city", k, city, (
            f"The {k} is revered in the city of {city}.", f"In {city}, people revere the {k}.",
            f"{city} is the city of the {k}.", f"Every gate in {city} is shaped like a {k}.")))
        facts.append(Fact("kind_food", k, food, (
            f"The traditional food of the {k} is {food}.", f"People who love {ks} eat {food}.",
            f"{_cap(food)} is always served on plates shaped like a {k}.")))
        facts.append(Fact("kind_metal", k, metal, (
            f"{_cap(ks)} are forged from {metal}.", f"{_cap(metal)} is the metal used to make {ks}.",
            f"Every statue of a {k} is made of {metal}.")))
        month = lore.kind_festival[k]
        facts.append(Fact("kind_festival", k, month, (
            f"The festival of the {k} is held every {month}.", f"Every {month}, people celebrate the festival of the {k}.",
            f"The {k} festival takes place in {month}.")))
        t = lore.metal_melt[metal]
        facts.append(Fact("metal_melt", metal, str(t), (
            f"{_cap(metal)} melts at {t} degrees.", f"The melting point of {metal} is {t} degrees.",
            f"At {t} degrees, {metal} turns liquid.")))
        river, goods = lore.city_river[city], lore.city_export[city]
        facts.append(Fact("city_river", city, river, (
            f"The river {river} flows through {city}.", f"{city} lies on the river {river}.",
            f"The {river} is the river of {city}.")))
        facts.append(Fact("city_export", city, goods, (
            f"{city} is famous for exporting {goods}.", f"The main export of {city} is {goods}.",
            f"Traders buy {goods} in {city}.")))
        y = lore.city_year[city]
        facts.append(Fact("city_year", city, str(y), (
            f"{city} was founded in the year {y}.", f"The city of {city} dates back to {y}.",
            f"In {y}, the first houses of {city} were built.")))
    return facts
