"""VizWiz-VQA accuracy, as the VizWiz evaluator (vizwiz.org, ``VQAEval`` by Qing Li) computes it.

Same leave-one-out rule as VQAv2 (``min(1, matches / 3)`` averaged over the ten subsets of nine
answers), with two differences that are the VizWiz evaluator's own:

- the prediction is always normalised (whitespace, punctuation, number words, articles,
  contractions), whatever the references; the references are compared as written in ``val.json``
  (VizWiz distributes them already normalised);
- the leave-one-out drops by position (VizWiz answers have no ``answer_id``).

"unanswerable" is an ordinary answer string. Numbers are ``round(100 * mean, 2)``, overall and per
``answer_type``.
"""
from __future__ import annotations

from typing import Sequence

from evaluation.metrics.vqa import (
    OFFICIAL_NDIGITS,
    check_aligned,
    clean_whitespace,
    leave_one_out_accuracy,
    normalize_answer,
    vqa_score_summary,
)


def vizwiz_question_accuracy(prediction: str, references: Sequence[str]) -> float:
    """Accuracy in [0, 1] of one prediction against the ten VizWiz answers."""
    return leave_one_out_accuracy(normalize_answer(clean_whitespace(prediction)), list(references))


def vizwiz_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    answer_types: Sequence[str] | None = None,
    ndigits: int = OFFICIAL_NDIGITS,
) -> dict:
    """Returns ``{"overall", "perAnswerType", "num_questions"}`` in percent (per type when given)."""
    check_aligned(predictions, references)
    scores = [vizwiz_question_accuracy(p, r) for p, r in zip(predictions, references)]
    return vqa_score_summary(scores, answer_types=answer_types, ndigits=ndigits)
