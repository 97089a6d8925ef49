"""Write image-text pairs as WebDataset shards exactly as img2dataset lays them out.

Each shard ``NNNNN.tar`` holds ``KEY.jpg``, ``KEY.txt`` and ``KEY.json`` per sample, and a
sibling ``NNNNN_stats.json`` holds img2dataset's counters. Keys are 9 digits: the shard index
followed by the sample's index within the shard (img2dataset's default ``oom_shard_count=5``).
Shards and stats files are written atomically, so an interrupted run never leaves a half shard
behind that a reader would mistake for a complete one.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lavit_pl.utils.atomic import atomic_open, atomic_write_json

SHARD_DIGITS = 5
SAMPLE_DIGITS = 4


def sample_key(shard_index: int, index_in_shard: int) -> str:
    return f"{shard_index:0{SHARD_DIGITS}d}{index_in_shard:0{SAMPLE_DIGITS}d}"


@dataclass
class _OpenShard:
    index: int
    members: list[tuple[str, bytes]] = field(default_factory=list)
    count: int = 0
    start_time: float = field(default_factory=time.time)


class Img2DatasetShardWriter:
    """Append samples; shards roll over every ``samples_per_shard`` samples.

    >>> with Img2DatasetShardWriter(out_dir, samples_per_shard=1000) as w:
    ...     w.write(jpeg_bytes, caption, extra_json={"complexity": 3})
    """

    def __init__(self, out_dir: str | Path, samples_per_shard: int = 10_000, image_ext: str = "jpg"):
        if samples_per_shard < 1 or samples_per_shard >= 10**SAMPLE_DIGITS:
            raise ValueError(f"samples_per_shard must be in [1, {10**SAMPLE_DIGITS - 1}], got {samples_per_shard}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self.image_ext = image_ext
        self._shard: _OpenShard | None = None
        self._next_index = 0
        self.shard_paths: list[Path] = []

    def write(self, image_bytes: bytes, caption: str, width: int, height: int, extra_json: dict[str, Any] | None = None) -> str:
        """Add one sample; returns its key."""
        if self._shard is None:
            self._shard = _OpenShard(self._next_index)
            self._next_index += 1
        shard = self._shard
        key = sample_key(shard.index, shard.count)
        meta = {
            "url": f"shapes://{key}",
            "key": key,
            "status": "success",
            "error_message": None,
            "width": width,
            "height": height,
            "original_width": width,
            "original_height": height,
            "exif": "{}",
            "sha256": hashlib.sha256(image_bytes).hexdigest(),
            "caption": caption,
        }
        meta.update(extra_json or {})
        shard.members.append((f"{key}.{self.image_ext}", image_bytes))
        shard.members.append((f"{key}.txt", caption.encode("utf-8")))
        shard.members.append((f"{key}.json", json.dumps(meta, sort_keys=True).encode("utf-8")))
        shard.count += 1
        if shard.count == self.samples_per_shard:
            self._flush()
        return key

    def _flush(self) -> None:
        shard = self._shard
        if shard is None or shard.count == 0:
            return
        name = f"{shard.index:0{SHARD_DIGITS}d}"
        path = self.out_dir / f"{name}.tar"
        with atomic_open(path, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for member_name, data in shard.members:
                    info = tarfile.TarInfo(member_name)
                    info.size = len(data)
                    info.mtime = 0  # deterministic bytes for the same content
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
        atomic_write_json(
            self.out_dir / f"{name}_stats.json",
            {
                "count": shard.count,
                "successes": shard.count,
                "failed_to_download": 0,
                "failed_to_resize": 0,
                "duration": 0.0,
                "start_time": 0.0,
                "end_time": 0.0,
                "status_dict": {"success": shard.count},
            },
        )
        self.shard_paths.append(path)
        self._shard = None

    def close(self) -> list[Path]:
        self._flush()
        return self.shard_paths

    def __enter__(self) -> "Img2DatasetShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
