"""GQA accuracy, as the official GQA ``eval.py`` computes it.

A question scores 1 when the prediction string equals the gold ``answer`` exactly (no lower-casing,
no normalisation) and 0 otherwise. Reported in percent: overall, ``binary`` (structural type other
than ``query``) and ``open`` (``query``), and per structural, semantic and detailed type. The
official script prints these with two decimals; they are rounded to two decimals here.
A group with no question (e.g. no binary question) is reported as None, where the script prints 0.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

NDIGITS = 2


def _percent(scores: Sequence[float]) -> float | None:
    return round(100 * float(sum(scores)) / len(scores), NDIGITS) if scores else None


def _grouped(scores: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    buckets: dict[str, list[float]] = defaultdict(list)
    for score, label in zip(scores, labels):
        buckets[label].append(score)
    return {label: _percent(values) for label, values in sorted(buckets.items())}


def gqa_accuracy(
    predictions: Sequence[str],
    answers: Sequence[str],
    structural: Sequence[str],
    semantic: Sequence[str] | None = None,
    detailed: Sequence[str] | None = None,
) -> dict:
    """Exact-match accuracy of aligned predictions and gold answers, with the per-type breakdowns."""
    n = len(predictions)
    for name, seq in (("answers", answers), ("structural", structural), ("semantic", semantic),
                      ("detailed", detailed)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: expected {n} entries, got {len(seq)}")
    if n == 0:
        raise ValueError("predictions: cannot score an empty benchmark")
    scores = [1.0 if p == a else 0.0 for p, a in zip(predictions, answers)]
    out: dict = {
        "accuracy": _percent(scores),
        "binary": _percent([s for s, t in zip(scores, structural) if t != "query"]),
        "open": _percent([s for s, t in zip(scores, structural) if t == "query"]),
        "perStructuralType": _grouped(scores, structural),
    }
    if semantic is not None:
        out["perSemanticType"] = _grouped(scores, semantic)
    if detailed is not None:
        out["perDetailedType"] = _grouped(scores, detailed)
    out["num_questions"] = n
    return out
