"""Hand-counted checks of the batching stage, the ledger and the epoch planning."""
from __future__ import annotations

import pytest

from lavit_pl.data.collate import collate_text_samples
from lavit_pl.data.pipeline_stages import BatchWithSkips, batches_per_worker, planned_pass_batches, worker_slices
from lavit_pl.data.skip_ledger import ShardSummary, SkipLedger, skip_marker


def _docs(skips):
    return [{"text": f"d{i}", "meta": {}, "key": f"k{i}", "n_skipped": n} for i, n in enumerate(skips)]


@pytest.mark.parametrize(
    "partial, sizes, skipped",
    [
        (True, [2, 2, 1], [2, 1, 3]),  # [d0 d1] carries 0+2; [d2 d3] 0+1; [d4] 0 + trailing marker 3
        (False, [2, 2], [2, 4]),  # d4 dropped: its 0 and the marker's 3 go to the held batch (1+3)
    ],
)
def test_batching_keeps_every_skip_including_trailing_ones(partial, sizes, skipped):
    stream = _docs([0, 2, 0, 1, 0]) + [skip_marker(3)]
    batches = list(BatchWithSkips(2, collate_text_samples, partial).run(iter(stream)))
    assert [len(b["text"]) for b in batches] == sizes
    assert [b["n_skipped"] for b in batches] == skipped


def test_ledger_counts_bad_and_lost_samples_per_file():
    ledger = SkipLedger()
    ledger.begin("a.tar", expected=5)
    assert ledger.read_one("a0") == 0
    ledger.bad("a1", "no .txt member")
    assert ledger.read_one("a2") == 1  # the skip rides on the next good sample
    ledger.end()  # 5 promised, 2 read, 1 bad: 2 lost after "a2"
    ledger.begin("b.tar", expected=None)  # no stats: losses unknown, bad lines still counted
    ledger.bad("b0", "line is not JSON")
    ledger.end()
    assert ledger.take_pending() == 3
    assert ledger.summaries == {"a.tar": ShardSummary(5, 2, 3), "b.tar": ShardSummary(None, 0, 1)}


def test_epoch_planning_follows_the_node_and_worker_split(monkeypatch):
    files = [f"{i:05d}.tar" for i in range(5)]
    assert worker_slices(files, rank=1, world_size=2, num_workers=2) == [["00001.tar"], ["00003.tar"]]
    assert worker_slices(files, rank=0, world_size=2, num_workers=2) == [["00000.tar", "00004.tar"], ["00002.tar"]]
    expected = {f: 7 for f in files}
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    # rank 0: worker 0 holds 14 samples -> ceil(14/4) = 4 batches, worker 1 holds 7 -> 2
    assert planned_pass_batches(files, expected, batch_size=4, num_workers=2) == 6
    assert planned_pass_batches(files, {**expected, "00002.tar": None}, 4, 2) is None
    assert batches_per_worker(10, 3) == 4 and batches_per_worker(10, 0) == 10
