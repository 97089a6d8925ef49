"""Writers for the official file layouts (docs/data_layout.md); every file is written atomically.

Inputs are plain records; these functions only shape them into the real datasets' JSON / CSV /
JSONL layouts, so a reader that works on the real files works on the world and vice versa.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

from lavit_pl.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

INFO = {"description": "LaVIT-PL Shapes world (synthetic)", "version": "1.0", "year": 2024,
        "contributor": "lavit_pl.data.shapes", "date_created": "2024-01-01"}
LICENSES = [{"id": 1, "name": "CC0 (synthetic data)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]
VQA_LICENSE = {"name": "CC0 (synthetic data)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}


def write_image(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def coco_captions(
    images: Sequence[dict[str, Any]], captions: dict[int, Sequence[str]], first_annotation_id: int = 1
) -> dict[str, Any]:
    """COCO captions layout; ``images`` entries hold at least id, file_name, height, width."""
    annotations, ann_id = [], first_annotation_id
    for img in images:
        for text in captions[img["id"]]:
            annotations.append({"image_id": img["id"], "id": ann_id, "caption": text})
            ann_id += 1
    return {"info": INFO, "licenses": LICENSES, "images": list(images), "annotations": annotations}


def write_coco_captions(path: Path, images: Sequence[dict[str, Any]], captions: dict[int, Sequence[str]]) -> None:
    atomic_write_json(path, coco_captions(images, captions), indent=None)


def karpathy_tokens(sentence: str) -> list[str]:
    """Karpathy's split files store lower-cased alphanumeric tokens without punctuation."""
    return re.findall(r"[a-z0-9]+", sentence.lower())


def write_karpathy(path: Path, dataset: str, entries: Sequence[tuple[str, str, Sequence[str]]]) -> None:
    """``entries``: (filename, split, sentences) in imgid order."""
    images, sentid = [], 0
    for imgid, (filename, split, sentences) in enumerate(entries):
        if split not in ("train", "val", "test", "restval"):
            raise ValueError(f"Karpathy split must be train/val/test/restval, got '{split}' for {filename}")
        sents, ids = [], []
        for raw in sentences:
            sents.append({"tokens": karpathy_tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentid})
            ids.append(sentid)
            sentid += 1
        images.append({"filename": filename, "imgid": imgid, "split": split, "sentids": ids, "sentences": sents})
    atomic_write_json(path, {"images": images, "dataset": dataset}, indent=None)


def write_vqa(
    questions_path: Path,
    annotations_path: Path,
    records: Sequence[dict[str, Any]],
    data_subtype: str,
) -> None:
    """VQAv2 / OK-VQA question + annotation files.

    ``records``: image_id, question_id, question, question_type, answer_type,
    multiple_choice_answer, answers (10 x answer / answer_confidence / answer_id).
    """
    questions = [{"image_id": r["image_id"], "question": r["question"], "question_id": r["question_id"]} for r in records]
    annotations = [
        {
            "question_type": r["question_type"], "multiple_choice_answer": r["multiple_choice_answer"],
            "answers": r["answers"], "image_id": r["image_id"], "answer_type": r["answer_type"],
            "question_id": r["question_id"],
        }
        for r in records
    ]
    atomic_write_json(questions_path, {
        "info": INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": VQA_LICENSE,
        "data_subtype": data_subtype, "questions": questions,
    }, indent=None)
    atomic_write_json(annotations_path, {
        "info": INFO, "license": VQA_LICENSE, "data_subtype": data_subtype, "annotations": annotations,
    }, indent=None)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj, indent=None)


def write_corpus(folder: Path, docs: Sequence[dict[str, Any]], docs_per_file: int) -> list[Path]:
    """``corpus_NNNNN.jsonl`` files, one JSON document per line."""
    paths = []
    for start in range(0, len(docs), docs_per_file):
        path = folder / f"corpus_{start // docs_per_file:05d}.jsonl"
        lines = [json.dumps(d, ensure_ascii=False) for d in docs[start:start + docs_per_file]]
        atomic_write_text(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths


def mmlu_csv(rows: Sequence[Sequence[str]]) -> str:
    """MMLU CSV: no header, ``question,A,B,C,D,answer`` per row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        if len(row) != 6 or row[5] not in ("A", "B", "C", "D"):
            raise ValueError(f"MMLU row must be question,A,B,C,D,answer with answer in A-D, got {row!r}")
        writer.writerow(row)
    return buf.getvalue()


def write_mmlu(root: Path, quiz: dict[str, dict[str, list[list[str]]]], categories: dict[str, str]) -> None:
    for subject, splits in quiz.items():
        atomic_write_text(root / "data" / "dev" / f"{subject}_dev.csv", mmlu_csv(splits["dev"]))
        atomic_write_text(root / "data" / "test" / f"{subject}_test.csv", mmlu_csv(splits["test"]))
    atomic_write_json(root / "subject_categories.json", {s: categories[s] for s in quiz})


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
