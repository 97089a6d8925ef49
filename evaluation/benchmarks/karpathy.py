"""Karpathy split files (``dataset_flickr30k.json``, ``dataset_coco.json``).

Layout::

    {"dataset": "flickr30k",
     "images": [{"filename": str, "imgid": int, "split": "train"|"val"|"test"|"restval",
                 "sentids": [int], "sentences": [{"raw": str, "tokens": [str], "imgid": int,
                                                  "sentid": int}]}]}

The split is a required argument: scoring every Flickr30k image instead of the 1K Karpathy test
split is a known way to report a wrong number, so nothing here defaults to "all images".
The record's ``image_id`` is the file's ``imgid``; caption results name images by it. The image
file is ``filename``, under ``filepath`` when the image carries one (``dataset_coco.json``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require, require_list

KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass(frozen=True)
class KarpathyImage:
    image_id: int
    image_file: str
    split: str
    captions: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    sentence_ids: tuple[int, ...]


def is_karpathy_layout(data: object) -> bool:
    """True for a Karpathy split file (``dataset`` key and images with ``sentences``)."""
    if not isinstance(data, dict) or "dataset" not in data or not isinstance(data.get("images"), list):
        return False
    first = data["images"][0] if data["images"] else {}
    return isinstance(first, dict) and "sentences" in first


def read_karpathy(path: str | Path, split: str, image_root: str | Path | None = None) -> list[KarpathyImage]:
    """Read the images of one Karpathy ``split`` (train / val / test / restval), in file order.

    Every image of the file is validated, not only those of ``split``.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split: expected one of {KARPATHY_SPLITS}, got {split!r}")
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"top level must be an object, got {type(data).__name__}")
    require(data, "dataset", str, path, None)
    images = require_list(data, "images", path)
    records, seen = [], set()
    for index, image in enumerate(images):
        where = f"images[{index}]"
        image_id = require(image, "imgid", int, path, where)
        where = f"images[{index}] (imgid {image_id})"
        filename = require(image, "filename", str, path, where)
        if isinstance(image.get("filepath"), str) and image["filepath"]:
            filename = f"{image['filepath']}/{filename}"
        image_split = require(image, "split", str, path, where)
        if image_split not in KARPATHY_SPLITS:
            raise BenchmarkFileError(path, f"expected one of {KARPATHY_SPLITS}, got {image_split!r}",
                                     record=where, key="split")
        if image_id in seen:
            raise BenchmarkFileError(path, f"duplicate imgid {image_id}", record=where, key="imgid")
        seen.add(image_id)
        sentences = require_list(image, "sentences", path, where)
        if not sentences:
            raise BenchmarkFileError(path, "no reference sentence", record=where, key="sentences")
        raws, tokens, sent_ids = [], [], []
        for j, sentence in enumerate(sentences):
            swhere = f"{where}.sentences[{j}]"
            raws.append(require(sentence, "raw", str, path, swhere))
            tokens.append(tuple(require_list(sentence, "tokens", path, swhere)))
            sent_ids.append(require(sentence, "sentid", int, path, swhere))
            if require(sentence, "imgid", int, path, swhere) != image_id:
                raise BenchmarkFileError(path, f"sentence imgid {sentence['imgid']} != image imgid {image_id}",
                                         record=swhere, key="imgid")
        if image_split != split:
            continue
        records.append(KarpathyImage(image_id, filename, image_split, tuple(raws), tuple(tokens), tuple(sent_ids)))
    if not records:
        raise BenchmarkFileError(path, f"no image has split {split!r}")
    check_images(path, image_root, ((f"imgid {r.image_id}", r.image_file) for r in records))
    return records
