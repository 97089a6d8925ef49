"""Mixture of text and image-text documents: ratio, determinism, skip counts."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from shard_fixtures import write_shards
from lavit_pl.data.image_datamodules import ImageTextDataConfig
from lavit_pl.data.image_shards import ShardReaderConfig
from lavit_pl.data.loader_config import LoaderConfig
from lavit_pl.data.mixture import WeightedSourceMix
from lavit_pl.data.skip_ledger import skip_marker
from lavit_pl.data.text_datamodules import MixtureDataConfig, MixtureDataModule, TextCorpusDataConfig


def mixture_config(root: Path, batch_size: int, batches: int, seed: int = 0, num_workers: int = 0) -> MixtureDataConfig:
    write_shards(root / "pairs", n_shards=2, per_shard=10)
    (root / "corpus").mkdir(exist_ok=True)
    for f in range(2):
        lines = [json.dumps({"text": f"file {f} doc {i}", "meta": {}}) for i in range(30)]
        (root / "corpus" / f"corpus_{f:05d}.jsonl").write_text("\n".join(lines) + "\n")
    return MixtureDataConfig(
        text=TextCorpusDataConfig(data_root=str(root), train_files=["corpus/*.jsonl"], loader=LoaderConfig(shuffle_buffer=16)),
        image_text=ImageTextDataConfig(
            data_root=str(root), train_shards=["pairs/{00000..00001}.tar"], val_shards=[],
            reader=ShardReaderConfig(image_size=8), loader=LoaderConfig(shuffle_buffer=16),
        ),
        weights={"text": 2.0, "image_text": 1.0},
        batch_size=batch_size, batches_per_epoch=batches, seed=seed, num_workers=num_workers,
    )


def test_document_ratio_is_two_to_one_within_four_sigma(tmp_path: Path):
    # 6000 documents, each an independent draw with P(text) = 2/3: the text fraction has
    # sigma = sqrt(p (1 - p) / N) = 0.0061; 4 sigma = 0.024 fails a correct mixer with prob. 6e-5,
    # while a uniform (1/2) or inverted (1/3) mixer misses by >= 0.17.
    dm = MixtureDataModule(mixture_config(tmp_path, batch_size=60, batches=100))
    loader = dm.train_dataloader()
    assert len(loader) == 100
    counts = {"text": 0, "image_text": 0}
    for batch in loader:
        assert sum(batch["source_counts"].values()) == 60
        assert len(batch["text"]["text"]) == batch["source_counts"]["text"]
        assert batch["image_text"]["image"].shape[0] == batch["source_counts"]["image_text"]
        for name in counts:
            counts[name] += batch["source_counts"][name]
    n = sum(counts.values())
    assert n == 6000
    sigma = math.sqrt((2 / 3) * (1 / 3) / n)
    assert abs(counts["text"] / n - 2 / 3) < 4 * sigma


def _draws(cfg: MixtureDataConfig) -> list[tuple[str, ...]]:
    return [tuple(b["text"]["key"] + b["image_text"]["key"]) for b in MixtureDataModule(cfg).train_dataloader()]


def test_mixture_is_deterministic_given_the_seed(tmp_path: Path):
    first = _draws(mixture_config(tmp_path, batch_size=12, batches=4, seed=3))
    again = _draws(mixture_config(tmp_path, batch_size=12, batches=4, seed=3))
    other = _draws(mixture_config(tmp_path, batch_size=12, batches=4, seed=4))
    assert first == again and first != other


def test_two_workers_each_yield_their_share(tmp_path: Path):
    loader = MixtureDataModule(mixture_config(tmp_path, batch_size=6, batches=5, num_workers=2)).train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 6  # 5 rounded up to 2 workers x 3
    assert all(sum(b["source_counts"].values()) == 6 for b in batches)


def test_skip_markers_do_not_consume_draws_and_their_counts_reach_the_next_document():
    # Source "a" alternates document, marker(1): every "a" document after the first carries 1.
    def a():
        while True:
            yield {"key": "a", "n_skipped": 0}
            yield skip_marker(1)

    def b():
        while True:
            yield {"key": "b", "n_skipped": 0}

    docs = list(itertools.islice(WeightedSourceMix({"a": a(), "b": b()}, {"a": 1.0, "b": 1.0}, seed=0), 300))
    n_a = sum(d["source"] == "a" for d in docs)
    assert sum(d["n_skipped"] for d in docs) == n_a - 1
    assert all(d["n_skipped"] == 0 for d in docs if d["source"] == "b")


def test_mixture_config_names_the_field():
    with pytest.raises(ValueError, match="MixtureDataConfig.weights"):
        MixtureDataConfig(weights={"text": 2.0, "images": 1.0})
    with pytest.raises(ValueError, match="MixtureDataConfig.weights"):
        MixtureDataConfig(weights={"text": 2.0, "image_text": 0.0})
    with pytest.raises(ValueError, match="batches_per_epoch"):
        MixtureDataConfig(batches_per_epoch=0)
