"""The DataModule skeleton shared by the shard (image, image-text) and JSONL (text) readers.

A subclass names its config's spec fields and says how its files are counted and read; this
class expands the specs, cuts the endless training stream into epochs and plans the one
validation pass (see :mod:`lavit_pl.data.pipeline_stages`).
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import lightning.pytorch as pl
import webdataset as wds
from torch.utils.data import DataLoader

from lavit_pl.data.loader_config import make_dataloader
from lavit_pl.data.pipeline_stages import check_enough_files, fixed_length_epoch, node_rank_and_size, planned_pass_batches
from lavit_pl.data.shard_list import expand_shard_specs


class FileListDataModule(pl.LightningDataModule, abc.ABC):
    """``cfg`` has ``data_root``, ``loader`` (:class:`LoaderConfig`), ``reader`` and the two spec
    lists named by ``train_field`` / ``val_field`` (an empty validation list: no val loader)."""

    train_field = "train_files"
    val_field = "val_files"

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.train_files: list[str] = []
        self.val_files: list[str] = []

    @abc.abstractmethod
    def sample_counts(self, files: Sequence[str]) -> dict[str, int | None]:
        """Samples each file should yield (None: unknown), for epoch planning."""

    @abc.abstractmethod
    def build_pipeline(self, files: Sequence[str], **options: Any) -> wds.DataPipeline:
        """The reader's pipeline over ``files``; ``options`` as ``file_stream_pipeline`` takes them."""

    def setup(self, stage: str | None = None) -> None:
        val_specs = getattr(self.cfg, self.val_field)
        self.train_files = expand_shard_specs(self.cfg.data_root, getattr(self.cfg, self.train_field), self.train_field)
        self.val_files = expand_shard_specs(self.cfg.data_root, val_specs, self.val_field) if val_specs else []

    def _ensure_setup(self) -> None:
        if not self.train_files:  # used outside a Trainer, before setup()
            self.setup()

    def default_batches_per_epoch(self) -> int:
        """One pass over the training files in expectation: sum(samples) / (ranks x batch)."""
        self._ensure_setup()
        counts = self.sample_counts(self.train_files)
        if any(c is None for c in counts.values()):
            raise ValueError("loader.batches_per_epoch must be set: some training shards have no stats file")
        world_size = node_rank_and_size()[1]
        return max(1, sum(counts.values()) // (world_size * self.cfg.loader.batch_size))  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        loader = self.cfg.loader
        files = self.train_files
        check_enough_files(len(files), loader.num_workers, f"{type(self.cfg).__name__}.{self.train_field}")
        pipeline = self.build_pipeline(
            files, shuffle=loader.shuffle, seed=loader.seed, shuffle_buffer=loader.shuffle_buffer,
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
        pipeline = self.build_pipeline(files, batch_size=loader.eval_batch_size, partial=True)
        planned = planned_pass_batches(files, self.sample_counts(files), loader.eval_batch_size, loader.num_workers)
        if planned is not None:
            pipeline = pipeline.with_length(planned, silent=True)
        return make_dataloader(pipeline, loader.num_workers, loader.pin_memory, train=False)
