"""Turn the batches' ``n_skipped`` into a logged metric.

The count rides inside the batches, so it is correct whatever the number of DataLoader workers.
:class:`SkippedSamplesLogger` logs it through the LightningModule's ``log``:
``data/skipped_samples`` (training) and ``data/val_skipped_samples`` (validation), each the sum
over the epoch and over ranks (``sync_dist``: one reduction at epoch end). It also keeps running
totals since it was created (``train_total``, ``val_total``) for code that wants the number.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from lavit_pl.data.skip_ledger import N_SKIPPED

TRAIN_METRIC = "data/skipped_samples"
VAL_METRIC = "data/val_skipped_samples"


def skipped_in(batch: Any) -> int:
    """Samples the readers skipped since the previous batch of the same worker (0 if unknown)."""
    if isinstance(batch, dict) and N_SKIPPED in batch:
        return int(batch[N_SKIPPED])
    return 0


def log_skipped(module: pl.LightningModule, batch: Any, name: str = TRAIN_METRIC) -> int:
    """Log ``batch``'s skip count as an epoch sum through ``module.log``; returns the count."""
    count = skipped_in(batch)
    module.log(name, float(count), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=1)
    return count


class SkippedSamplesLogger(pl.Callback):
    def __init__(self, train_name: str = TRAIN_METRIC, val_name: str = VAL_METRIC):
        self.train_name = train_name
        self.val_name = val_name
        self.train_total = 0
        self.val_total = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train_total += log_skipped(pl_module, batch, self.train_name)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:  # Lightning discards sanity-check logs; do not count them either
            return
        self.val_total += log_skipped(pl_module, batch, self.val_name)
