"""Captions of img2dataset-layout training shards (``NNNNN.tar`` with ``KEY.txt`` / ``KEY.json``).

Used only where training captions are needed without images (the best-constant-caption
baseline). A sample's captions are ``KEY.json["captions"]`` when the writer stored several (the
Shapes world stores all five references there), else the single ``KEY.txt`` caption.
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from evaluation.benchmarks.errors import BenchmarkFileError


@dataclass(frozen=True)
class ShardCaptions:
    key: str
    captions: tuple[str, ...]


def _read_shard(path: Path) -> list[ShardCaptions]:
    texts: dict[str, str] = {}
    metas: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                if ext not in ("txt", "json"):
                    continue
                raw = tar.extractfile(member).read().decode("utf-8")
                if ext == "txt":
                    texts[key] = raw
                else:
                    try:
                        metas[key] = json.loads(raw)
                    except json.JSONDecodeError as err:
                        raise BenchmarkFileError(path, f"member {member.name} is not valid JSON: {err}") from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise BenchmarkFileError(path, f"unreadable tar shard: {err}") from err
    records = []
    for key in sorted(set(texts) | set(metas)):
        meta = metas.get(key, {})
        many = meta.get("captions") if isinstance(meta, dict) else None
        if isinstance(many, list) and many and all(isinstance(c, str) for c in many):
            captions = tuple(many)
        elif key in texts:
            captions = (texts[key],)
        else:
            raise BenchmarkFileError(path, "no KEY.txt caption and no 'captions' list in KEY.json", record=key)
        records.append(ShardCaptions(key, captions))
    return records


def read_shard_captions(paths: Iterable[str | Path]) -> list[ShardCaptions]:
    """Captions of every sample of the given shards, shard by shard, keys sorted within a shard."""
    records: list[ShardCaptions] = []
    for path in sorted(Path(p) for p in paths):
        if not path.is_file():
            raise BenchmarkFileError(path, "file not found")
        records.extend(_read_shard(path))
    if not records:
        raise ValueError("paths: no caption found in the given shards")
    return records
