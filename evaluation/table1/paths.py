"""Where each Table-1 split lives under a data root, in the official layouts (docs/data_layout.md).

Defaults are the Shapes world's layout (``data/shapes/<preset>/``), which is the real benchmarks'
layout: pointing at real data changes ``root`` (and a file name where a download differs). An
absolute path ignores ``root``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path


def _path(default: str, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class Table1Paths:
    """Benchmark files and image folders, relative to ``root`` unless absolute."""

    root: str = _path("data/shapes/tiny", "data root (a Shapes world preset or the real benchmarks)")
    nocaps_annotations: str = _path("nocaps/nocaps_val_4500_captions.json", "NoCaps val captions (COCO layout + domain)")
    nocaps_images: str = _path("nocaps/images", "NoCaps val images")
    flickr30k_annotations: str = _path("flickr30k/dataset_flickr30k.json", "Karpathy split file (test split used)")
    flickr30k_images: str = _path("flickr30k/images", "Flickr30k images")
    vqav2_questions: str = _path("vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "VQAv2 val questions")
    vqav2_annotations: str = _path("vqav2/v2_mscoco_val2014_annotations.json", "VQAv2 val annotations")
    vqav2_images: str = _path("vqav2/val2014", "COCO val2014 images")
    vqav2_train_questions: str = _path("vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "baselines only (answer prior, retrieval)")
    vqav2_train_annotations: str = _path("vqav2/v2_mscoco_train2014_annotations.json", "baselines only (answer prior, retrieval)")
    vqav2_train_images: str = _path("vqav2/train2014", "COCO train2014 images (retrieval baseline only)")
    okvqa_questions: str = _path("okvqa/OpenEnded_mscoco_val2014_questions.json", "OK-VQA val questions")
    okvqa_annotations: str = _path("okvqa/mscoco_val2014_annotations.json", "OK-VQA val annotations")
    okvqa_images: str = _path("okvqa/val2014", "COCO val2014 images (OK-VQA)")
    okvqa_train_questions: str = _path("vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "baselines only (answer prior, retrieval)")
    okvqa_train_annotations: str = _path("vqav2/v2_mscoco_train2014_annotations.json", "baselines only (answer prior, retrieval)")
    okvqa_train_images: str = _path("vqav2/train2014", "COCO train2014 images (retrieval baseline only)")
    gqa_questions: str = _path("gqa/testdev_balanced_questions.json", "GQA testdev-balanced questions")
    gqa_images: str = _path("gqa/images", "GQA images")
    gqa_train_questions: str = _path("gqa/train_balanced_questions.json", "baselines only (answer prior, retrieval)")
    gqa_train_images: str = _path("gqa/images", "GQA training images (retrieval baseline only; the Shapes world writes none)")
    vizwiz_annotations: str = _path("vizwiz/val.json", "VizWiz val (10 answers per image)")
    vizwiz_images: str = _path("vizwiz/val", "VizWiz val images")
    vizwiz_train: str = _path("vizwiz/train.json", "baselines only (answer prior, retrieval)")
    vizwiz_train_images: str = _path("vizwiz/train", "VizWiz train images (retrieval baseline only; the Shapes world writes none)")
    train_caption_shards: str = _path("train/shards/*.tar", "training captions (img2dataset shards, glob) for the "
                                      "constant-caption and retrieval baselines; '' to use train_caption_annotations")
    train_caption_annotations: str = _path("", "training captions as a COCO or Karpathy file (instead of shards)")
    train_caption_karpathy_split: str = _path("", "split of a Karpathy train_caption_annotations file (train/restval)")

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError("paths.root: expected a data folder, got ''")
        if bool(self.train_caption_shards) == bool(self.train_caption_annotations):
            raise ValueError("paths.train_caption_shards / paths.train_caption_annotations: set exactly one")
        if self.train_caption_karpathy_split not in ("", "train", "restval"):
            raise ValueError(f"paths.train_caption_karpathy_split: expected '', 'train' or 'restval', "
                             f"got {self.train_caption_karpathy_split!r}")

    def resolve(self, name: str) -> Path:
        """The path of field ``name`` (absolute, or under ``root``)."""
        if name == "root" or name not in {f.name for f in fields(self)}:
            raise KeyError(f"paths: no field {name!r}")
        return Path(self.root) / getattr(self, name)

    def train_shards(self) -> list[Path]:
        pattern = self.resolve("train_caption_shards")
        found = sorted(pattern.parent.glob(pattern.name))
        if not found:
            raise FileNotFoundError(f"paths.train_caption_shards: no file matches {pattern}")
        return found
