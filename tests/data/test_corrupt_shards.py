"""Fuzz: damage shards with a seeded RNG, then every damaged or lost sample is skipped, counted
exactly (also across DataLoader workers), logged once with shard and key, and every undamaged
sample is still read."""
from __future__ import annotations

import io
import logging
import os
import random
from pathlib import Path

import pytest
from PIL import Image
from torch.utils.data import DataLoader

from shard_fixtures import member_offsets, read_members, rewrite_members, stats_successes, write_shards
from lavit_pl.data.image_shards import ShardReaderConfig, build_image_pipeline, reader_stage, scan_image_shards
from lavit_pl.data.skip_ledger import drop_skip_markers

READER = ShardReaderConfig(image_size=8, metadata_fields=("complexity",))
KINDS = ("flip_jpeg", "drop_txt", "drop_image", "bad_json")
BAD_JSON = [b'{"key": "0000', b"not json at all", b"[1, 2, 3]", b"", b'{"key": "no complexity field"}']
LEDGER_LOG = "lavit_pl.data.skip_ledger"


def _undecodable(jpeg: bytes, rng: random.Random) -> bytes:
    data = bytearray(jpeg)
    data[0] ^= 0xFF  # break the SOI marker: no decoder accepts it ...
    for _ in range(4):  # ... plus a few flips anywhere in the payload
        data[rng.randrange(2, len(data))] ^= rng.randrange(1, 256)
    with pytest.raises(Exception):  # guard: the damage really is undecodable
        Image.open(io.BytesIO(bytes(data))).convert("RGB")
    return bytes(data)


def damage(written, rng: random.Random, per_kind: int = 2) -> tuple[dict[str, str], list[str], str]:
    """Damage ``per_kind`` samples of each kind, then truncate one shard inside a member.

    Returns ``(plan {key: kind}, keys lost to the truncation, truncated shard)``."""
    plan = dict(zip(rng.sample([w.key for w in written], per_kind * len(KINDS)), KINDS * per_kind))
    for shard in sorted({w.shard for w in written}):
        kept = []
        for name, data in read_members(shard):
            key, ext = name.split(".", 1)
            kind = plan.get(key)
            if (kind, ext) in {("drop_txt", "txt"), ("drop_image", "jpg")}:
                continue
            if (kind, ext) == ("flip_jpeg", "jpg"):
                data = _undecodable(data, rng)
            elif (kind, ext) == ("bad_json", "json"):
                data = rng.choice(BAD_JSON)
            kept.append((name, data))
        rewrite_members(shard, kept)
    truncated = rng.choice(sorted({w.shard for w in written}))
    name, offset, size = rng.choice([m for m in member_offsets(truncated) if m[2] > 1])
    with open(truncated, "r+b") as handle:
        handle.truncate(offset + rng.randrange(1, size))  # strictly inside the member's data
    shard_keys = [w.key for w in written if w.shard == truncated]
    lost = shard_keys[shard_keys.index(name.split(".")[0]):]
    return plan, lost, truncated


@pytest.mark.parametrize("seed", range(5))
def test_damaged_samples_are_skipped_counted_and_logged_once(tmp_path: Path, seed: int, caplog):
    written = write_shards(tmp_path, n_shards=4, per_shard=6, seed=seed)
    plan, lost, truncated = damage(written, random.Random(seed))
    gone = set(plan) | set(lost)
    survivors = [w.key for w in written if w.key not in gone]
    shards = sorted({w.shard for w in written})

    # single process, two passes of one pipeline: counted every pass, logged once per process
    pipeline = build_image_pipeline(shards, READER, with_captions=True, batch_size=None)
    with caplog.at_level(logging.WARNING, logger=LEDGER_LOG):
        for _ in range(2):
            samples = list(pipeline)
            assert [s["key"] for s in drop_skip_markers(samples)] == survivors
            assert sum(s["n_skipped"] for s in samples) == len(gone)
    summary = reader_stage(pipeline).last_summary
    for shard in shards:
        read_here = sum(1 for w in written if w.shard == shard and w.key not in gone)
        assert summary[shard].expected == stats_successes(shard) == 6
        assert (summary[shard].read, summary[shard].skipped) == (read_here, 6 - read_here)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for key in set(plan) - set(lost):  # seen and rejected: one line naming shard and key
        shard = next(w.shard for w in written if w.key == key)
        naming = [m for m in messages if f"'{key}'" in m and m.startswith(shard) and "skipping sample" in m]
        assert len(naming) == 1, (key, plan[key], naming)
    if len(lost) > 1 or lost[0] not in plan:  # the truncated shard is reported by path
        assert any(m.startswith(truncated) and ("could not be read" in m or "read error" in m) for m in messages)

    # two DataLoader workers: the count rides in the batches and survives the processes
    batches = list(DataLoader(build_image_pipeline(shards, READER, True, batch_size=4), batch_size=None, num_workers=2))
    assert sum(b["n_skipped"] for b in batches) == len(gone)
    assert sorted(k for b in batches for k in b["key"]) == sorted(survivors)


def test_truncation_inside_a_middle_image_loses_the_rest_of_the_shard(tmp_path: Path):
    # Hand count: 5 samples; cut 10 bytes into sample 2's JPEG -> samples 0, 1 read; 2, 3, 4
    # lost = successes (5) - read (2) = 3, with no key to name for 3 and 4.
    written = write_shards(tmp_path, n_shards=1, per_shard=5)
    shard = written[0].shard
    name, offset, _ = member_offsets(shard)[6]  # members: 3 per sample, sample 2's image is #6
    assert name == f"{written[2].key}.jpg"
    with open(shard, "r+b") as handle:
        handle.truncate(offset + 10)
    samples, summary = scan_image_shards([shard], READER, True, keep_samples=True)
    assert [s["key"] for s in samples] == [written[0].key, written[1].key]
    assert (summary[shard].expected, summary[shard].read, summary[shard].skipped) == (5, 2, 3)


def test_missing_stats_file_is_an_error_unless_allowed(tmp_path: Path):
    written = write_shards(tmp_path, n_shards=1, per_shard=2)
    os.remove(tmp_path / "00000_stats.json")
    with pytest.raises(ValueError, match="00000_stats.json.*require_stats"):
        scan_image_shards([written[0].shard], READER, True)
    _, summary = scan_image_shards([written[0].shard], ShardReaderConfig(require_stats=False), True)
    assert summary[written[0].shard].expected is None and summary[written[0].shard].read == 2
