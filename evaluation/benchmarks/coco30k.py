"""COCO-30K-style text-to-image prompts: one caption per image of a COCO captions file.

MS-COCO 30K (LaVIT Table 2) draws images from ``captions_val2014.json`` and takes one of each
image's captions as the prompt; the same images are the FID reference set.

The draw is a pure function of ``(seed, image_id)`` through SHA-256, not of a stateful random
generator: the result does not depend on the Python or NumPy version, the caption chosen for an
image does not depend on which other images are in the file, and for one seed the subset of
size n is contained in the subset of size m > n.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from evaluation.benchmarks.coco_captions import read_coco_captions
from evaluation.benchmarks.errors import BenchmarkFileError, check_images


@dataclass(frozen=True)
class TextToImagePrompt:
    image_id: int
    image_file: str
    caption: str
    annotation_id: int


def _draw(seed: int, purpose: str, image_id: int) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_t2i_prompts(
    captions_path: str | Path,
    num_prompts: int | None,
    seed: int,
    image_root: str | Path | None = None,
) -> list[TextToImagePrompt]:
    """Pick ``num_prompts`` images (all when None) and one caption each; sorted by image id.

    Images are ranked by ``sha256(seed:subset:image_id)`` and the first ``num_prompts`` kept;
    the caption is ``captions[sha256(seed:caption:image_id) % n]`` over the image's captions in
    annotation-id order. ``image_root`` checks that the chosen images exist.
    """
    path = Path(captions_path)
    if num_prompts is not None and num_prompts < 1:
        raise ValueError(f"num_prompts: expected a positive integer or None, got {num_prompts}")
    images = read_coco_captions(path)
    if num_prompts is not None and num_prompts > len(images):
        raise BenchmarkFileError(path, f"asked for {num_prompts} prompts but the file has {len(images)} images")
    chosen = sorted(images, key=lambda im: _draw(seed, "subset", im.image_id))
    if num_prompts is not None:
        chosen = chosen[:num_prompts]
    prompts = []
    for image in sorted(chosen, key=lambda im: im.image_id):
        pairs = sorted(zip(image.annotation_ids, image.captions))
        ann_id, caption = pairs[_draw(seed, "caption", image.image_id) % len(pairs)]
        prompts.append(TextToImagePrompt(image.image_id, image.image_file, caption, ann_id))
    check_images(path, image_root, ((f"image id {p.image_id}", p.image_file) for p in prompts))
    return prompts
