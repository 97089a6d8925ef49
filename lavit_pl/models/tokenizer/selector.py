"""Token selector (paper section 3.1, equation 1): per-patch keep/drop distribution and mask M.

Architecture as in the authors' release (DynamicViT-style): LayerNorm -> Linear(D, D) -> GELU; half of
the channels stay local, the other half is averaged over the image (weighted by a policy, all ones on
the first and only call) and broadcast back; then Linear(D, D/2) -> GELU -> Linear(D/2, D/4) -> GELU ->
Linear(D/4, 2) -> log-softmax. Index 0 = keep.

Training: Gumbel-softmax with temperature tau, hard straight-through sample (forward values exactly
0/1, gradient of the soft sample). Inference: deterministic argmax (default) or the release's Gumbel
sample (``inference = "gumbel"``), or ``"expected_topk"`` (ours): each image keeps its
round(sum_i p_i) most probable patches, i.e. as many tokens as a Gumbel sample keeps on average, chosen
deterministically. When the selector is confident (p in {0, 1}) it equals argmax; when it is not (keep
probabilities spread around rho, as a briefly trained selector leaves them) argmax keeps almost nothing
while expected_topk still keeps the expected count, ranked by the selector. Our rule: every image keeps
at least one token (the most probable one is forced on when the sample keeps none).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lavit_pl.models.tokenizer.common import init_weights

KEEP = 0  # index of "keep" in the selector's two-way distribution (release convention)
INFERENCE_MODES = ("argmax", "gumbel", "expected_topk")
DETERMINISTIC_INFERENCE = ("argmax", "expected_topk")


@dataclass
class TokenSelectorConfig:
    width: int = 1408  # D
    tau: float = 1.0  # Gumbel-softmax temperature
    inference: str = "argmax"  # "gumbel": sample like the release; "expected_topk": round(sum p) most probable
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.width < 4 or self.width % 4:
            raise ValueError(f"TokenSelectorConfig.width must be a positive multiple of 4, got {self.width}")
        if self.tau <= 0:
            raise ValueError(f"TokenSelectorConfig.tau must be > 0, got {self.tau}")
        if self.inference not in INFERENCE_MODES:
            raise ValueError(f"TokenSelectorConfig.inference must be one of {INFERENCE_MODES}, got {self.inference!r}")


@dataclass
class SelectorOutput:
    """keep_mask: (B, N) float, exactly 0/1, straight-through gradient to the (soft) sample;
    keep_prob: (B, N) keep probability without noise; log_probs: (B, N, 2)."""

    keep_mask: Tensor
    keep_prob: Tensor
    log_probs: Tensor


class TokenSelector(nn.Module):
    def __init__(self, cfg: TokenSelectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.in_mlp = nn.Sequential(nn.LayerNorm(d, eps=cfg.norm_eps), nn.Linear(d, d), nn.GELU())
        self.out_mlp = nn.Sequential(
            nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, d // 4), nn.GELU(), nn.Linear(d // 4, 2),
            nn.LogSoftmax(dim=-1),
        )
        self.apply(init_weights)

    def log_probs(self, patch_features: Tensor, policy: Tensor | None = None) -> Tensor:
        """patch_features: (B, N, D); policy: optional (B, N) weights of the global average -> (B, N, 2)."""
        x = self.in_mlp(patch_features)
        b, n, d = x.shape
        local, glob = x[..., : d // 2], x[..., d // 2 :]
        if policy is None:
            glob = glob.mean(dim=1, keepdim=True)
        else:
            w = policy.to(x.dtype)[..., None]  # (B, N, 1)
            glob = (glob * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True)
        x = torch.cat([local, glob.expand(b, n, d // 2)], dim=-1)
        return self.out_mlp(x)

    def forward(self, patch_features: Tensor, policy: Tensor | None = None) -> SelectorOutput:
        log_probs = self.log_probs(patch_features, policy)
        sample = self.training or self.cfg.inference == "gumbel"
        if sample:
            soft = F.gumbel_softmax(log_probs, tau=self.cfg.tau, hard=False)  # (B, N, 2)
        else:
            soft = log_probs.exp()
        soft_keep = soft[..., KEEP]
        if not sample and self.cfg.inference == "expected_topk":
            hard = expected_topk_mask(soft_keep)
        else:
            hard = soft.argmax(dim=-1) == KEEP  # (B, N) bool
        # At least one token per image: force the most probable one on where the sample kept none.
        none_kept = ~hard.any(dim=1, keepdim=True)  # (B, 1)
        best = F.one_hot(soft_keep.argmax(dim=1), hard.shape[1]).bool()  # (B, N)
        hard = hard | (none_kept & best)
        # (soft - soft.detach()) is exactly 0, so the forward values are exactly 0/1 (hard + soft - soft
        # would round); the gradient is that of the soft sample.
        keep_mask = hard.to(soft.dtype) + (soft_keep - soft_keep.detach())
        return SelectorOutput(keep_mask=keep_mask, keep_prob=log_probs[..., KEEP].exp(), log_probs=log_probs)


def expected_topk_mask(keep_prob: Tensor) -> Tensor:
    """keep_prob: (B, N) -> (B, N) bool keeping, per image, the round(sum_i p_i) patches of highest
    probability (ties: lower index first), at least one."""
    n = keep_prob.shape[1]
    k = keep_prob.sum(dim=1).round().clamp(1, n).long()  # (B,)
    order = torch.sort(keep_prob, dim=1, descending=True, stable=True).indices  # (B, N)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand_as(order))
    return rank < k[:, None]
