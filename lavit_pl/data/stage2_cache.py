"""The stage-2 cache: frozen encoder features, keep masks and code targets, computed once per split.

Stage 2 trains the LLM and a COPY of the merger; everything before the copy is frozen: the encoder's
patch features X (B, N, D), the stage-1 selector's keep mask M (B, N) and the stage-1 codes v (T_b,).
The cache stores exactly those (never merger outputs, which stage 2 trains), so a training step
does not re-run the frozen encoder. Layout, one folder per split::

    <cache_dir>/<split>/fingerprint.json   what the cache was computed with (checked on every use)
    <cache_dir>/<split>/NNNNN_<shard>.pt   one file per source shard, written atomically
    <cache_dir>/<split>/manifest.json      written last: the split is complete

A cache file is a dict (``torch.load(weights_only=True)``): ``keys``, ``captions`` (lists of M
str), ``patch_features`` (M, N, D) in the configured dtype, ``keep_mask`` (M, N) bool, ``codes``
(sum T_b,) int32, ``code_lengths`` (M,) long, ``n_skipped`` (samples the reader skipped), ``source``.
Building is resumable: finished files are kept, a missing one is recomputed; a folder made with a
different fingerprint is an error (delete it), never silently reused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import webdataset as wds
from webdataset.utils import PipelineStage

from lavit_pl.data.image_shards import ShardReaderConfig, build_image_pipeline
from lavit_pl.data.pipeline_stages import file_stream_pipeline
from lavit_pl.data.skip_ledger import N_SKIPPED, is_skip_marker, skip_marker
from lavit_pl.models.stage2_visual import FrozenTargets
from lavit_pl.utils.atomic import atomic_torch_save, atomic_write_json

FEATURE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FINGERPRINT, MANIFEST = "fingerprint.json", "manifest.json"
CACHE_FORMAT = 1

ComputeTargets = Callable[[torch.Tensor, list[str]], FrozenTargets]  # (pixels (B,3,H,W), keys) -> targets


@dataclass
class Stage2CacheConfig:
    """``enabled``: train (and validate) from the cache, building missing splits first (global rank 0,
    in ``prepare_data``). ``dir``: "" = ``<output_dir>/cache``. ``feature_dtype``: storage of X
    (float32 gives the on-the-fly numbers exactly; float16 halves the disk). ``batch_size``: images
    per frozen forward while building; ``device``: where the frozen tokenizer runs then."""

    enabled: bool = False
    dir: str = ""
    feature_dtype: str = "float32"
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"cache.feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {self.feature_dtype!r}")
        if self.batch_size < 1:
            raise ValueError(f"cache.batch_size must be >= 1, got {self.batch_size}")


def cache_file_name(index: int, shard: str) -> str:
    return f"{index:05d}_{Path(shard).name.split('.')[0]}.pt"


def check_fingerprint(split_dir: Path, fingerprint: dict[str, Any]) -> None:
    path = split_dir / FINGERPRINT
    if not path.is_file():
        return
    stored = json.loads(path.read_text())
    if stored != json.loads(json.dumps(fingerprint)):
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise ValueError(f"{split_dir}: the cache was built with different settings ({', '.join(changed)}); "
                         f"delete the folder to rebuild it")


def _read_shard(shard: str, reader: ShardReaderConfig) -> tuple[list[dict[str, Any]], int]:
    """All good samples of one shard and the number the reader skipped."""
    samples, skipped = [], 0
    for sample in build_image_pipeline([shard], reader, with_captions=True):
        skipped += int(sample.get(N_SKIPPED, 0))
        if not is_skip_marker(sample):
            samples.append(sample)
    return samples, skipped


def _cache_one_shard(shard: str, reader: ShardReaderConfig, compute: ComputeTargets, feature_dtype: torch.dtype,
                     batch_size: int) -> dict[str, Any]:
    samples, skipped = _read_shard(shard, reader)
    features, keeps, codes = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        targets = compute(torch.stack([s["image"] for s in chunk]), [s["key"] for s in chunk])
        features.append(targets.patch_features.detach().to("cpu", feature_dtype))
        keeps.append(targets.keep_mask.detach().cpu().bool())
        codes.extend(c.detach().cpu() for c in targets.codes)
    empty = torch.zeros(0, dtype=torch.long)
    return {
        "format": CACHE_FORMAT, "source": shard, "n_skipped": skipped,
        "keys": [s["key"] for s in samples], "captions": [s["caption"] for s in samples],
        "patch_features": torch.cat(features) if features else torch.zeros(0),
        "keep_mask": torch.cat(keeps) if keeps else torch.zeros(0, dtype=torch.bool),
        "codes": torch.cat(codes).to(torch.int32) if codes else empty.int(),
        "code_lengths": torch.tensor([len(c) for c in codes], dtype=torch.long) if codes else empty,
    }


def build_split_cache(shards: Sequence[str], reader: ShardReaderConfig, split_dir: str | Path,
                      compute: ComputeTargets, fingerprint: dict[str, Any], feature_dtype: str = "float32",
                      batch_size: int = 64, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Cache every shard of one split into ``split_dir`` (resumable; see the module docstring).

    ``compute(pixels, keys)`` runs the frozen side on a (B, 3, H, W) batch of reader images (the
    blind baseline swaps the pixels for noise inside it). Returns the manifest.
    """
    split_dir = Path(split_dir)
    fingerprint = {**fingerprint, "format": CACHE_FORMAT, "feature_dtype": feature_dtype,
                   "shards": [Path(s).name for s in shards]}
    check_fingerprint(split_dir, fingerprint)
    if (split_dir / MANIFEST).is_file():
        return json.loads((split_dir / MANIFEST).read_text())
    atomic_write_json(split_dir / FINGERPRINT, fingerprint)
    counts = {}
    for index, shard in enumerate(shards):
        target = split_dir / cache_file_name(index, shard)
        if not target.is_file():  # written atomically: a file that exists is complete
            log(f"[stage2 cache] {shard} -> {target}")
            atomic_torch_save(_cache_one_shard(shard, reader, compute, FEATURE_DTYPES[feature_dtype], batch_size), target)
        counts[target.name] = _count(target)
    manifest = {"format": CACHE_FORMAT, "files": counts, "samples": sum(c["samples"] for c in counts.values()),
                "n_skipped": sum(c["n_skipped"] for c in counts.values())}
    atomic_write_json(split_dir / MANIFEST, manifest)
    return manifest


def _count(path: Path) -> dict[str, int]:
    data = load_cache_file(path)
    return {"samples": len(data["keys"]), "n_skipped": int(data["n_skipped"])}


def load_cache_file(path: str | Path) -> dict[str, Any]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: not a stage-2 cache file of format {CACHE_FORMAT}")
    return data


def cache_files(split_dir: str | Path) -> list[str]:
    """The finished cache files of a split (its manifest must exist)."""
    split_dir = Path(split_dir)
    manifest = split_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{split_dir}: no {MANIFEST}: the cache of this split is missing or unfinished")
    return [str(split_dir / name) for name in sorted(json.loads(manifest.read_text())["files"])]


def cached_samples(split_dir: str | Path) -> int:
    """Samples in a finished split (from its manifest)."""
    return int(json.loads((Path(split_dir) / MANIFEST).read_text())["samples"])


def iter_cache_samples(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Samples of one loaded cache file: patch_features (N, D), keep_mask (N,), codes (T_b,) long."""
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), data["code_lengths"].cumsum(0)]).tolist()
    for i, key in enumerate(data["keys"]):
        yield {"patch_features": data["patch_features"][i], "keep_mask": data["keep_mask"][i],
               "codes": data["codes"][offsets[i]:offsets[i + 1]].long(), "caption": data["captions"][i],
               "key": key, "shard": data["source"], N_SKIPPED: 0}


class ReadCacheFiles(PipelineStage):
    """``{"url"}`` of cache files -> samples; a file's reader skips ride on its first sample."""

    def run(self, src: Iterable[dict[str, str]]) -> Iterator[dict[str, Any]]:
        for item in src:
            data = load_cache_file(item["url"])
            pending = int(data["n_skipped"])
            for sample in iter_cache_samples(data):
                sample[N_SKIPPED], pending = pending, 0
                yield sample
            if pending:
                yield skip_marker(pending)


def collate_cached_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``patch_features`` (B, N, D), ``keep_mask`` (B, N) bool, ``codes`` list of B (T_b,), and
    ``caption``/``key``/``shard`` lists, ``n_skipped``."""
    if not samples:
        raise ValueError("collate_cached_pairs: no samples")
    return {"patch_features": torch.stack([s["patch_features"] for s in samples]),
            "keep_mask": torch.stack([s["keep_mask"] for s in samples]),
            "codes": [s["codes"] for s in samples], "caption": [s["caption"] for s in samples],
            "key": [s["key"] for s in samples], "shard": [s["shard"] for s in samples],
            N_SKIPPED: sum(int(s.get(N_SKIPPED, 0)) for s in samples)}


def build_cache_pipeline(files: Sequence[str], *, shuffle: bool = False, seed: int = 0, shuffle_buffer: int = 0,
                         batch_size: int | None = None, partial: bool = True, repeat: bool = False) -> wds.DataPipeline:
    """Cache samples (or batches): the same order/split/shuffle stages as the shard readers."""
    return file_stream_pipeline(files, ReadCacheFiles(), collate_cached_pairs, shuffle=shuffle, seed=seed,
                                shuffle_buffer=shuffle_buffer, batch_size=batch_size, partial=partial, repeat=repeat)
