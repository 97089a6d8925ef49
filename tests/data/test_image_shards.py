"""Reading img2dataset shards: content, preprocessing numbers, and the node/worker partition."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from shard_fixtures import write_shards
from lavit_pl.data.image_shards import CLIP_MEAN, CLIP_STD, ShardReaderConfig, build_image_pipeline, scan_image_shards
from lavit_pl.data.shard_list import ShardSpecError, expand_shard_specs
from lavit_pl.data.skip_ledger import ShardSummary, drop_skip_markers

READER = ShardReaderConfig(image_size=8, metadata_fields=("complexity",))


def test_reads_every_sample_with_caption_key_and_metadata(shard_set):
    root, written = shard_set
    shards = expand_shard_specs(root, ["train/shards/{00000..00003}.tar"])
    samples, summary = scan_image_shards(shards, READER, with_captions=True, keep_samples=True)
    assert [s["key"] for s in samples] == [w.key for w in written]  # unshuffled: writing order
    for sample, w in zip(samples, written):
        assert sample["caption"] == w.caption
        assert sample["meta"] == {"complexity": w.complexity}
        assert sample["shard"] == w.shard
        assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float32
        assert sample["n_skipped"] == 0
    assert summary == {w.shard: ShardSummary(expected=5, read=5, skipped=0) for w in written}


def test_images_only_mode_has_no_caption(shard_set):
    root, written = shard_set
    samples, _ = scan_image_shards(expand_shard_specs(root, ["train/shards/*.tar"]), READER, False, keep_samples=True)
    assert len(samples) == len(written) and all("caption" not in s for s in samples)


def test_constant_png_normalises_to_hand_computed_values(tmp_path):
    # A constant image stays exactly constant under PIL's bicubic resize, so every pixel of
    # channel c must be (v_c / 255 - mean_c) / std_c; 1e-6 covers float32 rounding only.
    written = write_shards(tmp_path, n_shards=1, per_shard=3, image_ext="png", size=20)
    samples, _ = scan_image_shards([written[0].shard], ShardReaderConfig(image_size=16), False, keep_samples=True)
    for sample, w in zip(samples, written):
        want = torch.tensor([(v / 255 - m) / s for v, m, s in zip(w.rgb, CLIP_MEAN, CLIP_STD)])
        torch.testing.assert_close(sample["image"], want[:, None, None].expand(3, 16, 16), rtol=0, atol=1e-6)


def test_preprocessing_matches_open_clip_squash_transform(tmp_path):
    # open_clip's eval transform with resize_mode="squash" is a bicubic resize to a square with no
    # crop, then CLIP's mean/std: the LaVIT release's preprocessing. Same PIL resize underneath,
    # so the outputs agree to float32 rounding.
    from open_clip.transform import image_transform

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(30, 18, 3), dtype=np.uint8)  # non-square, noisy
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    from lavit_pl.data.img2dataset_writer import Img2DatasetShardWriter

    with Img2DatasetShardWriter(tmp_path, samples_per_shard=1, image_ext="png") as writer:
        writer.write(buffer.getvalue(), "noise", 18, 30)
    samples, _ = scan_image_shards([str(tmp_path / "00000.tar")], ShardReaderConfig(image_size=24), False, keep_samples=True)
    reference = image_transform(24, is_train=False, resize_mode="squash")(Image.fromarray(pixels))
    torch.testing.assert_close(samples[0]["image"], reference, rtol=0, atol=1e-6)


def _keys_seen(shards, rank: int, world_size: int, monkeypatch, shuffle: bool) -> list[str]:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    pipeline = build_image_pipeline(shards, READER, True, shuffle=shuffle, seed=5, shuffle_buffer=4, batch_size=2)
    # The rank is fixed when the pipeline is built: workers may not see it (spawned workers have
    # no process group, and Lightning's DDP launcher exports WORLD_SIZE but not RANK).
    monkeypatch.delenv("RANK")
    keys = []
    for batch in DataLoader(pipeline, batch_size=None, num_workers=2):
        keys.extend(batch["key"])
    return keys


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_partition_the_samples(shard_set, monkeypatch, shuffle):
    root, written = shard_set
    shards = expand_shard_specs(root, ["train/shards/*.tar"])
    seen = [_keys_seen(shards, rank, 2, monkeypatch, shuffle) for rank in (0, 1)]
    everything = seen[0] + seen[1]
    assert len(everything) == len(set(everything)) == len(written)  # no sample twice ...
    assert set(everything) == {w.key for w in written}  # ... and none lost
    assert all(len(keys) == 10 for keys in seen)  # 4 shards: 2 per rank, 1 per worker


def test_unshuffled_pass_is_deterministic_and_shuffle_is_seeded(shard_set):
    root, _ = shard_set
    shards = expand_shard_specs(root, ["train/shards/*.tar"])

    def order(shuffle: bool, seed: int) -> list[str]:
        pipe = build_image_pipeline(shards, READER, True, shuffle=shuffle, seed=seed, shuffle_buffer=6)
        return [s["key"] for s in drop_skip_markers(pipe)]

    assert order(False, 0) == order(False, 1) == sorted(order(False, 0))
    assert order(True, 7) == order(True, 7)
    assert order(True, 7) != order(True, 8) and sorted(order(True, 7)) == sorted(order(True, 8))


def test_shard_specs_expand_braces_and_globs_and_name_the_field(shard_set):
    root, written = shard_set
    by_brace = expand_shard_specs(root, ["train/shards/{00000..00001}.tar", "train/shards/0000[3].tar"])
    assert [p.rsplit("/", 1)[1] for p in by_brace] == ["00000.tar", "00001.tar", "00003.tar"]
    with pytest.raises(ShardSpecError, match=r"val_shards: shard .*00008\.tar.* does not exist"):
        expand_shard_specs(root, ["train/shards/{00008..00009}.tar"], field="val_shards")
    with pytest.raises(ShardSpecError, match="train_shards: glob"):
        expand_shard_specs(root, ["nowhere/*.tar"], field="train_shards")


def test_reader_config_checks_name_the_field():
    with pytest.raises(ValueError, match="image_size"):
        ShardReaderConfig(image_size=0)
    with pytest.raises(ValueError, match="std"):
        ShardReaderConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="image_extensions"):
        ShardReaderConfig(image_extensions=("jpg", "txt"))
    assert ShardReaderConfig(mean=[0.5, 0.5, 0.5]).mean == (0.5, 0.5, 0.5)  # OmegaConf gives lists
