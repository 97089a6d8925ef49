"""MMLU accuracy per subject, per category and overall (pure function over per-question results).

Two averages are reported, because papers differ:
- ``average``: the mean over all questions (Hendrycks et al.'s "Average accuracy", and LLaMA's
  table: LLaMA-7B's 34.0/30.5/38.3/38.1 per category weighted by MMLU's 4705/3018/3077/3242 test
  questions gives 35.14, the 35.1 it reports, while the mean of the four is 35.2). LaVIT's Table 4
  copies that LLaMA row, so ``average`` is the column to compare with. LaVIT's own rows 3 and 4
  (30.9, 33.6) agree with neither definition of their category numbers (31.3 / 31.2, 33.9 / 33.9).
- ``category_mean``: the unweighted mean of the category accuracies present.
All accuracies are percentages.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den


def mmlu_accuracy(subjects: Sequence[str], correct: Sequence[bool], categories: Mapping[str, str]) -> dict[str, Any]:
    """``subjects[i]``/``correct[i]`` describe question i; ``categories`` maps subject -> category.

    Returns ``{"average", "category_mean", "num_questions", "categories": {c: {"accuracy",
    "num_questions"}}, "subjects": {s: {"accuracy", "num_questions", "category"}}}``; categories
    without questions are left out.
    """
    if len(subjects) != len(correct):
        raise ValueError(f"{len(subjects)} subjects but {len(correct)} correctness flags")
    if not subjects:
        raise ValueError("no questions to score")
    missing = sorted({s for s in subjects if s not in categories})
    if missing:
        raise KeyError(f"no category for subjects {missing}")
    by_subject: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # subject -> [right, total]
    for subject, ok in zip(subjects, correct):
        by_subject[subject][0] += bool(ok)
        by_subject[subject][1] += 1
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for subject, (right, total) in by_subject.items():
        by_category[categories[subject]][0] += right
        by_category[categories[subject]][1] += total
    cat_acc = {c: _pct(r, t) for c, (r, t) in by_category.items()}
    return {
        "average": _pct(sum(bool(c) for c in correct), len(correct)),
        "category_mean": sum(cat_acc.values()) / len(cat_acc),
        "num_questions": len(correct),
        "categories": {c: {"accuracy": cat_acc[c], "num_questions": by_category[c][1]} for c in sorted(by_category)},
        "subjects": {
            s: {"accuracy": _pct(r, t), "num_questions": t, "category": categories[s]}
            for s, (r, t) in sorted(by_subject.items())
        },
    }
