"""GQA questions layout (``testdev_balanced_questions.json``, ``train_balanced_questions.json``).

Layout: one object keyed by question id (a string)::

    {"<questionId>": {"imageId": str, "question": str, "answer": str, "fullAnswer": str,
                      "isBalanced": bool, "types": {"structural", "semantic", "detailed"},
                      "semantic", "annotations", "equivalent", "entailed", "groups"}}

Images are ``<imageId>.jpg``. The official evaluator scores only ``isBalanced`` questions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require


@dataclass(frozen=True)
class GQAQuestion:
    question_id: str
    image_id: str
    question: str
    answer: str
    is_balanced: bool
    structural: str
    semantic: str
    detailed: str
    image_file: str


def read_gqa(path: str | Path, balanced_only: bool = True, image_root: str | Path | None = None) -> list[GQAQuestion]:
    """Read a GQA questions file (file order); ``balanced_only`` keeps ``isBalanced`` questions."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"top level must be an object keyed by questionId, got {type(data).__name__}")
    records = []
    for qid, q in data.items():
        where = f"questionId {qid}"
        image_id = require(q, "imageId", str, path, where)
        question = require(q, "question", str, path, where)
        answer = require(q, "answer", str, path, where)
        balanced = require(q, "isBalanced", bool, path, where)
        types = require(q, "types", dict, path, where)
        kinds = [require(types, k, str, path, f"{where}.types") for k in ("structural", "semantic", "detailed")]
        if balanced_only and not balanced:
            continue
        records.append(GQAQuestion(qid, image_id, question, answer, balanced, *kinds, image_file=f"{image_id}.jpg"))
    if not records:
        raise BenchmarkFileError(path, "no question to evaluate" + (" (none is balanced)" if balanced_only else ""))
    check_images(path, image_root, ((f"questionId {r.question_id}", r.image_file) for r in records))
    return records
