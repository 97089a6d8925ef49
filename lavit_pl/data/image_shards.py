"""Read img2dataset WebDataset shards: ``KEY.jpg|png`` + ``KEY.txt`` + ``KEY.json`` per sample.

Pipeline (webdataset ``DataPipeline``): shard order (optionally shuffled, identical on every
process) -> node split (``split_by_node`` with the rank fixed at build time) -> webdataset's
``split_by_worker`` -> tar reading (``tarfile_samples``, one shard at a time so a truncated
shard's partial sample cannot merge into the next shard) -> decoding (webdataset's ``Decoder``
with the ``pilrgb`` image handler, restricted to the members we use, so no pickle member is ever
decoded) -> bicubic resize + normalise -> optional shuffle buffer -> optional batching. A sample is

    {"image": (C, H, W) float32, "caption": str (image-text only), "key": str, "shard": str,
     "meta": {field: value from KEY.json}, "n_skipped": int}

Skipped (counted, logged once with shard and key, never fatal): no image member, no ``.txt``
(image-text only), no ``.json``, an image PIL cannot decode, a caption that is not UTF-8, JSON
that does not parse or is not an object, a configured metadata field missing from the JSON.
Samples lost to a truncated shard are counted against the stats file's ``successes``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import webdataset as wds
from torchvision import transforms
from webdataset.autodecode import Decoder, DecodingError, imagehandler

from lavit_pl.data.collate import collate_image_samples
from lavit_pl.data.pipeline_stages import BadSample, ReadWithLedger, file_stream_pipeline
from lavit_pl.data.shard_list import expected_counts
from lavit_pl.data.skip_ledger import ShardSummary, drop_skip_markers

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ShardReaderConfig:
    """How one img2dataset sample becomes tensors.

    ``image_size``: square side H = W after a bicubic resize (no crop, as the LaVIT release does).
    ``mean``/``std``: per-channel normalisation (CLIP's by default). ``image_extensions``: members
    accepted as the image, first present wins. ``metadata_fields``: keys copied from KEY.json into
    ``sample["meta"]`` (a sample whose JSON lacks one is skipped). ``require_stats``: fail at setup
    if a shard has no ``NNNNN_stats.json`` (without it truncation losses cannot be counted).
    """

    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    image_extensions: tuple[str, ...] = ("jpg", "png", "jpeg", "webp")
    metadata_fields: tuple[str, ...] = ()
    require_stats: bool = True

    def __post_init__(self) -> None:
        # OmegaConf hands tuples over as lists; keep them tuples (hashable, immutable).
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.image_extensions = tuple(e.lower().lstrip(".") for e in self.image_extensions)
        self.metadata_fields = tuple(self.metadata_fields)
        if self.image_size < 1:
            raise ValueError(f"ShardReaderConfig.image_size must be >= 1, got {self.image_size}")
        if len(self.mean) != 3:
            raise ValueError(f"ShardReaderConfig.mean must have 3 values (RGB), got {self.mean}")
        if len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"ShardReaderConfig.std must have 3 positive values (RGB), got {self.std}")
        if not self.image_extensions:
            raise ValueError("ShardReaderConfig.image_extensions must name at least one extension")
        reserved = {"txt", "json"} & set(self.image_extensions)
        if reserved:
            raise ValueError(f"ShardReaderConfig.image_extensions may not contain {sorted(reserved)}")


def image_transform(cfg: ShardReaderConfig) -> Callable[[Any], Any]:
    """PIL RGB image -> (C, H, W) float32: bicubic resize to (image_size, image_size), [0, 1],
    then (x - mean) / std per channel (CLIP's preprocessing without its centre crop)."""
    size = (cfg.image_size, cfg.image_size)
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.ToTensor(),
        transforms.Normalize(cfg.mean, cfg.std),
    ])


def iter_tar_samples(url: str, handler: Callable[[BaseException], bool]) -> Iterator[tuple[str, dict]]:
    """Group one tar's members into raw samples with webdataset (``(key, {ext: bytes, ...})``)."""
    for raw in wds.tarfile_samples([{"url": url}], handler=handler):
        yield raw["__key__"], raw


class Img2DatasetDecoder:
    """Raw grouped sample -> reader sample, or :class:`BadSample` naming what is wrong."""

    def __init__(self, cfg: ShardReaderConfig, with_captions: bool):
        self.cfg = cfg
        self.with_captions = with_captions
        self.transform = image_transform(cfg)
        self.decoder = Decoder([imagehandler("pilrgb")])

    def __call__(self, url: str, key: str, raw: dict[str, Any]) -> dict[str, Any]:
        image_ext = next((e for e in self.cfg.image_extensions if e in raw), None)
        if image_ext is None:
            raise BadSample(f"no image member (.{'/.'.join(self.cfg.image_extensions)})")
        needed = [image_ext, "json"] + (["txt"] if self.with_captions else [])
        missing = [ext for ext in needed if ext not in raw]
        if missing:
            raise BadSample(f"no .{missing[0]} member")
        try:
            decoded = self.decoder({ext: raw[ext] for ext in needed} | {"__key__": key})
        except DecodingError as err:
            cause = err.__cause__
            raise BadSample(f"cannot decode .{err.k}: {type(cause).__name__}: {cause}") from err
        meta_json = decoded["json"]
        if not isinstance(meta_json, dict):
            raise BadSample(f".json is a {type(meta_json).__name__}, expected an object")
        absent = [f for f in self.cfg.metadata_fields if f not in meta_json]
        if absent:
            raise BadSample(f".json lacks metadata field {absent[0]!r}")
        sample = {
            "image": self.transform(decoded[image_ext]),  # (C, H, W)
            "key": key,
            "shard": url,
            "meta": {f: meta_json[f] for f in self.cfg.metadata_fields},
        }
        if self.with_captions:
            sample["caption"] = decoded["txt"]
        return sample


def build_image_pipeline(
    shards: Sequence[str],
    cfg: ShardReaderConfig,
    with_captions: bool,
    *,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 0,
    batch_size: int | None = None,
    partial: bool = True,
    repeat: bool = False,
) -> wds.DataPipeline:
    """Samples (``batch_size=None``; the stream may end with a skip marker) or batches.

    ``shuffle`` shuffles the shard order per pass and, with ``shuffle_buffer > 1``, samples within
    a buffer. ``repeat`` makes the stream endless (training); without it one pass is made.
    """
    read = ReadWithLedger(iter_tar_samples, Img2DatasetDecoder(cfg, with_captions),
                          expected_counts(shards, cfg.require_stats))
    return file_stream_pipeline(shards, read, collate_image_samples, shuffle=shuffle, seed=seed,
                                shuffle_buffer=shuffle_buffer, batch_size=batch_size, partial=partial, repeat=repeat)


def reader_stage(pipeline: wds.DataPipeline) -> ReadWithLedger:
    return next(s for s in pipeline.pipeline if isinstance(s, ReadWithLedger))


def scan_image_shards(
    shards: Sequence[str], cfg: ShardReaderConfig, with_captions: bool, keep_samples: bool = False
) -> tuple[list[dict[str, Any]], dict[str, ShardSummary]]:
    """One single-process, unshuffled pass: ``(samples, {shard: ShardSummary})``; ``samples`` is
    empty unless ``keep_samples`` (they hold decoded images)."""
    pipeline = build_image_pipeline(shards, cfg, with_captions)
    samples = []
    for sample in drop_skip_markers(pipeline):
        if keep_samples:
            samples.append(sample)
    return samples, reader_stage(pipeline).last_summary
