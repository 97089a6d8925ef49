"""webdataset pipeline stages shared by the shard and text readers.

Each stage is a ``webdataset.PipelineStage`` (``run(src) -> iterator``): DataPipeline re-runs
every stage at the start of each pass, in whichever process iterates it (a DataLoader worker runs
its own copy), so per-pass state lives in ``run`` and per-process state on the object.

Epoch length. A WebDataset stream is iterable, not indexable. Training streams repeat forever and
each worker stops after a fixed number of batches (``DataPipeline.with_epoch``), so every rank
yields exactly ``batches_per_epoch`` rounded up to a multiple of the worker count, whatever the
shard sizes: ranks never disagree on the step count (which would hang DDP) and ``__len__``
(``with_length``) is exact, so progress bars and ``val_check_interval`` work. Validation streams
make one exact pass; their ``__len__`` is planned from the stats files (exact for clean data, an
upper bound when samples are skipped).
"""
from __future__ import annotations

import math
import random
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import webdataset as wds
from webdataset.utils import PipelineStage, pytorch_worker_info

from lavit_pl.data.shard_list import ShardOrder
from lavit_pl.data.skip_ledger import N_SKIPPED, ShardSummary, SkipLedger, is_skip_marker, skip_marker

RawIterator = Callable[[str, Callable[[BaseException], bool]], Iterator[tuple[str, Any]]]
Decoder = Callable[[str, str, Any], dict[str, Any]]


class BadSample(ValueError):
    """Raised by a decoder for a sample that must be skipped; the message is the reason."""


class ReadWithLedger(PipelineStage):
    """``{"url"}`` stream -> decoded samples, each carrying ``n_skipped``; bad ones are counted.

    ``iter_raw(url, handler)`` yields ``(key, raw)`` for one file and reports read errors to
    ``handler``; ``decode(url, key, raw)`` returns a sample dict or raises :class:`BadSample`.
    ``expected`` maps a file to the samples it should hold (None: unknown). After a pass made in
    this process, ``last_summary`` holds ``{file: ShardSummary}``.
    """

    def __init__(self, iter_raw: RawIterator, decode: Decoder, expected: Mapping[str, int | None]):
        self.iter_raw = iter_raw
        self.decode = decode
        self.expected = dict(expected)
        self.warned: set[tuple[str, str, str]] = set()
        self.last_summary: dict[str, ShardSummary] = {}

    def run(self, src: Iterable[dict[str, str]]) -> Iterator[dict[str, Any]]:
        ledger = SkipLedger(self.warned)
        for item in src:
            url = item["url"]
            ledger.begin(url, self.expected.get(url))
            for key, raw in self.iter_raw(url, ledger.stream_error):
                try:
                    sample = self.decode(url, key, raw)
                except BadSample as err:
                    ledger.bad(key, str(err))
                    continue
                sample[N_SKIPPED] = ledger.read_one(key)
                yield sample
            ledger.end()
        ledger.report()
        self.last_summary = ledger.summaries
        if ledger.pending:
            yield skip_marker(ledger.take_pending())


def node_rank_and_size() -> tuple[int, int]:
    """(rank, world size) of this process: env ``RANK``/``WORLD_SIZE`` if both are set, else
    torch.distributed if initialised, else (0, 1) (webdataset's rule)."""
    rank, world_size, _, _ = pytorch_worker_info()
    return rank, world_size


class NodeSplit(PipelineStage):
    """``webdataset.split_by_node`` with the rank fixed when the pipeline is built.

    webdataset looks the rank up when the stage runs, i.e. inside each DataLoader worker, where
    torch.distributed is not initialised unless the worker was forked, and Lightning's DDP
    launcher exports ``WORLD_SIZE`` but not ``RANK``: a spawned worker would read every shard on
    every rank. The DataModules build pipelines in the rank's main process, so capture it there.
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None):
        here = node_rank_and_size()
        self.rank = here[0] if rank is None else rank
        self.world_size = here[1] if world_size is None else world_size

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        return islice(src, self.rank, None, self.world_size) if self.world_size > 1 else iter(src)


class SeededShuffle(PipelineStage):
    """webdataset's shuffle buffer with a generator seeded by (seed, rank, worker, pass), so a run
    is reproducible for a fixed seed and world/worker layout, and each pass is shuffled anew."""

    def __init__(self, bufsize: int, seed: int):
        self.bufsize = bufsize
        self.seed = seed
        self.rank = node_rank_and_size()[0]
        self.passes = 0

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        _, _, worker, _ = pytorch_worker_info()
        rng = random.Random(f"{self.seed}:{self.rank}:{worker}:{self.passes}")
        self.passes += 1
        initial = max(1, self.bufsize // 2)
        return wds.filters.shuffle(self.bufsize, initial, rng=rng)(iter(src))


class BatchWithSkips(PipelineStage):
    """Samples -> batches of ``batch_size`` real samples; skip markers add to a batch's count.

    One finished batch is held back until the next is complete or the stream ends, so skips
    found after the last sample of a pass still reach a batch. ``partial=False`` drops the last
    incomplete batch of a pass (its samples' skip counts are kept). A worker that reads no good
    sample at all yields no batch: its skips are logged but cannot reach the metric.
    """

    def __init__(self, batch_size: int, collate: Callable[[list[dict[str, Any]]], dict[str, Any]], partial: bool):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.collate = collate
        self.partial = partial

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        held: dict[str, Any] | None = None
        current: list[dict[str, Any]] = []
        extra = 0  # skips carried by markers (or dropped samples) not yet in a batch
        for sample in src:
            if is_skip_marker(sample):
                extra += int(sample[N_SKIPPED])
                continue
            current.append(sample)
            if len(current) == self.batch_size:
                batch = self.collate(current)
                batch[N_SKIPPED] += extra
                extra, current = 0, []
                if held is not None:
                    yield held
                held = batch
        if current and self.partial:
            batch = self.collate(current)
            batch[N_SKIPPED] += extra
            extra = 0
            if held is not None:
                yield held
            held = batch
        else:
            extra += sum(int(s.get(N_SKIPPED, 0)) for s in current)
        if held is not None:
            held[N_SKIPPED] += extra
            yield held


def worker_slices(items: Sequence[str], rank: int, world_size: int, num_workers: int) -> list[list[str]]:
    """The items each DataLoader worker of ``rank`` reads, as split_by_node/split_by_worker cut them."""
    mine = list(items)[rank::world_size] if world_size > 1 else list(items)
    workers = max(1, num_workers)
    return [mine[w::workers] for w in range(workers)]


def batches_per_worker(batches_per_epoch: int, num_workers: int) -> int:
    """Training: each worker's share of a nominal epoch, rounded up."""
    return math.ceil(batches_per_epoch / max(1, num_workers))


def planned_pass_batches(
    files: Sequence[str], expected: Mapping[str, int | None], batch_size: int, num_workers: int
) -> int | None:
    """Batches one exact pass (``partial=True``) yields on this rank; None if a count is unknown."""
    rank, world_size = node_rank_and_size()
    total = 0
    for files_of_worker in worker_slices(files, rank, world_size, num_workers):
        counts = [expected.get(f) for f in files_of_worker]
        if any(c is None for c in counts):
            return None
        total += math.ceil(sum(counts) / batch_size)  # type: ignore[arg-type]
    return total


def check_enough_files(n_files: int, num_workers: int, field: str) -> None:
    """A repeating stream needs a file for every (rank, worker), or some worker yields nothing."""
    world_size = node_rank_and_size()[1]
    needed = world_size * max(1, num_workers)
    if n_files < needed:
        raise ValueError(
            f"{field}: {n_files} file(s) cannot feed {world_size} rank(s) x {max(1, num_workers)} worker(s); "
            f"need at least {needed} (write more, smaller shards or lower num_workers)"
        )


def fixed_length_epoch(pipeline: wds.DataPipeline, batches_per_epoch: int, num_workers: int) -> wds.DataPipeline:
    """Endless ``pipeline`` -> each worker yields ``batches_per_worker`` batches per epoch, and
    ``len()`` is the exact per-rank total (``batches_per_epoch`` rounded up to the worker count)."""
    per_worker = batches_per_worker(batches_per_epoch, num_workers)
    pipeline = pipeline.with_epoch(per_worker)
    return pipeline.with_length(per_worker * max(1, num_workers), silent=True)


def file_stream_pipeline(
    files: Sequence[str],
    read: PipelineStage,
    collate: Callable[[Sequence[dict[str, Any]]], dict[str, Any]],
    *,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 0,
    batch_size: int | None = None,
    partial: bool = True,
    repeat: bool = False,
) -> wds.DataPipeline:
    """The stages every reader shares around its ``read`` stage: file order (shuffled per pass when
    ``shuffle``), node and worker split, ``read``, a seeded sample shuffle (``shuffle`` and
    ``shuffle_buffer > 1``), batching with ``collate`` (when ``batch_size`` is set; ``partial``
    keeps a last short batch) and, with ``repeat``, an endless stream."""
    stages: list[Any] = [ShardOrder(files, shuffle=shuffle, seed=seed), NodeSplit(), wds.split_by_worker, read]
    if shuffle and shuffle_buffer > 1:
        stages.append(SeededShuffle(shuffle_buffer, seed))
    if batch_size is not None:
        stages.append(BatchWithSkips(batch_size, collate, partial))
    pipeline = wds.DataPipeline(*stages)
    return pipeline.repeat() if repeat else pipeline
