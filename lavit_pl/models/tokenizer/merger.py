"""Token merger (paper section 3.1, equation 2; figure 3b).

L pre-norm blocks, each: self-attention among kept tokens (causal in raster order by default), cross-
attention from kept tokens (queries) to dropped tokens (keys/values), FFN. As in the authors' release,
the residual stream starts from the raw encoder features, cross-attention keys/values are
LayerNorm(raw features) computed once, there are no position embeddings, and a final LayerNorm
produces the visual part features X̂_r.

Two equivalent computations:
- :meth:`TokenMerger.forward` (training): every one of the N positions is a query; the keep mask M
  enters the attention as a multiplicative per-key policy (see ``attention.py``), so the output is
  differentiable in M. Self-attention: key j visible to query i iff j <= i and (j kept or j == i)
  (release rule; "j <= i" dropped for the bidirectional ablation). Cross-attention: key j visible iff
  j dropped. Kept positions equal the per-image partition of equation (2); dropped positions carry
  "what this token would have become" and only matter for gradients.
- :meth:`TokenMerger.forward_padded` (inference): kept and dropped tokens are gathered (no loop over
  images); token-wise layers run on packed tokens and attention on padded batches. Same kept outputs
  at ``softmax_eps = 0``, roughly a third of the FLOPs at the paper's keep ratio.

Our rule: an image with nothing dropped gets a zero cross-attention update (the explicit partition
has no X_d); the release would add a uniform average of all values there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from lavit_pl.models.tokenizer.attention import (
    merge_heads,
    policy_attention,
    policy_attention_explicit,
    split_heads,
)
from lavit_pl.models.tokenizer.common import init_weights
from lavit_pl.models.tokenizer.packing import TokenGroup, from_padded, group_tokens, pack, to_padded

SELF_ATTENTION_KINDS = ("causal", "bidirectional")


@dataclass
class TokenMergerConfig:
    width: int = 1408  # D, the encoder width
    depth: int = 12  # L
    num_heads: int = 16
    mlp_dim: int = 6144
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    self_attention: str = "causal"  # "bidirectional": Table 6 ablation
    merge_dropped: bool = True  # False: "w/o token merger" ablation (Table 8): dropped tokens are discarded
    softmax_eps: float = 0.0  # DynamicViT smoothing; 1e-6 reproduces the release, 0 = exact partition

    def __post_init__(self) -> None:
        if self.width <= 0 or self.depth < 0 or self.num_heads <= 0 or self.mlp_dim <= 0:
            raise ValueError(f"TokenMergerConfig: width, num_heads, mlp_dim must be > 0 and depth >= 0, got {self}")
        if self.width % self.num_heads:
            raise ValueError(f"TokenMergerConfig.width={self.width} must be divisible by num_heads={self.num_heads}")
        if self.self_attention not in SELF_ATTENTION_KINDS:
            raise ValueError(f"TokenMergerConfig.self_attention must be one of {SELF_ATTENTION_KINDS}, got {self.self_attention!r}")
        if self.softmax_eps < 0:
            raise ValueError(f"TokenMergerConfig.softmax_eps must be >= 0, got {self.softmax_eps}")


def _self_policy(keep: Tensor, causal: bool) -> Tensor:
    """keep: (B, N) float -> release policy (B, 1, N, N): causal * (M_j + (1 - M_j) * [i == j])."""
    n = keep.shape[1]
    eye = torch.eye(n, dtype=keep.dtype, device=keep.device)
    policy = keep[:, None, None, :] + (1.0 - keep[:, None, None, :]) * eye  # (B, 1, N, N)
    if causal:
        policy = policy * torch.ones(n, n, dtype=keep.dtype, device=keep.device).tril()
    return policy


class MergerSelfAttention(nn.Module):
    def __init__(self, cfg: TokenMergerConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.causal = cfg.self_attention == "causal"
        self.eps = cfg.softmax_eps
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=cfg.qkv_bias)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return split_heads(q, self.num_heads), split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x: (B, N, D) normed stream, keep: (B, N) float policy -> (B, N, D)."""
        q, k, v = self._heads(x)  # (B, H, N, E) each
        n = x.shape[1]
        if self.eps > 0:
            out = policy_attention_explicit(q, k, v, _self_policy(keep, self.causal), self.eps)
        else:
            # Keys twice: block 1 carries weight M_j under the static (causal) mask, block 2 only the
            # diagonal with weight 1 - M_i, so the total weight of key i for query i is 1 (the release's
            # "j == i" rule) while every M_j keeps its exact gradient.
            ones = torch.ones(n, n, dtype=torch.bool, device=x.device)
            static = ones.tril() if self.causal else ones
            mask = torch.cat([static, torch.eye(n, dtype=torch.bool, device=x.device)], dim=1)  # (N, 2N)
            out = policy_attention(
                q, torch.cat([k, k], dim=2), torch.cat([v, v], dim=2), torch.cat([keep, 1.0 - keep], dim=1), mask
            )
        return self.proj(merge_heads(out))

    def forward_padded(self, x: Tensor, group: TokenGroup) -> Tensor:
        """x: (S, D) packed kept tokens (normed) -> (S, D); attention among each image's kept tokens."""
        qkv = to_padded(self.qkv(x), group)  # (B, T, 3D)
        q, k, v = (split_heads(t, self.num_heads) for t in qkv.chunk(3, dim=-1))  # (B, H, T, E)
        t = group.max_len
        eye = torch.eye(t, dtype=torch.bool, device=x.device)
        mask = group.valid[:, None, None, :]  # (B, 1, 1, T) key padding
        if self.causal:
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        mask = mask | eye  # padded query rows see themselves only: no empty rows
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(from_padded(merge_heads(out), group))


class MergerCrossAttention(nn.Module):
    def __init__(self, cfg: TokenMergerConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.eps = cfg.softmax_eps
        self.q = nn.Linear(cfg.width, cfg.width, bias=cfg.qkv_bias)
        self.k = nn.Linear(cfg.width, cfg.width, bias=cfg.qkv_bias)
        self.v = nn.Linear(cfg.width, cfg.width, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=cfg.qkv_bias)

    def forward(self, x: Tensor, memory: Tensor, keep: Tensor) -> Tensor:
        """x: (B, N, D) normed stream; memory: (B, N, D) LayerNorm(raw); keep: (B, N) float -> (B, N, D)."""
        q = split_heads(self.q(x), self.num_heads)
        k = split_heads(self.k(memory), self.num_heads)
        v = split_heads(self.v(memory), self.num_heads)
        drop = 1.0 - keep
        if self.eps > 0:
            out = policy_attention_explicit(q, k, v, drop[:, None, None, :], self.eps)
        else:
            out = policy_attention(q, k, v, drop)
        has_dropped = (keep.detach() < 0.5).any(dim=1).to(x.dtype)[:, None, None]  # (B, 1, 1)
        return self.proj(merge_heads(out)) * has_dropped

    def forward_padded(self, x: Tensor, kept: TokenGroup, memory: Tensor, dropped: TokenGroup) -> Tensor:
        """x: (S, D) packed kept tokens; memory: (S_d, D) packed LayerNorm(raw) of dropped tokens."""
        q = split_heads(to_padded(self.q(x), kept), self.num_heads)  # (B, H, T, E)
        k = split_heads(to_padded(self.k(memory), dropped), self.num_heads)  # (B, H, N_d, E)
        v = split_heads(to_padded(self.v(memory), dropped), self.num_heads)
        has_dropped = dropped.lengths > 0
        # An image without dropped tokens would have an all-masked row; let it see the zero padding
        # and zero its update below.
        mask = (dropped.valid | ~has_dropped[:, None])[:, None, None, :]  # (B, 1, 1, N_d)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.proj(from_padded(merge_heads(out), kept))  # (S, D)
        return out * has_dropped.to(out.dtype).repeat_interleave(kept.lengths)[:, None]


class MergerBlock(nn.Module):
    def __init__(self, cfg: TokenMergerConfig) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.self_attn = MergerSelfAttention(cfg)
        self.merge_dropped = cfg.merge_dropped
        if cfg.merge_dropped:
            self.norm_cross = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
            self.cross_attn = MergerCrossAttention(cfg)
        self.norm_mlp = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_dim, act_layer=nn.GELU)

    def forward(self, x: Tensor, memory: Tensor, keep: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm_self(x), keep)
        if self.merge_dropped:
            x = x + self.cross_attn(self.norm_cross(x), memory, keep)
        return x + self.mlp(self.norm_mlp(x))

    def forward_padded(self, x: Tensor, kept: TokenGroup, memory: Tensor, dropped: TokenGroup) -> Tensor:
        x = x + self.self_attn.forward_padded(self.norm_self(x), kept)
        if self.merge_dropped and dropped.max_len > 0:
            x = x + self.cross_attn.forward_padded(self.norm_cross(x), kept, memory, dropped)
        return x + self.mlp(self.norm_mlp(x))


class TokenMerger(nn.Module):
    """Standalone merger: ``TokenMerger(cfg)(patch_features, keep_mask)``; stage 2 copies and trains it."""

    def __init__(self, cfg: TokenMergerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm_memory = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)  # release: ln_vision on raw features
        self.blocks = nn.ModuleList(MergerBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.apply(init_weights)

    def forward(self, patch_features: Tensor, keep_mask: Tensor) -> Tensor:
        """Masked parallel path. patch_features: (B, N, D); keep_mask: (B, N) bool or float in {0, 1}
        (a straight-through mask passes its gradient) -> (B, N, D); kept positions are X̂_r."""
        _check_inputs(patch_features, keep_mask, self.cfg.width)
        keep = keep_mask.to(patch_features.dtype)
        memory = self.norm_memory(patch_features)
        x = patch_features
        for block in self.blocks:
            x = block(x, memory, keep)
        return self.norm_out(x)

    def forward_padded(self, patch_features: Tensor, keep_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Gathered inference path. (B, N, D), (B, N) bool -> (kept features (B, T_max, D) zero-padded,
        valid (B, T_max) bool). Equals :meth:`forward` at kept positions when ``softmax_eps == 0``."""
        x, kept = self._run_packed(patch_features, keep_mask)
        return to_padded(x, kept), kept.valid

    def merge(self, patch_features: Tensor, keep_mask: Tensor) -> list[Tensor]:
        """(B, N, D), (B, N) bool -> list of B tensors (T_b, D), via the gathered path."""
        x, kept = self._run_packed(patch_features, keep_mask)
        return list(torch.split(x, kept.lengths.tolist(), dim=0))

    def _run_packed(self, patch_features: Tensor, keep_mask: Tensor) -> tuple[Tensor, TokenGroup]:
        _check_inputs(patch_features, keep_mask, self.cfg.width)
        keep = keep_mask.bool()
        kept, dropped = group_tokens(keep), group_tokens(~keep)
        x = pack(patch_features, kept)  # (S, D)
        memory = self.norm_memory(pack(patch_features, dropped))  # (S_d, D)
        for block in self.blocks:
            x = block.forward_padded(x, kept, memory, dropped)
        return self.norm_out(x), kept


def _check_inputs(patch_features: Tensor, keep_mask: Tensor, width: int) -> None:
    if patch_features.dim() != 3 or patch_features.shape[-1] != width:
        raise ValueError(f"patch_features must be (B, N, {width}), got {tuple(patch_features.shape)}")
    if keep_mask.shape != patch_features.shape[:2]:
        raise ValueError(f"keep_mask must be (B, N) = {tuple(patch_features.shape[:2])}, got {tuple(keep_mask.shape)}")

