"""NoCaps val layout (``nocaps_val_4500_captions.json``): COCO layout plus a domain per image.

``images[]`` carry ``domain`` in ``in-domain`` / ``near-domain`` / ``out-domain`` and
``open_images_id``; ``annotations[]`` hold the ten reference captions per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from evaluation.benchmarks.coco_captions import parse_coco_images
from evaluation.benchmarks.errors import BenchmarkFileError, check_images, load_json, require

NOCAPS_DOMAINS = ("in-domain", "near-domain", "out-domain")


@dataclass(frozen=True)
class NocapsImage:
    image_id: int
    image_file: str
    domain: str
    open_images_id: str
    captions: tuple[str, ...]


def read_nocaps(
    path: str | Path,
    domains: Iterable[str] | None = None,
    image_root: str | Path | None = None,
) -> list[NocapsImage]:
    """Read NoCaps val; keep the images whose domain is in ``domains`` (all three when None).

    Returns records in file order. An unknown domain, in the file or in ``domains``, is an error.
    """
    path = Path(path)
    wanted = tuple(NOCAPS_DOMAINS if domains is None else domains)
    for domain in wanted:
        if domain not in NOCAPS_DOMAINS:
            raise ValueError(f"domains: unknown NoCaps domain {domain!r}; expected some of {NOCAPS_DOMAINS}")
    images, captions = parse_coco_images(load_json(path), path)
    records = []
    for index, image in enumerate(images):
        where = f"images[{index}] (id {image['id']})"
        domain = require(image, "domain", str, path, where)
        if domain not in NOCAPS_DOMAINS:
            raise BenchmarkFileError(path, f"expected one of {NOCAPS_DOMAINS}, got {domain!r}",
                                     record=where, key="domain")
        open_images_id = require(image, "open_images_id", str, path, where)
        if domain not in wanted:
            continue
        records.append(NocapsImage(
            image_id=image["id"],
            image_file=image["file_name"],
            domain=domain,
            open_images_id=open_images_id,
            captions=tuple(c for _, c in captions[image["id"]]),
        ))
    check_images(path, image_root, ((f"image id {r.image_id}", r.image_file) for r in records))
    return records
