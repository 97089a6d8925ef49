"""Resolve shard specs to files, read img2dataset's expected counts, and order shards per pass.

A spec is a path relative to a data root holding brace ranges (``train/shards/{00000..00009}.tar``)
and/or glob patterns (``train/shards/*.tar``). Braces are expanded first (webdataset's own
``expand_urls``); a brace-expanded path without glob characters must exist, a glob must match at
least one file. The ordered list is what every rank and worker sees before
``split_by_node``/``split_by_worker`` take their slices, so it must be identical everywhere: it is
sorted, and shuffled only with a seed that every process shares.
"""
from __future__ import annotations

import glob
import json
import os
import random
from pathlib import Path
from typing import Iterator, Sequence

from webdataset.shardlists import expand_urls
from webdataset.utils import PipelineStage

_GLOB_CHARS = set("*?[")


class ShardSpecError(ValueError):
    """A shard spec that names no file, or a stats file that cannot be trusted."""


def expand_shard_specs(data_root: str | Path, specs: Sequence[str], field: str = "shards") -> list[str]:
    """Return the sorted, de-duplicated absolute paths that ``specs`` name under ``data_root``.

    ``field`` is the config field the specs came from; errors name it.
    """
    if isinstance(specs, str):
        raise ShardSpecError(f"{field}: expected a list of shard specs, got the string {specs!r}")
    root = Path(data_root)
    found: set[str] = set()
    for spec in specs:
        for expanded in expand_urls(str(root / spec)):
            if _GLOB_CHARS & set(expanded):
                matches = glob.glob(expanded)
                if not matches:
                    raise ShardSpecError(f"{field}: glob {expanded!r} (from {spec!r}) matches no file")
                found.update(os.path.abspath(m) for m in matches)
            elif os.path.isfile(expanded):
                found.add(os.path.abspath(expanded))
            else:
                raise ShardSpecError(f"{field}: shard {expanded!r} (from {spec!r}) does not exist")
    if not found:
        raise ShardSpecError(f"{field}: the specs {list(specs)!r} name no file under {root}")
    return sorted(found)


def stats_path(shard_path: str | Path) -> Path:
    """``.../00003.tar`` -> ``.../00003_stats.json`` (img2dataset's sibling counters)."""
    shard_path = Path(shard_path)
    return shard_path.with_name(shard_path.name.split(".")[0] + "_stats.json")


def read_expected_count(shard_path: str | Path) -> int | None:
    """``successes`` from the shard's stats file: the samples img2dataset wrote into it.

    Returns None when there is no stats file; raises :class:`ShardSpecError` for a stats file
    that exists but is not a JSON object with a non-negative integer ``successes``.
    """
    path = stats_path(shard_path)
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardSpecError(f"{path}: stats file is not valid JSON: {err}") from err
    successes = stats.get("successes") if isinstance(stats, dict) else None
    if not isinstance(successes, int) or isinstance(successes, bool) or successes < 0:
        raise ShardSpecError(f"{path}: expected a non-negative integer 'successes', got {successes!r}")
    return successes


def expected_counts(shards: Sequence[str], require_stats: bool) -> dict[str, int | None]:
    """``{shard: successes or None}``; with ``require_stats`` a missing stats file is an error."""
    counts = {shard: read_expected_count(shard) for shard in shards}
    missing = [s for s, n in counts.items() if n is None]
    if require_stats and missing:
        raise ShardSpecError(
            f"{len(missing)} shard(s) have no stats file, e.g. {stats_path(missing[0])}; "
            "set reader.require_stats=false to read them without truncation accounting"
        )
    return counts


class ShardOrder(PipelineStage):
    """Pipeline source: yields ``{"url": path}`` for every shard, once per pass.

    With ``shuffle`` the order of pass ``p`` is ``random.Random(f"{seed}:{p}")``'s permutation of the
    sorted list: identical on every rank and worker (so node/worker slices still partition the
    shards) and different from pass to pass. ``p`` counts passes made by this process's copy of the
    stage; DataLoader workers keep their copy only with ``persistent_workers=True``, which the
    DataModules set.
    """

    def __init__(self, shards: Sequence[str], shuffle: bool, seed: int):
        self.shards = list(shards)
        self.shuffle = shuffle
        self.seed = seed
        self.passes = 0

    def run(self) -> Iterator[dict[str, str]]:
        order = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}:{self.passes}").shuffle(order)
        self.passes += 1
        for url in order:
            yield {"url": url}
