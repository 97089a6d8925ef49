"""Validation statistics of the stage-1 tokenizer: keep ratio, tokens per image, reconstruction
cosine, codebook usage and perplexity, Spearman correlation between image complexity and tokens kept.

The functions are pure (tensors in, numbers out); :class:`TokenizerStats` accumulates them over a
validation pass (and across ranks through an ``all_gather`` callable).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from scipy.stats import spearmanr
from torch import Tensor

PERCENTILES = (0, 10, 25, 50, 75, 90, 100)


def codebook_usage_perplexity(counts: Tensor) -> tuple[float, float]:
    """counts: (K,) code histogram -> (fraction of the K codes used at least once, perplexity =
    exp(entropy of the code distribution)). An empty histogram gives (0, 1)."""
    counts = counts.double()
    total = counts.sum()
    if total <= 0:
        return 0.0, 1.0
    p = counts / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).double().mean()), float(entropy.exp())


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation (ties get average ranks, scipy's definition); NaN when either side
    is constant (e.g. the fixed-length tokenizer keeps every patch)."""
    x, y = x.double().cpu().numpy(), y.double().cpu().numpy()
    if len(x) < 2 or x.min() == x.max() or y.min() == y.max():
        return math.nan
    return float(spearmanr(x, y).statistic)


def token_percentiles(tokens: Tensor) -> dict[str, float]:
    """tokens: (I,) tokens kept per image -> {"p0": ..., "p50": ..., "p100": ...} (linear interpolation)."""
    q = torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.double)
    values = torch.quantile(tokens.double(), q)
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values)}


def _gather_ragged(t: Tensor, all_gather: Callable[[Tensor], Tensor]) -> Tensor:
    """Concatenate a 1-D tensor of per-rank length over ranks (padded to the longest for the gather)."""
    lengths = all_gather(torch.tensor([t.numel()], device=t.device)).view(-1)  # (R,)
    longest = int(lengths.max())
    padded = torch.zeros(longest, dtype=t.dtype, device=t.device)
    padded[: t.numel()] = t
    gathered = all_gather(padded).view(len(lengths), longest)  # (R, longest)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(lengths)])


class TokenizerStats:
    """Accumulates one validation pass: per-image tokens kept, complexity and reconstruction cosine,
    and the histogram of the codes of kept tokens."""

    def __init__(self, codebook_size: int, num_patches: int) -> None:
        self.codebook_size = codebook_size
        self.num_patches = num_patches
        self.counts = torch.zeros(codebook_size, dtype=torch.long)
        self.tokens: list[Tensor] = []
        self.complexity: list[Tensor] = []
        self.cosine: list[Tensor] = []

    def update(self, keep: Tensor, indices: Tensor, cosine: Tensor, complexity: Optional[Tensor]) -> None:
        """keep: (B, N) bool; indices: (B, N) codes at every position; cosine: (B, N) reconstruction
        cosine per patch; complexity: (B,) or None."""
        kept_codes = indices[keep].cpu()
        self.counts += torch.bincount(kept_codes, minlength=self.codebook_size)
        self.tokens.append(keep.sum(dim=1).cpu())
        self.cosine.append(cosine.float().mean(dim=1).cpu())
        if complexity is not None:
            self.complexity.append(complexity.cpu().double())

    def compute(self, all_gather: Optional[Callable[[Tensor], Tensor]] = None) -> dict[str, float]:
        """Metrics over every image seen (on every rank when ``all_gather`` is given)."""
        counts = self.counts
        tokens = torch.cat(self.tokens) if self.tokens else torch.zeros(0, dtype=torch.long)
        cosine = torch.cat(self.cosine) if self.cosine else torch.zeros(0)
        complexity = torch.cat(self.complexity) if self.complexity else None
        if all_gather is not None:
            counts = all_gather(counts).view(-1, self.codebook_size).sum(dim=0)
            tokens, cosine = _gather_ragged(tokens, all_gather), _gather_ragged(cosine, all_gather)
            if complexity is not None:
                complexity = _gather_ragged(complexity, all_gather)
        if tokens.numel() == 0:
            return {}
        usage, perplexity = codebook_usage_perplexity(counts.cpu())
        out = {
            "images": float(tokens.numel()),
            "tokens": float(counts.sum()),
            "keep_ratio": float(tokens.double().mean() / self.num_patches),
            "tokens_mean": float(tokens.double().mean()),
            **{f"tokens_{k}": v for k, v in token_percentiles(tokens).items()},
            "rec_cosine": float(cosine.double().mean()),
            "codebook_usage": usage,
            "codes_used": float((counts > 0).sum()),
            "perplexity": perplexity,
        }
        if complexity is not None and complexity.numel() == tokens.numel():
            out["spearman_complexity_tokens"] = spearman(complexity, tokens)
        return out

    def per_image(self) -> tuple[Tensor, Optional[Tensor]]:
        """(tokens kept per image (I,), complexity (I,) or None), this rank only."""
        tokens = torch.cat(self.tokens) if self.tokens else torch.zeros(0, dtype=torch.long)
        return tokens, (torch.cat(self.complexity) if self.complexity else None)
