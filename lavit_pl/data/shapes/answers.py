"""Ten human-like answers per question, with the variation real VQA annotators show.

Most annotators give the canonical answer; others write "two" for "2", add articles or the
noun ("a red circle"), change case or punctuation ("Yes."), use another phrase for a position
("on the left"), and a few are simply wrong. The official VQA normalisation (articles,
punctuation, number words) undoes some of this variation and not the rest, as in real data.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lavit_pl.data.shapes.captions import NUMBER_WORDS

ANSWERS_PER_QUESTION = 10
P_WRONG = 0.06
POSITION_VARIANTS = {
    "top left": ("top left corner", "upper left", "in the top left"),
    "top": ("at the top", "top middle", "up"),
    "top right": ("top right corner", "upper right", "in the top right"),
    "left": ("on the left", "left side", "middle left"),
    "center": ("in the center", "middle", "centre"),
    "right": ("on the right", "right side", "middle right"),
    "bottom left": ("bottom left corner", "lower left", "in the bottom left"),
    "bottom": ("at the bottom", "bottom middle", "down"),
    "bottom right": ("bottom right corner", "lower right", "in the bottom right"),
}


@dataclass
class QA:
    """One question with its canonical answer; ``wrong`` holds plausible wrong answers."""

    kind: str  # color | count | exist | position | knowledge | unanswerable
    question: str
    answer: str
    wrong: list[str] = field(default_factory=list)
    noun: str = ""  # what the answer is about, for verbose variants ("red circle")
    extra: dict[str, Any] = field(default_factory=dict)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def answer_variant(rng: np.random.Generator, qa: QA) -> str:
    """One annotator's correct answer, written their way."""
    a, u = qa.answer, float(rng.random())
    if qa.kind == "count":
        n = int(a)
        if u < 0.68:
            return a
        if u < 0.9:
            return NUMBER_WORDS[n]
        noun = qa.extra.get("singular", qa.noun) if n == 1 else qa.noun
        return _pick(rng, (f"{a}.", NUMBER_WORDS[n].capitalize(), f"{a} {noun}" if noun else a))
    if qa.kind == "exist":
        if u < 0.8:
            return a
        return _pick(rng, (a.capitalize(), a.capitalize() + ".", a + "!"))
    if qa.kind == "color":
        if u < 0.74:
            return a
        verbose = f"a {a} {qa.noun}" if qa.noun else f"{a} color"
        return _pick(rng, (a.capitalize(), a + ".", verbose, f"{a} {qa.noun}" if qa.noun else a.upper()))
    if qa.kind == "position":
        if u < 0.62:
            return a
        return _pick(rng, POSITION_VARIANTS.get(a, (a,)))
    if qa.kind == "unanswerable":
        return a if u < 0.85 else "unsuitable"
    # knowledge answers: names or years, sometimes with case, article or preposition changes
    if u < 0.75:
        return a
    if a.isdigit():
        return _pick(rng, (a + ".", f"in {a}", f"year {a}"))
    return _pick(rng, (a.capitalize() if a.islower() else a.lower(), f"the {a}", a + "."))


def annotate(rng: np.random.Generator, qa: QA, with_ids: bool = True) -> tuple[list[dict[str, Any]], str]:
    """Ten answers ``[{"answer", "answer_confidence"[, "answer_id"]}]`` and the most common one.

    Ties for the most common answer go to the one seen first (``Counter`` keeps insertion order).
    """
    answers = []
    for i in range(ANSWERS_PER_QUESTION):
        wrong = qa.wrong and rng.random() < P_WRONG
        if wrong:
            text = _pick(rng, qa.wrong)
            confidence = "maybe" if rng.random() < 0.5 else "no"
        else:
            text = answer_variant(rng, qa)
            u = rng.random()
            confidence = "yes" if u < 0.85 else ("maybe" if u < 0.97 else "no")
        entry: dict[str, Any] = {"answer": text, "answer_confidence": confidence}
        if with_ids:
            entry["answer_id"] = i + 1
        answers.append(entry)
    most_common = Counter(a["answer"] for a in answers).most_common(1)[0][0]
    return answers, most_common
