"""COCO captions layout (``captions_val2014.json``): ``images`` joined with ``annotations``.

Layout (fields the reader relies on)::

    {"info": ..., "licenses": ...,
     "images": [{"id": int, "file_name": str, "height": int, "width": int}, ...],
     "annotations": [{"id": int, "image_id": int, "caption": str}, ...]}

NoCaps val uses the same layout plus ``images[].domain``; see ``nocaps.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require, require_list


@dataclass(frozen=True)
class CaptionImage:
    """One image with its reference captions (in annotation-file order)."""

    image_id: int
    image_file: str
    captions: tuple[str, ...]
    annotation_ids: tuple[int, ...]


def parse_coco_images(data: Any, path: Path) -> tuple[list[dict], dict[int, list[tuple[int, str]]]]:
    """Validate the two lists; return the image objects and ``image_id -> [(ann_id, caption)]``.

    Shared with the NoCaps reader, which adds its own per-image fields.
    """
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"top level must be an object, got {type(data).__name__}")
    images = require_list(data, "images", path)
    annotations = require_list(data, "annotations", path)
    seen: dict[int, int] = {}
    for index, image in enumerate(images):
        where = f"images[{index}]"
        image_id = require(image, "id", int, path, where)
        require(image, "file_name", str, path, where)
        if image_id in seen:
            raise BenchmarkFileError(path, f"duplicate image id {image_id} (first at images[{seen[image_id]}])",
                                     record=where, key="id")
        seen[image_id] = index
    captions: dict[int, list[tuple[int, str]]] = {image_id: [] for image_id in seen}
    for index, ann in enumerate(annotations):
        where = f"annotations[{index}]"
        image_id = require(ann, "image_id", int, path, where)
        ann_id = require(ann, "id", int, path, where)
        caption = require(ann, "caption", str, path, where)
        if image_id not in captions:
            raise BenchmarkFileError(path, f"image_id {image_id} is not in 'images'", record=where, key="image_id")
        captions[image_id].append((ann_id, caption))
    for image_id, caps in captions.items():
        if not caps:
            raise BenchmarkFileError(path, "image has no caption in 'annotations'", record=f"image id {image_id}")
    return images, captions


def read_coco_captions(path: str | Path, image_root: str | Path | None = None) -> list[CaptionImage]:
    """Read a COCO-layout captions file; one record per image, in ``images`` order.

    ``image_root``: when given, every ``file_name`` must exist under it
    (:class:`MissingImageError` names the first missing path).
    """
    path = Path(path)
    images, captions = parse_coco_images(load_json(path), path)
    records = []
    for image in images:
        caps = captions[image["id"]]
        records.append(CaptionImage(
            image_id=image["id"],
            image_file=image["file_name"],
            captions=tuple(c for _, c in caps),
            annotation_ids=tuple(a for a, _ in caps),
        ))
    check_images(path, image_root, ((f"image id {r.image_id}", r.image_file) for r in records))
    return records
