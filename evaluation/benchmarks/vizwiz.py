"""VizWiz-VQA layout (``val.json``, ``train.json``): a list, one record per image.

Layout::

    [{"image": "VizWiz_val_00000000.jpg", "question": str, "answerable": 0|1,
      "answer_type": "other"|"yes/no"|"number"|"unanswerable",
      "answers": [{"answer": str, "answer_confidence": str} x 10]}]

The image name is the record's id (VizWiz has one question per image).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require, require_list

VIZWIZ_ANSWER_TYPES = ("other", "yes/no", "number", "unanswerable")
NUM_VIZWIZ_ANSWERS = 10


@dataclass(frozen=True)
class VizWizQuestion:
    image: str
    question: str
    answerable: int
    answer_type: str
    answers: tuple[str, ...]


def read_vizwiz(
    path: str | Path, image_root: str | Path | None = None, num_answers: int = NUM_VIZWIZ_ANSWERS
) -> list[VizWizQuestion]:
    """Read an annotated VizWiz split (file order); image names must be unique."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise BenchmarkFileError(path, f"top level must be a list, got {type(data).__name__}")
    records, seen = [], {}
    for index, item in enumerate(data):
        where = f"[{index}]"
        image = require(item, "image", str, path, where)
        where = f"[{index}] (image {image})"
        if image in seen:
            raise BenchmarkFileError(path, f"duplicate image (first at [{seen[image]}])", record=where, key="image")
        seen[image] = index
        question = require(item, "question", str, path, where)
        answerable = require(item, "answerable", int, path, where)
        if answerable not in (0, 1):
            raise BenchmarkFileError(path, f"expected 0 or 1, got {answerable}", record=where, key="answerable")
        answer_type = require(item, "answer_type", str, path, where)
        if answer_type not in VIZWIZ_ANSWER_TYPES:
            raise BenchmarkFileError(path, f"expected one of {VIZWIZ_ANSWER_TYPES}, got {answer_type!r}",
                                     record=where, key="answer_type")
        answers = require_list(item, "answers", path, where)
        if len(answers) != num_answers:
            raise BenchmarkFileError(path, f"expected {num_answers} answers, got {len(answers)}",
                                     record=where, key="answers")
        texts = tuple(require(a, "answer", str, path, f"{where}.answers[{j}]") for j, a in enumerate(answers))
        records.append(VizWizQuestion(image, question, answerable, answer_type, texts))
    check_images(path, image_root, ((f"image {r.image}", r.image) for r in records))
    return records
