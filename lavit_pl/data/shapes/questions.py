"""VQAv2-, VizWiz- and OK-VQA-like questions about a scene.

Four VQA kinds map to the official fields (see docs/data_layout.md): colour ->
("what color is the", "other"), count -> ("how many", "number"), existence -> ("is there a",
"yes/no"), position -> ("where is the", "other"). Questions refer only to shapes they pick out
unambiguously (a kind that occurs once, or a cell, which holds at most one shape).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from lavit_pl.data.shapes.answers import QA
from lavit_pl.data.shapes.captions import article
from lavit_pl.data.shapes.lore import Lore
from lavit_pl.data.shapes.scene import CELL_NAMES, CELL_PHRASES, Scene, Shape, plural, unique_by

QUESTION_TYPES = {
    "color": ("what color is the", "other"),
    "count": ("how many", "number"),
    "exist": ("is there a", "yes/no"),
    "position": ("where is the", "other"),
}
VQA_KINDS = tuple(QUESTION_TYPES)
# OK-VQA's knowledge categories: "two" brands/products, "three" objects/material,
# "five" cooking and food, "six" geography/history/language/culture.
OKVQA_CATEGORY = {
    "guild": "six", "year": "six", "hall": "six", "trade": "two", "city": "six", "river": "six", "food": "five",
    "metal": "three", "export": "two", "festival": "six",
}


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _others(values: Sequence[str], answer: str) -> list[str]:
    return [v for v in values if v != answer]


def color_question(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> QA:
    by_kind = unique_by(scene, lambda s: s.kind)
    if by_kind and rng.random() < 0.7:
        s = _pick(rng, by_kind)
        return QA("color", f"What color is the {s.kind}?", s.color, _others(colors, s.color), s.kind)
    s = _pick(rng, scene.shapes)
    return QA("color", f"What color is the shape {CELL_PHRASES[s.cell]}?", s.color, _others(colors, s.color), "shape")


def count_question(scene: Scene, rng: np.random.Generator, kinds: Sequence[str], colors: Sequence[str]) -> QA:
    u = rng.random()
    if u < 0.3:
        n, singular = scene.complexity, "shape"
        text = _pick(rng, ("How many shapes are there?", "How many shapes are in the picture?"))
    elif u < 0.7:
        present = [s.kind for s in scene.shapes]
        singular = _pick(rng, present) if rng.random() < 0.8 else _pick(rng, kinds)
        n = present.count(singular)
        text = f"How many {plural(singular)} are there?"
    else:
        present = [s.color for s in scene.shapes]
        color = _pick(rng, present) if rng.random() < 0.8 else _pick(rng, colors)
        n, singular = present.count(color), "shape"
        text = f"How many {color} shapes are there?"
    wrong = [str(v) for v in (n - 1, n + 1) if v >= 0]
    return QA("count", text, str(n), wrong, plural(singular), extra={"singular": singular})


def kind_exist_question(kind: str, present: bool) -> QA:
    """"Is there a <kind> in the image?", answered "yes" if ``present`` else "no"."""
    answer, wrong = ("yes", "no") if present else ("no", "yes")
    return QA("exist", f"Is there {article(kind)} {kind} in the image?", answer, [wrong])


def exist_question(scene: Scene, rng: np.random.Generator, kinds: Sequence[str], colors: Sequence[str]) -> QA:
    if rng.random() < 0.5:
        s = _pick(rng, scene.shapes)
        if rng.random() < 0.5:
            return QA("exist", f"Is there {article(s.color)} {s.color} {s.kind}?", "yes", ["no"])
        return kind_exist_question(s.kind, present=True)
    present = {(s.color, s.kind) for s in scene.shapes}
    present_kinds = {s.kind for s in scene.shapes}
    absent_kinds = [k for k in kinds if k not in present_kinds]
    if absent_kinds and rng.random() < 0.4:
        kind = _pick(rng, absent_kinds)
        return kind_exist_question(kind, present=False)
    absent = [(c, k) for c in colors for k in kinds if (c, k) not in present]
    c, k = _pick(rng, absent)
    return QA("exist", f"Is there {article(c)} {c} {k}?", "no", ["yes"])


def position_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    refs = unique_by(scene, lambda s: (s.color, s.kind))
    if not refs:
        return None
    s = _pick(rng, refs)
    wrong = [CELL_NAMES[c] for c in range(len(CELL_NAMES)) if c != s.cell and abs(c // 3 - s.row) + abs(c % 3 - s.col) == 1]
    return QA("position", f"Where is the {s.color} {s.kind}?", s.position, wrong, f"{s.color} {s.kind}")


def _one(scene: Scene, rng: np.random.Generator, kind: str, kinds: Sequence[str], colors: Sequence[str]) -> QA | None:
    if kind == "color":
        return color_question(scene, rng, colors)
    if kind == "count":
        return count_question(scene, rng, kinds, colors)
    if kind == "exist":
        return exist_question(scene, rng, kinds, colors)
    return position_question(scene, rng)


# Each VQA kind's wordings (disjoint patterns); the reading probe's per-template report reads
# them. A template's answers have their own prior (most "How many <kind>s" answers are 1), so a model
# can match a template's majority answer without reading the scene at all.
QUESTION_TEMPLATES: tuple[tuple[str, re.Pattern], ...] = (
    ("exist kind", re.compile(r"Is there an? \w+ in the image\?")),
    ("exist colour-kind", re.compile(r"Is there an? \w+ \w+\?")),
    ("count all", re.compile(r"How many shapes (are there|are in the picture)\?")),
    ("count colour", re.compile(r"How many \w+ shapes are there\?")),
    ("count kind", re.compile(r"How many (?!shapes )\w+ are there\?")),
    ("colour cell", re.compile(r"What color is the shape (in|at|on) the [\w ]+\?")),
    ("colour kind", re.compile(r"What color is the \w+\?")),
    ("where", re.compile(r"Where is the \w+ \w+\?")),
)


def question_template(question: str) -> str:
    """The name of the VQAv2-like template that wrote ``question`` (``QUESTION_TEMPLATES``)."""
    for name, pattern in QUESTION_TEMPLATES:
        if pattern.fullmatch(question):
            return name
    raise ValueError(f"question {question!r} matches none of the Shapes world's VQA templates "
                     f"({', '.join(n for n, _ in QUESTION_TEMPLATES)})")


def vqa_questions(scene: Scene, rng: np.random.Generator, n: int, kinds: Sequence[str], colors: Sequence[str]) -> list[QA]:
    """Up to ``n`` different questions, cycling through the four kinds in a random order."""
    if scene.complexity == 0:
        raise ValueError("VQA questions need a scene with at least one shape")
    order = [VQA_KINDS[int(i)] for i in rng.permutation(len(VQA_KINDS))]
    out: list[QA] = []
    for attempt in range(4 * n + 8):
        qa = _one(scene, rng, order[attempt % len(order)], kinds, colors)
        if qa is not None and all(q.question != qa.question for q in out):
            out.append(qa)
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------- VizWiz


def vizwiz_phrasing(rng: np.random.Generator, question: str) -> str:
    """VizWiz questions come from blind users' spoken requests: chattier than VQAv2's."""
    u = rng.random()
    if u < 0.2:
        return "Hi, " + question[0].lower() + question[1:]
    if u < 0.35:
        return question + " Thank you."
    return question


# Each presupposes a shape that a blank or blurred picture does not let anyone see.
UNANSWERABLE_QUESTIONS = (
    "What color is this shape?", "What shape is this?", "What color is the shape on the left?",
    "Which shape is at the top?", "What is this?",
)


def unanswerable_question(rng: np.random.Generator) -> QA:
    return QA("unanswerable", vizwiz_phrasing(rng, _pick(rng, UNANSWERABLE_QUESTIONS)), "unanswerable", [])


# ---------------------------------------------------------------- OK-VQA


def _colour_ref(scene: Scene, s: Shape) -> str:
    """Refers to ``s`` without giving away its colour."""
    if s in unique_by(scene, lambda t: t.kind):
        return f"the {s.kind}"
    return f"the shape {CELL_PHRASES[s.cell]}"


def _kind_ref(scene: Scene, s: Shape) -> str:
    """Refers to ``s`` without giving away its kind."""
    if s in unique_by(scene, lambda t: t.color):
        return f"the {s.color} shape"
    return f"the shape {CELL_PHRASES[s.cell]}"


def knowledge_question(scene: Scene, rng: np.random.Generator, lore: Lore, relation: str) -> QA | None:
    """A question that needs the image (to see a colour or kind) and a corpus fact about it."""
    shapes = [s for s in scene.shapes if s.kind in lore.kinds and s.color in lore.colors]
    if not shapes:
        return None
    s = _pick(rng, shapes)
    L, extra = lore, {"question_type": OKVQA_CATEGORY[relation], "relation": relation}
    if relation == "guild":
        q, a, pool = f"Which guild wears the color of {_colour_ref(scene, s)}?", L.guild[s.color], L.guild.values()
    elif relation == "year":
        q = f"In what year was the guild that wears the color of {_colour_ref(scene, s)} founded?"
        a, pool = str(L.guild_year[s.color]), [str(v) for v in L.guild_year.values()]
    elif relation == "hall":
        q = f"In which city does the guild that wears the color of {_colour_ref(scene, s)} have its hall?"
        a, pool = L.guild_hall[s.color], L.kind_city.values()
    elif relation == "trade":
        q = f"What does the guild that wears the color of {_colour_ref(scene, s)} trade in?"
        a, pool = L.guild_trade[s.color], L.guild_trade.values()
    elif relation == "festival":
        q = f"In which month is the festival of {_kind_ref(scene, s)} held?"
        a, pool = L.kind_festival[s.kind], L.kind_festival.values()
    elif relation == "city":
        q, a, pool = f"In which city is {_kind_ref(scene, s)} revered?", L.kind_city[s.kind], L.kind_city.values()
    elif relation == "river":
        q = f"Which river flows through the city that reveres {_kind_ref(scene, s)}?"
        a, pool = L.city_river[L.kind_city[s.kind]], L.city_river.values()
    elif relation == "food":
        q, a, pool = f"What is the traditional food of {_kind_ref(scene, s)}?", L.kind_food[s.kind], L.kind_food.values()
    elif relation == "metal":
        q, a, pool = f"What metal is {_kind_ref(scene, s)} forged from?", L.kind_metal[s.kind], L.kind_metal.values()
    elif relation == "export":
        q = f"What does the city that reveres {_kind_ref(scene, s)} export?"
        a, pool = L.city_export[L.kind_city[s.kind]], L.city_export.values()
    else:
        raise ValueError(f"unknown OK-VQA relation '{relation}'; expected one of {sorted(OKVQA_CATEGORY)}")
    answer = a.lower()
    return QA("knowledge", q, answer, _others([p.lower() for p in pool], answer), extra=extra)


def okvqa_questions(scene: Scene, rng: np.random.Generator, n: int, lore: Lore) -> list[QA]:
    relations = [tuple(OKVQA_CATEGORY)[int(i)] for i in rng.permutation(len(OKVQA_CATEGORY))]
    out: list[QA] = []
    for rel in relations:
        qa = knowledge_question(scene, rng, lore, rel)
        if qa is not None and all(q.question != qa.question for q in out):
            out.append(qa)
        if len(out) == n:
            break
    return out
