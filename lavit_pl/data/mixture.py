"""Mix endless sample streams by a ratio counted in documents.

Each document's source is an independent categorical draw with probabilities ``weights / sum``
from a ``random.Random`` seeded by (seed, rank, worker, pass): a run is reproducible for a fixed
seed and rank/worker layout. (webdataset's ``RandomMix`` draws from the global ``random`` module,
so it cannot be seeded per worker; hence this small class.) Skip markers coming from a source add
to the skip count of the next document yielded and do not consume a draw.
"""
from __future__ import annotations

import random
from typing import Any, Iterator, Mapping

from torch.utils.data import IterableDataset
from webdataset.utils import pytorch_worker_info

from lavit_pl.data.pipeline_stages import node_rank_and_size
from lavit_pl.data.skip_ledger import N_SKIPPED, is_skip_marker

MAX_EMPTY_PASSES = 3


class WeightedSourceMix(IterableDataset):
    """``sources``: name -> endless iterable of samples (run inside each worker, so each applies
    its own node/worker split); ``weights``: name -> relative document share. Yields the source's
    samples with ``sample["source"] = name``."""

    def __init__(self, sources: Mapping[str, Any], weights: Mapping[str, float], seed: int):
        if set(sources) != set(weights):
            raise ValueError(f"weights name {sorted(weights)} but the sources are {sorted(sources)}")
        bad = {k: w for k, w in weights.items() if not w > 0}
        if bad:
            raise ValueError(f"weights must be > 0, got {bad}")
        self.names = list(sources)
        self.sources = dict(sources)
        self.weights = [float(weights[n]) for n in self.names]
        self.seed = seed
        self.rank = node_rank_and_size()[0]  # fixed in the rank's main process (see NodeSplit)
        self.passes = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, worker = self.rank, pytorch_worker_info()[2]
        rng = random.Random(f"{self.seed}:{rank}:{worker}:{self.passes}")
        self.passes += 1
        streams = {name: iter(self.sources[name]) for name in self.names}
        pending = 0
        while True:
            name = rng.choices(self.names, weights=self.weights)[0]
            markers_in_a_row = 0
            while True:
                try:
                    sample = next(streams[name])
                except StopIteration:
                    raise RuntimeError(
                        f"mixture source {name!r} ran dry on rank {rank}, worker {worker}; "
                        "mixture sources must repeat (their files may all be unreadable)"
                    ) from None
                if not is_skip_marker(sample):
                    break
                pending += int(sample[N_SKIPPED])
                markers_in_a_row += 1
                if markers_in_a_row > MAX_EMPTY_PASSES:  # a marker ends a pass: passes with no document
                    raise RuntimeError(
                        f"mixture source {name!r} read no document in {MAX_EMPTY_PASSES} passes "
                        f"on rank {rank}, worker {worker}: all its files are unreadable"
                    )
            sample["source"] = name
            sample[N_SKIPPED] = int(sample.get(N_SKIPPED, 0)) + pending
            pending = 0
            yield sample
