"""The six Table-1 splits: read with the official readers, cut to the first n examples, turned into
protocol-runner records.

A :class:`PreparedSplit` holds the runner records (``image`` = the image file path, ``question``
for VQA-type splits, and the results-file id key), the expected result ids in order, and the
benchmark files to score against: the original files, or official-layout subsets of them when not
every example is evaluated (see ``subsets.py``). Which examples: the first ``max_examples`` in file
order; NoCaps takes the first ``max_examples`` of each kept domain, so every domain is scored.
GQA predictions cover every question of the file, as the official results format requires; the
scorer then counts the balanced ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Sequence

from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.karpathy import read_karpathy
from evaluation.benchmarks.nocaps import NOCAPS_DOMAINS, read_nocaps
from evaluation.benchmarks.results import RESULT_SCHEMAS
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa
from evaluation.table1.paths import Table1Paths
from evaluation.table1.subsets import write_subset

SPLITS = ("nocaps", "flickr30k", "vqav2", "okvqa", "gqa", "vizwiz")
CAPTION_SPLITS = ("nocaps", "flickr30k")
RESULT_KIND = {"nocaps": "caption", "flickr30k": "caption", "vqav2": "vqa", "okvqa": "vqa", "gqa": "gqa",
               "vizwiz": "vizwiz"}


@dataclass
class PreparedSplit:
    name: str
    kind: str  # results schema: caption / vqa / gqa / vizwiz
    records: list[dict[str, Any]]  # runner records {"image": path, "id": results id[, "question"]}, in order
    files: dict[str, Path]  # benchmark files the scorers read (subsets when not every example is used)
    num_in_file: int  # examples in the full split
    subset: bool

    @property
    def id_key(self) -> str:
        return RESULT_SCHEMAS[self.kind][0]

    @property
    def value_key(self) -> str:
        return RESULT_SCHEMAS[self.kind][2]

    @property
    def ids(self) -> list[Hashable]:
        """Results-file ids in record order (each record's ``id``)."""
        return [r["id"] for r in self.records]

    def results(self, predictions: Sequence[str]) -> list[dict[str, Any]]:
        """Official results-file entries (``[{"question_id", "answer"}]`` ...), in record order."""
        if len(predictions) != len(self.records):
            raise ValueError(f"{self.name}: {len(predictions)} predictions for {len(self.records)} records")
        return [{self.id_key: i, self.value_key: p} for i, p in zip(self.ids, predictions)]


def _first(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


def _check_n(name: str, max_examples: int | None) -> None:
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples of split {name}: expected >= 1 or None, got {max_examples}")


def prepare_split(name: str, paths: Table1Paths, max_examples: int | None, subset_dir: str | Path,
                  nocaps_domains: Sequence[str] = NOCAPS_DOMAINS) -> PreparedSplit:
    """Read split ``name`` (one of :data:`SPLITS`), keep its first ``max_examples`` examples, and
    write subset benchmark files under ``subset_dir/<name>/`` when that is not the whole file."""
    if name not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {name!r}")
    _check_n(name, max_examples)
    out = Path(subset_dir) / name
    if name == "nocaps":
        ann, images = paths.resolve("nocaps_annotations"), paths.resolve("nocaps_images")
        every = read_nocaps(ann)
        chosen = [r for d in nocaps_domains for r in _first(read_nocaps(ann, [d]), max_examples)]
        return _caption_split(name, "coco", ann, images, out, every, chosen)
    if name == "flickr30k":
        ann, images = paths.resolve("flickr30k_annotations"), paths.resolve("flickr30k_images")
        every = read_karpathy(ann, "test")
        return _caption_split(name, "karpathy", ann, images, out, every, _first(every, max_examples))
    if name in ("vqav2", "okvqa"):
        qs, ann, images = (paths.resolve(f"{name}_{k}") for k in ("questions", "annotations", "images"))
        every = read_vqa(qs, ann)
        chosen = _first(every, max_examples)
        records = [{"image": str(images / r.image_file), "question": r.question, "id": r.question_id}
                   for r in chosen]
        sources = {"questions": ("vqa_questions", qs), "annotations": ("vqa_annotations", ann)}
        return _prepared(name, "vqa", records, len(every), sources, [r.question_id for r in chosen], out)
    if name == "gqa":
        qs, images = paths.resolve("gqa_questions"), paths.resolve("gqa_images")
        every = read_gqa(qs, balanced_only=False)
        chosen = _first(every, max_examples)
        if not any(r.is_balanced for r in chosen):
            raise ValueError(f"{qs}: the first {len(chosen)} questions hold no balanced one to score; "
                             f"raise max_examples for split gqa")
        records = [{"image": str(images / r.image_file), "question": r.question, "id": r.question_id}
                   for r in chosen]
        return _prepared(name, "gqa", records, len(every), {"questions": ("gqa", qs)}, [r.question_id for r in chosen], out)
    ann, images = paths.resolve("vizwiz_annotations"), paths.resolve("vizwiz_images")
    every = read_vizwiz(ann)
    chosen = _first(every, max_examples)
    # the results id of VizWiz is the image file name; the record's "image" is the path the model reads
    records = [{"image": str(images / r.image), "question": r.question, "id": r.image} for r in chosen]
    return _prepared(name, "vizwiz", records, len(every), {"annotations": ("vizwiz", ann)}, [r.image for r in chosen], out)


def _caption_split(name: str, layout: str, ann: Path, images: Path, out: Path, every: list,
                   chosen: list) -> PreparedSplit:
    """A captioning split: ``chosen`` of ``every`` image records; a subset's annotations are
    written in the benchmark's own ``layout`` so the official scorer reads them unchanged."""
    records = [{"image": str(images / r.image_file), "id": r.image_id} for r in chosen]
    return _prepared(name, "caption", records, len(every), {"annotations": (layout, ann)}, [r.image_id for r in chosen], out)


def _prepared(name: str, kind: str, records: list[dict[str, Any]], total: int, sources: dict[str, tuple[str, Path]],
              keep_ids: list, out: Path) -> PreparedSplit:
    """The split of ``records`` (``total`` in the whole benchmark). ``sources``: files key -> (subset
    layout, benchmark file); when the records are fewer than ``total`` each file is written restricted
    to ``keep_ids`` under ``out`` and those copies are scored instead."""
    subset = len(records) < total
    files = {key: write_subset(layout, path, out / path.name, keep_ids) if subset else path
             for key, (layout, path) in sources.items()}
    _check_files(name, records)
    return PreparedSplit(name, kind, records, files, total, subset)


def _check_files(name: str, records: list[dict[str, Any]]) -> None:
    missing = [r["image"] for r in records if not Path(r["image"]).is_file()]
    if missing:
        raise FileNotFoundError(f"split {name}: image file not found: {missing[0]} ({len(missing)} missing in all)")
