"""Helpers for the data tests: small shard sets written with the project's img2dataset shard
writer, and tar rewriting the fuzz tests use to damage them."""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lavit_pl.data.img2dataset_writer import Img2DatasetShardWriter


@dataclass
class WrittenSample:
    key: str
    caption: str
    complexity: int
    rgb: tuple[int, int, int]
    shard: str


def _image_bytes(rng: np.random.Generator, fmt: str, size: int) -> tuple[bytes, tuple[int, int, int]]:
    """A constant-colour image (exact under resize and PNG) with a little noise for JPEG."""
    rgb = tuple(int(v) for v in rng.integers(0, 256, size=3))
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = rgb
    if fmt == "JPEG":
        pixels = np.clip(pixels.astype(int) + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue(), rgb  # type: ignore[return-value]


def write_shards(out_dir: Path, n_shards: int, per_shard: int, seed: int = 0, image_ext: str = "jpg", size: int = 12) -> list[WrittenSample]:
    """Write ``n_shards x per_shard`` samples; captions and complexities are unique per sample."""
    rng = np.random.default_rng(seed)
    fmt = {"jpg": "JPEG", "png": "PNG"}[image_ext]
    written = []
    with Img2DatasetShardWriter(out_dir, samples_per_shard=per_shard, image_ext=image_ext) as writer:
        for i in range(n_shards * per_shard):
            data, rgb = _image_bytes(rng, fmt, size)
            caption = f"sample {i}: a shape of colour {rgb}"
            key = writer.write(data, caption, size, size, extra_json={"complexity": i % 7 + 1})
            written.append(WrittenSample(key, caption, i % 7 + 1, rgb, str(out_dir / f"{i // per_shard:05d}.tar")))
    return written


def read_members(tar_path: str | Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar_path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def rewrite_members(tar_path: str | Path, members: list[tuple[str, bytes]]) -> None:
    """Replace a tar's members (same USTAR layout as the writer); stats file left as it was."""
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def member_offsets(tar_path: str | Path) -> list[tuple[str, int, int]]:
    """``(name, data offset, size)`` of every member."""
    with tarfile.open(tar_path) as tar:
        return [(m.name, m.offset_data, m.size) for m in tar.getmembers()]


def stats_successes(tar_path: str | Path) -> int:
    return json.loads(Path(str(tar_path)[: -len(".tar")] + "_stats.json").read_text())["successes"]
