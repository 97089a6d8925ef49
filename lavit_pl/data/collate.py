"""Collate reader samples into batches; the batch's ``n_skipped`` is the sum over its samples.

Image batches: ``image`` (B, C, H, W) float, ``key``/``shard`` lists of B str, ``caption`` list of
B str (image-text only), ``meta`` {field: (B,) tensor for numbers, else list of B values},
``n_skipped`` int. Text batches: ``text``, ``meta`` (list of B dicts), ``key`` lists, ``n_skipped``.
Mixture batches: one sub-batch per source that has documents in the batch, under the source's
name, plus ``source_counts`` {name: documents} and ``n_skipped`` (sub-batches carry none, so a
skip is counted once).
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Callable, Mapping, Sequence

import torch

from lavit_pl.data.skip_ledger import N_SKIPPED

Sample = dict[str, Any]
Batch = dict[str, Any]


def _collate_meta_field(values: list[Any]) -> Any:
    if values and all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.long)  # (B,)
    if values and all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.float32)  # (B,)
    return list(values)


def collate_image_samples(samples: Sequence[Sample]) -> Batch:
    """Image or image-text samples -> batch (see module docstring)."""
    if not samples:
        raise ValueError("collate_image_samples: no samples to collate")
    batch: Batch = {
        "image": torch.stack([s["image"] for s in samples]),  # (B, C, H, W)
        "key": [s["key"] for s in samples],
        "shard": [s["shard"] for s in samples],
        "meta": {f: _collate_meta_field([s["meta"][f] for s in samples]) for f in samples[0]["meta"]},
        N_SKIPPED: sum(int(s.get(N_SKIPPED, 0)) for s in samples),
    }
    if "caption" in samples[0]:
        batch["caption"] = [s["caption"] for s in samples]
    return batch


def collate_text_samples(samples: Sequence[Sample]) -> Batch:
    """Text-corpus samples -> ``{"text", "meta", "key", "n_skipped"}`` with lists of B entries."""
    if not samples:
        raise ValueError("collate_text_samples: no samples to collate")
    return {
        "text": [s["text"] for s in samples],
        "meta": [s["meta"] for s in samples],
        "key": [s["key"] for s in samples],
        N_SKIPPED: sum(int(s.get(N_SKIPPED, 0)) for s in samples),
    }


class MixtureCollate:
    """Group a mixed list of documents by ``sample["source"]`` and collate each group with its
    source's collate function (a class, not a closure, so DataLoader workers can pickle it)."""

    def __init__(self, collates: Mapping[str, Callable[[Sequence[Sample]], Batch]]):
        self.collates = dict(collates)

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        groups: dict[str, list[Sample]] = {}
        for s in samples:
            groups.setdefault(s["source"], []).append(s)
        batch: Batch = {N_SKIPPED: sum(int(s.get(N_SKIPPED, 0)) for s in samples)}
        for name in self.collates:  # fixed source order, whatever order the draws came in
            if name in groups:
                sub = self.collates[name](groups[name])
                sub.pop(N_SKIPPED, None)
                batch[name] = sub
        batch["source_counts"] = {name: len(groups.get(name, [])) for name in self.collates}
        return batch
