"""Feature decoder: reconstructs all N encoder features from the T_b quantized codes of an image.

Release architecture: codes (code_dim) -> in_proj to D, plus a learned position embedding by their index
in the compacted code list (0..T_b-1); N learned queries; L pre-norm blocks of self-attention among
the queries, cross-attention from the queries to the codes (padding masked), MLP; final LayerNorm;
Linear -> Tanh -> Linear back to the encoder width (the reconstruction target is the raw features).
The code memory is not updated between blocks.

Training runs on all N merger positions with the keep mask as a multiplicative per-key policy (see
``attention.py``) and position index = number of kept tokens before each position, which equals
decoding the compacted list while passing gradients to M. The release initialises the embeddings
with zeros (it only ships trained weights); we use a truncated normal(0.02) so that queries differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from lavit_pl.models.tokenizer.attention import merge_heads, policy_attention, split_heads
from lavit_pl.models.tokenizer.common import init_weights
from lavit_pl.models.tokenizer.packing import pad_sequences


@dataclass
class FeatureDecoderConfig:
    width: int = 1408  # D inside the decoder
    out_dim: int = 1408  # encoder width (reconstruction target)
    code_dim: int = 32
    num_patches: int = 256  # N: learned queries, and the longest code list
    depth: int = 12
    num_heads: int = 16
    mlp_dim: int = 6144
    qkv_bias: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("width", "out_dim", "code_dim", "num_patches", "num_heads", "mlp_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FeatureDecoderConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"FeatureDecoderConfig.depth must be >= 0, got {self.depth}")
        if self.width % self.num_heads:
            raise ValueError(f"FeatureDecoderConfig.width={self.width} must be divisible by num_heads={self.num_heads}")


class DecoderBlock(nn.Module):
    def __init__(self, cfg: FeatureDecoderConfig) -> None:
        super().__init__()
        d, self.num_heads = cfg.width, cfg.num_heads
        self.norm_self = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.self_qkv = nn.Linear(d, 3 * d, bias=cfg.qkv_bias)
        self.self_proj = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.norm_cross = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.cross_q = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.cross_k = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.cross_v = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.cross_proj = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.norm_mlp = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_dim, act_layer=nn.GELU)

    def forward(self, queries: Tensor, memory: Tensor, memory_weight: Tensor) -> Tensor:
        """queries: (B, N, D); memory: (B, S, D); memory_weight: (B, S) in [0, 1] -> (B, N, D)."""
        h = self.num_heads
        q, k, v = (split_heads(t, h) for t in self.self_qkv(self.norm_self(queries)).chunk(3, dim=-1))
        queries = queries + self.self_proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))
        q = split_heads(self.cross_q(self.norm_cross(queries)), h)
        k, v = split_heads(self.cross_k(memory), h), split_heads(self.cross_v(memory), h)
        queries = queries + self.cross_proj(merge_heads(policy_attention(q, k, v, memory_weight)))
        return queries + self.mlp(self.norm_mlp(queries))


class FeatureDecoder(nn.Module):
    def __init__(self, cfg: FeatureDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.in_proj = nn.Linear(cfg.code_dim, d)
        self.code_pos_embed = nn.Parameter(torch.empty(cfg.num_patches, d))  # by index in the code list
        self.query_embed = nn.Parameter(torch.empty(cfg.num_patches, d))
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.out_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.out_dim))
        self.apply(init_weights)
        nn.init.trunc_normal_(self.code_pos_embed, std=0.02)
        nn.init.trunc_normal_(self.query_embed, std=0.02)

    def forward(self, code_vectors: Tensor, weights: Tensor, positions: Tensor) -> Tensor:
        """code_vectors: (B, S, code_dim); weights: (B, S) in [0, 1] (0 = absent; may carry gradient);
        positions: (B, S) long index of each code in its image's code list -> (B, N, out_dim)."""
        if positions.numel() and int(positions.max()) >= self.cfg.num_patches:
            raise ValueError(f"code position {int(positions.max())} >= num_patches={self.cfg.num_patches}")
        # F.embedding, not code_pos_embed[positions]: the indexing backward accumulates with atomic adds
        # on multi-threaded CPU, so two identical runs drifted apart (tokenizer fits were not reproducible)
        memory = self.in_proj(code_vectors) + F.embedding(positions, self.code_pos_embed)  # (B, S, D)
        x = self.query_embed.expand(code_vectors.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, memory, weights)
        return self.out_head(self.norm_out(x))

    def forward_masked(self, code_vectors: Tensor, keep_mask: Tensor) -> Tensor:
        """Training path. code_vectors: (B, N, code_dim) at every merger position; keep_mask: (B, N)
        float (straight-through) or bool -> (B, N, out_dim)."""
        hard = keep_mask.detach() > 0.5
        positions = hard.long().cumsum(dim=1) - hard.long()  # kept tokens before each position
        return self.forward(code_vectors, keep_mask.to(code_vectors.dtype), positions)

    def decode_lists(self, code_vectors: list[Tensor]) -> Tensor:
        """list of B tensors (T_b, code_dim), T_b >= 1 -> (B, N, out_dim)."""
        if any(len(c) == 0 for c in code_vectors):
            raise ValueError("every image needs at least one code to decode")
        padded, valid = pad_sequences(code_vectors)  # (B, T_max, C), (B, T_max)
        positions = torch.arange(padded.shape[1], device=padded.device).expand(padded.shape[0], -1)
        return self.forward(padded, valid.to(padded.dtype), positions)
