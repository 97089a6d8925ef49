"""Vector quantizer (paper equation 3), BEiT-v2 VQ-KD style as in the authors' release.

features (D) -> Linear(D, D) -> Tanh -> Linear(D, code_dim) -> l2-normalise -> nearest of K
l2-normalised codes by squared L2 -> straight-through estimator.

The release ships no training code, so the update rule is ours:
- **EMA on the unit sphere.** Per step, with kept tokens only: ``n_k <- d n_k + (1-d) count_k``,
  ``s_k <- d s_k + (1-d) sum of l2(z) assigned to k``, code ``c_k = l2(s_k)``. The codebook is a
  buffer (no gradient); the encoder side learns through the commitment term
  ``beta * ||l2(z) - sg(c)||^2`` (mean over kept tokens) and the straight-through reconstruction.
- **k-means init.** The first ``kmeans_init_batches`` training batches are collected, then spherical
  k-means (k-means++ seeding, ``kmeans_iters`` Lloyd rounds) sets the codebook; until then codes are the release's
  l2-normalised Gaussian init and no EMA step is taken.
- **Dead-code restarts.** After every EMA step, codes whose EMA count fell below
  ``dead_code_threshold`` are replaced by random recent encoder outputs (a ring buffer of the last
  ``recent_buffer_size`` kept latents) and given count 1. This guards against the collapse a plain-EMA
  reproduction reported (< 2000 of 16384 codes used).
- **Distributed.** Counts and sums are all-reduced; k-means init and restarts run on every rank and
  rank 0's result is broadcast, so every replica holds the same codebook.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lavit_pl.models.tokenizer.common import init_weights

_CHUNK = 4096  # rows per distance block: bounds the (rows, K) matrix to 4096 * K floats


@dataclass
class VectorQuantizerConfig:
    width: int = 1408  # D, merger output width
    code_dim: int = 32
    codebook_size: int = 16384  # K
    commitment_weight: float = 0.25  # beta
    ema_decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    kmeans_init_batches: int = 1
    dead_code_threshold: float = 0.01  # EMA count; 0 disables restarts
    recent_buffer_size: int = 65536

    def __post_init__(self) -> None:
        for name in ("width", "code_dim", "codebook_size", "kmeans_init_batches", "recent_buffer_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VectorQuantizerConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"VectorQuantizerConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.commitment_weight < 0 or self.dead_code_threshold < 0 or self.kmeans_iters < 0:
            raise ValueError(f"VectorQuantizerConfig: commitment_weight, dead_code_threshold, kmeans_iters must be >= 0, got {self}")


@dataclass
class QuantizerOutput:
    """indices: (...) long in [0, K); quantized: (..., code_dim) straight-through codes; latent:
    (..., code_dim) l2-normalised inputs; commitment_loss: weighted scalar; perplexity, usage: scalars
    over the counted tokens (usage = fraction of the K codes hit in this batch)."""

    indices: Tensor
    quantized: Tensor
    latent: Tensor
    commitment_loss: Tensor
    perplexity: Tensor
    usage: Tensor


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Equation (3): argmin_j ||z_i - c_j||^2. z: (M, C), codebook: (K, C) -> (M,) long."""
    c_sq = codebook.pow(2).sum(dim=1)  # (K,)
    out = []
    for block in z.split(_CHUNK):
        d = block.pow(2).sum(dim=1, keepdim=True) + c_sq - 2.0 * block @ codebook.t()  # (rows, K)
        out.append(d.argmin(dim=1))
    return torch.cat(out) if out else z.new_zeros(0, dtype=torch.long)


def kmeans_plus_plus(samples: Tensor, k: int) -> Tensor:
    """k-means++ seeding: each next centroid is a sample drawn with probability proportional to its
    squared distance to the nearest centroid so far. samples: (M, C) -> (k, C). With fewer than k
    distinct samples the draw degrades to uniform (repeats allowed)."""
    m = samples.shape[0]
    chosen = torch.empty(k, dtype=torch.long, device=samples.device)
    chosen[0] = torch.randint(m, (1,), device=samples.device)
    d2 = (samples - samples[chosen[0]]).pow(2).sum(dim=1)  # (M,)
    for i in range(1, k):
        # +1e-12: a valid distribution (uniform) once every sample coincides with a centroid; no host sync
        chosen[i] = torch.multinomial(d2 + 1e-12, 1)[0]
        d2 = torch.minimum(d2, (samples - samples[chosen[i]]).pow(2).sum(dim=1))
    return samples[chosen]


def spherical_kmeans(samples: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """samples: (M, C) unit vectors -> (centroids (k, C) unit, counts (k,) of the final assignment).
    k-means++ seeding, then Lloyd steps on the sphere; empty clusters keep their centroid."""
    centroids = kmeans_plus_plus(samples, k)
    for _ in range(iters):
        idx = nearest_code(samples, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, idx, samples)
        counts = torch.bincount(idx, minlength=k)
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), centroids)
    counts = torch.bincount(nearest_code(samples, centroids), minlength=k)
    return centroids, counts.to(samples.dtype)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VectorQuantizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encode_task_layer = nn.Sequential(
            nn.Linear(cfg.width, cfg.width), nn.Tanh(), nn.Linear(cfg.width, cfg.code_dim)
        )
        self.apply(init_weights)
        codebook = F.normalize(torch.randn(cfg.codebook_size, cfg.code_dim), dim=1)  # release init
        self.register_buffer("codebook", codebook)  # (K, C)
        self.register_buffer("ema_count", torch.ones(cfg.codebook_size))  # (K,)
        self.register_buffer("ema_sum", codebook.clone())  # (K, C)
        self.register_buffer("initialized", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("recent", torch.zeros(cfg.recent_buffer_size, cfg.code_dim), persistent=False)
        self._recent_filled = 0
        self._recent_next = 0
        self._batches_seen = 0

    def project(self, features: Tensor) -> Tensor:
        """(..., D) -> l2-normalised latent (..., code_dim)."""
        return F.normalize(self.encode_task_layer(features), dim=-1)

    def lookup(self, latent: Tensor) -> Tensor:
        """(..., code_dim) -> indices (...) of the nearest codes."""
        flat = latent.reshape(-1, latent.shape[-1]).to(self.codebook.dtype)
        return nearest_code(flat, self.codebook).view(latent.shape[:-1])

    def embed(self, indices: Tensor) -> Tensor:
        """(...) long -> (..., code_dim) codebook vectors."""
        return F.embedding(indices, self.codebook)

    def forward(self, features: Tensor, weights: Tensor | None = None, update: bool = True) -> QuantizerOutput:
        """features: (..., D); weights: optional (...) hard 0/1 mask of the tokens that count for the loss,
        the statistics and the EMA update (dropped positions are quantized but not counted).
        EMA/k-means/restarts run only in training mode with ``update=True``."""
        latent = self.project(features)
        indices = self.lookup(latent.detach())
        codes = self.embed(indices).to(latent.dtype)
        quantized = latent + (codes - latent).detach()
        counted = torch.ones(indices.shape, dtype=torch.bool, device=indices.device) if weights is None else weights.detach() > 0.5
        z_sel, idx_sel = latent[counted], indices[counted]  # (T, C), (T,)
        n = max(idx_sel.numel(), 1)
        commit = (z_sel - codes[counted].detach()).pow(2).sum(dim=-1).sum() / n
        hist = torch.bincount(idx_sel, minlength=self.cfg.codebook_size).float() / n  # fp32 stats under autocast
        entropy = -(hist * torch.log(hist.clamp_min(1e-12))).sum()
        if self.training and update:
            self._update(z_sel.detach().to(self.codebook.dtype), idx_sel)
        return QuantizerOutput(
            indices=indices,
            quantized=quantized,
            latent=latent,
            commitment_loss=self.cfg.commitment_weight * commit,
            perplexity=entropy.exp(),
            usage=(hist > 0).sum().float() / self.cfg.codebook_size,
        )

    @torch.no_grad()
    def _update(self, z: Tensor, idx: Tensor) -> None:
        self._remember(z)
        if not bool(self.initialized):
            self._batches_seen += 1
            if self._batches_seen >= self.cfg.kmeans_init_batches and self._recent_filled > 0:
                centroids, counts = spherical_kmeans(self.recent[: self._recent_filled], self.cfg.codebook_size, self.cfg.kmeans_iters)
                self.codebook.copy_(centroids)
                self.ema_count.copy_(counts)
                self.ema_sum.copy_(centroids * counts[:, None])
                self.initialized.fill_(True)
                self._broadcast_state()
            return
        k = self.cfg.codebook_size
        counts = torch.bincount(idx, minlength=k).to(z.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, z)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.cfg.ema_decay
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        norm = self.ema_sum.norm(dim=1, keepdim=True)
        self.codebook.copy_(torch.where(norm > 0, self.ema_sum / norm.clamp_min(1e-12), self.codebook))
        if self.cfg.dead_code_threshold > 0 and self._recent_filled > 0:
            self._restart_dead_codes()
            self._broadcast_state()

    def _restart_dead_codes(self) -> None:
        dead = (self.ema_count < self.cfg.dead_code_threshold)[:, None]  # (K, 1)
        draw = torch.randint(self._recent_filled, (self.cfg.codebook_size,), device=self.recent.device)
        fresh = self.recent[draw]  # (K, C); only the dead rows are used, drawn without a host sync
        self.codebook.copy_(torch.where(dead, fresh, self.codebook))
        self.ema_sum.copy_(torch.where(dead, fresh, self.ema_sum))
        self.ema_count.copy_(torch.where(dead[:, 0], torch.ones_like(self.ema_count), self.ema_count))

    def _remember(self, z: Tensor) -> None:
        size = self.recent.shape[0]
        z = z[-size:]
        slots = (self._recent_next + torch.arange(z.shape[0], device=z.device)) % size
        self.recent[slots] = z
        self._recent_next = (self._recent_next + z.shape[0]) % size
        self._recent_filled = min(size, self._recent_filled + z.shape[0])

    def _broadcast_state(self) -> None:
        if _distributed():
            for t in (self.codebook, self.ema_count, self.ema_sum):
                dist.broadcast(t, src=0)

    def dead_code_count(self) -> int:
        """Codes whose EMA count is below the restart threshold (for logging)."""
        return int((self.ema_count < self.cfg.dead_code_threshold).sum())
