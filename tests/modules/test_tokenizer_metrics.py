"""Tokenizer validation statistics against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from lavit_pl.modules.tokenizer_metrics import (
    TokenizerStats,
    _gather_ragged,
    codebook_usage_perplexity,
    spearman,
    token_percentiles,
)


def test_usage_and_perplexity_by_hand():
    usage, ppl = codebook_usage_perplexity(torch.tensor([2, 2, 0, 0]))
    assert usage == 0.5 and ppl == pytest.approx(2.0)  # two equally likely codes: exp(ln 2)
    usage, ppl = codebook_usage_perplexity(torch.tensor([3, 1, 0, 0, 0, 0, 0, 0]))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert usage == 0.25 and ppl == pytest.approx(math.exp(entropy))
    assert codebook_usage_perplexity(torch.zeros(4, dtype=torch.long)) == (0.0, 1.0)


def test_spearman_by_hand():
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8
    assert spearman(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 3, 2, 4])) == pytest.approx(0.8)
    # ties get average ranks: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4); Pearson of the ranks
    rx, ry = torch.tensor([1.5, 1.5, 3, 4]), torch.tensor([1.0, 2, 3, 4])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    expected = float((rx * ry).sum() / (rx.norm() * ry.norm()))
    assert spearman(torch.tensor([1, 1, 2, 3]), torch.tensor([10, 20, 30, 40])) == pytest.approx(expected)
    assert math.isnan(spearman(torch.tensor([1, 2, 3]), torch.tensor([5, 5, 5])))  # constant tokens


def test_percentiles_interpolate_linearly():
    p = token_percentiles(torch.tensor([0, 10, 20, 30, 40]))
    assert (p["p0"], p["p25"], p["p50"], p["p90"], p["p100"]) == (0.0, 10.0, 20.0, 36.0, 40.0)


def test_stats_over_two_batches_by_hand():
    stats = TokenizerStats(codebook_size=4, num_patches=4)
    keep = torch.tensor([[True, True, False, False], [True, False, False, False]])
    codes = torch.tensor([[0, 1, 3, 3], [1, 2, 2, 2]])  # dropped positions (3, 2) must not count
    stats.update(keep, codes, torch.full((2, 4), 0.5), torch.tensor([2, 1]))
    stats.update(torch.tensor([[True, True, True, False]]), torch.tensor([[0, 0, 1, 3]]), torch.ones(1, 4), torch.tensor([3]))
    m = stats.compute()
    # kept codes: 0, 1 | 1 | 0, 0, 1 -> counts (3, 3, 0, 0); tokens per image (2, 1, 3)
    assert m["tokens"] == 6 and m["images"] == 3 and m["codes_used"] == 2
    assert m["codebook_usage"] == 0.5 and m["perplexity"] == pytest.approx(2.0)
    assert m["keep_ratio"] == pytest.approx(6 / 12) and m["tokens_mean"] == 2.0
    assert m["rec_cosine"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["spearman_complexity_tokens"] == pytest.approx(1.0)  # complexity (2, 1, 3) vs tokens (2, 1, 3)


def test_ragged_gather_concatenates_ranks_in_order():
    """Two simulated ranks holding 3 and 1 values; all_gather stacks (R, ...) as Lightning's does."""
    per_rank = [torch.tensor([1, 2, 3]), torch.tensor([7])]
    calls = []

    def fake_all_gather(t):
        calls.append(t.clone())
        if len(calls) == 1:  # the lengths
            return torch.stack([torch.tensor([len(r)]) for r in per_rank])
        return torch.stack([torch.nn.functional.pad(r, (0, t.numel() - r.numel())) for r in per_rank])

    assert _gather_ragged(per_rank[0], fake_all_gather).tolist() == [1, 2, 3, 7]
    assert calls[1].tolist() == [1, 2, 3]  # this rank's values, padded to the longest (3)
