"""DataModules: epoch lengths, deterministic validation, typed configs, and a Lightning smoke run."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from shard_fixtures import read_members, rewrite_members, write_shards
from lavit_pl.config.loader import ConfigError, load_config
from lavit_pl.data.image_datamodules import ImagesDataConfig, ImagesDataModule, ImageTextDataConfig, ImageTextDataModule
from lavit_pl.data.image_shards import ShardReaderConfig
from lavit_pl.data.loader_config import LoaderConfig
from lavit_pl.data.skipped_metric import TRAIN_METRIC, VAL_METRIC, SkippedSamplesLogger
from lavit_pl.data.text_datamodules import TextCorpusDataConfig, TextCorpusDataModule

READER = ShardReaderConfig(image_size=8, metadata_fields=("complexity",))


def images_config(root: Path, **loader) -> ImagesDataConfig:
    write_shards(root / "train" / "shards", n_shards=4, per_shard=5, seed=1)
    write_shards(root / "val" / "shards", n_shards=2, per_shard=4, seed=2)
    return ImagesDataConfig(data_root=str(root), reader=READER, loader=LoaderConfig(**loader))


@pytest.mark.parametrize("num_workers, batches_per_epoch, length", [(0, None, 6), (2, None, 6), (2, 7, 8)])
def test_train_epoch_length_is_exact(tmp_path: Path, num_workers, batches_per_epoch, length):
    # default: one pass in expectation = 20 samples // batch 3 = 6; 7 rounds up to 2 workers x 4
    cfg = images_config(tmp_path, batch_size=3, num_workers=num_workers, batches_per_epoch=batches_per_epoch, shuffle_buffer=8)
    loader = ImagesDataModule(cfg).train_dataloader()
    assert len(loader) == length
    epochs = [[b["key"] for b in loader] for _ in range(2)]
    for keys in epochs:
        assert len(keys) == length and all(len(k) == 3 for k in keys)  # full batches only
    assert epochs[0] != epochs[1]  # persistent shuffle state: a new order each epoch


def test_validation_is_one_deterministic_pass_of_planned_length(tmp_path: Path):
    cfg = images_config(tmp_path, batch_size=3, num_workers=2)
    loader = ImageTextDataModule(ImageTextDataConfig(**vars(cfg))).val_dataloader()
    runs = [[k for b in loader for k in b["key"]] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == len(set(runs[0])) == 8
    assert len(loader) == len(list(loader)) == 4  # 2 workers x ceil(4 / 3)
    assert all("caption" in b for b in loader)


def test_text_datamodule_counts_documents_for_its_epoch(tmp_path: Path):
    (tmp_path / "corpus").mkdir()
    for f in range(2):
        (tmp_path / "corpus" / f"corpus_{f:05d}.jsonl").write_text("".join(f'{{"text": "d{f}{i}"}}\n' for i in range(9)))
    cfg = TextCorpusDataConfig(data_root=str(tmp_path), train_files=["corpus/*.jsonl"], val_files=["corpus/corpus_00001.jsonl"],
                               loader=LoaderConfig(batch_size=4))
    dm = TextCorpusDataModule(cfg)
    assert len(dm.train_dataloader()) == 4  # 18 documents // 4
    assert [t for b in dm.val_dataloader() for t in b["text"]] == [f"d1{i}" for i in range(9)]


def test_configs_load_from_yaml_and_checks_name_the_field(tmp_path: Path):
    path = tmp_path / "data.yaml"
    path.write_text("data_root: /data/shapes/tiny\nreader:\n  image_size: 16\n  mean: [0.5, 0.5, 0.5]\nloader:\n  batches_per_epoch: 10\n")
    cfg = load_config(ImagesDataConfig, path, ["loader.num_workers=2"])
    assert cfg.reader.mean == (0.5, 0.5, 0.5) and cfg.loader.batches_per_epoch == 10 and cfg.loader.num_workers == 2
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(ImagesDataConfig, path, ["loader.batch_size=0"])
    with pytest.raises(ValueError, match="ImagesDataConfig.train_shards"):
        ImagesDataConfig(train_shards=[])
    with pytest.raises(ValueError, match="TextCorpusDataConfig.train_files"):
        TextCorpusDataConfig(train_files="corpus/*.jsonl")


def test_too_few_shards_for_the_workers_is_a_clear_error(tmp_path: Path):
    cfg = images_config(tmp_path, num_workers=8)
    with pytest.raises(ValueError, match=r"ImagesDataConfig.train_shards: 4 file\(s\) cannot feed 1 rank\(s\) x 8 worker"):
        ImagesDataModule(cfg).train_dataloader()


class TinyImageModel(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        pooled = batch["image"].mean(dim=(2, 3))  # (B, C)
        return self.head(pooled).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.head(batch["image"].mean(dim=(2, 3))).pow(2).mean(), batch_size=batch["image"].shape[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _damage(shard: str, key: str, ext: str, payload: bytes) -> None:
    rewrite_members(shard, [(n, payload if n == f"{key}.{ext}" else d) for n, d in read_members(shard)])


def test_fast_dev_run_logs_the_skipped_metric(tmp_path: Path):
    train = write_shards(tmp_path / "train", n_shards=1, per_shard=6, seed=4)
    val = write_shards(tmp_path / "val", n_shards=1, per_shard=6, seed=5)
    _damage(train[1].shard, train[1].key, "json", b"{broken")  # rides on the 1st training batch
    _damage(val[0].shard, val[0].key, "jpg", b"not an image")  # rides on the 1st validation batch
    cfg = ImagesDataConfig(data_root=str(tmp_path), train_shards=["train/*.tar"], val_shards=["val/*.tar"],
                           reader=READER, loader=LoaderConfig(batch_size=4, shuffle=False))
    counter = SkippedSamplesLogger()
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", callbacks=[counter], enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(TinyImageModel(), datamodule=ImagesDataModule(cfg))
    assert trainer.callback_metrics[TRAIN_METRIC].item() == 1.0
    assert trainer.callback_metrics[VAL_METRIC].item() == 1.0
    assert (counter.train_total, counter.val_total) == (1, 1)


class CountingValidations(TinyImageModel):
    def __init__(self):
        super().__init__()
        self.validations = 0

    def on_validation_epoch_end(self):
        self.validations += 1


def test_val_check_interval_works_on_the_iterable_epoch(tmp_path: Path):
    # len(train) = 20 samples // batch 2 = 10 batches, so val_check_interval=0.5 validates after
    # batches 5 and 10: twice in one epoch (Lightning needs the length to place a fraction).
    cfg = images_config(tmp_path, batch_size=2, shuffle_buffer=4)
    model = CountingValidations()
    trainer = pl.Trainer(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=ImagesDataModule(cfg))
    assert trainer.num_training_batches == 10 and trainer.global_step == 10 and model.validations == 2
