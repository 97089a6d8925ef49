"""Stage-2 data: the text / image-text mixture, with the image-text side read from the cache.

:class:`Stage2DataModule` is :class:`MixtureDataModule` (text : image-text = ``weights``, counted in
documents; see docs/data_readers.md) when no cache is configured. With a cache, ``prepare_data``
(global rank 0 only) builds the missing splits through the given ``prepare_cache`` callable, and
the image-text documents come from ``<cache_dir>/train`` (validation: ``<cache_dir>/val``) as
``{"patch_features", "keep_mask", "codes", "caption", "key", ...}`` sub-batches
(:func:`lavit_pl.data.stage2_cache.collate_cached_pairs`) instead of images.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import webdataset as wds
from torch.utils.data import DataLoader

from lavit_pl.data.loader_config import make_dataloader
from lavit_pl.data.pipeline_stages import check_enough_files
from lavit_pl.data.stage2_cache import build_cache_pipeline, cache_files, cached_samples, collate_cached_pairs
from lavit_pl.data.text_datamodules import MixtureDataConfig, MixtureDataModule

TRAIN_SPLIT, VAL_SPLIT = "train", "val"


class Stage2DataModule(MixtureDataModule):
    """``cache_dir`` None: the plain mixture. Otherwise ``prepare_cache()`` builds what is missing."""

    def __init__(self, cfg: MixtureDataConfig, cache_dir: str | Path | None = None,
                 prepare_cache: Callable[[], None] | None = None):
        super().__init__(cfg)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.prepare_cache = prepare_cache
        self.prepare_data_per_node = False  # one shared cache folder: built once, by global rank 0

    def prepare_data(self) -> None:
        if self.cache_dir is not None and self.prepare_cache is not None:
            self.prepare_cache()

    def train_dataset(self) -> wds.DataPipeline:
        if self.cache_dir is None:
            return super().train_dataset()
        self.text._ensure_setup()
        cfg = self.cfg
        files = cache_files(self.cache_dir / TRAIN_SPLIT)
        check_enough_files(len(self.text.train_files), cfg.num_workers, "MixtureDataConfig.text.train_files")
        check_enough_files(len(files), cfg.num_workers, f"{self.cache_dir / TRAIN_SPLIT} (cache files)")
        pair_loader = cfg.image_text.loader
        sources = {
            "text": self.text_train_source(),
            "image_text": build_cache_pipeline(
                files, shuffle=pair_loader.shuffle, seed=pair_loader.seed, shuffle_buffer=pair_loader.shuffle_buffer,
                repeat=True,
            ),
        }
        return self.mixture_epoch(sources, collate_cached_pairs)

    def val_dataloader(self) -> list[DataLoader]:
        if self.cache_dir is None:
            return super().val_dataloader()
        loaders = []
        if self.cfg.image_text.val_shards:
            batch_size = self.cfg.image_text.loader.eval_batch_size
            files = cache_files(self.cache_dir / VAL_SPLIT)
            pipeline = build_cache_pipeline(files, batch_size=batch_size, partial=True)
            pipeline = pipeline.with_length(math.ceil(cached_samples(self.cache_dir / VAL_SPLIT) / batch_size), silent=True)
            loaders.append(make_dataloader(pipeline, 0, self.cfg.pin_memory, train=False))
        text = self.text.val_dataloader()
        if isinstance(text, DataLoader):
            loaders.append(text)
        return loaders
