"""DataModules over img2dataset shards: images only (stage 1 tokenizer, UNet) and image-text
pairs (stage 2). Batches are described in :mod:`lavit_pl.data.collate`; every batch has
``n_skipped`` (see :class:`lavit_pl.data.skipped_metric.SkippedSamplesLogger`).

Epochs: training streams are endless and cut into epochs of ``loader.batches_per_epoch`` batches
per rank (``len(train_dataloader())`` is exact); validation makes one deterministic pass, its
length planned from the stats files. See :mod:`lavit_pl.data.pipeline_stages`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import webdataset as wds

from lavit_pl.data.file_list_datamodule import FileListDataModule
from lavit_pl.data.image_shards import ShardReaderConfig, build_image_pipeline
from lavit_pl.data.loader_config import LoaderConfig
from lavit_pl.data.shard_list import expected_counts


@dataclass
class ImagesDataConfig:
    """``data_root``: folder the shard specs are relative to. ``train_shards``/``val_shards``:
    brace ranges and/or globs (``train/shards/{00000..00009}.tar``, ``train/shards/*.tar``);
    an empty ``val_shards`` means no validation loader."""

    data_root: str = "data/shapes/tiny"
    train_shards: list[str] = field(default_factory=lambda: ["train/shards/*.tar"])
    val_shards: list[str] = field(default_factory=lambda: ["val/shards/*.tar"])
    reader: ShardReaderConfig = field(default_factory=ShardReaderConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not self.data_root:
            raise ValueError(f"{name}.data_root must be a folder path")
        if isinstance(self.train_shards, str) or not self.train_shards:
            raise ValueError(f"{name}.train_shards must be a non-empty list of shard specs, got {self.train_shards!r}")
        if isinstance(self.val_shards, str):
            raise ValueError(f"{name}.val_shards must be a list of shard specs, got the string {self.val_shards!r}")


@dataclass
class ImageTextDataConfig(ImagesDataConfig):
    """Same fields as :class:`ImagesDataConfig`; samples also need and carry ``KEY.txt`` captions."""


class ImagesDataModule(FileListDataModule):
    """Images only: batches ``{"image": (B, C, H, W), "key", "shard", "meta", "n_skipped"}``."""

    with_captions = False
    train_field, val_field = "train_shards", "val_shards"

    def __init__(self, cfg: ImagesDataConfig):
        super().__init__(cfg)

    def sample_counts(self, files: Sequence[str]) -> dict[str, int | None]:
        """Successes from each shard's stats file (None without one, unless ``require_stats``)."""
        return expected_counts(files, self.cfg.reader.require_stats)

    def build_pipeline(self, files: Sequence[str], **options: Any) -> wds.DataPipeline:
        return build_image_pipeline(files, self.cfg.reader, self.with_captions, **options)


class ImageTextDataModule(ImagesDataModule):
    """Image-text pairs: image batches plus ``"caption"``: list of B str."""

    with_captions = True

    def __init__(self, cfg: ImageTextDataConfig):
        super().__init__(cfg)
