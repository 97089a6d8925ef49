"""The official VQA accuracy (GT-Vision-Lab/VQA ``vqaEval.py``, the version on its master branch).

Per question, with the ten human answers ``refs`` and the prediction ``pred``:

1. newlines and tabs become spaces and both ends are stripped, for ``pred`` and every ref;
2. only if the refs are not all identical, ``pred`` and every ref are normalised
   (punctuation, number words to digits, articles dropped, contractions restored, lower case);
3. accuracy = mean over the ten leave-one-out subsets of ``min(1, #matches among the other 9 / 3)``.

So 1, 2, 3 and >= 4 matching annotators give 0.3, 0.6, 0.9 and 1.0. Step 2 has a known quirk that
is part of the official number: when all ten refs read "yes", the prediction "Yes" is not
lower-cased and scores 0, while against mixed refs it is normalised and scores.

Reported numbers are ``round(100 * mean, 2)``, overall, per ``question_type`` and per
``answer_type``, exactly as ``VQAEval.setAccuracy`` rounds them.

The official loop drops the leave-one-out item by dict inequality (``item != gtAnsDatum``);
VQAv2 and OK-VQA answer dicts carry distinct ``answer_id``s, so that is dropping by index, which
is what is done here.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

from evaluation.metrics.vqa_tables import (
    ARTICLES,
    COMMA_BETWEEN_DIGITS,
    CONTRACTIONS,
    NUMBER_WORDS,
    PERIOD_STRIP,
    PERIOD_STRIP_COUNT,
    PUNCTUATION,
)

OFFICIAL_NDIGITS = 2


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip (the evaluator's first step)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: each listed mark is deleted if it touches a space (or any
    ``digit,digit`` occurs in the text), otherwise replaced by a space; then periods not followed by
    a digit are removed. Case is left alone."""
    out = text
    delete_all = COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        # The test looks at the original text, the replacement at the text so far (as upstream).
        if delete_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str, number_words: Mapping[str, str] = NUMBER_WORDS) -> str:
    """Official ``processDigitArticle``: lower-case, split on whitespace, number words to digits,
    drop articles, restore contractions, join with single spaces."""
    words = []
    for word in text.lower().split():
        word = number_words.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    return process_digit_article(process_punctuation(text))


def leave_one_out_accuracy(prediction: str, references: Sequence[str]) -> float:
    """Mean over i of ``min(1, #{j != i : refs[j] == prediction} / 3)``; strings compared as given.

    Summed in reference order with the same float operations as the official loop, so the
    result is bit-identical to it.
    """
    if not references:
        raise ValueError("references: at least one human answer is needed")
    matches = sum(ref == prediction for ref in references)
    per_subset = [min(1, float(matches - (ref == prediction)) / 3) for ref in references]
    return float(sum(per_subset)) / len(per_subset)


def vqa_question_accuracy(prediction: str, references: Sequence[str]) -> float:
    """Accuracy in [0, 1] of one prediction against its human answers (official rule, quirk included)."""
    refs = [clean_whitespace(ref) for ref in references]
    pred = clean_whitespace(prediction)
    if len(set(refs)) > 1:
        refs = [normalize_answer(ref) for ref in refs]
        pred = normalize_answer(pred)
    return leave_one_out_accuracy(pred, refs)


def official_percent(scores: Sequence[float], ndigits: int = OFFICIAL_NDIGITS) -> float:
    """``round(100 * float(sum(scores)) / len(scores), ndigits)``, the official aggregate."""
    if not scores:
        raise ValueError("scores: cannot average an empty list")
    return round(100 * float(sum(scores)) / len(scores), ndigits)


def grouped_percent(
    scores: Sequence[float], groups: Sequence[str], ndigits: int = OFFICIAL_NDIGITS
) -> dict[str, float]:
    """Official aggregate per group label, groups in order of first appearance."""
    if len(groups) != len(scores):
        raise ValueError(f"groups: expected {len(scores)} labels, got {len(groups)}")
    buckets: dict[str, list[float]] = defaultdict(list)
    for score, group in zip(scores, groups):
        buckets[group].append(score)
    return {group: official_percent(values, ndigits) for group, values in buckets.items()}


def check_aligned(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """One list of references per prediction, else ValueError naming both lengths."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions ({len(predictions)}) and references ({len(references)}) differ in length")


def vqa_score_summary(
    scores: Sequence[float],
    question_types: Sequence[str] | None = None,
    answer_types: Sequence[str] | None = None,
    ndigits: int = OFFICIAL_NDIGITS,
) -> dict:
    """Per-question scores in [0, 1] -> ``{"overall", "perQuestionType", "perAnswerType",
    "num_questions"}`` in percent, rounded as the official evaluator; the per-type keys only when
    the types are given (the layout shared by the VQAv2, VizWiz and release-style scorers)."""
    out: dict = {"overall": official_percent(scores, ndigits)}
    if question_types is not None:
        out["perQuestionType"] = grouped_percent(scores, question_types, ndigits)
    if answer_types is not None:
        out["perAnswerType"] = grouped_percent(scores, answer_types, ndigits)
    out["num_questions"] = len(scores)
    return out


def vqa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    question_types: Sequence[str] | None = None,
    answer_types: Sequence[str] | None = None,
    ndigits: int = OFFICIAL_NDIGITS,
) -> dict:
    """Official VQA accuracy of aligned ``predictions`` and ``references`` (one list of human
    answers per question).

    Returns ``{"overall", "perQuestionType", "perAnswerType", "num_questions"}`` in percent,
    rounded as the official evaluator; the per-type keys only when the types are given.
    """
    check_aligned(predictions, references)
    scores = [vqa_question_accuracy(p, r) for p, r in zip(predictions, references)]
    return vqa_score_summary(scores, question_types, answer_types, ndigits)
