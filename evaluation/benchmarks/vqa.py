"""VQAv2 / OK-VQA layout: a questions file joined with an annotations file.

Questions (``v2_OpenEnded_mscoco_val2014_questions.json``)::

    {"info", "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
     "license", "questions": [{"image_id": int, "question": str, "question_id": int}]}

Annotations (``v2_mscoco_val2014_annotations.json``)::

    {"info", "license", "data_subtype", "annotations": [{"question_id", "image_id",
     "question_type", "answer_type", "multiple_choice_answer",
     "answers": [{"answer", "answer_confidence", "answer_id"} x 10]}]}

OK-VQA (``OpenEnded_mscoco_val2014_questions.json`` / ``mscoco_val2014_annotations.json``) has
the same fields except ``multiple_choice_answer`` (its answers add ``raw_answer``); where that key
is absent the record's ``multiple_choice_answer`` is the most frequent of the ten answers (ties to
the lexicographically smallest). Images are ``COCO_<data_subtype>_<image_id:012d>.jpg``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require, require_list

NUM_VQA_ANSWERS = 10


@dataclass(frozen=True)
class VQAQuestionText:
    """A question without its annotation (what a model, or a blind baseline, sees)."""

    question_id: int
    image_id: int
    question: str
    image_file: str


@dataclass(frozen=True)
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    image_file: str
    question_type: str
    answer_type: str
    multiple_choice_answer: str
    answers: tuple[str, ...]


def coco_image_file(data_subtype: str, image_id: int) -> str:
    return f"COCO_{data_subtype}_{image_id:012d}.jpg"


def read_vqa_questions(path: str | Path, image_root: str | Path | None = None) -> list[VQAQuestionText]:
    """Read a questions file alone (file order); ids must be unique."""
    path = Path(path)
    _, records = _read_questions(path)
    check_images(path, image_root, ((f"question_id {r.question_id}", r.image_file) for r in records))
    return records


def _read_questions(path: Path) -> tuple[str, list[VQAQuestionText]]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"top level must be an object, got {type(data).__name__}")
    subtype = require(data, "data_subtype", str, path, None)
    records, seen = [], {}
    for index, q in enumerate(require_list(data, "questions", path)):
        where = f"questions[{index}]"
        qid = require(q, "question_id", int, path, where)
        image_id = require(q, "image_id", int, path, where)
        text = require(q, "question", str, path, where)
        if qid in seen:
            raise BenchmarkFileError(path, f"duplicate question_id {qid} (first at questions[{seen[qid]}])",
                                     record=where, key="question_id")
        seen[qid] = index
        records.append(VQAQuestionText(qid, image_id, text, coco_image_file(subtype, image_id)))
    return subtype, records


def _read_annotations(path: Path, num_answers: int) -> tuple[str | None, dict[int, tuple[str, dict]]]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"top level must be an object, got {type(data).__name__}")
    subtype = data.get("data_subtype")
    by_id: dict[int, tuple[str, dict]] = {}
    for index, ann in enumerate(require_list(data, "annotations", path)):
        where = f"annotations[{index}]"
        qid = require(ann, "question_id", int, path, where)
        where = f"annotations[{index}] (question_id {qid})"
        if qid in by_id:
            raise BenchmarkFileError(path, f"duplicate question_id {qid} (first at {by_id[qid][0]})",
                                     record=where, key="question_id")
        require(ann, "image_id", int, path, where)
        for key in ("question_type", "answer_type"):
            require(ann, key, str, path, where)
        if "multiple_choice_answer" in ann:
            require(ann, "multiple_choice_answer", str, path, where)
        answers = require_list(ann, "answers", path, where)
        if len(answers) != num_answers:
            raise BenchmarkFileError(path, f"expected {num_answers} answers, got {len(answers)}",
                                     record=where, key="answers")
        for j, answer in enumerate(answers):
            require(answer, "answer", str, path, f"{where}.answers[{j}]")
        by_id[qid] = (where, ann)
    return subtype if isinstance(subtype, str) else None, by_id


def _most_frequent(answers: list[dict]) -> str:
    counts = Counter(a["answer"] for a in answers)
    return min(counts, key=lambda a: (-counts[a], a))


def read_vqa(
    questions_path: str | Path,
    annotations_path: str | Path,
    image_root: str | Path | None = None,
    num_answers: int = NUM_VQA_ANSWERS,
) -> list[VQAQuestion]:
    """Join questions with annotations by ``question_id``; records in questions-file order.

    Both files must hold exactly the same question ids with the same image ids, and every
    annotation must carry ``num_answers`` answers; otherwise the error names the first offender.
    """
    questions_path, annotations_path = Path(questions_path), Path(annotations_path)
    q_subtype, questions = _read_questions(questions_path)
    ann_subtype, annotations = _read_annotations(annotations_path, num_answers)
    if ann_subtype is not None and ann_subtype != q_subtype:
        raise BenchmarkFileError(annotations_path, f"data_subtype {ann_subtype!r} does not match the questions "
                                 f"file {questions_path} ({q_subtype!r})", key="data_subtype")
    question_ids = set()
    records = []
    for index, q in enumerate(questions):
        question_ids.add(q.question_id)
        if q.question_id not in annotations:
            raise BenchmarkFileError(annotations_path, f"no annotation for question_id {q.question_id} "
                                     f"(questions[{index}] of {questions_path})")
        where, ann = annotations[q.question_id]
        if ann["image_id"] != q.image_id:
            raise BenchmarkFileError(annotations_path, f"image_id {ann['image_id']} != {q.image_id} in "
                                     f"{questions_path}", record=where, key="image_id")
        records.append(VQAQuestion(
            question_id=q.question_id,
            image_id=q.image_id,
            question=q.question,
            image_file=q.image_file,
            question_type=ann["question_type"],
            answer_type=ann["answer_type"],
            multiple_choice_answer=ann.get("multiple_choice_answer") or _most_frequent(ann["answers"]),
            answers=tuple(a["answer"] for a in ann["answers"]),
        ))
    for qid, (where, _) in annotations.items():
        if qid not in question_ids:
            raise BenchmarkFileError(annotations_path, f"question_id {qid} is not in {questions_path}", record=where)
    check_images(questions_path, image_root, ((f"question_id {r.question_id}", r.image_file) for r in records))
    return records
