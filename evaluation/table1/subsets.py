"""Official-layout copies of benchmark files restricted to the evaluated examples.

When a split is evaluated on its first n examples, the predictions cover only those; the standalone
scorers (``python -m evaluation.vqa`` ...) demand exactly one prediction per example of the file
they read. So the harness writes the restricted benchmark files beside the predictions and scores
both its own numbers and the baselines' on them: anyone can re-score with the same files.
Every other top-level key and every field of a kept record is copied unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

from lavit_pl.utils.atomic import atomic_write_text


def _filter_list(items: list, keep: Callable[[Any], bool]) -> list:
    return [item for item in items if keep(item)]


def subset_coco(data: dict, image_ids: set) -> dict:
    """COCO captions / NoCaps layout: the kept images and their annotations."""
    return {**data, "images": _filter_list(data["images"], lambda im: im["id"] in image_ids),
            "annotations": _filter_list(data["annotations"], lambda a: a["image_id"] in image_ids)}


def subset_karpathy(data: dict, image_ids: set) -> dict:
    return {**data, "images": _filter_list(data["images"], lambda im: im["imgid"] in image_ids)}


def subset_vqa_questions(data: dict, question_ids: set) -> dict:
    return {**data, "questions": _filter_list(data["questions"], lambda q: q["question_id"] in question_ids)}


def subset_vqa_annotations(data: dict, question_ids: set) -> dict:
    return {**data, "annotations": _filter_list(data["annotations"], lambda a: a["question_id"] in question_ids)}


def subset_gqa(data: dict, question_ids: set) -> dict:
    return {qid: q for qid, q in data.items() if qid in question_ids}


def subset_vizwiz(data: list, images: set) -> list:
    return _filter_list(data, lambda item: item["image"] in images)


SUBSETTERS: dict[str, Callable[[Any, set], Any]] = {
    "coco": subset_coco, "karpathy": subset_karpathy, "vqa_questions": subset_vqa_questions,
    "vqa_annotations": subset_vqa_annotations, "gqa": subset_gqa, "vizwiz": subset_vizwiz,
}


def write_subset(layout: str, source: str | Path, target: str | Path, keep_ids: Iterable[Hashable]) -> Path:
    """Write ``source`` restricted to ``keep_ids`` to ``target`` (atomically); returns ``target``.

    ``source`` has already been validated by its reader, so the keys used here exist.
    """
    if layout not in SUBSETTERS:
        raise ValueError(f"layout: expected one of {sorted(SUBSETTERS)}, got {layout!r}")
    data = json.loads(Path(source).read_text(encoding="utf-8"))
    subset = SUBSETTERS[layout](data, set(keep_ids))
    atomic_write_text(target, json.dumps(subset, ensure_ascii=False) + "\n")
    return Path(target)
