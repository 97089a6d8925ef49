"""Count, log and hand on the samples a reader had to skip.

A reader never stops on a bad sample and never drops one silently. Each skipped sample is
counted; each distinct (file, key, reason) is logged once per process as a warning naming the
file and the key; the count rides on the next sample the reader yields (``sample["n_skipped"]``),
so it crosses DataLoader worker processes inside the data itself. Samples lost to a truncated or
unreadable shard have no key to name: they are counted at the end of the shard as
``expected - read - bad`` where ``expected`` is img2dataset's ``successes``, so that per shard
``skipped = expected - read``.

A skip that happens after a worker's last sample of a pass would have nothing to ride on: the
reader then yields a *skip marker*, ``{"n_skipped": k, SKIP_MARKER: True}``, which the batching
stage and the mixture fold into a real batch and :func:`drop_skip_markers` removes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)

N_SKIPPED = "n_skipped"
SKIP_MARKER = "__skip_marker__"


@dataclass
class ShardSummary:
    """One file's pass: ``expected`` (stats ``successes``; None if unknown), ``read`` good samples,
    ``skipped`` = bad samples seen + samples lost after a break."""

    expected: int | None
    read: int = 0
    skipped: int = 0


def skip_marker(count: int) -> dict[str, Any]:
    return {N_SKIPPED: count, SKIP_MARKER: True}


def is_skip_marker(sample: Any) -> bool:
    return isinstance(sample, dict) and bool(sample.get(SKIP_MARKER, False))


def drop_skip_markers(samples: Iterable[Any]) -> Iterator[Any]:
    """Real samples only (the markers' counts are lost: use where only samples matter)."""
    return (s for s in samples if not is_skip_marker(s))


class SkipLedger:
    """Per-pass accounting for one process. ``warned`` is shared across passes so that a bad
    sample met again in the next pass is counted again but not logged again (the end-of-pass
    summary, one line per damaged file, is logged every pass)."""

    def __init__(self, warned: set[tuple[str, str, str]] | None = None):
        self.warned = warned if warned is not None else set()
        self.summaries: dict[str, ShardSummary] = {}
        self.pending = 0
        self._url: str | None = None
        self._bad = 0
        self._last_key: str | None = None

    # -- per file -------------------------------------------------------------------------------
    def begin(self, url: str, expected: int | None) -> None:
        self._url, self._bad, self._last_key = url, 0, None
        self.summaries[url] = ShardSummary(expected=expected)

    def read_one(self, key: str) -> int:
        """Record a good sample; returns the skips it carries (and clears them)."""
        self.summaries[self._current()].read += 1
        self._last_key = key
        carried, self.pending = self.pending, 0
        return carried

    def bad(self, key: str, reason: str) -> None:
        url = self._current()
        self._bad += 1
        self.summaries[url].skipped += 1
        self.pending += 1
        self._last_key = key
        # keyed by (file, key) only: a reason's text may differ between passes (object addresses)
        self._warn_once(url, key, "sample", f"{url}: skipping sample {key!r}: {reason}")

    def stream_error(self, exn: BaseException) -> bool:
        """webdataset ``handler=``: a read error inside the current file; always continue.

        The samples it costs are counted in :meth:`end` from the stats file."""
        url = self._current()
        after = f"after key {self._last_key!r}" if self._last_key else "before the first sample"
        self._warn_once(url, "<stream>", "stream", f"{url}: read error {after}: {type(exn).__name__}: {exn.args[0] if exn.args else exn}")
        return True

    def end(self) -> ShardSummary:
        url = self._current()
        summary = self.summaries[url]
        if summary.expected is not None:
            lost = summary.expected - summary.read - self._bad
            if lost > 0:
                summary.skipped += lost
                self.pending += lost
                self._warn_once(url, "<lost>", "lost", f"{url}: {lost} sample(s) after key {self._last_key!r} "
                                f"could not be read (stats file promises {summary.expected}, read {summary.read}, bad {self._bad})")
            elif lost < 0:
                self._warn_once(url, "<excess>", "excess", f"{url}: found {summary.read + self._bad} samples, "
                                f"more than the {summary.expected} its stats file promises")
        self._url = None
        return summary

    # -- whole pass -----------------------------------------------------------------------------
    def take_pending(self) -> int:
        carried, self.pending = self.pending, 0
        return carried

    def report(self) -> None:
        """Log one line per file that lost samples this pass (the end-of-pass summary)."""
        damaged = {u: s for u, s in self.summaries.items() if s.skipped}
        for url, s in sorted(damaged.items()):
            log.warning("pass summary: %s: expected %s, read %d, skipped %d", url, s.expected, s.read, s.skipped)

    def _current(self) -> str:
        if self._url is None:
            raise RuntimeError("SkipLedger: no file is open (call begin() first)")
        return self._url

    def _warn_once(self, url: str, key: str, reason_kind: str, message: str) -> None:
        token = (url, key, reason_kind)
        if token not in self.warned:
            self.warned.add(token)
            log.warning(message)
