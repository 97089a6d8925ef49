"""Model-free baselines, as pure functions over training data (no file I/O).

- Answer prior: the most frequent training answer per group (VQA question type, GQA detailed
  type, VizWiz answer type), with the most frequent answer overall for unseen groups.
- Best constant caption: the training caption that, given to every image of a sample of training
  images, maximises CIDEr-D against their references. Chosen on training data only; the eval split
  is only ever scored, never searched.

Ties are broken by the lexicographically smallest answer, or the earliest candidate, so that a
baseline is a pure function of its inputs.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

from evaluation.metrics.caption import cider_d

_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def majority(answers: Iterable[str]) -> str:
    """Most frequent string; ties go to the lexicographically smallest."""
    counts = Counter(answers)
    if not counts:
        raise ValueError("answers: cannot take the majority of nothing")
    return min(counts, key=lambda a: (-counts[a], a))


@dataclass(frozen=True)
class AnswerPrior:
    by_group: dict[str, str]
    fallback: str

    def predict(self, group: str | None) -> str:
        return self.by_group.get(group, self.fallback) if group is not None else self.fallback


def fit_answer_prior(groups: Sequence[str], answers: Sequence[str]) -> AnswerPrior:
    """Majority answer per group (aligned sequences) and overall."""
    if len(groups) != len(answers):
        raise ValueError(f"groups ({len(groups)}) and answers ({len(answers)}) differ in length")
    per_group: dict[str, list[str]] = {}
    for group, answer in zip(groups, answers):
        per_group.setdefault(group, []).append(answer)
    return AnswerPrior({g: majority(a) for g, a in sorted(per_group.items())}, majority(answers))


def question_words(text: str) -> list[str]:
    """Lower-cased words of a question, punctuation dropped (apostrophes kept)."""
    return _NON_WORD.sub(" ", text.lower()).split()


def question_type_of(question: str, known_types: Iterable[str]) -> str | None:
    """The longest known VQA question type whose words begin the question, or None.

    VQA question types are the questions' first words ("how many", "what color is the"), so a
    blind model can recover them from the text without the annotation.
    """
    words = question_words(question)
    best = None
    for qtype in known_types:
        type_words = qtype.lower().split()
        if type_words and words[: len(type_words)] == type_words:
            if best is None or len(type_words) > len(best.split()):
                best = qtype
    return best


def constant_caption_scores(
    candidates: Sequence[str], references: Mapping[Hashable, Sequence[str]]
) -> list[float]:
    """Corpus CIDEr-D of giving each (tokenised) candidate to every image of ``references``.

    The IDF comes from ``references`` (the training sample), as in the COCO evaluation.
    """
    if not candidates:
        raise ValueError("candidates: need at least one caption")
    scores = []
    for candidate in candidates:
        score, _ = cider_d(references, {key: [candidate] for key in references})
        scores.append(score)
    return scores


def best_constant_caption(
    candidates: Sequence[str], references: Mapping[Hashable, Sequence[str]]
) -> tuple[int, float]:
    """Index and score of the best candidate (earliest on ties)."""
    scores = constant_caption_scores(candidates, references)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, scores[best]
