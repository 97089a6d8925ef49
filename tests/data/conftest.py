"""Fixtures for the data tests (helpers live in shard_fixtures.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from shard_fixtures import write_shards


@pytest.fixture
def shard_set(tmp_path: Path):
    """``(root, written)``: 4 shards x 5 JPEG samples under ``root/train/shards``."""
    written = write_shards(tmp_path / "train" / "shards", n_shards=4, per_shard=5)
    return tmp_path, written
