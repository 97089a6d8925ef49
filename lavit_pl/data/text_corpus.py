"""Read a RedPajama-style text corpus: JSONL files (optionally ``.gz``), one document a line,
``{"text": str, "meta": {...}}``. Tokenisation belongs to the LM module; this yields raw text.

Files are the unit of splitting (like shards): file order -> node split ->
``split_by_worker`` -> lines. A sample is ``{"text": str, "meta": dict, "key": "<file>:<line>",
"n_skipped": int}``. Blank lines are not documents and are passed over. A line that is not UTF-8,
not JSON, not an object, or lacks a string ``text`` (or has a non-object ``meta``) is skipped,
counted and logged once with its file and line number, like a corrupt image sample.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import webdataset as wds

from lavit_pl.data.collate import collate_text_samples
from lavit_pl.data.pipeline_stages import BadSample, ReadWithLedger, file_stream_pipeline
from lavit_pl.data.skip_ledger import ShardSummary, drop_skip_markers


@dataclass
class TextCorpusReaderConfig:
    """``text_field``: the document's text key; ``meta_field``: its metadata key (may be absent)."""

    text_field: str = "text"
    meta_field: str = "meta"

    def __post_init__(self) -> None:
        if not self.text_field:
            raise ValueError("TextCorpusReaderConfig.text_field must be a non-empty key")
        if not self.meta_field or self.meta_field == self.text_field:
            raise ValueError(f"TextCorpusReaderConfig.meta_field must be a key other than text_field, got {self.meta_field!r}")


def iter_jsonl_lines(url: str, handler: Callable[[BaseException], bool]) -> Iterator[tuple[str, bytes]]:
    """``(key, line bytes)`` for each non-blank line; open/read errors go to ``handler``."""
    name = Path(url).name
    opener = gzip.open if url.endswith(".gz") else open
    try:
        with opener(url, "rb") as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{name}:{lineno}", line
    except (OSError, EOFError) as err:  # unreadable file, truncated gzip stream
        handler(err)


class JsonlDocumentDecoder:
    """One JSONL line -> text sample, or :class:`BadSample` naming what is wrong."""

    def __init__(self, cfg: TextCorpusReaderConfig):
        self.cfg = cfg

    def __call__(self, url: str, key: str, line: bytes) -> dict[str, Any]:
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise BadSample(f"line is not UTF-8: {err}") from err
        except json.JSONDecodeError as err:
            raise BadSample(f"line is not JSON: {err}") from err
        if not isinstance(record, dict):
            raise BadSample(f"line is a JSON {type(record).__name__}, expected an object")
        text = record.get(self.cfg.text_field)
        if not isinstance(text, str):
            raise BadSample(f"field {self.cfg.text_field!r} is {type(text).__name__}, expected a string")
        meta = record.get(self.cfg.meta_field, {})
        if not isinstance(meta, dict):
            raise BadSample(f"field {self.cfg.meta_field!r} is {type(meta).__name__}, expected an object")
        return {"text": text, "meta": meta, "key": key}


def build_text_pipeline(
    files: Sequence[str],
    cfg: TextCorpusReaderConfig,
    *,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 0,
    batch_size: int | None = None,
    partial: bool = True,
    repeat: bool = False,
) -> wds.DataPipeline:
    """Text samples or batches; arguments as :func:`lavit_pl.data.image_shards.build_image_pipeline`.
    JSONL has no stats file, so a file's expected count is what it held: skipped = bad lines."""
    read = ReadWithLedger(iter_jsonl_lines, JsonlDocumentDecoder(cfg), {})
    return file_stream_pipeline(files, read, collate_text_samples, shuffle=shuffle, seed=seed,
                                shuffle_buffer=shuffle_buffer, batch_size=batch_size, partial=partial, repeat=repeat)


def scan_text_files(
    files: Sequence[str], cfg: TextCorpusReaderConfig
) -> tuple[list[dict[str, Any]], dict[str, ShardSummary]]:
    """One single-process, unshuffled pass: ``(samples, {file: ShardSummary})``."""
    pipeline = build_text_pipeline(files, cfg)
    samples = list(drop_skip_markers(pipeline))
    reader = next(s for s in pipeline.pipeline if isinstance(s, ReadWithLedger))
    return samples, reader.last_summary


def count_documents(files: Sequence[str]) -> dict[str, int]:
    """Non-blank lines per file: the documents a clean file holds (used to plan epoch lengths)."""
    counts = {}
    for url in files:
        counts[url] = sum(1 for _ in iter_jsonl_lines(url, _ignore_read_error))
    return counts


def _ignore_read_error(exn: BaseException) -> bool:
    return True  # planning only: the reading pass logs and counts the same error
