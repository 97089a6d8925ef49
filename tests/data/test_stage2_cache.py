"""Stage-2 cache: contents equal the frozen forward, resumable and atomic building, fingerprint
guard, skip counts, and training from the cache gives the same loss as computing on the fly."""
from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch

from lavit_pl.data.shard_list import expand_shard_specs
from lavit_pl.data.stage2_cache import MANIFEST, build_split_cache, cache_files, load_cache_file
from lavit_pl.data.stage2_datamodule import Stage2DataModule
from lavit_pl.models.stage2_visual import frozen_visual_targets
from lavit_pl.modules.unified_lm_module import UnifiedLMModule, build_cache, cache_dir
from stage2_fixtures import micro_world, run_config, save_checkpoints


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage2_cache")
    world = micro_world(tmp / "world")
    return tmp, world, save_checkpoints(world, tmp / "ckpt")


@pytest.fixture(scope="module")
def module(setup):
    tmp, world, ckpt = setup
    m = UnifiedLMModule(run_config(tmp, world, ckpt))
    m.configure_model()
    return m


def _counting(module):
    calls = []

    def compute(pixels, keys):
        calls.append(list(keys))
        return module.compute_frozen_targets(pixels, keys)
    return compute, calls


def test_cache_holds_the_frozen_forward_exactly(setup, module, tmp_path):
    tmp, world, ckpt = setup
    cfg = module.cfg
    shards = expand_shard_specs(world, ["train/shards/*.tar"])
    compute, calls = _counting(module)
    manifest = build_split_cache(shards, cfg.data.image_text.reader, tmp_path / "train", compute, {"x": 1},
                                 batch_size=64, log=lambda _: None)
    assert manifest["samples"] == 400 and manifest["n_skipped"] == 0 and sum(map(len, calls)) == 400
    data = load_cache_file(cache_files(tmp_path / "train")[0])
    n = len(data["keys"])
    assert data["patch_features"].shape == (n, 16, 32) and data["keep_mask"].shape == (n, 16)
    assert data["code_lengths"].tolist() == data["keep_mask"].sum(1).tolist()  # T_b = kept patches
    assert len(set(data["code_lengths"].tolist())) > 2  # the calibrated selector keeps varying counts
    # recompute the first 8 samples from their images: features, masks and codes agree exactly
    from lavit_pl.data.image_shards import scan_image_shards
    samples, _ = scan_image_shards(shards[:1], cfg.data.image_text.reader, True, keep_samples=True)
    assert [s["key"] for s in samples] == data["keys"] and [s["caption"] for s in samples] == data["captions"]
    fresh = frozen_visual_targets(module.frozen_tokenizer, pixels=torch.stack([s["image"] for s in samples[:8]]))
    torch.testing.assert_close(data["patch_features"][:8], fresh.patch_features, rtol=0, atol=0)
    assert torch.equal(data["keep_mask"][:8], fresh.keep_mask)
    offsets = data["code_lengths"].cumsum(0).tolist()
    assert torch.equal(data["codes"][:offsets[7]].long(), torch.cat(fresh.codes))


def test_building_is_resumable_atomic_and_guarded(setup, module, tmp_path):
    tmp, world, _ = setup
    reader = module.cfg.data.image_text.reader
    shards = expand_shard_specs(world, ["train/shards/*.tar"])
    split = tmp_path / "train"
    compute, calls = _counting(module)

    def crash_on_second(pixels, keys):
        if len(calls) >= 4:  # 200 samples per shard, batches of 64: 4 calls per shard
            raise RuntimeError("killed")
        return compute(pixels, keys)

    with pytest.raises(RuntimeError, match="killed"):
        build_split_cache(shards, reader, split, crash_on_second, {"x": 1}, log=lambda _: None)
    assert sorted(p.name for p in split.iterdir()) == ["00000_00000.pt", "fingerprint.json"]  # no temp, no manifest
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        cache_files(split)
    calls.clear()
    build_split_cache(shards, reader, split, compute, {"x": 1}, log=lambda _: None)
    assert len(calls) == 4 and (split / MANIFEST).is_file()  # only the missing shard was computed
    calls.clear()
    build_split_cache(shards, reader, split, compute, {"x": 1}, log=lambda _: None)
    assert calls == []  # finished: nothing recomputed
    with pytest.raises(ValueError, match=r"different settings \(x\); delete the folder"):
        build_split_cache(shards, reader, split, compute, {"x": 2}, log=lambda _: None)


def test_reader_skips_are_counted_into_the_cache_and_its_batches(setup, module, tmp_path):
    tmp, world, _ = setup
    shard = tmp_path / "shards" / "00000.tar"
    shard.parent.mkdir()
    with tarfile.open(world / "train" / "shards" / "00000.tar") as src, tarfile.open(shard, "w") as dst:
        for member in src.getmembers():
            if member.name != "000000003.txt":  # sample 3 loses its caption: the reader skips it
                dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
    (tmp_path / "shards" / "00000_stats.json").write_text(json.dumps({"successes": 200}))
    manifest = build_split_cache([str(shard)], module.cfg.data.image_text.reader, tmp_path / "train",
                                 module.compute_frozen_targets, {"x": 1}, log=lambda _: None)
    assert manifest["samples"] == 199 and manifest["n_skipped"] == 1
    from lavit_pl.data.stage2_cache import build_cache_pipeline
    batches = list(build_cache_pipeline(cache_files(tmp_path / "train"), batch_size=50, partial=True))
    assert sum(b["n_skipped"] for b in batches) == 1 and sum(len(b["key"]) for b in batches) == 199
    assert "000000003" not in [k for b in batches for k in b["key"]]


def _first_batch(datamodule: Stage2DataModule) -> dict:
    return next(iter(datamodule.train_dataloader()))


def test_training_from_the_cache_gives_the_on_the_fly_loss(setup, module):
    tmp, world, ckpt = setup
    # 12 documents a step: the first batch holds both sources under any mixture weights (seeded draw)
    cfg = run_config(tmp, world, ckpt, "cache.enabled=true", f"cache.dir={tmp / 'cache_eq'}", "data.batch_size=12")
    build_cache(cfg)
    raw = Stage2DataModule(cfg.data)
    cached = Stage2DataModule(cfg.data, cache_dir(cfg))
    raw_batch, cached_batch = _first_batch(raw), _first_batch(cached)
    assert "image" in raw_batch["image_text"] and "patch_features" in cached_batch["image_text"]
    for source in ("image_text", "text"):  # same documents, same order
        assert raw_batch[source]["key"] == cached_batch[source]["key"]
    outputs = []
    for batch in (raw_batch, cached_batch):
        docs, targets = module.build_documents(batch, step=5, both_directions=False)
        features = module.visual_features(docs, targets)
        nll, goal = module.forward_documents(docs, targets)
        outputs.append((features, nll, nll.sum() / (goal != -100).sum()))
        assert docs.documents["image_to_text"] > 0 and docs.documents["text_to_image"] > 0
    # float32 cache: the same tensors enter the same computation, so everything is bit-identical
    # (a float16 cache changes the per-token NLL by ~1e-5 here: torch.equal would catch it)
    assert torch.equal(outputs[0][0], outputs[1][0])  # merger-copy features
    assert torch.equal(outputs[0][1], outputs[1][1])  # per-token NLL (R, S')
    assert outputs[0][2].item() == outputs[1][2].item() and torch.isfinite(outputs[0][2])
