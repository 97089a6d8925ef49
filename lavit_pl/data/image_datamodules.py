"""DataModules over img2dataset shards: images only (stage 1 tokenizer, UNet) and image-text
pairs (stage 2). Batches are described in :mod:`lavit_pl.data.collate`; every batch has
``n_skipped`` (see :class:`lavit_pl.data.skipped_metric.SkippedSamplesLogger`).

Epochs: training streams are endless and cut into epochs of ``loader.batches_per_epoch`` batches
per rank (``len(train_dataloader())`` is exact); validation makes one deterministic pass, its
length planned from the stats files. See :mod:`lavit_pl.data.pipeline_stages`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from lavit_pl.data.image_shards import ShardReaderConfig, build_image_pipeline
from lavit_pl.data.loader_config import LoaderConfig, make_dataloader
from lavit_pl.data.pipeline_stages import check_enough_files, fixed_length_epoch, node_rank_and_size, planned_pass_batches
from lavit_pl.data.shard_list import expand_shard_specs, expected_counts


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


class ImagesDataModule(pl.LightningDataModule):
    """Images only: batches ``{"image": (B, C, H, W), "key", "shard", "meta", "n_skipped"}``."""

    with_captions = False

    def __init__(self, cfg: ImagesDataConfig):
        super().__init__()
        self.cfg = cfg
        self.train_files: list[str] = []
        self.val_files: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        self.train_files = expand_shard_specs(self.cfg.data_root, self.cfg.train_shards, "train_shards")
        self.val_files = (
            expand_shard_specs(self.cfg.data_root, self.cfg.val_shards, "val_shards") if self.cfg.val_shards else []
        )

    def _ensure_setup(self) -> None:
        if not self.train_files:  # used outside a Trainer, before setup()
            self.setup()

    def default_batches_per_epoch(self) -> int:
        """One pass over the training shards in expectation: sum(successes) / (ranks x batch)."""
        self._ensure_setup()
        counts = expected_counts(self.train_files, self.cfg.reader.require_stats)
        if any(c is None for c in counts.values()):
            raise ValueError("loader.batches_per_epoch must be set: some training shards have no stats file")
        world_size = node_rank_and_size()[1]
        return max(1, sum(counts.values()) // (world_size * self.cfg.loader.batch_size))  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        loader = self.cfg.loader
        files = self.train_files
        check_enough_files(len(files), loader.num_workers, f"{type(self.cfg).__name__}.train_shards")
        pipeline = build_image_pipeline(
            files, self.cfg.reader, self.with_captions,
            shuffle=loader.shuffle, seed=loader.seed, shuffle_buffer=loader.shuffle_buffer,
            batch_size=loader.batch_size, partial=False, repeat=True,
        )
        batches = loader.batches_per_epoch or self.default_batches_per_epoch()
        pipeline = fixed_length_epoch(pipeline, batches, loader.num_workers)
        return make_dataloader(pipeline, loader.num_workers, loader.pin_memory, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self._ensure_setup()
        if not self.val_files:
            return []
        files, loader = self.val_files, self.cfg.loader
        pipeline = build_image_pipeline(
            files, self.cfg.reader, self.with_captions, batch_size=loader.eval_batch_size, partial=True
        )
        planned = planned_pass_batches(
            files, expected_counts(files, self.cfg.reader.require_stats), loader.eval_batch_size, loader.num_workers
        )
        if planned is not None:
            pipeline = pipeline.with_length(planned, silent=True)
        return make_dataloader(pipeline, loader.num_workers, loader.pin_memory, train=False)


class ImageTextDataModule(ImagesDataModule):
    """Image-text pairs: image batches plus ``"caption"``: list of B str."""

    with_captions = True

    def __init__(self, cfg: ImageTextDataConfig):
        super().__init__(cfg)
