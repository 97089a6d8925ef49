"""Batching, shuffling and epoch-length settings shared by the DataModules' configs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader


@dataclass
class LoaderConfig:
    """``batch_size``: training samples (documents) per batch; ``val_batch_size``: None = same.
    ``num_workers``: DataLoader workers per rank (workers are persistent while training so each
    keeps its own shuffle state across epochs). ``shuffle``: shard order per pass and a sample
    buffer of ``shuffle_buffer`` (<= 1: no buffer), seeded by ``seed``; validation never shuffles.
    ``batches_per_epoch``: per rank; None = one pass over the training data in expectation
    (rounded down, at least 1). Rounded up to a multiple of ``num_workers``.
    """

    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 1000
    seed: int = 0
    batches_per_epoch: int | None = None
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"LoaderConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ValueError(f"LoaderConfig.val_batch_size must be >= 1 or null, got {self.val_batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"LoaderConfig.num_workers must be >= 0, got {self.num_workers}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"LoaderConfig.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.batches_per_epoch is not None and self.batches_per_epoch < 1:
            raise ValueError(f"LoaderConfig.batches_per_epoch must be >= 1 or null, got {self.batches_per_epoch}")

    @property
    def eval_batch_size(self) -> int:
        return self.val_batch_size or self.batch_size


def make_dataloader(pipeline: Any, num_workers: int, pin_memory: bool, train: bool) -> DataLoader:
    """The pipeline batches inside each worker, so the DataLoader only gathers (batch_size=None)."""
    return DataLoader(
        pipeline,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=train and num_workers > 0,
    )
