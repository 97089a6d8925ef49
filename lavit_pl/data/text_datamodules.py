"""DataModules for the text corpus and for the stage-2 mixture of text and image-text documents.

Text batches: ``{"text": [B str], "meta": [B dict], "key": [B str], "n_skipped": int}``.
Mixture batches hold ``batch_size`` documents: ``{"text": text batch, "image_text": image-text
batch, "source_counts": {name: documents}, "n_skipped": int}``; a source with no document in a
batch has no entry. The mixture's validation is its sources' validation, one loader each
(``[image_text, text]``, deterministic).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import webdataset as wds
from torch.utils.data import DataLoader

from lavit_pl.data.collate import MixtureCollate, collate_image_samples, collate_text_samples
from lavit_pl.data.file_list_datamodule import FileListDataModule
from lavit_pl.data.image_datamodules import ImageTextDataConfig, ImageTextDataModule
from lavit_pl.data.image_shards import build_image_pipeline
from lavit_pl.data.loader_config import LoaderConfig, make_dataloader
from lavit_pl.data.mixture import WeightedSourceMix
from lavit_pl.data.pipeline_stages import BatchWithSkips, check_enough_files, fixed_length_epoch
from lavit_pl.data.text_corpus import TextCorpusReaderConfig, build_text_pipeline, count_documents


@dataclass
class TextCorpusDataConfig:
    """``train_files``/``val_files``: JSONL specs (globs, brace ranges) under ``data_root``; an
    empty ``val_files`` means no validation loader. Without ``loader.batches_per_epoch`` the
    training files' lines are counted at setup (a full read: set it for a large corpus)."""

    data_root: str = "data/shapes/tiny"
    train_files: list[str] = field(default_factory=lambda: ["corpus/corpus_*.jsonl"])
    val_files: list[str] = field(default_factory=list)
    reader: TextCorpusReaderConfig = field(default_factory=TextCorpusReaderConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)

    def __post_init__(self) -> None:
        if not self.data_root:
            raise ValueError("TextCorpusDataConfig.data_root must be a folder path")
        if isinstance(self.train_files, str) or not self.train_files:
            raise ValueError(f"TextCorpusDataConfig.train_files must be a non-empty list of specs, got {self.train_files!r}")
        if isinstance(self.val_files, str):
            raise ValueError(f"TextCorpusDataConfig.val_files must be a list of specs, got the string {self.val_files!r}")


class TextCorpusDataModule(FileListDataModule):
    train_field, val_field = "train_files", "val_files"

    def __init__(self, cfg: TextCorpusDataConfig):
        super().__init__(cfg)

    def sample_counts(self, files: Sequence[str]) -> dict[str, int | None]:
        """Non-blank lines of each file (a full read)."""
        return count_documents(files)

    def build_pipeline(self, files: Sequence[str], **options: Any) -> wds.DataPipeline:
        return build_text_pipeline(files, self.cfg.reader, **options)


MIXTURE_SOURCES = ("text", "image_text")


@dataclass
class MixtureDataConfig:
    """Stage-2 documents: ``weights`` are relative shares counted in documents (the paper's
    text : image-text = 2 : 1). ``batch_size`` documents per batch; ``batches_per_epoch`` per rank
    (required: the sources repeat, so "one pass" has no meaning). ``text``/``image_text``: where
    each source's files are, how they are read and shuffled, and their validation batch size
    (their own ``loader.batch_size``/``batches_per_epoch``/``num_workers`` are not used here)."""

    text: TextCorpusDataConfig = field(default_factory=TextCorpusDataConfig)
    image_text: ImageTextDataConfig = field(default_factory=ImageTextDataConfig)
    weights: dict[str, float] = field(default_factory=lambda: {"text": 2.0, "image_text": 1.0})
    batch_size: int = 8
    batches_per_epoch: int = 1000
    num_workers: int = 0
    seed: int = 0
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if set(self.weights) != set(MIXTURE_SOURCES):
            raise ValueError(f"MixtureDataConfig.weights must name exactly {list(MIXTURE_SOURCES)}, got {sorted(self.weights)}")
        if any(not w > 0 for w in self.weights.values()):
            raise ValueError(f"MixtureDataConfig.weights must all be > 0, got {dict(self.weights)}")
        if self.batch_size < 1:
            raise ValueError(f"MixtureDataConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.batches_per_epoch < 1:
            raise ValueError(f"MixtureDataConfig.batches_per_epoch must be >= 1, got {self.batches_per_epoch}")
        if self.num_workers < 0:
            raise ValueError(f"MixtureDataConfig.num_workers must be >= 0, got {self.num_workers}")


class MixtureDataModule(pl.LightningDataModule):
    def __init__(self, cfg: MixtureDataConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextCorpusDataModule(cfg.text)
        self.image_text = ImageTextDataModule(cfg.image_text)

    def setup(self, stage: str | None = None) -> None:
        self.text.setup(stage)
        self.image_text.setup(stage)

    def train_dataset(self) -> wds.DataPipeline:
        """Endless per-worker stream of mixture batches, cut to ``batches_per_epoch``."""
        self.text._ensure_setup()
        self.image_text._ensure_setup()
        cfg = self.cfg
        check_enough_files(len(self.text.train_files), cfg.num_workers, "MixtureDataConfig.text.train_files")
        check_enough_files(len(self.image_text.train_files), cfg.num_workers, "MixtureDataConfig.image_text.train_shards")
        pair_loader = cfg.image_text.loader
        sources = {
            "text": self.text_train_source(),
            "image_text": build_image_pipeline(
                self.image_text.train_files, cfg.image_text.reader, True, shuffle=pair_loader.shuffle,
                seed=pair_loader.seed, shuffle_buffer=pair_loader.shuffle_buffer, repeat=True,
            ),
        }
        return self.mixture_epoch(sources, collate_image_samples)

    def text_train_source(self) -> wds.DataPipeline:
        """The endless, unbatched text-document stream of the mixture (after ``text`` setup)."""
        text_loader = self.cfg.text.loader
        return build_text_pipeline(
            self.text.train_files, self.cfg.text.reader, shuffle=text_loader.shuffle, seed=text_loader.seed,
            shuffle_buffer=text_loader.shuffle_buffer, repeat=True,
        )

    def mixture_epoch(
        self, sources: dict[str, wds.DataPipeline], image_text_collate: Callable[[Sequence[dict]], dict]
    ) -> wds.DataPipeline:
        """``{"text", "image_text"}`` sample streams -> weighted mixture batches of ``batch_size``
        documents, cut to ``batches_per_epoch`` per rank."""
        cfg = self.cfg
        mix = WeightedSourceMix(sources, cfg.weights, cfg.seed)
        collate = MixtureCollate({"text": collate_text_samples, "image_text": image_text_collate})
        pipeline = wds.DataPipeline(mix, BatchWithSkips(cfg.batch_size, collate, partial=False))
        return fixed_length_epoch(pipeline, cfg.batches_per_epoch, cfg.num_workers)

    def train_dataloader(self) -> DataLoader:
        return make_dataloader(self.train_dataset(), self.cfg.num_workers, self.cfg.pin_memory, train=True)

    def val_dataloader(self) -> list[DataLoader]:
        loaders = [self.image_text.val_dataloader(), self.text.val_dataloader()]
        return [dl for dl in loaders if isinstance(dl, DataLoader)]
